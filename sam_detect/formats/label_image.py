"""Label images: ``(H, W)`` integer ids, 0 = background (``.tif/.tiff/.png/.bmp/.npy``); a
``(T, H, W)`` stack holds one image per frame. They carry no class names: every instance
gets one label (default ``"object"``). Read as one too: an instance map drawn in colours
(each object a flat colour on black) and a folder of mask images, one object each (the
``masks/`` folder of the 2018 Data Science Bowl's nuclei).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError, ImageLoadError
from sam_detect.formats._common import DEFAULT_LABEL, PathLike, check_exists
from sam_detect.instances import Instances
from sam_detect.masks import LOSSY_SUFFIXES, lossy_mask

LABEL_IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".bmp", ".npy")
#: written: a BMP holds 8 bits, too few for a label image's ids
LABEL_WRITE_SUFFIXES = (".tif", ".tiff", ".png", ".npy")
#: read too: MATLAB files of histology sets (CoNSeP, Lizard, HoVer-Net's outputs), whose
#: ``inst_map`` is the label image and ``type_map`` (or a type per instance) the types
LABEL_READ_SUFFIXES = (*LABEL_IMAGE_SUFFIXES, ".mat")
#: the keys of a ``.mat`` file's instance map, in order of preference
MAT_LABEL_KEYS = ("inst_map", "instance_map", "label_map", "labels", "label")
#: the names of a ``.mat`` file's type maps: never read as its instance map, though its only 2-D array
MAT_TYPE_KEYS = ("type_map", "class_map", "types")
#: the files a folder of masks is read from, each one object (lossy JPEGs only where it holds none
#: of these: a JPEG beside them may be a preview of the image)
MASK_FOLDER_SUFFIXES = (".png", ".tif", ".tiff", ".bmp", ".npy")
#: an instance map drawn in colours: the least share of neighbouring pixel pairs off the black
#: ground (right and lower neighbours) that carry one colour (flat objects, touching ones
#: apart; a photograph's or a JPEG's neighbours mostly differ)
COLOUR_MAP_FLAT = 0.9


def read_label_image(path: PathLike, channel: int | None = None, pieces: bool = True) -> np.ndarray:
    """The raw integer ids of a label image file: ``(H, W)`` or a ``(T, H, W)`` stack.

    TIFF axes come from the file's metadata: every axis other than ``Y``, ``X`` and ``C``
    (``T``, ``Z``, pages...) is a frame axis, flattened in file order. A file with a ``C``
    axis (an OME ``CTYX`` image whose label masks sit in one channel) needs ``channel``.
    ``pieces``: a file holding one id in separate pieces is a binary mask, each piece one
    object (:func:`binary_as_pieces`); ``False`` for a type map, whose values are classes.
    """
    from sam_detect.io.images import check_series_size

    path = Path(path)
    if path.is_dir():
        if channel not in (None, 0):
            raise AnnotationError(f"{path}: a folder of masks has no channels; channel={channel} is not there")
        return read_mask_folder(path)
    check_exists(path)
    suffix = path.suffix.lower()
    axes = None
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            from sam_detect.io.images import read_cut_stack

            with tifffile.TiffFile(path) as tf:
                if (cut := read_cut_stack(tf, path)) is not None:  # a label stack cut off: its frames left whole
                    arr, axes = cut
                else:
                    series = tf.series[0]
                    axes = series.axes
                    check_series_size(path, axes.upper(), tuple(int(x) for x in series.shape),
                                      series.dtype.itemsize)
                    arr = series.asarray()
        elif suffix == ".npy":
            arr = _read_npy(path)
        elif suffix == ".mat":
            arr = _mat_arrays(path, types=not pieces)
        else:
            from PIL import Image

            with Image.open(path) as im:
                arr = np.asarray(im)  # 'P' (palette) images give their indices, as wanted
            if suffix in LOSSY_SUFFIXES and pieces and (binary := lossy_mask(arr)) is not None:
                # a JPEG of a binary mask: its compression's noise was "an intensity image" (refused,
                # pointing to --mask), or 64 objects of one grey level each
                import logging

                logging.getLogger("sam_detect").warning(
                    "%s: a JPEG, whose compression blurs every edge: read as a binary mask of its pixels above "
                    "half its maximum (save label images as PNG or TIFF to keep them exact)", path.name)
                arr = binary.astype(np.uint8)
    except (ImageLoadError, AnnotationError):
        raise  # too large to read: said as for any image; a .mat file without its maps: said
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        if suffix in (".json", ".geojson", ".xml"):  # outlines, not pixels
            raise AnnotationError(
                f"{path}: not a label image but an outline file: give it as annotations (add --annotations, "
                "eval -a; COCO, labelme, GeoJSON and polygon lists are read)") from None
        raise AnnotationError(f"{path}: cannot read label image ({type(e).__name__}: {e})") from e
    arr = np.asarray(arr)
    if axes is not None and len(axes) == arr.ndim:
        if "S" in axes and arr.shape[axes.index("S")] > 1 and (
                channel is not None or arr.shape[axes.index("S")] not in (3, 4)):
            # samples that are no colour (two, or a channel named): channels, one holds the labels
            # (an instance + type TIFF saved interleaved or planar was refused as "an RGB image")
            axes = axes.replace("S", "C")
        if "S" in axes and arr.shape[axes.index("S")] > 1:
            ids = colour_coded_ids(arr, str(path)) if axes == "YXS" and pieces else None
            if ids is None:
                planes = axes == "SYX" and arr.dtype != np.uint8  # 16-bit "colour" planes: a stack saved without axes
                raise AnnotationError(
                    f"{path}: an RGB image (axes {axes}); a label image needs one integer id per pixel "
                    "(0 = background), or each object drawn in one flat colour on black"
                    + (f"; if its {arr.shape[0]} planes are label frames saved without axes, --labels-channel K "
                       "reads plane K" if planes else "")
                )
            arr, axes = ids, "YX"
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
        # single axes dropped, but never Y or X: a label image one pixel high stays (1, W)
        while arr.ndim > 2 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim > 2:
            arr = arr.reshape([n for i, n in enumerate(arr.shape) if n > 1 or i >= arr.ndim - 2])
        if channel is None and arr.ndim in (3, 4) and arr.shape[-1] == len(PANNUKE_TYPES) + 1:
            maps = pannuke_maps(arr, types=not pieces, where=str(path))
            arr = arr if maps is None else maps
        if arr.ndim == 3 and channel is not None and 4 < arr.shape[-1] <= 8 < min(arr.shape[:2]):
            # (H, W, C) of a few planes with a channel named: HoVer-Net's training patches are
            # (H, W, 5), RGB then the instance and type maps (read as 256 frames, channel ignored)
            if not 0 <= channel < arr.shape[-1]:
                raise AnnotationError(f"{path}: channel {channel} out of range 0..{arr.shape[-1] - 1}")
            arr = arr[..., channel]
        if arr.ndim == 3 and arr.shape[-1] in (2, 3, 4) and arr.shape[0] > 4:
            # (H, W, C): a colour image, or channels of maps (an instance + type .npy)
            ids = colour_coded_ids(arr, str(path)) if channel is None and pieces and arr.shape[-1] > 2 else None
            if ids is not None:
                arr = ids
            elif channel is None:
                raise AnnotationError(
                    f"{path}: looks like a colour image {arr.shape}; a label image needs one integer id "
                    "per pixel (0 = background), or each object drawn in one flat colour on black. Save "
                    "the ids as 8/16-bit grey or an indexed PNG."
                    if arr.shape[-1] > 2 else
                    f"{path}: holds {arr.shape[-1]} channels {arr.shape}; choose the one that holds the "
                    "labels (channel=..., --labels-channel or --types-channel on the command line)"
                )
            else:
                if not 0 <= channel < arr.shape[-1]:
                    raise AnnotationError(f"{path}: channel {channel} out of range 0..{arr.shape[-1] - 1}")
                arr = arr[..., channel]
    if arr.ndim not in (2, 3):
        raise AnnotationError(
            f"{path}: a label image must be (H, W) or a (T, H, W) stack, got shape {arr.shape}"
        )
    arr = label_ids(arr, str(path))
    if pieces:
        # before any reading of its values as classes in pieces, which an intensity image
        # would set off by the thousand (and whose warnings would contradict this refusal)
        refuse_intensity(arr if arr.ndim == 2 else arr[0], str(path))
        arr = background_as_zero(arr, str(path))
    return binary_as_pieces(arr, str(path)) if pieces else arr


def label_ids(arr: np.ndarray, where: str) -> np.ndarray:
    """``arr`` as a label image's ids: booleans as 0/1, whole floats as int64.

    Raises:
        AnnotationError: values that are not whole numbers, or below 0 (``where`` names the
            file or array in the message)."""
    if arr.dtype == bool:
        arr = arr.astype(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        if not (np.issubdtype(arr.dtype, np.number) and np.isfinite(arr).all() and np.all(np.mod(arr, 1) == 0)):
            raise AnnotationError(f"{where}: a label image must hold integer ids, got dtype {arr.dtype}")
        arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise AnnotationError(f"{where}: label ids must be >= 0 (0 = background), found {int(arr.min())}")
    return arr


def refuse_intensity(lab: np.ndarray, where: str) -> None:
    """Refuse an intensity image given as a label image (``add --labels`` or ``--annotations``,
    ``eval -a``): :func:`read_label_image` checks a file's first frame before it reads its ids.

    A label image holds one integer id per object, constant over the object, so its regions of
    equal value are about as many as its ids and tens of pixels large. An intensity image
    (a photo, a fluorescence frame, a blurred mask) has thousands of values, each scattered
    over many regions of a few pixels: on the HeLa frames 2,467 values in 711,391 regions,
    against 124 ids in 126 regions for their label image.

    Raises:
        AnnotationError: non-integer values, or regions far more numerous and smaller than a
            label image's.
    """
    from skimage.measure import label as connected

    lab = np.asarray(lab)
    if lab.dtype == bool:
        return
    if np.issubdtype(lab.dtype, np.floating):
        finite_vals = np.isfinite(lab)
        if not finite_vals.all() or not np.array_equal(lab, np.round(lab)):
            raise AnnotationError(
                f"{where}: holds non-integer values ({lab.dtype}), so it is not a label image "
                "(0 = background, one integer id per object); for one binary mask use --mask"
            )
    elif not np.issubdtype(lab.dtype, np.integer):
        raise AnnotationError(f"{where}: a label image holds integers, got {lab.dtype}")
    if lab.ndim != 2 or not lab.any():
        return  # shapes and emptiness are reported by the caller with their own messages
    ids = np.unique(lab)
    n_ids = int(len(ids) - (ids[0] == 0))
    _, n_regions = connected(lab, background=0, connectivity=1, return_num=True)
    mean_region = int(np.count_nonzero(lab)) / max(n_regions, 1)
    fragmented = n_regions > 2 * n_ids + 50 and mean_region < 10  # each value in many small bits
    # (nearly) every pixel a value of its own, over most of the frame: spots of a pixel or two
    # each are a label image too (a spot detector's), on a ground of 0
    speckled = n_regions >= 100 and mean_region < 3 and np.count_nonzero(lab) > 0.5 * lab.size
    if fragmented or speckled:
        raise AnnotationError(
            f"{where}: looks like an intensity image, not a label image: {n_ids:,} distinct values "
            f"scattered over {n_regions:,} regions of {mean_region:.1f} pixels on average (a label "
            "image holds one constant id per object); give a label image (0 = background, one "
            "integer id per object), or a binary mask with --mask"
        )


def background_as_zero(arr: np.ndarray, where: str = "the label image") -> np.ndarray:
    """A label image (``(H, W)`` or a stack) without any 0 whose commonest value covers at least
    half of a frame and reaches all four of its borders has that value as its background (a
    map saved on white, 255): it is read as 0, with a warning. Read as an object, it made one
    example of the whole ground (its contrast 1 grey level, every real example's profile
    swamped). Any other label image is returned as it is."""
    arr = np.asarray(arr)
    if arr.ndim not in (2, 3) or not arr.size or (arr == 0).any():
        return arr
    frames = arr[None] if arr.ndim == 2 else arr
    out, moved = frames.copy(), []
    for t, f in enumerate(frames):
        values, counts = np.unique(f, return_counts=True)
        if len(values) < 2 or counts.max() < 0.5 * f.size:
            continue
        v = values[int(counts.argmax())]
        if all((edge == v).any() for edge in (f[0], f[-1], f[:, 0], f[:, -1])):
            out[t][f == v] = 0
            moved.append(int(v))
    if not moved:
        return arr
    import logging

    logging.getLogger("sam_detect").warning(
        "%s holds no 0; its commonest value (%s) covers most of the image and every border: read as the "
        "background (a label image's background is 0)", where, moved[0])
    return out[0] if arr.ndim == 2 else out


#: PanNuke's masks: an instance map per type in channels 0-4 (in this order), the background in 5
PANNUKE_TYPES = ("neoplastic", "inflammatory", "connective", "dead", "epithelial")


def pannuke_maps(arr: np.ndarray, types: bool = False, where: str = "the masks") -> np.ndarray | None:
    """PanNuke's masks, ``(H, W, 6)`` or a ``(N, H, W, 6)`` stack (its ``masks.npy``): channels
    0-4 hold the instance ids of one nucleus type each (``PANNUKE_TYPES``), channel 5 the
    background. Returns the instance map(s) (each channel's ids kept apart) or, with
    ``types``, the type map(s) (channel + 1, so ``--type-names`` in ``PANNUKE_TYPES``' order
    names them); ``None`` where ``arr`` is not laid out so (non-negative whole numbers, a
    background channel of at most two values that lies off the nuclei)."""
    a = np.asarray(arr)
    if a.ndim not in (3, 4) or a.shape[-1] != len(PANNUKE_TYPES) + 1 or not a.size:
        return None
    if not (np.issubdtype(a.dtype, np.number) and np.isfinite(a).all() and a.min() >= 0 and np.all(np.mod(a, 1) == 0)):
        return None
    inst, ground = a[..., :-1], a[..., -1]
    found = (inst > 0).any(axis=-1)
    if np.unique(ground).size > 2 or not found.any() or np.count_nonzero((ground > 0) & found) > 0.01 * found.sum():
        return None
    if types:
        return np.where(found, np.argmax(inst > 0, axis=-1) + 1, 0).astype(np.int64)
    step = int(inst.max()) + 1
    out = np.zeros(a.shape[:-1], np.int64)
    for k in range(inst.shape[-1]):  # a later channel's nucleus takes a shared pixel
        ids = inst[..., k].astype(np.int64)
        out = np.where(ids > 0, ids + k * step, out)
    import logging

    logging.getLogger("sam_detect").warning(
        "%s: read as PanNuke masks (an instance map per type channel, PanNuke's order %s; the types "
        "with --types on the same file, named by --type-names in the channels' order)",
        where, ", ".join(f"{k + 1}={t}" for k, t in enumerate(PANNUKE_TYPES)))
    return out


def _needs_pickle(path: Path) -> bool:
    """Whether ``np.load`` needs ``allow_pickle`` for ``path``, judged from the file's start,
    not from NumPy's wording: a ``.npy`` whose dtype holds Python objects, or whose header is
    larger than NumPy reads without trusting the file, or a file with neither a ``.npy`` nor a
    zip header (``np.load`` unpickles those). A malformed ``.npy`` header is not."""
    from numpy.lib import format as npy_format

    with open(path, "rb") as fh:
        start = fh.read(len(npy_format.MAGIC_PREFIX))
        if not start.startswith(npy_format.MAGIC_PREFIX):
            return bool(start) and not start.startswith((b"PK\x03\x04", b"PK\x05\x06"))
        fh.seek(0)
        try:
            version = npy_format.read_magic(fh)
            read_header = npy_format.read_array_header_1_0 if version == (1, 0) else npy_format.read_array_header_2_0
            here = fh.tell()
            try:
                _, _, dtype = read_header(fh)
            except Exception:  # noqa: BLE001 - too large to read untrusted (np.load asks for allow_pickle) or malformed
                fh.seek(here)
                _, _, dtype = read_header(fh, max_header_size=2**64)
                return True
        except Exception:  # noqa: BLE001 - a malformed header: np.load's own error stands
            return False
    return bool(dtype.hasobject)


def _read_npy(path: Path) -> np.ndarray:
    """A ``.npy`` array; a Cellpose ``*_seg.npy`` (a pickled dict, as Cellpose's GUI saves its
    annotations and results) gives its ``masks``. Other pickled files are not opened: unpickling
    can run code, so only that name is read so, as Cellpose itself reads it."""
    try:
        return np.load(path, allow_pickle=False)
    except ValueError:
        if not _needs_pickle(path):
            raise
        if not path.name.lower().endswith("_seg.npy"):
            raise AnnotationError(f"{path}: holds Python objects, not an array; only a Cellpose *_seg.npy is "
                                  "read so (for its masks), other pickled files are not opened") from None
    seg = np.load(path, allow_pickle=True)
    seg = seg.item() if seg.dtype == object and seg.shape == () else seg
    if not isinstance(seg, dict) or "masks" not in seg:
        raise AnnotationError(f"{path}: a Cellpose *_seg.npy without 'masks' "
                              f"(keys: {', '.join(map(str, seg)) if isinstance(seg, dict) else type(seg).__name__})")
    return np.asarray(seg["masks"])


def colour_coded_ids(arr: np.ndarray, where: str = "the label image") -> np.ndarray | None:
    """``(H, W)`` int32 ids of an instance map drawn in colours, or ``None`` where ``arr`` is
    not one. ``arr``: ``(H, W, 3)`` or ``(H, W, 4)`` integers (an alpha channel must be
    constant). It is one where black (0, 0, 0) is among its colours and objects are flat:
    at least ``COLOUR_MAP_FLAT`` of the pairs of neighbouring pixels off the black (right
    and lower neighbours) carry one colour (a photograph's or a JPEG's mostly differ). Each colour's
    connected pieces (8-connected) are objects, so a map that repeats a few colours (as
    ``skimage.color.label2rgb`` draws one) still gives one object per piece; black is the
    background. A warning says how it was read.
    """
    arr = np.asarray(arr)
    if arr.ndim != 3 or arr.shape[-1] not in (3, 4) or not np.issubdtype(arr.dtype, np.integer) or arr.size == 0:
        return None
    if arr.shape[-1] == 4:
        alpha = arr[..., 3]
        if alpha.min() != alpha.max():
            return None
        arr = arr[..., :3]
    packed = arr.astype(np.int64)
    packed = (packed[..., 0] << 42) | (packed[..., 1] << 21) | packed[..., 2]  # 21 bits a channel: uint16 fits
    same = inside = 0
    for a, b in ((packed[:, 1:], packed[:, :-1]), (packed[1:], packed[:-1])):
        both = (a != 0) & (b != 0)  # neighbours both off the black ground
        inside += int(np.count_nonzero(both))
        same += int(np.count_nonzero(both & (a == b)))
    if inside == 0 or same < COLOUR_MAP_FLAT * inside:
        return None
    colours, index = np.unique(packed, return_inverse=True)
    if colours[0] != 0:  # no black: no background
        return None
    from skimage import measure

    ids = measure.label(index.reshape(packed.shape), background=0, connectivity=2).astype(np.int32)
    import logging

    logging.getLogger("sam_detect").warning(
        "%s: read as an instance map drawn in colours: %d object(s) in %d colour(s) on black",
        where, int(ids.max()), len(colours) - 1)
    return ids


def read_mask_folder(path: PathLike) -> np.ndarray:
    """``(H, W)`` int32 ids of a folder of mask images (``MASK_FOLDER_SUFFIXES``), each one
    object (its non-zero pixels; :func:`sam_detect.masks.mask_of_image`), numbered 1..N in
    file-name order: the ``masks/`` folder of the 2018 Data Science Bowl's nuclei. Where two
    masks overlap, the later file's object takes the pixel; empty masks are left out. A
    warning says either.

    Raises:
        AnnotationError: no mask file in the folder, a file that is not one 2-D mask, or
            masks of different sizes.
    """
    from sam_detect.io.images import load_image
    from sam_detect.masks import mask_of_image

    path = Path(path)
    files = sorted(f for f in path.iterdir()
                   if f.is_file() and f.suffix.lower() in MASK_FOLDER_SUFFIXES and not f.name.startswith("."))
    # a folder of JPEG masks alone (beside other masks a JPEG is taken for a preview, not a mask):
    # each read as a binary mask at half its maximum, as --mask reads one; it "held no mask image"
    lossy = not files
    if lossy:
        files = sorted(f for f in path.iterdir()
                       if f.is_file() and f.suffix.lower() in LOSSY_SUFFIXES and not f.name.startswith("."))
    if not files:
        raise AnnotationError(f"{path}: a folder of masks, but it holds no mask image "
                              f"({', '.join(MASK_FOLDER_SUFFIXES)}, or JPEG; one object each)")
    out: np.ndarray | None = None
    shared = n = 0
    empty: list[str] = []
    for f in files:
        try:
            original = np.asarray(load_image(f).original)
        except ImageLoadError as e:
            raise AnnotationError(f"{f}: cannot read the mask ({e})") from None
        m = lossy_mask(original) if lossy else mask_of_image(original)
        if m is None:
            raise AnnotationError(f"{f}: a JPEG that is not a binary mask (its values spread between its dark "
                                  "and bright levels); a folder of masks holds one object per image, saved as PNG "
                                  "or TIFF")
        if m.ndim != 2:
            raise AnnotationError(f"{f}: not one 2-D mask (shape {m.shape}); a folder of masks holds one "
                                  "object per image")
        if out is None:
            out = np.zeros(m.shape, np.int32)
        elif m.shape != out.shape:
            raise AnnotationError(f"{f}: mask size {m.shape} differs from {files[0].name}'s {out.shape}")
        if not m.any():
            empty.append(f.name)
            continue
        shared += int(np.count_nonzero(out[m]))
        n += 1
        out[m] = n
    import logging

    log = logging.getLogger("sam_detect")
    if lossy:
        log.warning("%s: %d JPEG mask(s), whose compression blurs every edge: each read as its pixels above half "
                    "its maximum (save masks as PNG or TIFF to keep them exact)", path, len(files))
    if empty:
        log.warning("%s: %d empty mask(s) left out (%s)", path, len(empty), ", ".join(empty[:3]) + (
            ", ..." if len(empty) > 3 else ""))
    if shared:
        log.warning("%s: %d pixel(s) lie in two masks; each goes to the later file's object", path, shared)
    assert out is not None
    return out


def _mat_arrays(path: Path, types: bool) -> np.ndarray:
    """A ``.mat`` file's instance map (``MAT_LABEL_KEYS``, or its one 2-D array), or with
    ``types`` its type map: ``type_map``, else one made from a type per instance: HoVer-Net's
    ``inst_type`` beside ``inst_uid`` (the ids, gaps and all), CoNSeP's ``inst_type`` alone
    (the type of instance ``i + 1``, or of the map's ``i``-th id where its ids have gaps),
    Lizard's ``class`` beside ``id``."""
    from scipy import io

    try:
        data = {k: np.asarray(v) for k, v in io.loadmat(path).items() if not k.startswith("__")}
    except Exception as e:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise AnnotationError(f"{path}: cannot read the .mat file ({type(e).__name__}: {e})") from e
    maps = {k: v for k, v in data.items() if v.ndim == 2 and min(v.shape) > 1}
    key = next((k for k in MAT_LABEL_KEYS if k in maps), None)
    if key is None and len(maps) == 1 and next(iter(maps)) not in MAT_TYPE_KEYS:  # a type map is no instance map
        key = next(iter(maps))
    if key is None:
        raise AnnotationError(f"{path}: no instance map among its arrays ({', '.join(sorted(data)) or 'none'}); "
                              f"expected one of {', '.join(MAT_LABEL_KEYS)}")
    if not types:
        return maps[key]
    if "type_map" in maps:
        return maps["type_map"]
    inst = np.asarray(maps[key])
    per = data.get("inst_type", data.get("class"))
    if per is None:
        raise AnnotationError(f"{path}: holds no types: no 'type_map', nor a type per instance "
                              "('inst_type', or 'class' beside 'id')")
    per = per.ravel().astype(np.int64)
    if "class" in data and "id" in data:  # Lizard
        ids = data["id"].ravel().astype(np.int64)
    elif "inst_uid" in data:  # HoVer-Net's output: the instance ids, which small objects removed leave with gaps
        ids = data["inst_uid"].ravel().astype(np.int64)
    else:  # CoNSeP: the type of instance i + 1; where the map's ids have gaps, of its i-th id in order
        present = np.unique(inst)
        present = present[present > 0].astype(np.int64)
        ids = present if len(present) == len(per) and (len(present) == 0 or present[-1] != len(per)) \
            else np.arange(1, len(per) + 1)
    if len(ids) != len(per) or (len(ids) and (ids.min() < 0 or ids.max() > 2**24)):
        raise AnnotationError(f"{path}: its types per instance do not pair with instance ids ({len(per)} types, "
                              f"{len(ids)} ids)")
    lut = np.zeros(max(int(inst.max()), int(ids.max()) if len(ids) else 0) + 1, np.int64)
    lut[ids] = per
    return lut[inst.astype(np.int64)]


def binary_as_pieces(arr: np.ndarray, where: str = "the label image") -> np.ndarray:
    """A label image (``(H, W)`` or a ``(T, H, W)`` stack) that holds one id only, in separate
    pieces, is a binary mask (0/255, 0/1, a bool TIFF): each connected piece (8-connected) is
    given its own id, frame by frame, and a warning says so. In one of several ids, an id in
    ``MANY_PIECES`` or more separate pieces of some size (each at least ``PIECE_SHARE`` of its
    largest) is a class, not one object (a class map: 1 = nucleus, 2 = cell): its pieces are
    given ids of their own, with a warning, where at least ``CLASS_SHARE`` of the ids are so
    (a few ids in pieces among whole ones are occluded objects). Any other label image is
    returned as it is (one id in one or two pieces is one object)."""
    arr = np.asarray(arr)
    ids = np.unique(arr)
    if arr.ndim not in (2, 3):
        return arr
    if np.count_nonzero(ids) > 1:
        return _classes_as_pieces(arr, where)
    if np.count_nonzero(ids) != 1:
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


#: an id of a label image in this many separate pieces (or more) of some size is a class of
#: objects, not one object (:func:`binary_as_pieces`); no label image of the benchmarks' data
#: holds one (hand-drawn and algorithmic alike: an object's id comes in one piece, or two where
#: a tile's edge cuts it)
MANY_PIECES = 3
#: ... pieces of at least this share of the id's largest piece (annotation specks do not count)
PIECE_SHARE = 0.2
#: ... and only where at least this share of the image's ids are in such pieces: a class map
#: has a few ids, each in pieces all over (1 = nucleus, 2 = cell); an instance map whose ids
#: are mostly whole, a few of them cut into pieces by what lies in front of them (the VOC
#: photo's chairs behind a table, 11-20 pieces each: 19 objects read as 32, five examples of
#: 1 px), is objects, each id one (sam-detect's own ``--label-image`` of 65 objects read as 82)
CLASS_SHARE = 0.5


def _classes_as_pieces(arr: np.ndarray, where: str) -> np.ndarray:
    """:func:`binary_as_pieces` for a label image of several ids: the ids that hold
    ``MANY_PIECES`` pieces of some size split into their pieces, frame by frame."""
    from skimage import measure

    frames = arr[None] if arr.ndim == 2 else arr
    out, split = None, {}
    for t, f in enumerate(frames):
        regions = measure.label(f, background=0, connectivity=2)  # connected runs of one value
        n = int(regions.max())
        id_of = np.zeros(n + 1, np.int64)  # each region's id
        id_of[regions.ravel()] = f.ravel()
        order = np.argsort(id_of[1:], kind="stable") + 1
        bounds = np.flatnonzero(np.diff(id_of[order])) + 1
        if len(bounds) + 1 >= n:
            continue  # every id in one piece
        area = np.bincount(regions.ravel(), minlength=n + 1)
        groups = np.split(order, bounds)
        many = {int(id_of[g[0]]): len(g) for g in groups
                if np.count_nonzero(area[g] >= PIECE_SHARE * area[g].max()) >= MANY_PIECES}
        if not many or CLASS_SHARE * len(groups) > len(many):
            # a few ids in pieces among whole ones: objects that something in front cuts
            # (occluded chairs in a photo, an object a tile's or a trim's edge cuts), not classes
            continue
        if out is None:
            out = frames.astype(np.int64, copy=True)
        at = np.isin(f, list(many))
        out[t][at] = regions[at] + int(frames.max())  # past every id: each piece its own
        for i, k in many.items():
            split[i] = split.get(i, 0) + k
    if out is None:
        return arr
    import logging

    listed = ", ".join(f"{i} ({k} pieces)" for i, k in list(split.items())[:5]) + (", ..." if len(split) > 5 else "")
    logging.getLogger("sam_detect").warning(
        "%s: id(s) %s each lie in many separate pieces: read as classes of objects, each piece one object",
        where, listed)
    return out[0] if arr.ndim == 2 else out


def label_image_to_instances(label_image: np.ndarray, label: str | None = None) -> Instances:
    """Instances of a ``(H, W)`` integer label image (0 = background), all labelled ``label``.

    One box crop per id (``Instances.from_label_image``): never ``(N, H, W)``.
    """
    inst, ids = Instances.from_label_image(label_image)
    inst.labels[:] = label or DEFAULT_LABEL
    inst.data["source_id"] = np.asarray(ids, dtype=np.int64)
    return inst


def parse_type_names(spec: str | None) -> dict[int, str]:
    """Names of a type map's values: ``"neoplastic,inflammatory"`` names types 1, 2, ... in
    order; ``"1=neoplastic,3=dead"`` names them by value. ``None`` or empty: no names (each
    type is then called ``"type N"``)."""
    from sam_detect.names import check_label

    if spec is None or not spec.strip():
        return {}
    parts = [p.strip() for p in spec.split(",")]
    if any(not p for p in parts):
        raise AnnotationError(f"type names {spec!r}: an empty name (two commas, or one at an end)")
    keyed = ["=" in p for p in parts]
    if any(keyed) and not all(keyed):
        raise AnnotationError(f"type names {spec!r}: give every name as VALUE=NAME, or none of them")
    names: dict[int, str] = {}
    for i, part in enumerate(parts, start=1):
        key, name = part.split("=", 1) if "=" in part else (str(i), part)
        try:
            value = int(key)
        except ValueError:
            raise AnnotationError(f"type names {spec!r}: {key.strip()!r} is not a type value (an integer)") from None
        if value < 1:
            raise AnnotationError(f"type names {spec!r}: type values start at 1 (0 is the background)")
        if value in names:
            raise AnnotationError(f"type names {spec!r}: type {value} is named twice")
        names[value] = check_label(name)
    twice = {n for n in names.values() if list(names.values()).count(n) > 1}
    if twice:  # one class of two types may be meant (merging them): said, not refused
        import logging

        for n in sorted(twice):
            values = ", ".join(str(v) for v, m in sorted(names.items()) if m == n)
            logging.getLogger("sam_detect").warning(
                "type names %r: types %s are all named %r: their objects are one class", spec, values, n)
    return names


#: the most unnamed types an error lists one by one
MAX_LISTED = 10


#: the label ground truth gives an object whose pixels carry no type (``eval --types``): it
#: is scored as nothing, neither found nor missed, as the examples drawn are
UNTYPED = "__untyped__"


def typed_instances(label_image: np.ndarray, type_map: np.ndarray,
                    names: dict[int, str] | None = None, keep_untyped: bool = False) -> tuple[Instances, int]:
    """Instances of a label image, each labelled by the type most of its pixels carry in
    ``type_map`` (the same size; 0 = no type): the instance map and type map that
    histology sets (CoNSeP, PanNuke, Lizard, HoVer-Net's outputs) come as.

    ``names`` maps type values to labels (:func:`parse_type_names`); without it a type is
    called ``"type N"``. Returns the typed instances (``data["type"]``: the value) and how
    many objects were left out because none of their pixels carries a type (with
    ``keep_untyped``, kept and labelled ``UNTYPED``, type 0).

    Raises:
        AnnotationError: the maps differ in size, a type has no name while others do, or no
            object carries a type.
    """
    lab = np.asarray(label_image)
    types = np.asarray(type_map)
    if types.shape != lab.shape:
        raise AnnotationError(f"the type map's shape {types.shape} differs from the label image's {lab.shape}")
    inst, ids = Instances.from_label_image(lab)
    value = np.zeros(len(inst), np.int64)
    for k, (crop, (x0, y0)) in enumerate(zip(inst.mask_crops, inst.mask_origins, strict=True)):
        under = types[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]][crop]
        under = under[under > 0]
        if under.size:
            vals, counts = np.unique(under, return_counts=True)
            value[k] = int(vals[np.argmax(counts)])  # ties: the smaller value
    typed = value > 0
    if len(inst) and not typed.any():
        raise AnnotationError("no object of the label image carries a type in the type map (all 0 under them)")
    names = names or {}
    missing = sorted(set(value[typed].tolist()) - set(names))
    if names and missing:
        listed = ", ".join(map(str, missing[:MAX_LISTED]))
        if len(missing) > MAX_LISTED:  # a label image given as the type map holds one "type" per object
            listed += f", ... {missing[-1]} ({len(missing)} in all: is it a type map?)"
        raise AnnotationError(
            f"type(s) {listed} of the type map have no name; named: "
            + ", ".join(f"{v}={n}" for v, n in sorted(names.items()))
            + "; name every type in --type-names (1=a,2=b,...), or leave it out to call them 'type N'")
    keep = np.ones(len(inst), bool) if keep_untyped else typed
    out = inst[np.flatnonzero(keep)]
    out.labels[:] = [names.get(int(v), f"type {int(v)}") if v > 0 else UNTYPED for v in value[keep]]
    out.data["type"] = value[keep]
    out.data["source_id"] = np.asarray(ids, dtype=np.int64)[keep]
    return out, int((~typed).sum())


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


def read_label_array(path: PathLike, frame: int | None, channel: int | None, pieces: bool = True,
                     strict: bool = False, frames: int | None = None) -> np.ndarray:
    """One ``(H, W)`` label image of a file (:func:`read_label_image`): frame ``frame`` of a
    stack (a one-frame file serves any frame, the image's ``--frame``; with ``strict``, a frame
    asked of the label file itself, ``--labels-frame``, only frame 0), channel ``channel`` of a
    multi-channel one. The ``--labels`` (and ``--types``) of ``add``.

    ``frames``: the image's frame count, where ``frame`` is the image's: a label stack of
    another length is refused (frame 3 of the labels of frames 6-9 is not frame 3's).
    """
    arr = read_label_image(path, channel, pieces)
    if arr.ndim == 2 or len(arr) == 1:
        if strict and frame not in (None, 0):
            raise AnnotationError(f"{path}: frame {frame} out of range: the label file holds 1 frame "
                                  "(--labels-frame 0, or leave it out)")
        return arr.reshape(arr.shape[-2:])
    if frame is None:
        raise AnnotationError(f"{path}: the label file holds {len(arr)} frames; pick one with --labels-frame "
                              "(or --frame, which picks the image's too)")
    if not strict and frames is not None and len(arr) != frames:
        raise AnnotationError(f"{path}: holds {len(arr)} label frames and the image {frames}: which goes with "
                              f"frame {frame}? Give it with --labels-frame (0..{len(arr) - 1})")
    if not 0 <= frame < len(arr):
        raise AnnotationError(f"{path}: frame {frame} out of range 0..{len(arr) - 1} (--labels-frame, or --frame)")
    return arr[frame]


def instances_to_label_image(instances: Instances, dtype: Any = None) -> np.ndarray:
    """A ``(H, W)`` label image with ids ``1..N`` in instance order (0 = background).

    Where masks overlap, the smaller instance keeps the pixels (as ``detect --label-image``
    writes them: an object inside another is kept). ``dtype`` defaults to the smallest of
    uint8/uint16/uint32 that holds N.
    """
    n = len(instances)
    if dtype is None:
        dtype = np.uint8 if n < 2**8 else np.uint16 if n < 2**16 else np.uint32
    return instances.to_label_image(dtype)


def save_label_image(instances: Instances | Sequence[Instances], path: PathLike) -> Path:
    """Write a label image (``.tif/.tiff/.png/.npy``); several ``Instances`` make a TIFF stack.

    Ids are ``1..N`` per image in instance order; where masks overlap, the smaller instance
    keeps the pixels (:func:`instances_to_label_image`).
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
    from sam_detect.formats._common import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = np.asarray(labels)
    top = 255 if suffix == ".bmp" else 65535
    if suffix not in (".tif", ".tiff", ".npy") and labels.size and int(labels.max()) > top:
        raise AnnotationError(f"{path.name}: ids up to {int(labels.max()):,} do not fit a {suffix} file "
                              f"(at most {top:,}); write .tif or .npy")
    with atomic_path(path) as tmp:
        if suffix in (".tif", ".tiff"):
            import tifffile

            tifffile.imwrite(tmp, labels, photometric="minisblack", compression="zlib")
        elif suffix == ".npy":
            np.save(tmp, labels)
        else:
            from PIL import Image

            Image.fromarray(labels.astype(np.uint8 if top == 255 else np.uint16, copy=False)).save(tmp)
    return path
