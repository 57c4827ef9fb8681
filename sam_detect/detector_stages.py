"""The stages a detector builds from its config, on first use: the store, the segmenter,
the embedder and the fade, and the crop settings (occupancy) they share; ``"auto"`` picks
and the library's recorded settings adopted (:func:`sam_detect.config.adopt_library_settings`).

:class:`DetectorStages` is a part of :class:`sam_detect.pipeline.SAMDetect`; it uses the
detector's ``config``, ``choices`` and the ``_store``, ``_segmenter``, ``_embedder`` and
``_fade`` its constructor sets.
"""

from __future__ import annotations

import logging
from typing import Any

from sam_detect.config import adopt_library_settings
from sam_detect.errors import LibraryNotFoundError

log = logging.getLogger("sam_detect")


def _is_torch_embedder(name: str) -> bool:
    return name in ("effnet", "views", "clip", "sam2")


class DetectorStages:
    """A detector's stages, built from its config on first use."""

    # -- stages -------------------------------------------------------------------------
    @property
    def store(self) -> Any:
        if self._store is None:
            from sam_detect.store import create_store

            opts = dict(self.config.store_options)  # no path: the store's own default folder
            self._store = create_store(self.config.store, **opts)
            where = opts.get("url") or opts.get("location") or opts.get("path") \
                or getattr(self._store, "path", None) or "memory"
            self.choices["store"] = f"{self._store.backend} ({where})"
        return self._store

    def _library_meta(self):
        try:
            return self.store.get_meta(self.config.library)
        except LibraryNotFoundError:
            return None

    def _auto_models(self) -> tuple[str, str, str]:
        try:
            from sam_detect.models import auto_models
        except ImportError:
            return "classical", "views", "SAM2/CLIP support is not installed"
        return auto_models()

    @property
    def segmenter(self) -> Any:
        if self._segmenter is None:
            from sam_detect.segment import create_segmenter

            name = self.config.segmenter
            reason = "chosen"
            if name == "auto":
                name, _, why = self._auto_models()
                reason = f"auto: {why}"
            opts = dict(self.config.segmenter_options)
            if name == "sam2":
                opts.setdefault("device", self.config.device)
            self._segmenter = create_segmenter(name, **opts)
            self.choices["segmenter"] = f"{self._segmenter.name} ({reason})"
            log.info("segmenter: %s", self.choices["segmenter"])
        return self._segmenter

    @property
    def embedder(self) -> Any:
        if self._embedder is None:
            from sam_detect.embed import create_embedder

            reason = "chosen"
            meta = self._library_meta() if self.config.embedder == "auto" else None  # read only when needed
            adopted = adopt_library_settings(meta, embedder=self.config.embedder,
                                             embedder_options=self.config.embedder_options)
            name, opts = adopted.embedder, adopted.embedder_options
            if "embedder" in adopted.adopted:
                reason = f"auto: library {self.config.library!r} was built with it"
            elif name is None:
                _, name, why = self._auto_models()
                reason = f"auto: {why}"
            if name == "sam2" and self.config.segmenter == "sam2":
                # image mode pools from the tiles the segmenter encodes: one scale policy
                for key in ("tile_size", "tile_overlap"):
                    if key in self.config.segmenter_options:
                        opts.setdefault(key, self.config.segmenter_options[key])
            if _is_torch_embedder(name):
                opts.setdefault("device", self.config.device)
                if self.config.batch_size:
                    opts.setdefault("batch_size", self.config.batch_size)
            self._embedder = create_embedder(name, **opts)
            self._embedder_options = opts
            self.choices["embedder"] = f"{self._embedder.id} ({reason}{_cpu_precision(self._embedder)})"
            log.info("embedder: %s", self.choices["embedder"])
        return self._embedder

    @property
    def fade(self) -> Any:
        if self._fade is None:
            from sam_detect.fade import create_fade

            meta = self._library_meta() if self.config.fade is None else None
            adopted = adopt_library_settings(meta, fade=self.config.fade, fade_options=self.config.fade_options)
            if "fade" in adopted.adopted:
                from sam_detect.fade import list_fades

                if adopted.fade not in list_fades():  # made with a fade object of the caller's own
                    # (list_fades registers the built-in fades first: a new process's first use of
                    # a fade is often this one)
                    from sam_detect.errors import SettingError

                    raise SettingError(
                        f"library {self.config.library!r} was built with the fade {adopted.fade!r}, an object of "
                        f"its maker's, not a registered fade ({', '.join(list_fades())}): give that object again "
                        "(SAMDetect(fade=...)), or use another library")
            self._fade = create_fade(adopted.fade, **adopted.fade_options)
        return self._fade

    def set_fade_strategy(self, fade: Any, **params: Any) -> None:
        """Use another fade: a registry name with parameters, or any object with ``apply``."""
        if isinstance(fade, str):
            from sam_detect.fade import create_fade

            fade = create_fade(fade, **params)
        elif not callable(getattr(fade, "apply", None)):
            raise TypeError(f"a fade needs an apply(image, mask, distance_map) method, got {type(fade).__name__}")
        self._fade = fade

    def _fade_params(self) -> dict[str, Any]:
        from sam_detect.fade.strategies import fade_params

        return fade_params(self.fade)

    @property
    def occupancy(self) -> float:
        """The occupancy in use: the config's, else the library's, else the default
        (``sam_detect.config.PARAMS``)."""
        if self.config.occupancy is not None:
            return float(self.config.occupancy)
        if getattr(self, "_occupancy", None) is None:
            self._occupancy = adopt_library_settings(self._library_meta()).occupancy
        return self._occupancy

    def _crop_params(self) -> dict[str, Any]:
        return {"occupancy": self.occupancy}


def _cpu_precision(embedder: Any) -> str:
    """``"; network in bf16 ..."`` where the embedder's network runs on a CPU under bf16
    autocast (its ``cpu_autocast`` and ``models.torch_utils.cpu_bf16``), else ``""``."""
    if not getattr(embedder, "cpu_autocast", False):
        return ""
    if getattr(getattr(embedder, "device", None), "type", None) != "cpu":
        return ""
    from sam_detect.models.torch_utils import CPU_BF16_ENV, cpu_bf16

    return f"; network in bf16 on this CPU, {CPU_BF16_ENV}=0 for float32" if cpu_bf16() else ""
