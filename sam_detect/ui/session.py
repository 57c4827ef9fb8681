"""The annotation session behind the web UI: prompts, detections, corrections, undo, export.

Its parts live beside it: the served folder in :mod:`~sam_detect.ui.images`, the libraries
and their thumbnails in :mod:`~sam_detect.ui.libraries`, what it remembers of an image in
:mod:`~sam_detect.ui.records`, background work in :mod:`~sam_detect.ui.prefetch`.
Everything here is plain Python over :class:`~sam_detect.pipeline.SAMDetect`; the web layer
(:mod:`sam_detect.ui.server`) only parses requests and serialises answers. One lock
serialises all work on the detector (the models and the store are not thread-safe).

Coordinates are image pixels of the original file: points ``(x, y)``, boxes XYXY with the
right/bottom edge exclusive. Masks travel to and from the page as
:func:`~sam_detect.formats.runs.mask_to_runs` dicts: the mask's bounding box ``x, y, w, h`` plus run lengths over that crop in row-major
order, starting with a run of background (possibly 0).

Every accepted example is written to the library at once (``SAMDetect.add_examples``);
what the session keeps in memory (annotations per image, the undo stack, candidate masks)
is only what the page needs to draw, correct and export.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.config import check as check_setting
from sam_detect.embed.base import embeds_instances
from sam_detect.errors import AnnotationError, LibraryNotFoundError
from sam_detect.formats.runs import runs_to_crop
from sam_detect.instances import NEGATIVE, Instances
from sam_detect.masks import MaskCrop
from sam_detect.ui.images import (
    ImageFolder,
    NotFoundError,
    UILimits,
    View,
    short,
)
from sam_detect.ui.libraries import CachingEmbedder, Libraries
from sam_detect.ui.prefetch import Prefetcher
from sam_detect.ui.records import (
    Action,
    Annotation,
    Candidate,
    ImageKey,
    annotation_json,
    candidate_json,
    check_export_format,
    copy_of,
    export_file,
)

log = logging.getLogger("sam_detect.ui")

#: the UI's top_k stops here (a slider's range); the setting's own range: sam_detect.config.PARAMS
UI_MAX_TOP_K = 100


# ---------------------------------------------------------------------------------------
# the session
# ---------------------------------------------------------------------------------------
class AnnotationSession:
    """State and operations of one UI session over a folder of images.

    Args:
        detector: a :class:`~sam_detect.pipeline.SAMDetect`; its store holds the libraries.
            The session switches libraries by making sibling detectors that share its store
            and segmenter; it never closes ``detector`` (its owner does).
        image_dir: the served folder. Only image files under it can be opened.
        thumbnail_dir: where example thumbnails are kept (``<dir>/<library>/<id>.png``).
            Default: next to the store's folder (``<library path>-thumbnails``) when the
            store lives on disk, else a temporary folder removed by :meth:`close`.
        limits: size limits, see :class:`UILimits`.
        allow_upload: accept uploads into ``<image_dir>/uploads``.
        prefetch: when an image is opened, segment it and embed its candidates in the
            background (a few crops at a time, yielding to clicks between chunks), so the
            first click and the first detect on it find their work done. Only for segmenters
            that cache their last segmentation (:data:`~sam_detect.ui.prefetch.PREFETCH_SEGMENTERS`).
    """

    def __init__(
        self,
        detector: Any,
        image_dir: str | os.PathLike,
        *,
        thumbnail_dir: str | os.PathLike | None = None,
        limits: UILimits | None = None,
        allow_upload: bool = True,
        prefetch: bool = True,
    ) -> None:
        self.limits = limits or UILimits()
        self.images = ImageFolder(image_dir, self.limits, allow_upload)
        self.root = self.images.root
        self.lock = threading.RLock()  # the detector, the store and the session's records
        self.libraries = Libraries(detector, thumbnail_dir, self.lock)
        self.thumbnail_dir = self.libraries.thumbnail_dir
        self._candidates: OrderedDict[str, Candidate] = OrderedDict()
        self._annotations: dict[str, dict[ImageKey, list[Annotation]]] = {}
        self._undo: list[Action] = []
        self._deleted: set[str] = set()  # examples deleted in this session: an undo does not put their marks back
        self._ids = itertools.count(1)
        self.prefetch_enabled = prefetch
        self.prefetcher = Prefetcher(self)
        self.detector = self.libraries.detector_for(detector.config.library)

    # -- lifecycle ----------------------------------------------------------------------
    def close(self) -> None:
        """Close the sibling detectors the session made and remove a temporary thumbnail folder."""
        self.prefetcher.stop()
        with self.lock:
            self.libraries.close()

    def warm_up(self) -> float:
        """Load the models and run each once on a dummy input, so that the first click and the
        first accept do not pay for the framework's first-call set-up. Returns the seconds."""
        t0 = time.perf_counter()
        with self.lock:
            det = self.detector
            dummy = np.zeros((64, 64, 3), np.uint8)
            dummy[20:40, 20:40] = 200
            det.segmenter.segment(dummy)
            emb = det.embedder
            if not embeds_instances(emb):
                inner = emb.inner if isinstance(emb, CachingEmbedder) else emb
                inner.embed([dummy, dummy[:48, :48]])  # not cached: a dummy is not an example
        return time.perf_counter() - t0

    @property
    def library(self) -> str:
        return self.detector.config.library

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids)}"

    # -- the image folder -----------------------------------------------------------------
    def resolve(self, rel: str) -> Path:
        """:meth:`ImageFolder.resolve <sam_detect.ui.images.ImageFolder.resolve>`."""
        return self.images.resolve(rel)

    def load(self, rel: str, view: View) -> Any:
        """:meth:`ImageFolder.load <sam_detect.ui.images.ImageFolder.load>`."""
        return self.images.load(rel, view)

    def info(self, rel: str, view: View) -> dict[str, Any]:
        """Size, frames, channels and dtype of ``rel``, for the page's controls."""
        loaded = self.load(rel, view)
        h, w = loaded.hw
        photometric = "S" in loaded.source_axes
        if self.prefetch_enabled:
            self.prefetch(rel, view)
        return {
            "path": rel,
            "width": w,
            "height": h,
            "n_frames": loaded.n_frames,
            "frame": view.frame,
            "n_channels": loaded.n_channels,
            "rgb": photometric,
            "dtype": str(loaded.original.dtype),
            "source_axes": loaded.source_axes,
            "source_shape": list(loaded.source_shape),
        }

    def prefetch(self, rel: str, view: View, chunk: int = 4) -> threading.Thread:
        """:meth:`Prefetcher.start <sam_detect.ui.prefetch.Prefetcher.start>`."""
        return self.prefetcher.start(rel, view, chunk)

    @property
    def prefetch_status(self) -> dict[str, Any]:
        """What the last prefetch did: ``{"image", "candidates", "embedded", "seconds", "done"}``."""
        return self.prefetcher.status

    @property
    def _prefetch_thread(self) -> threading.Thread | None:
        return self.prefetcher.thread

    # -- candidates and annotations -----------------------------------------------------
    def _remember(self, cand: Candidate) -> Candidate:
        self._candidates[cand.id] = cand
        while len(self._candidates) > self.limits.max_candidates:
            self._candidates.popitem(last=False)
        return cand

    def _anns(self, key: ImageKey) -> list[Annotation]:
        return self._annotations.setdefault(self.library, {}).setdefault(key, [])

    def prompt(
        self,
        rel: str,
        view: View,
        *,
        point: Sequence[float] | None = None,
        box: Sequence[float] | None = None,
        label: str | None = None,
    ) -> dict[str, Any]:
        """Turn a click (``point`` XY) or a drag (``box`` XYXY) into a candidate mask;
        ``label``, the class the object is meant as, lets a click follow the library's
        examples of it (``SAMDetect.prompt_to_instances``).

        Returns ``{"candidate": {...}, "seconds": float}``; the candidate carries its ``id``
        (pass it to :meth:`accept`), ``mask`` (runs), ``box`` and ``area``.

        Raises:
            AnnotationError: no object there, or a prompt outside the image.
        """
        if (point is None) == (box is None):
            raise AnnotationError("give exactly one of point [x, y] or box [x1, y1, x2, y2]")
        t0 = time.perf_counter()
        with self.lock:
            loaded, version = self.images.load_versioned(rel, view)
            inst = self.detector.prompt_to_instances(
                loaded,
                point=None if point is None else [float(v) for v in point],
                box=None if box is None else [float(v) for v in box],
                label=label,
            )
            mask = copy_of(inst, 0)
            cand = self._remember(
                Candidate(
                    id=self._next_id("c"), image_key=(rel, view.frame, version), mask=mask, source="prompt"
                )
            )
        return {
            "candidate": candidate_json(cand),
            "seconds": round(time.perf_counter() - t0, 4),
        }

    def detect(
        self,
        rel: str,
        view: View,
        *,
        threshold: float | None = None,
        top_k: int | None = None,
        drop_border: bool | None = None,
    ) -> dict[str, Any]:
        """Detect on ``rel`` with the current library; detections replace the image's earlier ones.
        ``drop_border``: as :meth:`SAMDetect.detect`'s (``None``: the detector's own setting).

        Detections overlapping an example of the image (IoU > 0.5) are left out: the example
        already marks that object.
        """
        try:  # the settings' one check (sam_detect.config), before the lock and the image
            threshold = None if threshold is None else check_setting("threshold", threshold)
            top_k = None if top_k is None else check_setting("top_k", top_k)
        except ValueError as e:
            raise AnnotationError(str(e)) from None
        if top_k is not None and top_k > UI_MAX_TOP_K:
            raise AnnotationError(f"top_k must be in 1..{UI_MAX_TOP_K} in the UI, got {top_k}")
        t0 = time.perf_counter()
        with self.lock:
            loaded, version = self.images.load_versioned(rel, view)
            try:
                found = self.detector.detect(loaded, threshold=threshold, top_k=top_k, drop_border=drop_border)
            except LibraryNotFoundError as e:
                raise LibraryNotFoundError(
                    f"library {self.library!r} holds no examples yet: click an object and accept it "
                    "with a label first"
                ) from e
            key = (rel, view.frame, version)
            anns = self._anns(key)
            kept = [a for a in anns if a.kind != "detection"]
            dropped = 0
            stored = found.data.get("example")  # the library's examples of this image, as drawn
            for i in range(len(found)):
                m = copy_of(found, i)
                if any(a.mask.iou(m) > 0.5 for a in kept if a.kind in ("example", "negative")):
                    dropped += 1
                    continue
                if stored is not None and stored[i]:  # added in an earlier session: shown as an example
                    dropped += 1
                    kept.append(Annotation(id=self._next_id("a"), mask=m, label=str(found.labels[i]),
                                           kind="example", example_ids=[found.data["neighbours"][i][0]["id"]]))
                    continue
                cand = self._remember(
                    Candidate(
                        id=self._next_id("c"),
                        image_key=key,
                        mask=m,
                        source="detection",
                        label=str(found.labels[i]),
                        confidence=float(found.label_confidences[i]),
                        similarity=float(found.data["similarity"][i])
                        if "similarity" in found.data
                        else None,
                        neighbours=list(found.data.get("neighbours", [[]] * len(found))[i]),
                    )
                )
                kept.append(
                    Annotation(
                        id=self._next_id("a"),
                        mask=m,
                        label=cand.label or "",
                        kind="detection",
                        confidence=cand.confidence,
                        candidate_id=cand.id,
                    )
                )
            anns[:] = kept
            md = found.metadata
            result = {
                "image": rel,
                "frame": view.frame,
                "library": self.library,
                "candidates": int(md.get("candidates", len(found))),
                "count": len(found) - dropped,
                "already_examples": dropped,
                "timings": {k: round(float(v), 4) for k, v in md.get("timings", {}).items()},
                "segmenter": md.get("segmenter"),
                "embedder": md.get("embedder"),
                # what detect says of this image (another exposure, the border's objects left
                # out as the examples' annotation leaves them, ...), as the command line's stderr
                "notes": [str(n) for n in md.get("notes", [])],
                "annotations": [annotation_json(a, self._candidates) for a in anns],
            }
        result["seconds"] = round(time.perf_counter() - t0, 4)
        return result

    def accept(
        self,
        rel: str,
        view: View,
        *,
        label: str,
        candidates: Sequence[str] = (),
        mask: Any = None,
    ) -> dict[str, Any]:
        """Write examples to the library now: candidate masks (by id) or a mask from the page.

        ``label`` may be :data:`~sam_detect.instances.NEGATIVE` (``"__negative__"``): the
        "not this" / "wrong" action. Accepting a detection with another label relabels it.
        Returns the new example ids and the image's annotations.
        """
        if not isinstance(label, str) or not label.strip():
            raise AnnotationError(f"a label must be a non-empty string, got {label!r}")
        label = label.strip()
        if len(label) > 100:
            raise AnnotationError(f"a label may have at most 100 characters, got {len(label)}")
        if not candidates and mask is None:
            raise AnnotationError("nothing to accept: give candidate ids or a mask")
        if len(candidates) > 1000:
            raise AnnotationError(f"at most 1000 candidates at once, got {len(candidates)}")
        with self.lock:
            loaded, version = self.images.load_versioned(rel, view)
            key = (rel, view.frame, version)
            items: list[tuple[MaskCrop, Candidate | None]] = []
            for cid in candidates:
                cand = self._candidates.get(str(cid))
                if cand is None:
                    raise NotFoundError(
                        f"candidate {cid!r} is unknown or expired; click the object again"
                    )
                if cand.image_key[:2] == key[:2] and cand.image_key != key:
                    raise NotFoundError(
                        f"{rel!r} changed on disk since candidate {cid!r} was made on it; click the object again"
                    )
                if cand.image_key != key:
                    raise AnnotationError(
                        f"candidate {cid!r} belongs to {cand.image_key[0]!r} frame {cand.image_key[1]}, "
                        f"not {rel!r} frame {view.frame}"
                    )
                items.append((cand.mask, cand))
            if mask is not None:
                items.append((runs_to_crop(mask, loaded.hw).tight(), None))
            anns = self._anns(key)
            plan: list[tuple[MaskCrop, Candidate | None, Annotation | None]] = []
            for m, cand in items:
                existing = None
                if cand is not None:
                    existing = next((a for a in anns if a.candidate_id == cand.id), None)
                if existing is None:
                    existing = next((a for a in anns if a.mask.iou(m) > 0.9), None)
                if (
                    existing is not None
                    and existing.kind != "detection"
                    and existing.label == label
                ):
                    continue  # already in the library with this label
                plan.append((m, cand, existing))
            if not plan:
                return {
                    "ids": [],
                    "already": len(items),
                    "label": label,
                    "library": self.library,
                    "annotations": [annotation_json(a, self._candidates) for a in anns],
                    "labels": self._labels(),
                }
            inst = Instances.from_crops([m for m, _, _ in plan], None, loaded.hw, labels=[label] * len(plan))
            # written to the library now, as `add` writes them: an object the library already holds
            # with this label on this image (an earlier session's accept: this session's annotations
            # start empty) is not added again. Judged here, and the rest added with again=True, so
            # that `ids` are this accept's own examples: undo deletes exactly these, never one the
            # library held before
            held = self.detector.repeated_examples(loaded, inst)
            fresh = [i for i, h in enumerate(held) if h is None]
            ids = self.detector.add_examples(loaded, inst[np.array(fresh, int)], again=True) if fresh else []
            made = iter(ids)
            example_ids = [h if h is not None else next(made) for h in held]
            before = [dataclasses.replace(a) for a in anns]
            kind = "negative" if label == NEGATIVE else "example"
            replaced: list[tuple[str, MaskCrop, str, list[str]]] = []
            for (m, cand, existing), ex_id, had in zip(plan, example_ids, held, strict=True):
                if had is None:
                    self.libraries.save_thumbnail(loaded.rgb, m, label, ex_id, self.library)
                if existing is None:
                    anns.append(
                        Annotation(
                            id=self._next_id("a"),
                            mask=m,
                            label=label,
                            kind=kind,
                            example_ids=[ex_id],
                            candidate_id=cand.id if cand else None,
                        )
                    )
                    continue
                if (
                    existing.example_ids
                ):  # relabelled: the old examples would contradict the new one
                    self.libraries.delete(self.library, existing.example_ids)
                    replaced.append(
                        (existing.id, existing.mask, existing.label, list(existing.example_ids))
                    )
                existing.label, existing.kind, existing.confidence = label, kind, None
                existing.example_ids = [ex_id]
            what = "negative" if label == NEGATIVE else repr(label)
            self._undo.append(
                Action(
                    f"{len(ids)} example(s) {what}"
                    + (f", {len(replaced)} relabelled" if replaced else ""),
                    self.library,
                    list(ids),
                    key,
                    before,
                    view=view,
                    replaced=replaced,
                )
            )
            del self._undo[:-200]
            return {
                "ids": list(ids),
                "already": len(held) - len(ids),  # in the library before: not added again
                "label": label,
                "library": self.library,
                "relabelled": len(replaced),
                "annotations": [annotation_json(a, self._candidates) for a in anns],
                "labels": self._labels(),
            }

    def undo(self) -> dict[str, Any]:
        """Take back the last accepted step: delete its examples, put back the examples it
        relabelled (embedded again from their masks), and restore the image's annotations."""
        with self.lock:
            if not self._undo:
                raise NotFoundError("nothing to undo")
            act = self._undo[-1]
            loaded = None
            if act.replaced and act.image_key is not None and act.view is not None:
                # the examples it relabelled are embedded again from their image: read it before
                # anything is deleted, and only the version of the file they were drawn on
                rel = act.image_key[0]
                try:
                    loaded, version = self.images.load_versioned(rel, act.view)
                except NotFoundError:
                    version = None
                if version != act.image_key[2]:
                    self._undo.pop()
                    raise NotFoundError(
                        f"{rel!r} changed on disk or was removed since the step {act.description!r}: the "
                        f"examples it relabelled cannot be put back from it, so the step is dropped and its "
                        f"examples stay in the library (delete them in the library panel); "
                        f"{len(self._undo)} undo step(s) left")
            try:  # a step that fails stays on the stack (a library in use elsewhere: try again) ...
                self.libraries.delete(act.library, act.example_ids)
            except LibraryNotFoundError:  # ... except where its library is gone: none of its steps can be undone
                gone = sum(a.library == act.library for a in self._undo)
                self._undo = [a for a in self._undo if a.library != act.library]
                self._annotations.pop(act.library, None)
                raise NotFoundError(
                    f"library {act.library!r} was deleted outside this session: its {gone} undo step(s) "
                    f"are dropped ({len(self._undo)} left)") from None
            self._undo.pop()
            restored: dict[str, list[str]] = {}
            if loaded is not None:
                det = self.libraries.detector_for(act.library)
                remap: dict[str, str] = {}
                for ann_id, m, old_label, old_ids in act.replaced:
                    inst = Instances.from_crops([m], None, loaded.hw, labels=[old_label])
                    new_ids = det.add_examples(loaded, inst, again=True)
                    self.libraries.save_thumbnail(loaded.rgb, m, old_label, new_ids[0], act.library)
                    restored[ann_id] = list(new_ids)
                    remap.update({old: new_ids[0] for old in old_ids})
                self._remap_ids(remap)
            if act.image_key is not None and act.before is not None:
                before = []
                for a in act.before:
                    if a.id in restored:
                        a.example_ids = restored[a.id]
                    elif a.example_ids:  # an example deleted since that step is not put back on the image
                        kept = [i for i in a.example_ids if i not in self._deleted]
                        if not kept:
                            continue
                        a.example_ids = kept
                    before.append(a)
                self._annotations.setdefault(act.library, {})[act.image_key] = before
            return {
                "undone": act.description,
                "library": act.library,
                "ids": act.example_ids,
                "restored": sum(len(v) for v in restored.values()),
                "remaining": len(self._undo),
            }

    def _remap_ids(self, remap: dict[str, str]) -> None:
        """Examples put back by an undo have new ids: older undo steps must delete those."""
        if not remap:
            return
        for act in self._undo:
            act.example_ids = list(dict.fromkeys(remap.get(i, i) for i in act.example_ids))
            act.replaced = [
                (a, m, lab, [remap.get(i, i) for i in ids]) for a, m, lab, ids in act.replaced
            ]
            for a in act.before or []:
                a.example_ids = [remap.get(i, i) for i in a.example_ids]

    def annotations(self, rel: str, view: View) -> dict[str, Any]:
        """The image's annotations in the current library (examples, negatives, detections)."""
        version = self.images.version(rel)
        with self.lock:
            anns = self._annotations.get(self.library, {}).get((rel, view.frame, version), [])
            return {
                "image": rel,
                "frame": view.frame,
                "library": self.library,
                "annotations": [annotation_json(a, self._candidates) for a in anns],
            }

    def status(self) -> dict[str, Any]:
        """Diagnostics: the last prefetch, the embedding cache, the undo depth, the stages used."""
        with self.lock:
            emb = self.libraries.embedders.get(getattr(self.detector.embedder, "id", ""))
            cache = (
                None
                if emb is None
                else {"hits": emb.hits, "misses": emb.misses, "size": len(emb._cache)}
            )
            return {
                "library": self.library,
                "prefetch": dict(self.prefetch_status),
                "embedding_cache": cache,
                "undo": len(self._undo),
                "choices": dict(self.detector.choices),
            }

    # -- library ------------------------------------------------------------------------
    def _labels(self) -> dict[str, int]:
        return self.libraries.labels(self.detector)

    def library_info(self) -> dict[str, Any]:
        """Libraries in the store; the current library's labels, counts and examples."""
        with self.lock:
            store = self.detector.store
            names = store.list_libraries()
            exists = self.library in names
            examples: list[dict[str, Any]] = []
            truncated = False
            meta = None
            if exists:
                meta = store.get_meta(self.library)
                examples, truncated = self.libraries.examples(
                    self.detector, self.images.relative, self.limits.max_listed_examples
                )
            labels = self._labels()
            return {
                "library": self.library,
                "libraries": sorted(set(names) | {self.library}),
                "exists": exists,
                "labels": [
                    {"label": k, "count": v, "color": list(_color(k))} for k, v in labels.items()
                ],
                "count": sum(labels.values()),
                "examples": examples,
                "truncated": truncated,
                "embedder": meta.embedder_id if meta else None,
                "fade": meta.fade if meta else None,
                "store": getattr(store, "backend", type(store).__name__),
                "undo": len(self._undo),
            }

    def delete_example(self, ex_id: str) -> dict[str, Any]:
        """Delete one example of the current library (and its mark on the image)."""
        if not isinstance(ex_id, str) or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", ex_id):
            raise AnnotationError(f"an example id is a UUID, got {short(ex_id)}")
        try:
            uuid.UUID(ex_id)
        except ValueError:
            raise NotFoundError(f"example {ex_id!r} is not in library {self.library!r} (example ids are UUIDs)") \
                from None
        with self.lock:
            if self.libraries.delete(self.library, [ex_id]) == 0:
                raise NotFoundError(f"example {ex_id!r} is not in library {self.library!r}")
            self._deleted.add(ex_id)
            for anns in self._annotations.get(self.library, {}).values():
                for a in list(anns):
                    if ex_id in a.example_ids:
                        a.example_ids = [i for i in a.example_ids if i != ex_id]
                        if not a.example_ids:
                            anns.remove(a)
            return {"deleted": ex_id, "labels": self._labels()}

    def switch_library(self, name: str) -> dict[str, Any]:
        """Make ``name`` the current library (it is created by the first accepted example)."""
        from sam_detect.errors import InvalidNameError
        from sam_detect.names import check_existing_library_name, refuse_reserved

        try:  # the name policy's one check, reserved names too (a 500 at the next request before)
            check_existing_library_name(name)
            with self.lock:
                if not self.detector.store.has_library(name):  # a library an older version made so is used
                    refuse_reserved(name)
        except InvalidNameError as e:
            raise AnnotationError(str(e)) from None
        with self.lock:
            before, self.detector = self.detector, self.libraries.detector_for(name)
            try:
                return self.library_info()
            except Exception:  # the page stays on its library (the switch answers an error): so does the session
                self.detector = before
                raise

    def example_thumbnail(self, ex_id: str) -> bytes:
        """The PNG thumbnail of an example of the current library."""
        if not isinstance(ex_id, str) or not re.fullmatch(r"[A-Za-z0-9-]{1,64}", ex_id):
            raise AnnotationError(f"an example id is a UUID, got {short(ex_id)}")
        return self.libraries.example_thumbnail(self.detector, ex_id)

    # -- export -------------------------------------------------------------------------
    def export(self, rel: str, view: View, fmt: str) -> tuple[bytes, str, str]:
        """The image's objects (examples and detections, negatives left out) as a file
        (:func:`~sam_detect.ui.records.export_file`). Returns ``(data, media type, file name)``."""
        check_export_format(fmt)
        with self.lock:
            loaded, version = self.images.load_versioned(rel, view)
            anns = [
                a
                for a in self._annotations.get(self.library, {}).get((rel, view.frame, version), [])
                if a.kind != "negative"
            ]
            if anns:
                inst = Instances.from_crops(
                    [a.mask for a in anns],
                    None,
                    loaded.hw,
                    labels=[a.label for a in anns],
                    label_confidences=[1.0 if a.confidence is None else a.confidence for a in anns],
                )
            else:
                inst = Instances.empty(loaded.hw)
            stem = Path(rel).stem + (f"_frame{view.frame}" if loaded.n_frames > 1 else "")
            if loaded.n_frames > 1:  # which frame of the stack, in the COCO image record as detect --frame writes it
                inst.metadata["frame"] = int(view.frame)
                if loaded.plane is not None:  # GeoJSON's plane by the stack's axes (z, t), as detect --frame writes it
                    inst.metadata["plane"] = loaded.plane
            classes: list[str] = []
            if fmt == "coco":  # every class of the library, numbered as detect --coco numbers them
                import contextlib

                from sam_detect.outputs import output_classes

                with contextlib.suppress(LibraryNotFoundError):  # nothing added yet: the image's labels alone
                    classes = output_classes(self.detector)
            return export_file(inst, fmt, stem, Path(rel).name, categories=classes)

def _color(label: str) -> tuple[int, int, int]:
    from sam_detect.outputs import label_color

    return label_color(label)


__all__ = ["AnnotationSession"]
