"""The libraries side of the annotation UI: one detector per library (sharing the store, the
segmenter and a caching embedder), the examples a library lists, deleting examples, and
example thumbnails.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import shutil
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import LibraryNotFoundError, SamDetectError
from sam_detect.masks import MaskCrop
from sam_detect.ui.images import NotFoundError, encode_png

log = logging.getLogger("sam_detect.ui")


class CachingEmbedder:
    """Wraps an embedder and remembers the vector of every crop it has embedded.

    The crops of an image's candidates are the same bytes every time the image is detected
    (the segmentation and the crop are deterministic), so detecting again after a
    correction, or accepting a detection as an example, costs no model run. Keys are a
    hash of the crop's bytes, shape and dtype (and of its mask for embedders that take
    masks); at most ``max_items`` vectors are kept, oldest dropped first.

    Every other attribute (``id``, ``dim``, ``name``, ``uses_masks`` ...) is the wrapped
    embedder's.
    """

    def __init__(self, inner: Any, max_items: int = 20000) -> None:
        self.inner = inner
        self.max_items = max_items
        self._cache: OrderedDict[bytes, np.ndarray] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    @staticmethod
    def _key(crop: Any, mask: Any = None) -> bytes:
        a = np.ascontiguousarray(crop)
        h = hashlib.blake2b(a.tobytes(), digest_size=20)
        h.update(repr((a.shape, a.dtype.str)).encode())
        if mask is not None:
            h.update(np.ascontiguousarray(mask).tobytes())
        return h.digest()

    def embed(self, crops: Sequence[Any], **kwargs: Any) -> np.ndarray:
        """``(N, D)`` float32 vectors of ``crops``, from the cache where possible."""
        masks = kwargs.get("masks")
        extra = {k: v for k, v in kwargs.items() if k != "masks"}
        if extra:  # options the cache cannot key on: pass through
            return np.asarray(self.inner.embed(crops, **kwargs), dtype=np.float32)
        keys = [self._key(c, None if masks is None else masks[i]) for i, c in enumerate(crops)]
        todo = [i for i, k in enumerate(keys) if k not in self._cache]
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        if todo:
            sub = [crops[i] for i in todo]
            if masks is None:
                vecs = self.inner.embed(sub)
            else:
                vecs = self.inner.embed(sub, masks=[masks[i] for i in todo])
            vecs = np.asarray(vecs, dtype=np.float32)
            for i, v in zip(todo, vecs, strict=True):
                self._cache[keys[i]] = v
        out = (
            np.stack([self._cache[k] for k in keys])
            if keys
            else np.zeros((0, int(self.inner.dim)), np.float32)
        )
        for k in keys:
            self._cache.move_to_end(k)
        while len(self._cache) > self.max_items:
            self._cache.popitem(last=False)
        return out


class Libraries:
    """The libraries of ``base``'s store as one UI session sees them.

    Args:
        base: the session's :class:`~sam_detect.pipeline.SAMDetect`; never closed here.
        thumbnail_dir: where example thumbnails are kept (``<dir>/<library>/<id>.png``).
            Default: next to the store's folder (``<library path>-thumbnails``) when the
            store lives on disk, else a temporary folder removed by :meth:`close`.
        lock: the session's lock (the detectors and the store are not thread-safe).
    """

    def __init__(self, base: Any, thumbnail_dir: str | os.PathLike | None, lock: threading.RLock) -> None:
        self._base = base
        self.lock = lock
        self._detectors: dict[str, Any] = {}
        self.embedders: dict[str, CachingEmbedder] = {}
        self._tmp_thumbs: str | None = None
        self.thumbnail_dir = self._pick_thumbnail_dir(thumbnail_dir)
        # (library, example id) -> (payload, label) of listed examples that have no thumbnail yet
        self._pending_thumbs: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}

    def close(self) -> None:
        """Close the sibling detectors made here and remove a temporary thumbnail folder."""
        for det in self._detectors.values():
            det.close()  # they share the given detector's store and do not close it
        self._detectors.clear()
        if self._tmp_thumbs:
            shutil.rmtree(self._tmp_thumbs, ignore_errors=True)
            self._tmp_thumbs = None

    def _pick_thumbnail_dir(self, given: str | os.PathLike | None) -> Path:
        if given is not None:
            return Path(given).expanduser()
        where = getattr(self._base.store, "path", None)  # an embedded store's folder or file
        if where:
            p = Path(where).expanduser().resolve()
            return p.with_name(p.name + "-thumbnails")
        self._tmp_thumbs = tempfile.mkdtemp(prefix="sam-detect-ui-thumbs-")
        return Path(self._tmp_thumbs)

    def detector_for(self, name: str) -> Any:
        """The session's detector for library ``name``: the given detector's store, segmenter
        and settings, its embedder wrapped in a :class:`CachingEmbedder` (one wrapper per
        embedder id, shared between libraries made with the same embedder)."""
        det = self._detectors.get(name)
        if det is None:
            from sam_detect.pipeline import SAMDetect

            base = self._base
            cfg = dataclasses.replace(base.config, library=name)
            try:
                meta = base.store.get_meta(name)
            except LibraryNotFoundError:
                meta = None
            same_as_base = name == base.config.library
            probe = base if same_as_base else SAMDetect(cfg, store=base.store)
            if meta is not None and not same_as_base and meta.embedder_id in self.embedders:
                inner_id = meta.embedder_id
            else:
                inner = probe.embedder  # loads the model (auto: the library's own embedder)
                inner_id = inner.id
                if inner_id not in self.embedders:
                    self.embedders[inner_id] = CachingEmbedder(inner)
            det = SAMDetect(
                cfg,
                store=base.store,
                segmenter=base.segmenter,
                embedder=self.embedders[inner_id],
                fade=base.fade if same_as_base else None,
            )
            det.choices.update(probe.choices)
            self._detectors[name] = det
        return det

    # -- examples -----------------------------------------------------------------------
    @staticmethod
    def labels(detector: Any) -> dict[str, int]:
        """Examples per label in ``detector``'s library (none when it does not exist yet)."""
        try:
            return detector.store.labels(detector.config.library)
        except LibraryNotFoundError:
            return {}

    def examples(
        self, detector: Any, relative: Callable[[Path], str], max_listed: int
    ) -> tuple[list[dict[str, Any]], bool]:
        """The examples of ``detector``'s library for the panel, newest first, at most
        ``max_listed`` (and whether more were left out); ``relative`` shows their sources."""
        library = detector.config.library
        examples: list[dict[str, Any]] = []
        for ids, _vecs, labs, pays in detector.store.iter_examples(library):
            for ex_id, lab, pay in zip(ids, labs, pays, strict=True):
                examples.append(self._example_json(library, ex_id, lab, pay or {}, relative))
                if (pay or {}).get("mask_rle") and not self.thumb_path(library, ex_id).is_file():
                    # examples added outside the UI: their thumbnails are made on request
                    self._pending_thumbs[(library, ex_id)] = (dict(pay), lab)
        examples.sort(key=lambda e: e.get("added") or "", reverse=True)
        if len(examples) > max_listed:
            return examples[:max_listed], True
        return examples, False

    def _example_json(
        self, library: str, ex_id: str, label: str, payload: dict[str, Any], relative: Callable[[Path], str]
    ) -> dict[str, Any]:
        source = payload.get("source")
        shown = None
        if source:
            try:
                shown = relative(Path(source))
            except (ValueError, OSError):
                shown = Path(source).name  # outside the served folder: the name only
        return {
            "id": ex_id,
            "label": label,
            "source": shown,
            "added": payload.get("added"),
            "thumbnail": self.thumb_path(library, ex_id).is_file()
            or bool(payload.get("mask_rle") and source),
        }

    def delete(self, library: str, ids: Sequence[str]) -> int:
        """Delete examples ``ids`` of ``library`` (all or none) and their thumbnails; the
        library's profile is recomputed when any went. Returns how many were deleted."""
        from sam_detect.library_state import images_of
        from sam_detect.store import journal

        det = self.detector_for(library)
        images = images_of(det.store, library, ids=ids)
        n = journal.delete(det.store, library, ids=list(ids))  # all or none, even if killed
        if n:
            det.measure_again(images)  # the rest of their images' examples, as if these were never added
            det.refresh_profile()  # what the examples say about the objects changed
        for ex_id in ids:
            self.thumb_path(library, ex_id).unlink(missing_ok=True)
        return n

    # -- thumbnails of examples ---------------------------------------------------------
    def thumb_path(self, library: str, ex_id: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", library)
        if safe != library:
            safe += "-" + hashlib.sha1(library.encode()).hexdigest()[:8]
        return self.thumbnail_dir / safe / f"{ex_id}.png"

    def save_thumbnail(self, rgb: np.ndarray, mask: MaskCrop, label: str, ex_id: str, library: str) -> None:
        """Write the thumbnail of example ``ex_id`` of ``library`` (a failure is only logged)."""
        try:
            data = example_thumbnail(rgb, mask.full(rgb.shape[:2]), label)
            p = self.thumb_path(library, ex_id)
            p.parent.mkdir(parents=True, exist_ok=True)
            tmp = p.with_suffix(".tmp")
            tmp.write_bytes(data)
            tmp.replace(p)
        except OSError as e:  # a thumbnail is a convenience; the example is already stored
            log.warning("could not save the thumbnail of example %s: %s", ex_id, e)

    def example_thumbnail(self, detector: Any, ex_id: str) -> bytes:
        """The PNG thumbnail of example ``ex_id`` of ``detector``'s library."""
        p = self.thumb_path(detector.config.library, ex_id)
        if not p.is_file():
            self._thumbnail_from_payload(detector, ex_id)
        return p.read_bytes()

    def _thumbnail_from_payload(self, detector: Any, ex_id: str) -> None:
        """Make (and keep) the thumbnail of an example added outside the UI (``sam-detect
        add``, an import) from its payload: the source image and the mask as COCO RLE.

        Without this the library panel showed such examples as label-only placeholders."""
        from sam_detect.io.images import load_image
        from sam_detect.masks import rle_to_mask

        library = detector.config.library
        with self.lock:
            payload, label = self._example_payload(detector, ex_id)
            source, rle = payload.get("source"), payload.get("mask_rle")
            if not source or not rle:
                raise NotFoundError(f"example {ex_id!r} has no thumbnail and no mask to make one from")
            try:
                loaded = load_image(source)  # a stack needs its frame, which payloads do not record
                mask = rle_to_mask(rle)
            except (SamDetectError, ValueError, KeyError, TypeError) as e:
                raise NotFoundError(f"example {ex_id!r}: its source image cannot be read ({e})") from None
            if mask.shape != loaded.rgb.shape[:2] or not mask.any():
                raise NotFoundError(f"example {ex_id!r}: its mask does not fit its source image")
            self.save_thumbnail(loaded.rgb, MaskCrop.from_full(mask), label, ex_id, library)
            if not self.thumb_path(library, ex_id).is_file():
                raise NotFoundError(f"example {ex_id!r}: its thumbnail could not be saved")

    def _example_payload(self, detector: Any, ex_id: str) -> tuple[dict[str, Any], str]:
        library = detector.config.library
        pending = self._pending_thumbs.pop((library, ex_id), None)
        if pending is not None:
            return pending
        for ids, _vecs, labs, pays in detector.store.iter_examples(library):
            for i, lab, pay in zip(ids, labs, pays, strict=True):
                if i == ex_id:
                    return dict(pay or {}), lab
        raise NotFoundError(f"example {ex_id!r} is not in library {library!r}")


def _color(label: str) -> tuple[int, int, int]:
    from sam_detect.outputs import label_color

    return label_color(label)


def example_thumbnail(rgb: np.ndarray, mask: np.ndarray, label: str, size: int = 72) -> bytes:
    """A small PNG of an example: its box with a margin, the mask outlined in the label's colour.

    Args:
        rgb: ``(H, W, 3)`` uint8. mask: ``(H, W)`` bool, not empty. size: longest side.
    """
    import cv2

    x0, y0, x1, y1 = MaskCrop.from_full(mask).box
    side = max(y1 - y0, x1 - x0)
    pad = max(4, side // 4)
    h, w = mask.shape
    y0, y1, x0, x1 = max(0, y0 - pad), min(h, y1 + pad), max(0, x0 - pad), min(w, x1 + pad)
    crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
    m = mask[y0:y1, x0:x1].astype(np.uint8)
    s = size / max(crop.shape[:2])
    nh, nw = max(1, round(crop.shape[0] * s)), max(1, round(crop.shape[1] * s))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_NEAREST
    crop = cv2.resize(crop, (nw, nh), interpolation=interp)
    m = cv2.resize(m, (nw, nh), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    cv2.drawContours(crop, contours, -1, _color(label), 1)
    return encode_png(crop)
