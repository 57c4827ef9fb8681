"""Image loading and normalisation to the RGB uint8 the models see.

Every stage after loading works on ``(H, W, 3)`` uint8 RGB in the *original pixel
coordinates* (nothing is resized here; a PNG, JPEG or WebP whose EXIF orientation says
its pixels are stored turned is turned upright, as viewers show it, so coordinates are
those of the upright image; a TIFF's orientation tag is not applied, as Fiji does not). :func:`load_image` reads PNG/JPEG/BMP/WebP (Pillow;
never BGR), TIFF (tifffile, using the series axes metadata: OME ``CTYX``, ImageJ
hyperstacks, plain multi-page stacks) and NumPy ``.npy`` arrays (``(H, W)``, ``(H, W, C)``
with ``C`` ≤ 4, or stacks of those along leading axes, e.g. ``(N, H, W, 3)``), picks a
frame of a stack and a channel (or a merge of channels) of multi-channel microscopy, and
keeps the data as read for output.

Axis letters follow tifffile: ``Y``/``X`` rows/columns; ``C`` channels; ``S`` samples of a
photometric RGB(A) pixel; every other axis (``T`` time, ``Z`` depth, ``Q``/``I`` pages...)
is a *frame* axis, selected with ``frame=``.

Normalisation (:func:`to_rgb_uint8`): uint8 passes through unchanged; any other dtype
(16-bit, int, float, bool) is scaled per image between two percentiles (default 1 and 99.8)
so that, e.g., HeLa frames with a ~33k offset come out with dark background and bright nuclei.
"""

from __future__ import annotations

import glob
import os
import re
import shlex
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import FrameRequiredError, ImageLoadError
from sam_detect.io.render import (
    ChannelSpec,
    Merge,
    guess_channel_axis,
    normalise_channel_spec,
    render,
)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
#: names that a folder scan leaves out: label images, type maps and overlays (detect's own
#: ``--label-image``, ``--type-map`` and ``--overlay`` folders write such names)
OUTPUT_NAME_ENDINGS = ("_labels.tif", "_labels.tiff", "_labels.png", "_types.tif", "_types.tiff", "_types.png",
                       "_overlay.png", "_overlay.jpg")
#: NumPy arrays read as images when named (a file or a glob), not when a folder is scanned:
#: a folder of images often holds its label arrays too
ARRAY_EXTENSIONS = (".npy",)
#: channels-last arrays have at most this many channels on their last axis
_MAX_ARRAY_CHANNELS = 4
#: Largest image plane (height x width) read, for every format, checked from the file's header
#: before any pixel is decoded. It equals Pillow's own hard limit (twice its
#: ``MAX_IMAGE_PIXELS``), so PNG, JPEG and TIFF share one rule; a TIFF declaring 60000 x 60000
#: pixels used to take 41 s and 7.5 GB before failing. Set ``SAM_DETECT_MAX_PIXELS`` to change it
#: (PNG/JPEG stay within Pillow's limit).
MAX_PIXELS = 178_956_970
MAX_PIXELS_ENV = "SAM_DETECT_MAX_PIXELS"
#: Largest whole-file read (every frame of a stack at once: label stacks, layouts without one
#: page per plane), in bytes; picking one frame of a big stack reads only that frame.
MAX_READ_BYTES = 4 << 30
_TIFF_EXTENSIONS = (".tif", ".tiff")
_CHANNEL_AXES = "CS"


