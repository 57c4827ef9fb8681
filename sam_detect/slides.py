"""Whole slides: one image too large for one process, detected tile by tile.

The slide (a TIFF; a pyramid level with ``level=``) is never read whole: each tile reads only
the TIFF tiles or strips that overlap its window (:func:`read_window`). The windows are the
segmenters' own overlapping tiles (:func:`~sam_detect.segment.tiling.tile_windows`, even
spread, ``overlap`` pixels shared); each window runs the full detection (segment, embed,
vote, select) here or on Dask workers; the objects are merged across the seams by
:func:`~sam_detect.segment.tiling.merge_tiled`, the same merge the tiled segmenters use
(a whole object beats a piece a seam cut off; pieces cut in every tile are joined).
"""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import ImageLoadError
from sam_detect.io.images import _as_shown, _unnamed_channels

#: Side of a slide tile in pixels, and the pixels neighbouring tiles share: the classical
#: segmenter's automatic tiling (2048, 128), so objects up to 128 px across are seen whole.
DEFAULT_TILE = 2048
DEFAULT_OVERLAP = 128


@dataclass(frozen=True)
class SlideInfo:
    """A slide level's ``(height, width)``, samples per pixel, dtype, and the intensity range
    (``lo``, ``hi``) that maps it to uint8 for every tile alike (``None``: already uint8)."""

    path: str
    level: int
    hw: tuple[int, int]
    samples: int
    dtype: str
    intensity: tuple[float, float] | None


def _page(tf: Any, level: int) -> Any:
    series = tf.series[0]
    levels = getattr(series, "levels", [series])
    if not 0 <= level < len(levels):
        raise ImageLoadError(f"{tf.filename}: level {level} does not exist (levels 0-{len(levels) - 1})")
    return levels[level].keyframe


def slide_info(path: str | os.PathLike, level: int = 0) -> SlideInfo:
    """Read a slide's header (and, past uint8, a sample of its pixels for one intensity range)."""
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = _page(tf, level)
            shape = page.shape
            hw = (int(page.imagelength), int(page.imagewidth))
            samples = int(page.samplesperpixel)
            dtype = str(page.dtype)
            series = tf.series[0]
            # axes as the image reader reads them: a (H, W, 2) array saved without axes is 2 channels
            axes = _unnamed_channels(series.axes.upper(), tuple(int(n) for n in series.shape))
            lead = [(int(n), a) for n, a in zip(series.shape, axes, strict=True) if a not in "YXS"]
            channels = int(np.prod([n for n, a in lead if a == "C"], dtype=np.int64))
            frames = int(np.prod([n for n, a in lead if a != "C"], dtype=np.int64))
            planar = page.planarconfig == tifffile.PLANARCONFIG.SEPARATE and samples > 1
    except (OSError, ValueError, tifffile.TiffFileError) as e:
        raise ImageLoadError(f"cannot read slide {path}: {e}") from e
    if frames > 1:  # a stack read as a slide took its first frame, and said nothing
        raise ImageLoadError(f"{path}: holds a stack of {frames} frames ({axes}); --slide reads one 2-D "
                             "slide: detect a frame without --slide (--frame N), or save the frame alone")
    if channels > 1:  # channels were "a stack of 2 frames", to read "with --frame N", which has none
        raise ImageLoadError(f"{path}: holds {channels} channels ({axes}); --slide reads one grey or colour "
                             "image, not channels: detect it without --slide (--channel K), or save the channel "
                             "alone")
    if np.dtype(dtype).kind not in "biuf":  # complex: a TypeError of numpy's percentile
        raise ImageLoadError(f"{path}: unsupported pixel type {dtype}; expected integer, float or bool")
    if planar:
        raise ImageLoadError(f"{path}: its colour planes are stored apart (planar TIFF), which --slide does not "
                             "read tile by tile; detect it without --slide, or save it interleaved")
    if len(shape) > 3 or (len(shape) == 3 and shape[-1] != samples):
        raise ImageLoadError(f"{path}: slide level of shape {shape}; expected (Y, X) or (Y, X, samples)")
    intensity = None
    if dtype == "bool":
        intensity = (0.0, 1.0)
    elif dtype != "uint8":
        # one range for the whole slide (per-tile ranges would make seams): percentiles of a
        # grid of small windows spread over the slide
        h, w = hw
        parts = []
        for fy in np.linspace(0, 1, 5)[:-1] + 0.125:
            for fx in np.linspace(0, 1, 5)[:-1] + 0.125:
                y, x = int(fy * h), int(fx * w)
                part = _without_alpha(read_window(path, (x, y, min(x + 256, w), min(y + 256, h)), level)).ravel()
                parts.append(part[np.isfinite(part)] if part.dtype.kind == "f" else part)  # NaN: no data
        values = np.concatenate(parts)
        lo, hi = np.percentile(values, [1, 99.8]) if values.size else (0.0, 1.0)
        intensity = (float(lo), float(max(hi, lo + 1e-6)))
    return SlideInfo(str(path), int(level), hw, samples, dtype, intensity)


