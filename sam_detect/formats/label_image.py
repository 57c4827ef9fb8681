"""Label images: ``(H, W)`` integer ids, 0 = background (``.tif/.tiff/.png/.bmp/.npy``); a
``(T, H, W)`` stack holds one image per frame. They carry no class names: every instance
gets one label (default ``"object"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError, ImageLoadError
from sam_detect.formats._common import DEFAULT_LABEL, PathLike, check_exists
from sam_detect.instances import Instances

LABEL_IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".bmp", ".npy")


def read_label_image(path: PathLike, channel: int | None = None) -> np.ndarray:
    """The raw integer ids of a label image file: ``(H, W)`` or a ``(T, H, W)`` stack.

    TIFF axes come from the file's metadata: every axis other than ``Y``, ``X`` and ``C``
    (``T``, ``Z``, pages...) is a frame axis, flattened in file order. A file with a ``C``
    axis (an OME ``CTYX`` image whose label masks sit in one channel) needs ``channel``.
    """
    from sam_detect.io.images import check_series_size

    path = Path(path)
    check_exists(path)
    suffix = path.suffix.lower()
    axes = None
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tf:
                series = tf.series[0]
                axes = series.axes
                check_series_size(path, axes.upper(), tuple(int(x) for x in series.shape), series.dtype.itemsize)
                arr = series.asarray()
        elif suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im)  # 'P' (palette) images give their indices, as wanted
    except ImageLoadError:
        raise  # too large to read: said as for any image
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise AnnotationError(f"{path}: cannot read label image ({type(e).__name__}: {e})") from e
    arr = np.asarray(arr)
    if axes is not None and len(axes) == arr.ndim:
        if "S" in axes and arr.shape[axes.index("S")] > 1:
            raise AnnotationError(
                f"{path}: an RGB image (axes {axes}); a label image needs one integer id per pixel "
                "(0 = background)"
            )
        if "C" in axes:
            c_axis = axes.index("C")
            n_c = arr.shape[c_axis]
            if channel is None and n_c > 1:
                raise AnnotationError(
                    f"{path}: has {n_c} channels (axes {axes}, shape {arr.shape}); choose the channel "
                    "that holds the labels (channel=..., --labels-channel on the command line)"
                )
            c = 0 if channel is None else channel
            if not 0 <= c < n_c:
                raise AnnotationError(
                    f"{path}: channel {c} out of range 0..{n_c - 1} (axes {axes})"
                )
            arr = np.take(arr, c, axis=c_axis)
            axes = axes.replace("C", "")
        elif channel not in (None, 0):
            raise AnnotationError(
                f"{path}: has no channel axis (axes {axes}); channel={channel} is not there"
            )
        keep = [i for i, a in enumerate(axes) if a in "YX" or arr.shape[i] > 1]
        arr = arr.reshape([arr.shape[i] for i in keep])
        axes = "".join(axes[i] for i in keep)
        if axes.endswith("YX") and arr.ndim > 3:
            arr = arr.reshape(-1, *arr.shape[-2:])
    else:
        arr = np.squeeze(arr)
        if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
            if channel is None:
                raise AnnotationError(
                    f"{path}: looks like a colour image {arr.shape}; a label image needs one integer id "
                    "per pixel (0 = background). Save the ids as 8/16-bit grey or an indexed PNG."
                )
            arr = arr[..., channel]
    if arr.ndim not in (2, 3):
        raise AnnotationError(
            f"{path}: a label image must be (H, W) or a (T, H, W) stack, got shape {arr.shape}"
        )
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.isfinite(arr).all() and np.all(np.mod(arr, 1) == 0)):
            raise AnnotationError(
                f"{path}: a label image must hold integer ids, got dtype {arr.dtype}"
            )
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise AnnotationError(
            f"{path}: label ids must be >= 0 (0 = background), found {int(arr.min())}"
        )
    return binary_as_pieces(arr, str(path))


def binary_as_pieces(arr: np.ndarray, where: str = "the label image") -> np.ndarray:
    """A label image (``(H, W)`` or a ``(T, H, W)`` stack) that holds one id only, in separate
    pieces, is a binary mask (0/255, 0/1, a bool TIFF): each connected piece (8-connected) is
    given its own id, frame by frame, and a warning says so. Any other label image is
    returned as it is (one id in one piece is one object)."""
    arr = np.asarray(arr)
    ids = np.unique(arr)
    if np.count_nonzero(ids) != 1 or arr.ndim not in (2, 3):
        return arr
    from scipy import ndimage

    frames = arr[None] if arr.ndim == 2 else arr
    pieces = [ndimage.label(f > 0, structure=np.ones((3, 3), bool)) for f in frames]
    if max(n for _, n in pieces) < 2:
        return arr
    import logging

    logging.getLogger("sam_detect").warning(
        "%s holds one value (%s) in %d separate pieces: read as a binary mask, each piece one object",
        where, ids[ids != 0][0], sum(n for _, n in pieces))
    out = np.stack([lab for lab, _ in pieces]).astype(np.int32)
    return out[0] if arr.ndim == 2 else out


def label_image_to_instances(label_image: np.ndarray, label: str | None = None) -> Instances:
    """Instances of a ``(H, W)`` integer label image (0 = background), all labelled ``label``.

    One box crop per id (``Instances.from_label_image``): never ``(N, H, W)``.
    """
    inst, ids = Instances.from_label_image(label_image)
    inst.labels[:] = label or DEFAULT_LABEL
    inst.data["source_id"] = np.asarray(ids, dtype=np.int64)
    return inst


def read_label_frames(
    path: Path, label: str | None, channel: int | None, frame: int | None
) -> list[Instances]:
    """One ``Instances`` per frame of a label image file (only ``frame`` when given)."""
    arr = read_label_image(path, channel)
    stack = arr[None] if arr.ndim == 2 else arr
    if frame is not None:
        if not 0 <= frame < len(stack):
            raise AnnotationError(f"{path}: frame {frame} out of range 0..{len(stack) - 1}")
        frames = [int(frame)]
    else:
        frames = list(range(len(stack)))
    out = []
    for t in frames:
        inst = label_image_to_instances(stack[t], label)
        inst.metadata.update({"format": "label_image", "image": t})
        out.append(inst)
    return out


def read_label_array(path: PathLike, frame: int | None, channel: int | None) -> np.ndarray:
    """One ``(H, W)`` label image of a file (:func:`read_label_image`): frame ``frame`` of a
    stack (a one-frame file serves any frame), channel ``channel`` of a multi-channel one.
    The ``--labels`` of ``add``.
    """
    arr = read_label_image(path, channel)
    if arr.ndim == 2 or len(arr) == 1:
        return arr.reshape(arr.shape[-2:])
    if frame is None:
        raise AnnotationError(f"{path}: the label file holds {len(arr)} frames; pick one with --labels-frame "
                              "(or --frame, which picks the image's too)")
    if not 0 <= frame < len(arr):
        raise AnnotationError(f"{path}: frame {frame} out of range 0..{len(arr) - 1} (--labels-frame, or --frame)")
    return arr[frame]


def instances_to_label_image(instances: Instances, dtype: Any = None) -> np.ndarray:
    """A ``(H, W)`` label image with ids ``1..N`` in instance order (0 = background).

    Where masks overlap, the later instance wins. ``dtype`` defaults to the smallest of
    uint8/uint16/uint32 that holds N.
    """
    n = len(instances)
    if dtype is None:
        dtype = np.uint8 if n < 2**8 else np.uint16 if n < 2**16 else np.uint32
    return instances.to_label_image(dtype)


def save_label_image(instances: Instances | Sequence[Instances], path: PathLike) -> Path:
    """Write a label image (``.tif/.tiff/.png/.npy``); several ``Instances`` make a TIFF stack.

    Ids are ``1..N`` per image in instance order; overlaps keep the later instance.
    """
    path = Path(path)
    items = [instances] if isinstance(instances, Instances) else list(instances)
    if not items:
        raise AnnotationError(f"{path}: nothing to write (no images given)")
    hw = {it.image_hw for it in items}
    if len(hw) > 1:
        raise AnnotationError(f"{path}: a label stack needs images of one size, got {sorted(hw)}")
    n_max = max(len(it) for it in items)
    dtype = np.uint8 if n_max < 2**8 else np.uint16 if n_max < 2**16 else np.uint32
    arrays = [instances_to_label_image(it, dtype) for it in items]
    if path.suffix.lower() not in (".tif", ".tiff", ".npy", ".png"):
        raise AnnotationError(
            f"{path}: cannot write a label image as {path.suffix.lower()!r}; use .tif, .png or .npy"
        )
    if path.suffix.lower() == ".png":
        if len(arrays) > 1:
            raise AnnotationError(
                f"{path}: PNG holds one image; write a stack of {len(arrays)} as .tif"
            )
        if dtype == np.uint32:
            raise AnnotationError(f"{path}: {n_max} instances do not fit a 16-bit PNG; write .tif")
    return write_label_array(arrays[0] if len(arrays) == 1 else np.stack(arrays), path)


def write_label_array(labels: np.ndarray, path: PathLike) -> Path:
    """Write integer ids ``(H, W)`` or a ``(T, H, W)`` stack: ``.tif/.tiff``, ``.npy``, else
    an image file through PIL (``.png``...)."""
    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".tif", ".tiff"):
        import tifffile

        tifffile.imwrite(path, labels, photometric="minisblack", compression="zlib")
    elif suffix == ".npy":
        np.save(path, labels)
    else:
        from PIL import Image

        Image.fromarray(labels).save(path)
    return path