@dataclass
class LoadedImage:
    """An image as read from disk plus its RGB uint8 rendering.

    Attributes:
        rgb: ``(H, W, 3)`` uint8 RGB, what segmenters and embedders see.
        original: the selected frame as read, any dtype: ``(H, W)`` or ``(H, W, C)``
            (channels last whatever the file layout); use it for measurements and output.
        path: the file it came from, or ``None`` for arrays.
        axes: axes of ``original``: ``"YX"`` or ``"YXC"``.
        source_axes: axes of the data in the file (tifffile letters, e.g. ``"CTYX"``,
            ``"QYX"``, ``"YXS"``); ``"YX"``/``"YXS"`` for PNG/JPEG.
        source_shape: shape of the data in the file.
        frame: the frame index picked from a stack, or ``None`` for a single image.
        n_frames: number of frames in the file (1 for a single image).
        channel: the channel(s) used to build ``rgb`` (``None``: all channels).
        merge: how several channels were combined (``"max"``, ``"mean"``, ``"rgb"``).
    """

    rgb: np.ndarray
    original: np.ndarray
    path: str | None = None
    axes: str = "YX"
    source_axes: str = "YX"
    source_shape: tuple[int, ...] = ()
    frame: int | None = None
    n_frames: int = 1
    channel: int | tuple[int, ...] | None = None
    merge: str = "max"

    @property
    def channel_axis(self) -> int | None:
        """Axis of ``original`` holding channels (``2``), or ``None`` for grayscale."""
        return 2 if self.original.ndim == 3 else None

    @property
    def n_channels(self) -> int:
        return int(self.original.shape[2]) if self.original.ndim == 3 else 1

    @property
    def hw(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return int(self.rgb.shape[0]), int(self.rgb.shape[1])

    @property
    def reading(self) -> dict[str, Any] | None:
        """How a multi-channel image's channels were read (``{"of": channels in the file,
        "channel": the ones used, sorted, or None for all}``), or ``None`` for an image
        without a channel axis (grey, RGB)."""
        axes = str(self.source_axes)
        # channels: a C axis, or samples that are no colour (2, or 5 and more: planar or
        # interleaved fluorescence channels; 3 or 4 samples are RGB(A))
        if self.n_channels < 2 or not ("C" in axes or ("S" in axes and self.n_channels not in (3, 4))):
            return None
        ch = self.channel
        used = None if ch is None else sorted({int(ch)} if isinstance(ch, (int, np.integer)) else {int(c) for c in ch})
        out: dict[str, Any] = {"of": self.n_channels, "channel": used}
        # how several channels were made one image, where not by their maximum (the UI's
        # views), and their order where it places them (``rgb``): an example's crop is cut
        # again from its image read so (``library export --crops``, ``reembed``)
        if self.merge != "max" and (used is None or len(used) > 1):
            out["merge"] = self.merge
            if self.merge == "rgb" and ch is not None and not isinstance(ch, (int, np.integer)):
                out["order"] = [int(c) for c in ch]
        return out

    @property
    def plane(self) -> dict[str, int] | None:
        """The frame picked, as QuPath names an object's place in a stack (its GeoJSON
        ``geometry.plane``): ``{"c": -1, "z": z, "t": t}``, ``z`` its index along a ``Z`` axis
        (0 where there is none) and ``t`` along the other frame axes (a stack whose axis is
        unnamed, ``Q``, is taken for a time-lapse, as ``video`` reads it); ``c`` -1: every
        channel. ``None`` for a single image."""
        if self.frame is None:
            return None
        dims = [(a, int(n)) for a, n in zip(str(self.source_axes).upper(), self.source_shape, strict=False)
                if a not in "YX" + _CHANNEL_AXES]
        if len(self.source_axes) != len(self.source_shape) or int(np.prod([n for _, n in dims])) != self.n_frames:
            return {"c": -1, "z": 0, "t": int(self.frame)}  # axes not known: the frame's place in the file
        at = dict(zip(range(len(dims)), np.unravel_index(int(self.frame), [n for _, n in dims]), strict=True))
        rest = [k for k, (a, _) in enumerate(dims) if a != "Z"]
        t = int(np.ravel_multi_index([at[k] for k in rest], [dims[k][1] for k in rest])) if rest else 0
        z = next((int(at[k]) for k, (a, _) in enumerate(dims) if a == "Z"), 0)
        return {"c": -1, "z": z, "t": t}

    @property
    def planes(self) -> str | None:
        """A line where the file stores 3 or 4 planes as the colour samples of one image
        (:func:`planes_note`) and every one of them was read; ``None`` otherwise."""
        return None if self.channel is not None else planes_note(self.path or "", self.source_axes, self.source_shape)


def planes_note(path: str | os.PathLike, source_axes: str, source_shape: tuple[int, ...]) -> str | None:
    """What to say of a file whose 3 or 4 planes are stored as the colour samples of one
    image (axes ``SYX``: planar RGB(A), as tifffile saves any ``(3, H, W)`` or
    ``(4, H, W)`` array given without axes), or ``None``. Such a file reads as one colour
    image, as Fiji and every TIFF reader show it, but three time points or z-planes saved so
    look the same: the line says how to read them as frames or one at a time."""
    if str(source_axes).upper() != "SYX" or len(source_shape) != 3 or source_shape[0] not in (3, 4):
        return None
    n = int(source_shape[0])
    name = Path(path).name or "the image"
    return (f"its {n} planes are stored as the colour channels of one image (as tifffile saves a ({n}, H, W) array "
            f"without axes) and read so; if they are time points or z-planes: `sam-detect video {shlex.quote(name)} --planes-as-frames`, "
            "--channel K for plane K, or save the stack with its axes (tifffile.imwrite(path, stack, imagej=True, "
            "metadata={'axes': 'TYX'}))")


def strips_note(source_axes: str, source_shape: tuple[int, ...]) -> str | None:
    """What to say of an array saved without axes whose last axis, of 5 to 16 entries, is
    far shorter than the one before it (an ``(H, W, C)`` array of more than 4 channels, as a
    ``.npy`` or as tifffile saves it): it reads as ``H`` frames ``C`` pixels wide, and the
    line says how to save its channels; ``None`` for any other file."""
    axes = str(source_axes).upper()
    if len(source_shape) < 3 or axes != "Q" * (len(axes) - 2) + "YX":
        return None
    h, w = int(source_shape[-2]), int(source_shape[-1])
    if not (_MAX_ARRAY_CHANNELS < w <= 16 and h >= 8 * w):
        return None
    return (f"its frames are {h} x {w} pixels: if its last axis holds {w} channels (an (H, W, C) array of more "
            f"than {_MAX_ARRAY_CHANNELS} channels is read as a stack of frames {w} px wide), save them first, with "
            "their axes: tifffile.imwrite(path, np.moveaxis(a, -1, 0), imagej=True, metadata={'axes': 'CYX'})")


def describe_reading(reading: dict[str, Any]) -> str:
    """``"channel 0"``, ``"channels 0, 2 merged"`` or ``"all 4 channels merged"``."""
    used = reading.get("channel")
    if used is None:
        return f"all {reading['of']} channels merged"
    return f"channel {used[0]}" if len(used) == 1 else f"channels {', '.join(map(str, used))} merged"


# ---------------------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------------------
def load_image(
    path: str | os.PathLike,
    *,
    channel: ChannelSpec = None,
    merge: Merge = "max",
    frame: int | None = None,
    percentiles: tuple[float, float] = (1.0, 99.8),
) -> LoadedImage:
    """Read an image file and render it as RGB uint8.

    Args:
        path: PNG, JPEG, BMP, WebP or TIFF (8/16/32-bit int, float, bool; gray, RGB, RGBA,
            multi-channel ``CYX``/``YXC``, stacks ``TYX``/``TCYX``/``CTYX``/...), or a NumPy
            ``.npy`` array: ``(H, W)``, ``(H, W, C)`` with ``C`` ≤ 4 (3 or 4: RGB(A)), or a
            stack of those along leading axes (``(N, H, W)``, ``(N, H, W, 3)``, and
            ``(T, C, H, W)`` with ``C`` of 2 to 4).
        channel: for multi-channel data, one channel index (rendered as gray), a sequence of
            indices (combined with ``merge``), or ``None`` (all channels; photometric RGB(A)
            stays colour, alpha dropped).
        merge: how several channels become one image: ``"max"`` or ``"mean"`` of the
            per-channel normalised intensities (gray), or ``"rgb"``: up to three channels
            as the red, green and blue of a false-colour composite.
        frame: index into the frame axes of a stack (``T``, ``Z``, ...; several frame axes
            are flattened in file order). Required when the file holds more than one frame.
        percentiles: low/high percentiles for scaling non-uint8 data to 0..255.

    Returns:
        :class:`LoadedImage`; ``rgb`` has the height and width of the file's ``Y``/``X``.

    Raises:
        ImageLoadError: missing, unreadable or truncated file; empty image; unsupported
            number of dimensions; a stack without ``frame=``; a bad frame or channel index.
    """
    p = Path(path)
    fast = _read_tiff_frame(p, frame, channel)  # one frame of a big stack without reading the rest
    if fast is not None:
        original, axes, source_axes, source_shape, n_frames, index = fast
    else:
        stack, axes, source_axes, source_shape = _read_canonical(p)
        n_frames = stack.shape[0]
        index = _pick_frame(p, frame, n_frames, source_axes, source_shape, channel)
        original = stack[index]
        if isinstance(original, np.memmap):  # one frame of a .npy array, read into memory
            original = np.array(original)
    is_rgb = axes.endswith("S")
    rgb = render(
        original, channel=channel, merge=merge, percentiles=percentiles, is_rgb=is_rgb, where=str(p)
    )
    return LoadedImage(
        rgb=rgb,
        original=original,
        path=str(p),
        axes="YXC" if original.ndim == 3 else "YX",
        source_axes=source_axes,
        source_shape=source_shape,
        frame=None if frame is None else index,
        n_frames=n_frames,
        channel=normalise_channel_spec(channel),
        merge=merge,
    )


def read_stack(path: str | os.PathLike, *, planes_as_frames: bool = False) -> tuple[np.ndarray, str]:
    """Read every frame of an image file.

    ``planes_as_frames``: a file that stores 3 or 4 planes as the colour samples of one
    image (:func:`planes_note`) is read as that many grey frames; other files as they are.

    Returns:
        ``(stack, axes)``: ``stack`` is ``(T, H, W)`` or ``(T, H, W, C)`` as read (any
        dtype; ``T`` is 1 for a single image, several frame axes flattened in file order),
        ``axes`` is ``"TYX"`` or ``"TYXC"``.
    """
    stack, axes, _ = read_stack_noted(path, planes_as_frames=planes_as_frames)
    return stack, axes.replace("S", "C")


def read_stack_noted(path: str | os.PathLike, *, planes_as_frames: bool = False) -> tuple[np.ndarray, str, str | None]:
    """:func:`read_stack`, and the :func:`planes_note` of a file read as one colour image
    whose planes may be frames (``None`` for any other file, or one read with
    ``planes_as_frames``). Its axes say ``"TYXS"`` where the last axis holds a colour image's
    samples (RGB, read in colour as :func:`load_image` reads a frame) and ``"TYXC"`` where it
    holds channels (merged, or one picked)."""
    p = Path(path)
    stack, axes, source_axes, source_shape = _read_canonical(p)
    if isinstance(stack, np.memmap):  # a .npy array: every frame read now
        check_series_size(p, source_axes, source_shape, stack.dtype.itemsize)
        stack = np.array(stack)
    note = planes_note(p, source_axes, source_shape)
    if note is not None and planes_as_frames:  # (1, H, W, n) samples -> (n, H, W) frames
        return np.ascontiguousarray(np.moveaxis(stack[0], -1, 0)), "TYX", None
    # a time-lapse of z-stacks (TZYX): its planes are frames one after another, said
    several = [(a, n) for a, n in zip(source_axes, source_shape, strict=True)
               if a not in "YX" + _CHANNEL_AXES and n > 1]
    if len(several) > 1 and len({a for a, _ in several}) < len(several):  # axes unnamed (QQYX): by place
        several = [(f"axis {k}", n) for k, (_, n) in enumerate(several)]
    if len(several) > 1:
        second = ", ".join(f"{a} {int(a == several[-1][0])}" for a, _ in several)
        note = (f"axes {source_axes}: {' x '.join(f'{n} {a}' for a, n in several)} planes read as "
                f"{stack.shape[0]} frames in file order, {several[-1][0]} fastest (frame 1 is {second})")
    note = note or strips_note(source_axes, source_shape)
    return stack, (("TYXS" if axes.endswith("S") else "TYXC") if stack.ndim == 4 else "TYX"), note


def to_rgb_uint8(
    array: np.ndarray,
    *,
    channel: ChannelSpec = None,
    merge: Merge = "max",
    percentiles: tuple[float, float] = (1.0, 99.8),
    channel_axis: int | None = None,
) -> np.ndarray:
    """Render an array as ``(H, W, 3)`` uint8 RGB in the same pixel coordinates.

    Args:
        array: ``(H, W)`` gray, ``(H, W, 3|4)`` RGB(A) (alpha dropped), or multi-channel
            ``(H, W, C)`` / ``(C, H, W)``. Any dtype: uint8 passes through unchanged,
            other dtypes are scaled per image between ``percentiles`` (NaN/inf count as 0).
        channel, merge: as in :func:`load_image`.
        percentiles: ``(low, high)`` in 0..100.
        channel_axis: ``0`` or ``-1``/``2`` to state the layout of a 3-D array; by default
            a last axis of size ≤ 4 is channels-last, else a first axis of size ≤ 16 that is
            smaller than H and W is channels-first: its planes are read as channels, merged
            (a ``(3, H, W)`` array too: grey, not colour), and a warning says so unless
            ``channel`` or ``channel_axis`` is given.

    Returns:
        ``(H, W, 3)`` uint8.

    Raises:
        ImageLoadError: empty array, unsupported dimensions or layout, bad channel index.
    """
    arr = np.asarray(array)
    if arr.size == 0:
        raise ImageLoadError(f"image is empty (shape {arr.shape}); expected (H, W) or (H, W, C)")
    is_rgb = False
    if arr.ndim == 3:
        axis = guess_channel_axis(arr.shape) if channel_axis is None else channel_axis
        if axis not in (0, 2, -1):
            raise ImageLoadError(
                f"cannot tell the channel axis of an array of shape {arr.shape}; expected "
                f"(H, W, C) or (C, H, W) with few channels: pass channel_axis=0 or -1"
            )
        if axis == 0:
            if channel_axis is None and channel is None and arr.shape[0] > 1:
                # a short time-lapse or z-stack as an array looks just like channels, and so do 2 to 4
                # planes (a 3-frame stack, a 2-channel image, a (3, H, W) colour image in PyTorch's
                # order): said, as the CLI refuses such a .npy stack without --frame
                import logging

                n = arr.shape[0]
                colour = "np.moveaxis(array, 0, -1) for a colour image, " if n in (3, 4) else ""
                how = f"by their {merge}" if merge in ("max", "mean") else f"as {merge}"
                logging.getLogger("sam_detect").warning(
                    "an array of shape %s is read as one image of %d channels, merged %s (a .npy file of "
                    "that shape is a stack of %d frames): give one frame as array[k], every frame to "
                    "sam_detect.video.detect_stream(detector, array), %sor to_rgb_uint8(array, channel_axis=0) "
                    "for channels on purpose", arr.shape, n, how, n, colour)
            arr = np.moveaxis(arr, 0, -1)
        else:
            # Plain (H, W, 3|4) arrays are photographs: RGB(A), kept in colour.
            is_rgb = arr.shape[2] in (3, 4)
    return render(arr, channel=channel, merge=merge, percentiles=percentiles, is_rgb=is_rgb)


def as_loaded_image(image: object) -> LoadedImage:
    """A :class:`LoadedImage` of a path, a ``LoadedImage`` (returned as is) or an array of any dtype."""
    if isinstance(image, LoadedImage):
        return image
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    arr = np.asarray(image)
    return LoadedImage(rgb=to_rgb_uint8(arr), original=arr, path=None)


def as_rgb_uint8(image: object) -> np.ndarray:
    """``(H, W, 3)`` uint8 RGB of a path, a :class:`LoadedImage` or an array of any dtype."""
    return as_loaded_image(image).rgb


def natural_key(path: Path) -> tuple:
    """A path's sort key with its numbers read as numbers: ``t2.png`` before ``t10.png`` (time
    points exported without zero padding came out of order: 0, 1, 10, 11, 2, ...)."""
    parts = re.split(r"([0-9]+)", str(path))  # ASCII digits: a name's other digits (①) are text
    return tuple((0, int(x), x) if x.isascii() and x.isdigit() else (1, 0, x) for x in parts)


def iter_image_paths(inputs: Sequence[str | os.PathLike] | str | os.PathLike) -> list[Path]:
    """Expand files, folders (non-recursive, sorted with numbers read as numbers, image
    extensions only) and globs.

    Returns:
        Paths in input order, each input's matches sorted, duplicates dropped.

    Raises:
        ImageLoadError: an input matches nothing, or nothing at all was found.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    out: list[Path] = []
    seen: set[Path] = set()
    for item in inputs:
        s = os.fspath(item)
        p = Path(s)
        if p.is_dir():
            found = sorted(
                (q for q in p.iterdir() if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS), key=natural_key
            )
            if not found:
                # a plate's wells as subfolders: the scan is not recursive, a glob reaches them
                below = sum(1 for q in p.glob("*/*") if q.is_file() and q.suffix.lower() in IMAGE_EXTENSIONS)
                # .npy arrays are read when named or globbed only (a folder's may be masks or features)
                arrays = sum(1 for q in p.iterdir() if q.is_file() and q.suffix.lower() in ARRAY_EXTENSIONS)
                raise ImageLoadError(
                    f"{p}: folder holds no images (looked for {', '.join(IMAGE_EXTENSIONS)})"
                    + (f"; it holds {arrays} NumPy array(s), which a folder's scan leaves out: name them, or give "
                       f"a glob such as '{p / '*.npy'}'" if arrays else "")
                    + (f"; its subfolders hold {below} (folders are not searched inside: give a glob such as "
                       f"'{p / '*' / '*'}')" if below else "")
                )
            # a folder's label images and overlays, detect's own outputs among them: not images to
            # detect on (a second run on a folder its outputs went to detected its label images)
            outputs = [q for q in found if q.name.lower().endswith(OUTPUT_NAME_ENDINGS)]
            if outputs and len(outputs) < len(found):
                import logging

                logging.getLogger("sam_detect").warning(
                    "%s: %d file(s) named as label images or overlays left out (%s%s); name them to "
                    "detect on them", p, len(outputs), ", ".join(q.name for q in outputs[:3]),
                    ", ..." if len(outputs) > 3 else "")
                found = [q for q in found if q not in outputs]
        elif p.is_file():
            found = [p]
        elif glob.has_magic(s):
            found = sorted(
                # ``**`` any depth of folders, this one too, as globstar shells and pathlib read it
                # (without recursive=True it was one folder, and "dir/**/*.png" missed dir's own)
                (Path(q) for q in glob.glob(s, recursive=True)
                 if Path(q).is_file() and Path(q).suffix.lower() in IMAGE_EXTENSIONS + ARRAY_EXTENSIONS),
                key=natural_key,
            )
            # one path per file: ``**`` goes down folder links too, and a link back up gave
            # each image again under every longer path (two images as 82)
            real: dict[str, Path] = {}
            for q in found:
                real.setdefault(os.path.realpath(q), q)
            found = list(real.values())
            if not found:
                raise ImageLoadError(f"{s}: pattern matches no image files")
        else:
            raise ImageLoadError(f"{s}: no such file or folder")
        for q in found:
            if q not in seen:
                seen.add(q)
                out.append(q)
    if not out:
        raise ImageLoadError("no input images given; pass image files, folders or globs")
    return out


# ---------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------
def _read_canonical(p: Path) -> tuple[np.ndarray, str, str, tuple[int, ...]]:
    """Read ``p`` as ``(F, H, W[, C])``; returns (stack, 'FYX[C|S]', source axes, shape)."""
    if not p.exists():
        raise ImageLoadError(f"{p}: image file not found")
    if not p.is_file():
        raise ImageLoadError(f"{p}: not a file")
    if p.stat().st_size == 0:
        raise ImageLoadError(f"{p}: file is empty (0 bytes)")
    tiff_named = p.suffix.lower() in _TIFF_EXTENSIONS
    if (tiff_named and (_looks_like_tiff(p) or not _looks_like_other(p))) or _looks_like_tiff(p):
        data, axes = _read_tiff(p)
    elif p.suffix.lower() in ARRAY_EXTENSIONS or _looks_like_npy(p):
        data, axes = _read_npy(p)
    else:
        data, axes = _read_pil(p)
    source_shape = tuple(int(s) for s in data.shape)
    if data.size == 0:
        raise ImageLoadError(f"{p}: image is empty (shape {source_shape})")
    stack, canon = _canonicalise(data, axes, p)
    return stack, canon, axes, source_shape


def _looks_like_tiff(p: Path) -> bool:
    with open(p, "rb") as fh:
        head = fh.read(4)
    return head in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def _looks_like_npy(p: Path) -> bool:
    with open(p, "rb") as fh:
        return fh.read(6) == b"\x93NUMPY"


def _read_npy(p: Path) -> tuple[np.ndarray, str]:
    """A ``.npy`` array, memory-mapped (picking a frame of a stack reads only that frame), and
    its axes: channels last where the last axis has at most four entries; else, in a 4-D
    array, channels second where that axis has two to four (``(T, C, H, W)``, as PyTorch and
    many microscopy scripts order them); every other leading axis a frame axis."""
    if not _looks_like_npy(p):
        raise ImageLoadError(f"{p}: not a NumPy .npy file (no .npy header); save arrays with numpy.save")
    try:
        data = np.load(p, mmap_mode="r", allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - pickles, truncated headers, npz under another name
        raise ImageLoadError(
            f"{p}: cannot read as a NumPy array ({type(e).__name__}: {e}); expected a .npy file "
            "written by numpy.save"
        ) from e
    if data.dtype.kind not in "biuf":
        raise ImageLoadError(
            f"{p}: a NumPy array of {data.dtype} values; an image needs numbers (integers, floats or booleans)"
        )
    if data.ndim < 2:
        raise ImageLoadError(f"{p}: a NumPy array of shape {data.shape}; an image needs (H, W) or (H, W, C)")
    if data.ndim >= 3 and 1 <= data.shape[-1] <= _MAX_ARRAY_CHANNELS:
        axes = "Q" * (data.ndim - 3) + "YX" + ("S" if data.shape[-1] in (3, 4) else "C")
    elif data.ndim == 4 and 1 < data.shape[1] <= _MAX_ARRAY_CHANNELS:  # (T, C, H, W), channels first
        axes = "Q" + ("S" if data.shape[1] in (3, 4) else "C") + "YX"
    else:
        axes = "Q" * (data.ndim - 2) + "YX"
    _check_size(p, int(data.shape[axes.index("Y")]), int(data.shape[axes.index("X")]))
    return data, axes


def max_pixels() -> int:
    """The pixel limit in force: ``$SAM_DETECT_MAX_PIXELS`` if set, else :data:`MAX_PIXELS`."""
    value = os.environ.get(MAX_PIXELS_ENV)
    if value:
        try:
            n = int(value)
        except ValueError:
            raise ImageLoadError(f"{MAX_PIXELS_ENV} must be a whole number of pixels, got {value!r}") from None
        if n <= 0:  # 0 or less was the default limit, silently
            raise ImageLoadError(f"{MAX_PIXELS_ENV} must be a positive number of pixels, got {value!r}")
        return n
    return MAX_PIXELS


def _check_size(p: Path, h: int, w: int, nbytes: int | None = None) -> None:
    """Refuse a plane above the pixel limit, or a whole-file read above :data:`MAX_READ_BYTES`,
    from the sizes a header declares (before decoding)."""
    limit = max_pixels()
    if h * w > limit:
        side = int(limit**0.5)
        # a TIFF this large is usually a slide or a stitched scan: detect reads it tile by tile
        slide = "detect it tile by tile (sam-detect detect --slide), " if p.suffix.lower() in (".tif", ".tiff") else ""
        raise ImageLoadError(
            f"{p}: the image declares {w:,} x {h:,} = {h * w:,} pixels, more than the limit of "
            f"{limit:,} (about {side:,} x {side:,}); {slide}crop or downscale it first, or raise the "
            f"limit with {MAX_PIXELS_ENV}=N"
        )
    if nbytes is not None and nbytes > MAX_READ_BYTES:
        raise ImageLoadError(
            f"{p}: reading every frame at once would take {nbytes / (1 << 30):.1f} GiB, more than the "
            f"limit of {MAX_READ_BYTES / (1 << 30):.0f} GiB; pick one frame (--frame) or split the stack"
        )


def check_series_size(p: Path, axes: str, shape: tuple[int, ...], itemsize: int) -> None:
    """:func:`_check_size` for a TIFF series of ``axes`` (upper case) and ``shape``, read whole."""
    _check_size(p, *_series_hw(axes, shape), nbytes=int(np.prod(shape)) * itemsize)


def _series_hw(axes: str, shape: tuple[int, ...]) -> tuple[int, int]:
    h = int(shape[axes.index("Y")]) if "Y" in axes else 1
    w = int(shape[axes.index("X")]) if "X" in axes else int(np.prod(shape) or 1)
    return h, w


def _looks_like_other(p: Path) -> bool:
    """Whether a file holds PNG, JPEG, GIF, BMP or WebP data (whatever its name says: a PNG
    named ``.tif`` was called a corrupt TIFF)."""
    with open(p, "rb") as fh:
        head = fh.read(12)
    return head.startswith((b"\x89PNG", b"\xff\xd8\xff", b"GIF8", b"BM")) or (head[:4] == b"RIFF" and head[8:] == b"WEBP")


#: TIFF photometric interpretations whose pixels are not the image's levels as they stand:
#: MinIsWhite (0, inverted), Palette (3, colour-table indices), Separated (5, CMYK inks).
#: Pillow reads a one-image file of these of up to 8 bits as it shows them; every other
#: (several pages, 16-bit MinIsWhite, which Pillow keeps as stored) :func:`_as_shown` turns.
_PIL_PHOTOMETRIC = (0, 3, 5)


def _as_shown(data: np.ndarray, page: Any, samples: bool) -> np.ndarray:
    """A TIFF's pixels of a photometric kind in ``_PIL_PHOTOMETRIC`` as viewers (and Pillow,
    for one page of 8 bits) show them: MinIsWhite inverted, palette indices looked up in the
    colour map (a samples axis of 3 added last), CMYK inks (``samples``: the last axis holds
    them) as RGB. ``page``: the series' key page. Other data is returned as it is."""
    photometric = int(getattr(page, "photometric", 1))
    if photometric == 0:
        if data.dtype == bool or np.issubdtype(data.dtype, np.signedinteger):
            return ~data  # signed: -1 - v, the levels reversed in the same type
        if np.issubdtype(data.dtype, np.unsignedinteger):
            bits = min(int(getattr(page, "bitspersample", 0) or 0) or 8 * data.dtype.itemsize,
                       8 * data.dtype.itemsize)
            return (data.dtype.type((1 << bits) - 1) - data).astype(data.dtype, copy=False)
        return -data  # float: scaled per image afterwards
    if photometric == 3 and not samples and np.issubdtype(data.dtype, np.integer):
        cmap = getattr(page, "colormap", None)
        if cmap is None:
            return data
        table = (np.asarray(cmap).T // 256).astype(np.uint8)  # (entries, 3), as Pillow reads it
        return table[np.clip(data, 0, len(table) - 1)]
    if photometric == 5 and samples and data.shape[-1] >= 4 and np.issubdtype(data.dtype, np.unsignedinteger):
        top = int(np.iinfo(data.dtype).max)
        ink = data[..., :4].astype(np.int64)
        white = top - ink[..., 3:4]
        rgb = ((top - ink[..., :3]) * white + top // 2) // top  # as Pillow's CMYK -> RGB
        return rgb.astype(data.dtype)
    return data


#: the files whose other series :func:`_main_series` said it leaves out (said once a process)
_SAID_SERIES: set[str] = set()


def _main_series(tif: Any) -> Any:
    """The image of a TIFF of several series of other sizes: the one of the most pixels a
    plane (a thumbnail or a label page stored first was read as the image, silently). The
    others are said once on stderr (pages of several images of other sizes were read as
    the first alone without a word: a helper's bug hunt)."""
    series = tif.series
    if len(series) == 1:
        return series[0]

    def plane(s: Any) -> int:
        axes = s.axes.upper()
        if "Y" not in axes or "X" not in axes:
            return 0
        return int(s.shape[axes.index("Y")]) * int(s.shape[axes.index("X")])

    main = max(series, key=plane)  # ties: the first
    # other images, not a reduced copy of this one (a thumbnail, a slide's label or macro photo)
    others = [s for s in series if s is not main and not (int(getattr(s.keyframe, "subfiletype", 0) or 0) & 1)
              and str(getattr(s, "name", "")).lower() not in ("thumbnail", "label", "macro", "overview")]
    where = str(getattr(getattr(tif, "filehandle", None), "path", "") or getattr(tif, "filename", ""))
    if others and where not in _SAID_SERIES:
        _SAID_SERIES.add(where)
        import logging

        logging.getLogger("sam_detect").warning(
            "%s holds %d images of other sizes; the largest (axes %s, shape %s) is read, not %s: save each "
            "image in a file of its own to detect on it", Path(where).name or "the TIFF", len(others) + 1, main.axes,
            tuple(main.shape), ", ".join(str(tuple(s.shape)) for s in others[:3]) + (" ..." if len(others) > 3 else ""))
    return main


def read_cut_stack(tif: Any, p: Path) -> tuple[np.ndarray, str] | None:
    """The frames left whole in a stack whose file was cut off (a copy or an acquisition
    stopped), or ``None`` for any other file. ImageJ and tifffile store a stack's frames
    uncompressed one after another and say how many in their metadata (``images=``,
    ``shape``), with the page directories after the data: a cut file keeps its first page
    alone, which tifffile read as the whole of an ImageJ file (`video` ran one frame, `detect`
    took it for a single image) and not at all for its own. A line says how many are read."""
    page = tif.pages.first
    if int(getattr(page, "compression", 1) or 1) != 1 or not page.is_contiguous:
        return None
    if tif.is_imagej:
        md = tif.imagej_metadata or {}
        n = int(md.get("images", 1) or 1)
        channels = int(md.get("channels", 1) or 1)
        frames, slices = int(md.get("frames", 1) or 1), int(md.get("slices", 1) or 1)
        axis = "T" if frames * channels == n else "Z" if slices * channels == n else "Q"
    elif tif.is_shaped:
        shape = tuple(int(v) for v in (tif.shaped_metadata[0].get("shape") or ()))
        if shape[len(shape) - len(page.shape):] != tuple(page.shape):
            return None
        n, channels, axis = int(np.prod(shape[: len(shape) - len(page.shape)])), 1, "Q"
    else:
        return None
    plane = int(np.prod(page.shape)) * page.dtype.itemsize
    offset = int(page.dataoffsets[0])
    whole = (p.stat().st_size - offset) // plane // channels  # frames of every channel in the file
    if n <= channels or whole * channels >= n or whole < 1:
        return None
    try:  # the frames lie one after another: the first page's next directory comes after all of them
        import struct

        fmt, fh = tif.tiff, tif.filehandle
        fh.seek(page.offset)
        tags = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))[0]
        fh.seek(page.offset + fmt.tagnosize + tags * fmt.tagsize)
        following = struct.unpack(fmt.offsetformat, fh.read(fmt.offsetsize))[0]
    except Exception:  # noqa: BLE001 - a layout it cannot tell: the file read as tifffile reads it
        return None
    # (ImageJ writes a file past 4 GB with its first directory alone: its frames always lie so)
    if following < offset + n * plane and not (following == 0 and tif.is_imagej):
        return None
    samples = "S" if len(page.shape) == 3 else ""
    check_series_size(p, f"QC{'YXS' if samples else 'YX'}", (whole, channels, *page.shape), page.dtype.itemsize)
    with open(p, "rb") as fh:
        fh.seek(offset)
        raw = fh.read(whole * channels * plane)
    data = np.frombuffer(raw, page.dtype.newbyteorder(tif.byteorder)).astype(page.dtype.newbyteorder("="))
    data = data.reshape(whole, channels, *page.shape)
    data, axes = (data[:, 0], f"{axis}YX{samples}") if channels == 1 else (data, f"{axis}CYX{samples}")
    where = str(p)
    if where not in _SAID_SERIES:
        _SAID_SERIES.add(where)
        import logging

        logging.getLogger("sam_detect").warning(
            "%s: the file says it holds %d frames, but it ends inside frame %d (cut off?): only its first %d are "
            "whole, and are read", p.name, n // channels, whole, whole)
    return np.ascontiguousarray(data), axes


def _read_tiff(p: Path) -> tuple[np.ndarray, str]:
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            if not tif.series:
                raise ImageLoadError(f"{p}: TIFF holds no image data")
            if (cut := read_cut_stack(tif, p)) is not None:
                return cut
            series = _main_series(tif)
            shape = tuple(int(x) for x in series.shape)
            axes = _unnamed_channels(series.axes.upper(), shape)
            page = series.keyframe
            photometric = int(getattr(page, "photometric", 1))
            shown = photometric in _PIL_PHOTOMETRIC
            if shown and len(tif.pages) == 1 and int(getattr(page, "bitspersample", 8) or 8) <= 8:
                return _read_pil(p)  # inverted, indexed or CMYK: as viewers show it
            check_series_size(p, axes, shape, series.dtype.itemsize)
            data = series.asarray()
            if shown:  # several pages, or 16 bits: each as its page alone is shown
                had = data.ndim
                data = _as_shown(data, page, axes.endswith("S"))
                axes = axes + "S" if data.ndim > had else axes
            # grey + alpha: the alpha sample is no channel of the image (merged by max, all white);
            # an extra sample marked unspecified (0, as tifffile writes a (H, W, 2) array) is a
            # channel (a second fluorescence channel was dropped as alpha)
            extra = tuple(int(v) for v in (getattr(page, "extrasamples", ()) or ()))
            grey_alpha = (photometric == 1 and axes.endswith("S") and shape[-1] == 2
                          and len(extra) == 1 and extra[0] in (1, 2))
    except ImageLoadError:
        raise
    except Exception as e:  # tifffile raises many types for corrupt data
        raise ImageLoadError(
            f"{p}: cannot read TIFF ({type(e).__name__}: {e}); the file may be truncated or corrupt"
        ) from e
    if grey_alpha:
        data, axes = data[..., 0], axes[:-1]
    if len(axes) != data.ndim:  # defensive: tifffile squeezes, axes normally match
        axes = _default_axes(data.shape)
    return data, axes


def _unnamed_channels(axes: str, shape: tuple[int, ...]) -> str:
    """A TIFF's axes where an array was saved without them (tifffile's ``Q...YX``), read by
    the rule of a ``.npy`` (:func:`_read_npy`): a last axis of two to four entries is
    channels (``tifffile.imwrite`` writes a ``(H, W, 2)`` array as H pages of W x 2, read as
    H frames of strips 2 px wide: ``YXC``); else a 4-D array's second axis of two to four
    entries (a ``(T, C, H, W)`` array, ``QQYX``: a time-lapse of two channels was read as
    twice as many frames, the channels interleaved) is channels (``QCYX``). (3 or 4 entries
    last are saved as RGB(A) samples, axis ``S``, and never reach this.)"""
    if len(axes) >= 3 and axes == "Q" * (len(axes) - 2) + "YX" and 1 < shape[-1] <= _MAX_ARRAY_CHANNELS:
        return "Q" * (len(axes) - 3) + "YXC"
    if axes == "QQYX" and 1 < shape[1] <= _MAX_ARRAY_CHANNELS:
        return "QCYX"
    return axes


def _read_pil(p: Path) -> tuple[np.ndarray, str]:
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            # Pillow warns between half its limit and its limit; _check_size is the rule here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(p)
        with im:
            n_frames = int(getattr(im, "n_frames", 1))
            _check_size(p, int(im.size[1]) * n_frames, int(im.size[0]))
            im.load()
            mode = im.mode
            fmt = im.format
            # upright, as viewers show it (and as boxes and clicks drawn in them are): a
            # camera's JPEG may store its pixels turned and say so in its EXIF orientation
            orientation = im.getexif().get(0x0112, 1)
            data = _pil_array(im, mode, orientation)
            if n_frames > 1:  # an animated GIF, PNG or WebP: its frames as a stack, as a TIFF's
                frames = [data]
                for k in range(1, n_frames):
                    im.seek(k)
                    frames.append(_pil_array(im, mode, orientation))
                    if frames[-1].ndim == data.ndim == 3 and frames[-1].shape[:2] == data.shape[:2]:
                        frames[-1] = frames[-1][..., : data.shape[2]]  # a later frame's alpha: as the first's
                        if frames[-1].shape[2] < data.shape[2]:  # the first had alpha, this one none: opaque
                            frames[-1] = np.dstack([frames[-1], np.full(data.shape[:2], 255, data.dtype)])
                    if frames[-1].shape != data.shape:
                        raise ImageLoadError(f"{p}: frame {k} has shape {frames[-1].shape}, the first {data.shape}")
                data = np.stack(frames)
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageLoadError(
            f"{p}: the image is larger than the pixel limit ({e}); crop or downscale it first"
        ) from e
    except UnidentifiedImageError as e:
        from sam_detect.video.sources import VIDEO_EXTENSIONS

        if p.suffix.lower() in VIDEO_EXTENSIONS:  # `detect clip.mp4 --frame 2`, as for a stack
            raise ImageLoadError(
                f"{p}: a video, not an image: detect on its frames with `sam-detect video {shlex.quote(str(p))} --jsonl frames.jsonl` "
                "(--frames K for frame K alone)"
            ) from e
        raise ImageLoadError(
            f"{p}: not a readable image (expected PNG, JPEG, BMP, WebP or TIFF)"
        ) from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageLoadError(
            f"{p}: cannot decode image ({e}); the file may be truncated or corrupt"
        ) from e
    if n_frames > 1:
        return data, ("TYX" if data.ndim == 3 else "TYXS")
    if fmt == "PNG" and data.ndim == 3 and _png_bit_depth(p) == 16:
        data = _read_png16_colour(p)  # Pillow reduces 16-bit colour PNGs to 8 bits
        data = np.ascontiguousarray(_UPRIGHT.get(orientation, lambda x: x)(data))  # as Pillow turned it
    axes = "YX" if data.ndim == 2 else "YXS"
    return data, axes


def _pil_array(im: Any, mode: str, orientation: int) -> np.ndarray:
    """One frame of an open Pillow image as an array: upright and in a mode NumPy holds
    (``mode``: the first frame's, so that every frame of an animation is read alike)."""
    from PIL import ImageOps

    if orientation not in (0, 1):  # (a copy only where it is turned)
        im = ImageOps.exif_transpose(im)
    if mode in ("P", "PA"):
        im = im.convert("RGBA" if "transparency" in im.info or mode == "PA" else "RGB")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        im = im.convert("RGB")
    elif mode == "LA":
        im = im.convert("L")
    elif im.mode != mode:  # a later frame of an animation stored another way
        im = im.convert(mode)
    return np.array(im)


#: an EXIF orientation's turn as NumPy makes it (Pillow's ``ImageOps.exif_transpose``, for the
#: 16-bit colour PNG that OpenCV reads as stored)
_UPRIGHT = {
    2: lambda x: x[:, ::-1], 3: lambda x: x[::-1, ::-1], 4: lambda x: x[::-1], 5: lambda x: np.swapaxes(x, 0, 1),
    6: lambda x: np.rot90(x, -1), 7: lambda x: np.rot90(x, -1)[::-1], 8: lambda x: np.rot90(x, 1),
}


def _png_bit_depth(p: Path) -> int:
    with open(p, "rb") as fh:
        head = fh.read(26)
    return head[24] if len(head) >= 26 else 8


def _read_png16_colour(p: Path) -> np.ndarray:
    import cv2

    data = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
    if data is None:
        raise ImageLoadError(f"{p}: cannot decode 16-bit PNG; the file may be truncated or corrupt")
    code = cv2.COLOR_BGRA2RGBA if data.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(data, code)


def _default_axes(shape: tuple[int, ...]) -> str:
    if len(shape) == 2:
        return "YX"
    if len(shape) == 3:
        return "YXS" if shape[2] in (3, 4) else "QYX"
    return "Q" * (len(shape) - 2) + "YX"


def _canonicalise(data: np.ndarray, axes: str, p: Path) -> tuple[np.ndarray, str]:
    """Reorder to ``(F, Y, X[, C])``: frame axes flattened first, channel axes last."""
    if "Y" not in axes or "X" not in axes:
        raise ImageLoadError(
            f"{p}: unsupported layout: axes {axes!r}, shape {data.shape}; expected Y and X axes"
        )
    frame_axes = [i for i, a in enumerate(axes) if a not in "YX" + _CHANNEL_AXES]
    chan_axes = [i for i, a in enumerate(axes) if a in _CHANNEL_AXES]
    order = frame_axes + [axes.index("Y"), axes.index("X")] + chan_axes
    arr = np.transpose(data, order)
    n_frames = int(np.prod([data.shape[i] for i in frame_axes])) if frame_axes else 1
    h, w = arr.shape[len(frame_axes)], arr.shape[len(frame_axes) + 1]
    n_chan = int(np.prod([data.shape[i] for i in chan_axes])) if chan_axes else 1
    if h == 0 or w == 0:
        raise ImageLoadError(f"{p}: image is empty (shape {data.shape})")
    if chan_axes and n_chan > 1:
        arr = arr.reshape(n_frames, h, w, n_chan)
        is_samples = len(chan_axes) == 1 and axes[chan_axes[0]] == "S" and n_chan in (3, 4)
        return arr, "FYXS" if is_samples else "FYXC"
    return arr.reshape(n_frames, h, w), "FYX"


def _pick_frame(
    p: Path, frame: int | None, n_frames: int, source_axes: str, source_shape: tuple[int, ...],
    channel: ChannelSpec = None,
) -> int:
    if frame is None:
        if n_frames > 1:
            # a channel asked of planes saved without axes (a (2, H, W) array): they are no channel
            # axis, and the refusal said nothing of the --channel given
            planes = channel is not None and source_axes.upper() in ("QYX", "IYX")
            raise FrameRequiredError(
                f"{p}: holds a stack of {n_frames} frames (axes {source_axes}, shape "
                f"{source_shape}); pick one with frame=0..{n_frames - 1} (--frame on the command line), "
                f"or detect on every frame with `sam-detect video {shlex.quote(str(p))} --jsonl frames.jsonl`"
                + (f"; {strips}" if (strips := strips_note(source_axes, source_shape)) else "")
                + (f"; a channel was asked for, but the file's {n_frames} planes carry no axes that make them "
                   "channels (saved without them): plane K is frame K, or save the image with its axes "
                   "(tifffile.imwrite(path, image, imagej=True, metadata={'axes': 'CYX'}))" if planes else ""),
                n_frames,
            )
        return 0
    try:
        return _check_frame(p, frame, n_frames)
    except ImageLoadError as e:  # planes saved as one colour image: frames to the user, says how to read them
        if (note := planes_note(p, source_axes, source_shape)) is None:
            raise
        raise ImageLoadError(f"{e}: {note}") from None


def _read_tiff_frame(p: Path, frame: int | None, channel: ChannelSpec = None):
    """Read only the pages of one frame of a multi-page TIFF; ``None``: use the full read.

    Works when every page holds one ``YX`` or ``YXS`` plane and the series' leading axes
    enumerate the pages in C order (plain, ImageJ and most OME files). Returns
    ``(original, canonical axes, source axes, source shape, n_frames, frame index)``.
    """
    if p.suffix.lower() not in _TIFF_EXTENSIONS or not p.is_file() or p.stat().st_size == 0:
        return None  # the full read reports missing and empty files
    if not _looks_like_tiff(p) and _looks_like_other(p):
        return None  # a PNG or JPEG named .tif: the full read takes it by its content
    import tifffile

    try:
        with tifffile.TiffFile(p) as tif:
            if not tif.series:
                return None
            series = _main_series(tif)
            shape = tuple(int(x) for x in series.shape)
            axes = _unnamed_channels(series.axes.upper(), shape)
            page_shape = tuple(int(x) for x in series.keyframe.shape)
            n_page_axes = len(page_shape)
            lead_axes, page_axes = axes[:-n_page_axes], axes[-n_page_axes:]
            lead_shape = shape[: len(lead_axes)]
            if (
                not lead_axes
                or page_axes not in ("YX", "YXS")
                or shape[len(lead_axes) :] != page_shape
                or len(series.pages) != int(np.prod(lead_shape))
                or any(a in "YX" for a in lead_axes)
            ):
                return None
            frame_dims = [i for i, a in enumerate(lead_axes) if a not in _CHANNEL_AXES]
            chan_dims = [i for i, a in enumerate(lead_axes) if a in _CHANNEL_AXES]
            frame_shape = tuple(lead_shape[i] for i in frame_dims)
            n_frames = int(np.prod(frame_shape)) if frame_dims else 1
            index = _pick_frame(p, frame, n_frames, axes, shape, channel)
            if n_frames == 1 and frame is None and not chan_dims:
                return None  # a single page: the ordinary path is as fast
            frame_idx = np.unravel_index(index, frame_shape) if frame_dims else ()
            chan_shape = tuple(lead_shape[i] for i in chan_dims)
            n_chan = int(np.prod(chan_shape)) if chan_dims else 1
            keys = []
            for c in range(n_chan):
                multi = [0] * len(lead_axes)
                for d, v in zip(frame_dims, frame_idx, strict=True):
                    multi[d] = int(v)
                for d, v in zip(chan_dims, np.unravel_index(c, chan_shape), strict=True):
                    multi[d] = int(v)
                keys.append(int(np.ravel_multi_index(multi, lead_shape)))
            pages = [series.pages[k] for k in keys]
            if any(pg is None for pg in pages):
                return None
            _check_size(p, int(page_shape[0]), int(page_shape[1]))
            planes = np.stack([pg.asarray() for pg in pages], axis=0)  # (K, Y, X[, S])
            if int(getattr(series.keyframe, "photometric", 1)) in _PIL_PHOTOMETRIC:  # as shown, as the full read
                planes = _as_shown(planes, series.keyframe, page_axes == "YXS")
    except ImageLoadError:
        raise
    except Exception as e:  # corrupt or truncated: report like the full read does
        raise ImageLoadError(
            f"{p}: cannot read TIFF ({type(e).__name__}: {e}); the file may be truncated or corrupt"
        ) from e
    if planes.size == 0:
        raise ImageLoadError(f"{p}: image is empty (shape {shape})")
    if planes.ndim == 4:  # samples per page too: channels = (lead channels) x samples
        k, h, w, smp = planes.shape
        original = np.moveaxis(planes, 0, 2).reshape(h, w, k * smp)
        canon = "FYXS" if k == 1 and smp in (3, 4) else "FYXC"
    elif planes.shape[0] == 1:
        original, canon = planes[0], "FYX"
    else:
        original, canon = np.moveaxis(planes, 0, -1), "FYXC"
    return np.ascontiguousarray(original), canon, axes, shape, n_frames, index


def _check_frame(p: Path, frame: int, n_frames: int) -> int:
    if isinstance(frame, bool) or not isinstance(frame, (int, np.integer)):
        raise ImageLoadError(f"{p}: frame must be an int, got {frame!r}")
    if not -n_frames <= frame < n_frames:
        raise ImageLoadError(
            f"{p}: frame {frame} out of range: the file holds {n_frames} frame(s) "
            f"(0..{n_frames - 1})"
        )
    return int(frame) % n_frames


__all__ = [
    "IMAGE_EXTENSIONS",
    "LoadedImage",
    "as_rgb_uint8",
    "iter_image_paths",
    "load_image",
    "planes_note",
    "read_stack",
    "read_stack_noted",
    "to_rgb_uint8",
]