def read_window(path: str | os.PathLike, window: tuple[int, int, int, int], level: int = 0) -> np.ndarray:
    """Pixels of ``window`` (XYXY, exclusive ends) of a slide level, reading only the TIFF tiles
    or strips that overlap it: ``(h, w)`` or ``(h, w, samples)`` in the file's dtype, as the
    image reader shows them (MinIsWhite inverted, palette indices looked up, CMYK as RGB: a
    MinIsWhite slide was read inverted, its objects the ground)."""
    import tifffile

    x0, y0, x1, y1 = (int(v) for v in window)
    with tifffile.TiffFile(path) as tf:
        page = _page(tf, level)
        h, w = int(page.imagelength), int(page.imagewidth)
        if not (0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h):
            raise ValueError(f"window {window} is outside the {h}x{w} slide")
        samples = int(page.samplesperpixel)
        if page.is_tiled:
            seg_h, seg_w = int(page.tilelength), int(page.tilewidth)
        else:
            seg_h, seg_w = int(page.rowsperstrip or h), w
        if page.planarconfig != 1 and samples > 1 or getattr(page, "imagedepth", 1) > 1:
            data = page.asarray()  # planar or volumetric layouts: read the level, then cut
            return _as_shown(np.ascontiguousarray(data[y0:y1, x0:x1]), page, samples > 1)
        n_cols = -(-w // seg_w)
        out = np.zeros((y1 - y0, x1 - x0, samples), dtype=page.dtype)
        fh = tf.filehandle
        jpegtables = getattr(page, "jpegtables", None)
        # the decoder first: tifffile builds a JPEG one on this first access, reading the file's
        # JPEG header, which moved the file past each seek below ("Not a JPEG file")
        decode = page.decode
        for r in range(y0 // seg_h, (y1 - 1) // seg_h + 1):
            for c in range(x0 // seg_w, (x1 - 1) // seg_w + 1):
                index = r * n_cols + c
                offset, count = page.dataoffsets[index], page.databytecounts[index]
                fh.seek(offset)
                try:
                    segment, _, _ = decode(fh.read(count), index, jpegtables=jpegtables)
                except Exception as e:  # noqa: BLE001 - tifffile's and each codec's own errors
                    raise ImageLoadError(f"{Path(path).name}: its tile or strip {index} cannot be decoded "
                                         f"(a truncated or damaged file?): {type(e).__name__}: {e}") from e
                if segment is None:
                    continue
                seg = np.asarray(segment).reshape(-1, seg_w, samples)  # (rows, seg_w, samples)
                sy0, sx0 = r * seg_h, c * seg_w
                ay0, ay1 = max(y0, sy0), min(y1, sy0 + seg.shape[0], h)
                ax0, ax1 = max(x0, sx0), min(x1, sx0 + seg_w, w)
                if ay1 > ay0 and ax1 > ax0:
                    out[ay0 - y0 : ay1 - y0, ax0 - x0 : ax1 - x0] = seg[ay0 - sy0 : ay1 - sy0, ax0 - sx0 : ax1 - sx0]
    return _as_shown(out[..., 0] if samples == 1 else out, page, samples > 1)


def _without_alpha(data: np.ndarray) -> np.ndarray:
    """A window's pixels without an alpha sample (grey + alpha, RGBA), as the image reader
    leaves it out: a grey + alpha slide was read as its opaque alpha (nothing found), and a
    16-bit RGBA one scaled by its alpha's range."""
    if data.ndim == 3 and data.shape[-1] in (2, 4):
        return data[..., :-1] if data.shape[-1] == 4 else data[..., 0]
    return data


def window_rgb(info: SlideInfo, window: tuple[int, int, int, int]) -> np.ndarray:
    """``(h, w, 3)`` uint8 RGB of a window, scaled with the slide's one intensity range."""
    data = _without_alpha(read_window(info.path, window, info.level))
    if info.intensity is not None:
        lo, hi = info.intensity
        scaled = (data.astype(np.float32) - lo) * np.float32(255.0 / (hi - lo))
        # NaN (no data, as the image reader reads it) as the ground; it was cast to uint8 with a warning
        data = np.clip(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0), 0, 255).astype(np.uint8)
    if data.ndim == 2:
        return np.repeat(data[..., None], 3, axis=2)
    if data.shape[-1] >= 3:
        return np.ascontiguousarray(data[..., :3])
    return np.repeat(data.max(axis=-1)[..., None], 3, axis=2)


def slide_windows(hw: tuple[int, int], tile: int = DEFAULT_TILE, overlap: int = DEFAULT_OVERLAP):
    """The slide's overlapping windows, XYXY: the segmenters' own even tiling."""
    from sam_detect.segment.tiling import tile_windows

    return tile_windows(hw, tile, overlap, even=True)


def detect_window(detector: Any, info: SlideInfo, window: tuple[int, int, int, int],
                  tile_index: int) -> tuple[list, dict]:
    """Detect in one window; the objects as slide-coordinate ``TileMask`` s, marked cut where
    they touch a window side inside the slide, with label, confidence, similarity and
    neighbours in ``info``; and the window's ``candidates``, ``dropped``, ``notes`` and
    ``timings`` (what :func:`merge_windows` sums for the slide)."""
    from sam_detect.segment.tiling import TileMask, mark_cut

    found = detector.detect(window_rgb(info, window))
    md = found.metadata
    said = {"tile": tile_index, "candidates": int(md.get("candidates", len(found))), "dropped": dict(md.get("dropped") or {}),
            "notes": list(md.get("notes", [])), "timings": dict(md.get("timings", {}))}
    x0, y0 = window[:2]
    sim = found.data.get("similarity")
    neigh = found.data.get("neighbours")
    items = []
    for i, crop in enumerate(found.crops):
        extra = {"label": found.labels[i], "confidence": float(found.label_confidences[i])}
        if sim is not None:
            extra["similarity"] = float(sim[i])
        if neigh is not None:
            extra["neighbours"] = neigh[i]
        m = TileMask(crop.crop, (crop.x0 + x0, crop.y0 + y0), float(found.scores[i]), extra, tile=tile_index)
        items.append(mark_cut(m, window, info.hw))
    return items, said


_NUMBER = re.compile(r"\d+(?:\.\d+)?")


def slide_summary(said: Sequence[dict]) -> dict[str, Any]:
    """The windows' own records summed for the slide: ``candidates`` (each window's proposals,
    an object in an overlap counted in each window), ``dropped`` per filter, ``timings`` per
    stage (work summed over the windows), and the notes: one per kind (a note's text with its
    numbers left out), the first window's words, saying in how many windows it was given and,
    where the windows' figures differ, that these are the first window's (a count of 16 beside
    ``dropped`` summing 80 read as the slide's)."""
    dropped: dict[str, int] = {}
    timings: dict[str, float] = {}
    kinds: dict[str, list[str]] = {}
    for one in said:
        for k, v in one["dropped"].items():
            dropped[k] = dropped.get(k, 0) + int(v)
        for k, v in one["timings"].items():
            timings[k] = timings.get(k, 0.0) + float(v)
        for note in one["notes"]:
            kinds.setdefault(_NUMBER.sub("#", note), []).append(note)
    notes = []
    for first in kinds.values():
        if len(first) == len(said) == 1:
            notes.append(first[0])
            continue
        figures = "" if len(set(first)) == 1 else "the first window's figures; "
        notes.append(f"{first[0]} ({figures}in {len(first)} of {len(said)} windows)")
    return {"candidates": sum(one["candidates"] for one in said), "dropped": dropped, "notes": notes,
            "timings": timings}


def merge_windows(items: Sequence[Any], info: SlideInfo, said: Sequence[dict] = ()) -> Any:
    """One ``Instances`` for the slide from every window's objects, merged across seams;
    ``said``: the windows' records (:func:`detect_window`), summed (:func:`slide_summary`)."""
    from sam_detect.instances import Instances
    from sam_detect.masks import MaskCrop
    from sam_detect.segment.tiling import merge_tiled

    # a window's objects never overlap (detect selects a non-overlapping set): disjoint merge,
    # and the slide's objects do not either (a piece cut at a seam keeps only its own pixels)
    merged = merge_tiled(list(items), iou_thresh=0.5, contain_thresh=0.5, disjoint=True, trim=True)
    merged.sort(key=lambda m: (-m.score, m.y0, m.x0))
    data: dict[str, Any] = {}
    if merged and all("similarity" in m.info for m in merged):
        data["similarity"] = np.array([m.info["similarity"] for m in merged], np.float32)
    if merged and all("neighbours" in m.info for m in merged):
        data["neighbours"] = [m.info["neighbours"] for m in merged]
    return Instances.from_crops(
        [MaskCrop(m.crop, m.origin) for m in merged], None, info.hw,
        scores=np.array([m.score for m in merged], np.float32),
        labels=[m.info["label"] for m in merged],
        label_confidences=np.array([m.info["confidence"] for m in merged], np.float32),
        data=data, metadata={"image_path": info.path, "image_hw": list(info.hw), "tiles": None,
                             **slide_summary(said)},
    )


def _slide_task(config: Any, snapshot: Any, token: str, info: SlideInfo, window: tuple, index: int) -> list:
    from sam_detect.cluster import worker_detector

    return detect_window(worker_detector(config, snapshot, token), info, window, index)


def detect_slide(
    config: Any,
    path: str | os.PathLike,
    *,
    cluster: Any = None,
    level: int = 0,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    detector: Any = None,
    progress: bool = False,
    retries: int = 1,
) -> Any:
    """Detect on a whole slide, tile by tile, here (``cluster=None``) or on Dask workers.

    Returns ``Instances`` in slide coordinates (best score first) with ``metadata["tiles"]``.
    Raises:
        ImageLoadError: not a readable TIFF, or no such level.
        ClusterError: a tile failed on every try (the run stops: a slide with a hole is not a result).
    """
    info = slide_info(path, level)
    windows = slide_windows(info.hw, tile, overlap)
    bar = None
    if progress and len(windows) > 1:
        import sys

        from tqdm.auto import tqdm

        bar = tqdm(total=len(windows), desc="tiles", unit="tile", file=sys.stderr)
    items: list = []
    said: list[dict] = []
    started = time.perf_counter()

    def take(window_items: list, window_said: dict) -> None:
        items.extend(window_items)
        said.append(window_said)

    try:
        if cluster is None:
            from sam_detect._heavy import running
            from sam_detect.pipeline import SAMDetect

            det = detector or SAMDetect(config)
            try:
                with running():  # the windows share one set-up: each reuses the memory the others freed
                    for t, win in enumerate(windows):
                        take(*detect_window(det, info, win, t))
                        if bar is not None:
                            bar.update(1)
            finally:
                if detector is None:
                    det.close()
        else:
            from sam_detect.cluster import ClusterError, _distributed, library_snapshot, open_client

            distributed = _distributed()
            snapshot = library_snapshot(config)
            token = uuid.uuid4().hex
            with open_client(cluster) as client:
                snap = client.scatter(snapshot, broadcast=True, hash=False) if snapshot is not None else None
                futures = [client.submit(_slide_task, config, snap, token, info, win, t, retries=retries,
                                         key=f"sam-detect-tile-{token[:8]}-{t}", pure=False)
                           for t, win in enumerate(windows)]
                for fut in distributed.as_completed(futures):
                    try:
                        take(*fut.result())
                    except Exception as e:
                        for f in futures:
                            f.cancel()
                        raise ClusterError(f"a tile of {Path(path).name} failed: {' '.join(str(e).split())[:200]}") from e
                    if bar is not None:
                        bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    # merge in window order whatever order the tiles finished in: the same result every run
    items.sort(key=lambda m: (m.tile, m.y0, m.x0))
    said.sort(key=lambda one: one["tile"])
    out = merge_windows(items, info, said)
    out.metadata["tiles"] = len(windows)
    out.metadata["timings"]["total"] = time.perf_counter() - started  # the slide's wall time
    return out


__all__ = ["SlideInfo", "detect_slide", "detect_window", "merge_windows", "read_window", "slide_info", "slide_summary",
           "slide_windows", "window_rgb"]
