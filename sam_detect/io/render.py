"""Rendering any image array to the ``(H, W, 3)`` uint8 RGB the models see: channel
selection and merging, and per-image percentile scaling of non-uint8 data."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from sam_detect.errors import ImageLoadError

Merge = Literal["max", "mean", "rgb"]
ChannelSpec = int | Sequence[int] | None
_MERGES = ("max", "mean", "rgb")


def guess_channel_axis(shape: tuple[int, ...]) -> int | None:
    h_last, w_last, c_last = shape
    if c_last <= 4:
        return 2
    c_first = shape[0]
    if c_first <= 16 and c_first < min(shape[1], shape[2]):
        return 0
    if c_last <= 16 and c_last < min(h_last, w_last):
        return 2
    return None


def normalise_channel_spec(channel: ChannelSpec) -> int | tuple[int, ...] | None:
    if channel is None or isinstance(channel, (int, np.integer)):
        return None if channel is None else int(channel)
    return tuple(int(c) for c in channel)


def render(
    arr: np.ndarray,
    *,
    channel: ChannelSpec,
    merge: str,
    percentiles: tuple[float, float],
    is_rgb: bool,
    where: str | None = None,
) -> np.ndarray:
    """``(H, W)`` or ``(H, W, C)`` (channels last) -> ``(H, W, 3)`` uint8."""
    prefix = f"{where}: " if where else ""
    if merge not in _MERGES:
        raise ImageLoadError(f"{prefix}merge must be one of {', '.join(_MERGES)}, got {merge!r}")
    if arr.size == 0:
        raise ImageLoadError(f"{prefix}image is empty (shape {arr.shape})")
    if arr.ndim not in (2, 3):
        raise ImageLoadError(
            f"{prefix}expected a 2-D (H, W) or 3-D (H, W, C) image, got {arr.ndim}-D shape {arr.shape}"
        )
    if arr.dtype.kind not in "biuf":  # said here, with the file's name: a folder's complex TIFF was not named
        raise ImageLoadError(f"{prefix}unsupported pixel type {arr.dtype}; expected integer, float or bool")
    lo_p, hi_p = percentiles
    if not 0.0 <= lo_p < hi_p <= 100.0:
        raise ImageLoadError(
            f"{prefix}percentiles must satisfy 0 <= low < high <= 100, got {percentiles}"
        )
    if arr.ndim == 2:
        resolve_channels(channel, 1, prefix)  # only channel 0 (or -1) exists
        return gray_to_rgb(scale_to_uint8(arr, percentiles))
    n_chan = arr.shape[2]
    chans = resolve_channels(channel, n_chan, prefix)
    if chans is None:
        if n_chan == 1:
            return gray_to_rgb(scale_to_uint8(arr[..., 0], percentiles))
        if is_rgb:
            rgb = arr[..., :3]  # drop alpha
            # one scale for the three colour samples keeps the colour balance
            return np.ascontiguousarray(scale_to_uint8(rgb, percentiles))
        chans = list(range(n_chan))
    if len(chans) == 1:
        return gray_to_rgb(scale_to_uint8(arr[..., chans[0]], percentiles))
    if merge == "rgb":
        if len(chans) > 3:
            raise ImageLoadError(
                f"{prefix}merge='rgb' takes at most 3 channels, got {len(chans)} "
                f"({chans}); pass channel=[r, g, b] to pick them"
            )
        out = np.zeros(arr.shape[:2] + (3,), dtype=np.uint8)
        for k, c in enumerate(chans):
            out[..., k] = scale_to_uint8(arr[..., c], percentiles)
        return out
    scaled = [scale_to_uint8(arr[..., c], percentiles) for c in chans]
    if merge == "max":
        gray = np.maximum.reduce(scaled)
    else:
        gray = np.rint(np.mean(np.stack(scaled, axis=0), axis=0, dtype=np.float32)).astype(np.uint8)
    return gray_to_rgb(gray)


def resolve_channels(channel: ChannelSpec, n_chan: int, prefix: str) -> list[int] | None:
    if channel is None:
        return None
    items = [channel] if isinstance(channel, (int, np.integer)) else list(channel)
    if not items:
        raise ImageLoadError(f"{prefix}channel list is empty; pass indices in 0..{n_chan - 1}")
    out = []
    for c in items:
        if isinstance(c, bool) or not isinstance(c, (int, np.integer)):
            raise ImageLoadError(f"{prefix}channel must be an int or a list of ints, got {c!r}")
        if not -n_chan <= c < n_chan:
            raise ImageLoadError(
                f"{prefix}channel {int(c)} out of range: the image has {n_chan} "
                f"channel{'s' if n_chan != 1 else ''} "
                f"(0..{n_chan - 1})"
            )
        out.append(int(c) % n_chan)
    return out


def one_channel(rgb: np.ndarray) -> np.ndarray | None:
    """``(3,)`` bool: which of R, G and B carry an image that is one channel shown in one
    colour -- grey (all three equal at every pixel), or a pseudo-colour of one channel (blue,
    green, cyan ...: the channels that are not black everywhere equal at every pixel) -- or
    ``None`` for a colour image. A single-channel array is grey: ``[True, True, True]``."""
    if rgb.ndim == 2 or rgb.shape[2] < 3:
        return np.ones(3, bool)
    on = np.array([bool(rgb[..., c].any()) for c in range(3)])
    first = np.flatnonzero(on)
    if len(first) and any(not np.array_equal(rgb[..., first[0]], rgb[..., c]) for c in first[1:]):
        return None
    return on


def luminance(rgb: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8: the grey an RGB uint8 image is read as without examples -- luminance,
    except that one channel shown in one colour (:func:`one_channel`: a blue DAPI frame) is
    read in that channel, where luminance would keep a ninth of it (blue weighs 0.114)."""
    import cv2

    c = tinted_channel(rgb)
    if c is not None:
        return np.ascontiguousarray(rgb[..., c])
    return cv2.cvtColor(np.ascontiguousarray(rgb[..., :3]), cv2.COLOR_RGB2GRAY)


