"""Background work for the annotation UI: when an image is opened, segment it and embed its
candidates (a few crops at a time, yielding to clicks between chunks), so that the first click
and the first detect on it find their work done.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sam_detect.embed.base import embeds_instances
from sam_detect.ui.images import View
from sam_detect.ui.libraries import CachingEmbedder

log = logging.getLogger("sam_detect.ui")

#: segmenters that keep their last image's segmentation, so a background run pays off
PREFETCH_SEGMENTERS = ("classical",)


class Prefetcher:
    """Prefetches images of ``session`` (an :class:`~sam_detect.ui.session.AnnotationSession`):
    its lock, current detector and image folder. One run at a time; a newer one stops the older."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.gen = 0
        self.thread: threading.Thread | None = None
        #: what the last prefetch did: {"image", "candidates", "embedded", "seconds", "done"}
        self.status: dict[str, Any] = {}

    def stop(self) -> None:
        """Stop a running prefetch at its next chunk and wait for it (30 s at most)."""
        self.gen += 1
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)

    def start(self, rel: str, view: View, chunk: int = 4) -> threading.Thread:
        """Segment ``rel`` and embed its candidates' crops in a background thread.

        Fills the segmenter's per-image cache and the :class:`CachingEmbedder`, so that a
        later click or detect on the image reuses the work. A newer prefetch (another image)
        or :meth:`close` stops this one at its next chunk. Returns the thread.
        """
        self.gen += 1
        gen = self.gen
        thread = threading.Thread(
            target=self._run,
            args=(rel, view, gen, chunk),
            name="sam-detect-ui-prefetch",
            daemon=True,
        )
        self.thread = thread
        thread.start()
        return thread

    def _run(self, rel: str, view: View, gen: int, chunk: int) -> None:
        session = self.session
        t0 = time.perf_counter()
        status: dict[str, Any] = {
            "image": rel,
            "frame": view.frame,
            "candidates": 0,
            "embedded": 0,
            "done": False,
        }
        try:
            with session.lock:
                if gen != self.gen:
                    return
                self.status = status
                det = session.detector
                if getattr(det.segmenter, "name", None) not in PREFETCH_SEGMENTERS:
                    # e.g. SAM2: its automatic masks are not cached, so a prefetch would only
                    # run them twice (and hold the models for a long time)
                    status["skipped"] = (
                        f"segmenter {getattr(det.segmenter, 'name', '?')!r} is not prefetched"
                    )
                    return
                loaded = session.load(rel, view)
                from sam_detect.segment.base import segment_with_profile

                inst = segment_with_profile(det.segmenter, loaded.rgb, det.profile)
                emb = det.embedder
            status["candidates"] = len(inst)
            if not isinstance(emb, CachingEmbedder) or embeds_instances(emb):
                return  # an embedder that works on the whole image: no crops to cache
            for s in range(0, len(inst), chunk):
                with session.lock:  # one chunk at a time: a click waits for one chunk at most
                    if gen != self.gen or det is not session.detector:
                        return
                    det.embed(loaded, inst[s : s + chunk])
                    status["embedded"] = min(len(inst), s + chunk)
            status["done"] = True
        except Exception as e:  # a prefetch is an optimisation: the real request reports errors
            status["error"] = f"{type(e).__name__}: {e}"
            log.debug("prefetch of %s failed: %s", rel, e)
        finally:
            status["seconds"] = round(time.perf_counter() - t0, 3)