#: a colour image is read as a stained slide in transmitted light (haematoxylin and eosin,
#: haematoxylin and DAB: :func:`stained`) where its median pixel's luminance is at least this
#: (the light passes the bright majority of the slide: the development H&E crop's tiles 164-181,
#: and 109-130 stained twice as densely; a fluorescence image's dark ground is its majority: its
#: medians are 2-35 on every development set) ...
STAIN_GROUND = 100
#: ... and its median pixel is at least this colourful (the largest minus the smallest of R, G
#: and B: 51-66 on the development H&E crop, 37 on scikit-image's IHC slide; 0 on grey images,
#: 15-18 on the VOC photograph and scikit-image's astronaut. A colourful photograph passes both
#: tests (scikit-image's cat and coffee): the classical segmenter's own reading is no reading of
#: a photograph's objects either way, ``regions`` is made for them)
STAIN_CHROMA = 20
#: the haematoxylin density (scikit-image's ``rgb2hed`` units, in which a dark nucleus reads
#: 0.13-0.2 and the eosin-stained ground under 0.02) that :func:`haematoxylin` reads as 255
STAIN_FULL = 0.5
#: pixels :func:`stained` looks at, at most (evenly spaced)
_STAIN_SAMPLE = 200_000


def stained(rgb: np.ndarray) -> bool:
    """Whether an RGB uint8 image looks like a stained slide in transmitted light: colour
    (not one channel shown in one colour), its median pixel bright (:data:`STAIN_GROUND`) and
    coloured (:data:`STAIN_CHROMA`). Such an image's objects absorb the light: they are read
    by the density of the stain that marks nuclei (:func:`haematoxylin`) without examples."""
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        return False
    px = rgb[..., :3].reshape(-1, 3)[:: max(1, rgb.shape[0] * rgb.shape[1] // _STAIN_SAMPLE)]
    lum = px.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if float(np.median(lum)) < STAIN_GROUND:
        return False
    chroma = px.max(axis=1).astype(np.int16) - px.min(axis=1)
    return float(np.median(chroma)) >= STAIN_CHROMA and one_channel(rgb) is None


def haematoxylin(rgb: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8: the haematoxylin density of an RGB uint8 image, by Ruifrok and
    Johnston's colour deconvolution as ``skimage.color.rgb2hed`` computes it (its matrix and
    its log offset, through one table per channel), :data:`STAIN_FULL` read as 255. The same
    scale for every image: a faint slide reads faint, and a patch without nuclei has nothing
    stretched into objects."""
    import cv2
    from skimage.color import hed_from_rgb

    # rgb2hed: max(0, sum over channels of log(max(v / 255, 1e-6)) / log(1e-6) x its weight)
    log_v = (np.log(np.maximum(np.arange(256) / 255.0, 1e-6)) / np.log(1e-6)) * (255.0 / STAIN_FULL)
    h = np.zeros(rgb.shape[:2], np.float32)
    for c in range(3):
        table = (log_v * hed_from_rgb[c, 0]).astype(np.float32).reshape(1, 256)
        h += cv2.LUT(np.ascontiguousarray(rgb[..., c]), table)
    return np.clip(np.rint(h), 0, 255).astype(np.uint8)


def tinted_channel(rgb: np.ndarray) -> int | None:
    """The index of a channel that carries an image of one channel shown in one colour other
    than grey (:func:`one_channel`: blue, green, cyan ...), else ``None`` (grey, colour, black)."""
    on = one_channel(rgb)
    return int(np.flatnonzero(on)[0]) if on is not None and on.any() and not on.all() else None


def gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def eight_bit(arr: np.ndarray) -> bool:
    """Whether an array of floats or signed integers holds 8-bit pixels: whole numbers in
    0..255 (PanNuke's ``images.npy`` is float64 so, an 8-bit image read into a NumPy list
    int64). Such an image is read as the 8-bit image it is: stretched between its own
    percentiles, each patch of a set took other colours (a stain's look is its colour). A
    declared 16- or 32-bit unsigned image is scaled whatever its values (a dim frame)."""
    if arr.dtype == np.uint16:
        return widened_eight_bit(arr)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.signedinteger)):
        return False
    if arr.size == 0:
        return False
    top = float(np.max(arr))
    if not (float(np.min(arr)) >= 0 and 1 < top <= 255):  # NaN fails: not 8-bit; 0/1 is a mask's or a 0..1 scale
        return False
    return bool(np.issubdtype(arr.dtype, np.integer) or np.array_equal(arr, np.round(arr)))


def widened_eight_bit(arr: np.ndarray) -> bool:
    """Whether a 16-bit array holds an 8-bit image widened as scikit-image, MATLAB and ImageJ
    widen one (each value times 257, so 255 -> 65535): stretched between its own percentiles
    its colours shifted (an IHC slide's red mean 177 -> 170, pixels moved by up to 42 levels)
    and it was detected as another slide; read as the 8-bit image it is."""
    if arr.dtype != np.uint16 or arr.size == 0:
        return False
    flat = arr.reshape(-1)
    sample = flat[:: max(1, flat.size // 4096)]
    if np.any(sample % 257) or not np.any(flat):
        return False
    return not np.any(flat % 257)


#: the least share of an image's pixels at its lowest value that makes that value a fill (a
#: border, black channels: at least as many as set the low percentile), left out of the
#: percentiles it is scaled between (it stays black), where it lies further below the other
#: pixels than they span
FILL_SHARE = 0.005


#: a value filling whole rows or columns at an image's edges is padding where at most this
#: share of the pixels inside them hold it (an image's own ground -- a background clipped
#: to 0, a saturated brightfield -- holds it inside too)
PAD_RARE = 0.01
#: ... and where the image inside is at least this many pixels a side, a quarter of the
#: whole, and holds at least ``PAD_VALUES`` values (a drawing of flat shapes has no padding)
PAD_INSIDE = 16
PAD_VALUES = 8


def padding_bands(arr: np.ndarray) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)``: how many whole rows and columns at the edges of an
    ``(H, W)`` or ``(H, W, C)`` image are padding -- one value (one colour) that the pixels
    inside them seldom hold (:data:`PAD_RARE`, :data:`PAD_INSIDE`): a frame registered,
    rotated or tiled and padded to its size -- or ``None`` where there are none."""
    h, w = arr.shape[:2]
    corners = {tuple(np.atleast_1d(arr[y, x]).tolist()) for y in (0, h - 1) for x in (0, w - 1)}
    floating = np.issubdtype(arr.dtype, np.floating)
    for value in corners:
        v = np.asarray(value, arr.dtype) if arr.ndim == 3 else arr.dtype.type(value[0])

        def same(a: np.ndarray, v=v) -> np.ndarray:
            """Where ``a`` holds ``v`` (NaN too: a float frame warped with ``cval=nan``)."""
            eq = a == v
            return eq | (np.isnan(a) & np.isnan(v)) if floating else eq

        def held(a: np.ndarray) -> bool:
            return bool(a.size) and bool(np.all(same(a)))

        top = 0
        while top < h and held(arr[top]):
            top += 1
        if top == h:  # one value throughout: nothing is padding
            return None
        bottom = 0
        while held(arr[h - 1 - bottom]):
            bottom += 1
        left = 0
        while left < w and held(arr[top : h - bottom, left]):
            left += 1
        right = 0
        while right < w - left and held(arr[top : h - bottom, w - 1 - right]):
            right += 1
        ih, iw = h - top - bottom, w - left - right
        if not top + bottom + left + right or min(ih, iw) < PAD_INSIDE or 4 * ih * iw < h * w:
            continue
        inner = arr[top : h - bottom, left : w - right]
        sample = inner.reshape(-1, *arr.shape[2:])[:: max(1, ih * iw // 100_000)]
        holds = same(sample) if arr.ndim == 2 else np.all(same(sample), axis=1)
        if holds.mean() <= PAD_RARE and len(np.unique(sample, axis=0)) >= PAD_VALUES:
            return top, bottom, left, right
    return None


def scale_to_uint8(arr: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """uint8 unchanged; bool to 0/255; 8-bit values in another type (:func:`eight_bit`) as
    they are; anything else percentile-scaled to uint8. Padding (:func:`padding_bands`) is
    left out of the scaling and drawn in the median colour of the image inside it: a grey or
    white border read as the image would outshine its objects (a HeLa frame padded with a
    mid-grey border gave 12 nuclei of 160)."""
    bands = padding_bands(arr) if arr.ndim in (2, 3) else None
    if bands is None:
        return _scale_to_uint8(arr, percentiles)
    top, bottom, left, right = bands
    h, w = arr.shape[:2]
    inner = _scale_to_uint8(arr[top : h - bottom, left : w - right], percentiles)
    flat = inner.reshape(-1, *arr.shape[2:])
    out = np.empty(arr.shape, np.uint8)
    out[...] = np.median(flat[:: max(1, len(flat) // 100_000)], axis=0).round().astype(np.uint8)
    out[top : h - bottom, left : w - right] = inner
    return out


def _scale_to_uint8(arr: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype == bool:
        return arr.astype(np.uint8) * 255
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise ImageLoadError(f"unsupported pixel type {arr.dtype}; expected integer, float or bool")
    if eight_bit(arr):
        return (arr // 257 if arr.dtype == np.uint16 else arr).astype(np.uint8)
    # 32- and 64-bit integers and float64 are scaled in float64: float32's 24 bits rounded a range
    # small beside its values (200 levels over a 32-bit camera offset, 1e-3 over 1e6) to one value
    wide = arr.dtype.itemsize > 4 or (np.issubdtype(arr.dtype, np.integer) and arr.dtype.itemsize == 4)
    work = np.float64 if wide else np.float32
    x = arr.astype(work, copy=False)
    finite = np.isfinite(x)
    if not finite.all():
        x = np.where(finite, x, 0.0).astype(work)
    # Percentiles of a strided subsample are as good as of all pixels and much cheaper.
    flat = x.reshape(-1)
    step = max(1, flat.size // 1_000_000)
    sample = flat[::step]
    lo, hi = np.percentile(sample, percentiles)
    floor = float(sample.min())
    filled = sample == floor
    if max(FILL_SHARE, percentiles[0] / 100) <= filled.mean() < 1.0:  # enough to set the low percentile
        # a fill far below the image (a black border round a registered or stitched frame, the
        # black channels of a DAPI frame saved as RGB): the range is the image's, not the fill's,
        # which lay 33,000 levels under a HeLa frame's camera offset and left its nuclei 12 grey
        # levels. A ground at the floor (a background subtracted to 0) lies next to the image's
        # values, not further below them than they span: it is the image's own
        rest_lo, rest_hi = np.percentile(sample[~filled], percentiles)
        if rest_lo - floor > rest_hi - rest_lo:
            lo, hi = rest_lo, rest_hi
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
    if hi <= lo:  # constant image
        return np.zeros(arr.shape, dtype=np.uint8)
    with np.errstate(over="ignore"):
        factor = np.float32(255.0 / (hi - lo))
    if wide or not np.isfinite(factor):  # (a float32 range under 1e-38: its factor in float32 is none)
        out = (x.astype(np.float64, copy=False) - float(lo)) * (255.0 / (float(hi) - float(lo)))
    else:
        out = (x - np.float32(lo)) * factor
    np.clip(out, 0, 255, out=out)
    return np.rint(out).astype(np.uint8)
