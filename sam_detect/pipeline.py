"""``SAMDetect``: propose, describe, decide.

The pipeline composes a segmenter, a fade strategy, an embedder and a store. Examples
and candidates go through the same crop, fade and embedder; the library's metadata
records those settings and every add and query is checked against them.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect._heavy import heavy
from sam_detect.config import DetectorConfig
from sam_detect.detector_stages import DetectorStages
from sam_detect.embed.base import embeds_instances
from sam_detect.errors import AnnotationError, LibraryError, SamDetectError
from sam_detect.instances import NEGATIVE, UNKNOWN, Instances, as_instances
from sam_detect.library_state import LibraryState
from sam_detect.store._common import portable_options

log = logging.getLogger("sam_detect")

#: an example is already in a library where one of the same label on the same image covers
#: it at this IoU or more (:meth:`SAMDetect.add_examples` does not add it again)
SAME_EXAMPLE = 0.9


#: ``detect(progress=True)`` shows its stages on an image of at least this many pixels (a
#: 2048² image: a second or more of work on two cores); a smaller one is done before a bar
#: would say anything
PROGRESS_PIXELS = 2048 * 2048


def _stages(pixels: int, progress: bool) -> Any:
    """A tqdm line over :meth:`SAMDetect.detect`'s four stages on stderr, or ``None``."""
    if not progress or pixels < PROGRESS_PIXELS:
        return None
    from tqdm.auto import tqdm

    # the stage and the time so far, no rate or time left: the stages take very different
    # times (the proposals most)
    return tqdm(total=len(_STAGES), desc=_stage_line(0), leave=False, bar_format="{desc} [{elapsed}]")


_STAGES = ("proposals", "descriptions", "search", "selection")


def _stage_line(k: int) -> str:
    return f"detecting: {_STAGES[k]} ({k + 1} of {len(_STAGES)} stages)"


def _stage_done(bar: Any, following: str | None) -> None:
    """One stage of ``bar`` done (nothing without a bar); ``following``: the next one's name."""
    if bar is None:
        return
    if following:
        bar.set_description_str(_stage_line(_STAGES.index(following)), refresh=False)
    bar.update()


class SAMDetect(DetectorStages, LibraryState):
    """Few-shot detector: add labelled examples, then detect similar objects.

    >>> det = SAMDetect(DetectorConfig(store="memory"))          # doctest: +SKIP
    >>> det.add_example("frame0.tif", box=(10, 20, 60, 70), label="cell")
    >>> found = det.detect("frame5.tif")                         # Instances with labels

    Stages may be passed as objects (``segmenter=``, ``embedder=``, ``store=``, ``fade=``)
    or by registry name; otherwise they are built from the config on first use. Other
    keywords override the config's fields (``SAMDetect(store="memory", threshold=0.6)``).
    """

    #: an ``add`` measures its image's earlier examples again with its own (one batch) while
    #: the image holds at most this many; past that they count in the scale as they were
    #: measured, and the ``add`` measures its own only: one more example moves the medians of
    #: so many little, and measuring them all again took a click 1.7 s at 120 (0.4 s alone;
    #: a latency bound, not chosen on any figure of accuracy)
    REMEASURE_UP_TO = 50

    def __init__(
        self,
        config: DetectorConfig | None = None,
        *,
        segmenter: Any = None,
        embedder: Any = None,
        store: Any = None,
        fade: Any = None,
        **overrides: Any,
    ) -> None:
        if config is not None and not isinstance(config, DetectorConfig):
            from sam_detect.errors import SettingError

            hint = f" (a library name? SAMDetect(library={config!r}))" if isinstance(config, str) else ""
            raise SettingError(f"SAMDetect's first argument is a DetectorConfig, got {type(config).__name__} "
                               f"{config!r:.60}{hint}; settings may also be given as keywords, "
                               "SAMDetect(store='memory', library='nuclei')")
        # A stage given by name is a config setting; given as an object, it is used as is.
        for key, value in (("segmenter", segmenter), ("embedder", embedder), ("store", store), ("fade", fade)):
            if isinstance(value, str):
                overrides[key] = value
        segmenter, embedder, store, fade = (
            None if isinstance(v, str) else v for v in (segmenter, embedder, store, fade)
        )
        if overrides:
            unknown = set(overrides) - {f.name for f in dataclasses.fields(DetectorConfig)}
            if unknown:
                from sam_detect.errors import UnknownOptionError  # a TypeError too, as before

                raise UnknownOptionError(f"unknown SAMDetect options: {sorted(unknown)}; valid: "
                                         f"{', '.join(f.name for f in dataclasses.fields(DetectorConfig))}")
            # without a config the settings given are the config's own: a store given by name
            # is not the environment's, whose memory store opens the library folder's file
            config = DetectorConfig(**overrides) if config is None else dataclasses.replace(config, **overrides)
        self.config = config or DetectorConfig()
        self._segmenter = segmenter
        self._embedder = embedder
        self._store = store
        self._fade = fade
        self._owns_store = store is None
        #: metadata derived from the examples, by key: (library size when read, value)
        self._cache: dict[str, tuple[int, Any]] = {}
        #: the last image's proposals for a click that follows the examples: (key, value)
        self._prompt_proposals: tuple[tuple, Any] | None = None
        #: why each stage was chosen, e.g. {"segmenter": "classical (auto: no SAM2 weights ...)"}
        self.choices: dict[str, str] = {}
        #: keep what each ``detect`` dropped before the vote, and why (``_last_dropped``:
        #: ``eval``'s error breakdown reads it; off elsewhere, where nothing reads it)
        self.keep_dropped = False
        self._last_dropped: list[tuple[Instances, np.ndarray]] = []
        if segmenter is not None:
            self.choices["segmenter"] = f"{getattr(segmenter, 'name', type(segmenter).__name__)} (given)"
        if embedder is not None:
            self.choices["embedder"] = f"{getattr(embedder, 'name', type(embedder).__name__)} (given)"

    # -- library ------------------------------------------------------------------------
    def open_library(self) -> bool:
        """Open the configured library now, if it exists (its lock, a cheap integrity
        check): a library another process holds, or a damaged one, fails here with one
        line, before any model loads. Returns whether the library exists."""
        if self._library_meta() is None:
            return False
        self.store.labels(self.config.library)
        return True

    def _model_identity(self) -> dict[str, Any] | None:
        """The embedder's model identity (model, checkpoint sha256, input size) as recorded in
        a library, or ``None`` for an embedder without downloadable weights."""
        ident = getattr(self.embedder, "model_identity", None)
        return ident.to_dict() if ident is not None else None

    def check_library(self, create: bool) -> None:
        """Check the embedder, fade and crop settings against the library's (creating it
        when ``create`` and it does not exist).

        Raises:
            LibraryNotFoundError: no such library and ``create`` is false.
            EmbedderMismatchError: other settings, or another model identity (model,
                checkpoint sha256, input size) than the library was made with.
        """
        from sam_detect.store.base import MODEL_KEY, LibraryMeta

        self.open_library()
        emb = self.embedder
        ident = self._model_identity()
        meta = self._library_meta()
        if meta is None and not create:
            # the store's own error: where it looked, the libraries there, or "deleted by another
            # process" (one wording of a missing library, as `library show` and `delete` give)
            meta = self.store.get_meta(self.config.library)
        if meta is None:
            meta = LibraryMeta(
                name=self.config.library,
                embedder_id=emb.id,
                dim=int(emb.dim),
                fade=self._fade_params(),
                crop=self._crop_params(),
                extra={
                    "embedder": {"name": emb.name, "options": portable_options(getattr(self, "_embedder_options", {}))},
                    **({MODEL_KEY: ident} if ident else {}),
                },
            )
            from sam_detect.store import journal

            # provisional until the first add commits: a crash before leaves no empty library
            self.store.create_library(journal.provisional(meta))
            return
        meta.check_compatible(emb.id, int(emb.dim), fade=self._fade_params(), crop=self._crop_params(), model=ident)
        if create and ident and meta.model is None:
            # a library made before identities were recorded, and its embedder id (which holds
            # a fingerprint of the weights) matches: record the identity with this add
            self.store.update_extra(self.config.library, MODEL_KEY, ident)

    # -- embedding ----------------------------------------------------------------------
    def embed(self, image: Any, instances: Instances, *, typical_area: float | None = None) -> np.ndarray:
        """The vectors ``detect`` and ``add_examples`` give ``instances`` of ``image``:
        ``(N, D)`` float32, L2-normalised per view, through this detector's crop, fade and
        embedder (or the embedder's own per-instance path). ``typical_area`` (pixels) goes
        to embedders that scale their view by the objects' size."""
        rgb = self._load(image).rgb
        return self._embed(rgb, as_instances(instances, rgb.shape[:2]), {}, typical_area=typical_area)

    def _embed(
        self, rgb: np.ndarray, instances: Instances, timings: dict[str, float], typical_area: float | None = None,
        prefetched: Any = None,
    ) -> np.ndarray:
        emb = self.embedder
        if len(instances) == 0:
            return np.zeros((0, int(emb.dim)), dtype=np.float32)
        t = time.perf_counter()
        if embeds_instances(emb):
            options: dict[str, Any] = {"typical_area": typical_area} if getattr(emb, "scales_by_area", False) else {}
            if prefetched is not None:  # only an embedder with ``prefetch`` made it
                options["prefetched"] = prefetched
            vectors = emb.embed_instances(rgb, instances, **options)
            timings["embed"] = time.perf_counter() - t
            return np.asarray(vectors, dtype=np.float32)
        from sam_detect.fade.crops import make_context_crops

        crops = make_context_crops(rgb, instances, occupancy=self.occupancy, fade=self.fade)
        t1 = time.perf_counter()
        timings["crop"] = t1 - t
        images = [c.image for c in crops]
        if getattr(emb, "uses_masks", False):
            vectors = emb.embed(images, masks=[c.mask for c in crops])
        else:
            vectors = emb.embed(images)
        timings["embed"] = time.perf_counter() - t1
        return np.asarray(vectors, dtype=np.float32)

    def get_crop(self, image: Any, mask: np.ndarray) -> np.ndarray:
        """The faded context crop ``(s, s, 3)`` uint8 that the embedder sees for ``mask``."""
        from sam_detect.fade.crops import context_crop

        rgb = self._load(image).rgb
        mask = self._check_mask(mask, rgb.shape[:2])
        return context_crop(rgb, mask, occupancy=self.occupancy, fade=self.fade).image

    # -- adding examples ----------------------------------------------------------------
    @staticmethod
    def _load(image: Any):
        from sam_detect.io.images import as_loaded_image

        return as_loaded_image(image)

    @staticmethod
    def _check_label(label: Any) -> str:
        from sam_detect.names import check_label

        return check_label(label)  # the name policy: no control characters, not "unknown"

    @staticmethod
    def _check_mask(mask: Any, image_hw: tuple[int, int]) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.ndim == 3 and mask.shape[-1] in (3, 4):
            mask = mask[..., 0]
        if mask.shape != tuple(image_hw):
            raise AnnotationError(f"mask shape {mask.shape} does not match the image's {tuple(image_hw)}")
        if mask.dtype.kind in "fc" and not np.isfinite(mask).all():  # NaN is non-zero: it read as "the object"
            raise AnnotationError("the mask holds NaN or infinite values: a mask marks the object with non-zero "
                                  "pixels on a zero background (np.nan_to_num(mask), or mask > 0)")
        mask = mask.astype(bool)
        if not mask.any():
            raise AnnotationError("the mask is empty (zero area)")
        return mask

    def prompt_to_instances(
        self,
        image: Any,
        *,
        mask: np.ndarray | None = None,
        box: Sequence[float] | None = None,
        point: Sequence[float] | None = None,
        polygon: Any = None,
        label: str | None = None,
    ) -> Instances:
        """Turn exactly one of mask/box/point/polygon into one instance on ``image``.

        ``label``: the class the object is meant as. A point or box on an image where the
        library has examples of that class may take the candidate there that ``detect``
        would propose for the class and that fits its examples best
        (:meth:`_prompt_from_examples`); without examples, the segmenter's own prompt."""
        from sam_detect.masks import (
            polygons_to_mask,
            refuse_polygon_outside,
            validate_box,
            validate_point,
        )

        loaded = self._load(image)
        hw = loaded.rgb.shape[:2]
        given = [k for k, v in {"mask": mask, "box": box, "point": point, "polygon": polygon}.items() if v is not None]
        if len(given) != 1:
            raise AnnotationError(f"give exactly one of mask, box, point or polygon (got {given or 'none'})")
        if mask is not None:
            mask = self._check_mask(mask, hw)
            if mask.all():  # an example is an object on its ground, not the whole frame
                raise AnnotationError("the mask covers the whole image: a mask marks the object with non-zero pixels "
                                      "on a zero background")
            if ground_like(mask):
                raise AnnotationError(
                    f"the mask covers {mask.mean():.0%} of the image and reaches all four of its edges: that is the "
                    "ground, not an object (an inverted mask, or a label image's value at a background pixel?); "
                    "a mask marks the object with non-zero pixels on a zero background")
            return Instances(masks=mask[None])
        if polygon is not None:
            drawn = polygons_to_mask(polygon, hw)
            if not drawn.any():
                refuse_polygon_outside(polygon, hw)  # else a shape under a pixel: "empty (zero area)"
            return Instances(masks=self._check_mask(drawn, hw)[None])
        if box is not None:
            b = validate_box(box, hw)
            found = self._prompt_from_examples(loaded.rgb, label, self.segmenter.prompt(loaded.rgb, box=b), box=b)
            if len(found) == 0:
                raise AnnotationError(f"no object found in box {','.join(f'{v:g}' for v in b)}")
            return found[:1]
        p = validate_point(point, hw)
        own = self.segmenter.prompt(loaded.rgb, point=p)
        found = self._prompt_from_examples(loaded.rgb, label, own, point=p)
        if len(found) == 0:
            why = own.metadata.get("why")
            raise AnnotationError(f"no object found at point {p[0]:g},{p[1]:g}" + (f": {why}" if why else "")
                                  + "; a box drawn round the object gives the segmenter its extent")
        return found[:1]

    def _prompt_from_examples(self, rgb: np.ndarray, label: str | None, own_prompt: Instances, *,
                              point: Sequence[float] | None = None, box: Sequence[float] | None = None) -> Instances:
        """What a click at ``point`` (XY) or a box ``box`` (XYXY) on ``rgb`` means for
        ``label`` (:func:`sam_detect.select.choose_prompt`), among the segmenter's own answer
        ``own_prompt`` and what the library's profile proposes for ``label`` as ``detect``
        proposes it; ``own_prompt`` as it is where there is no profile of ``label`` or the
        segmenter does not propose from one."""
        label = label.strip() if isinstance(label, str) else None  # as the label policy stores it
        profile = self.profile if label not in (None, NEGATIVE) and self._own_segmenter() is not None else None
        entry = ((profile or {}).get("classes") or {}).get(label)
        if entry is None:
            return own_prompt
        from sam_detect.profile import at_scale, follows_ground, ground_colour, size_filter
        from sam_detect.segment.base import segment_with_profile
        from sam_detect.select import choose_prompt
        from sam_detect.unlabelled import image_key

        # prompts follow one another on one image: its proposals are made once per label,
        # library size and region (0.22 s a HeLa frame, against 2 ms for the segmenter's
        # cached answer); on a large image only the region around the prompt is proposed
        region = prompt_region(rgb.shape[:2], point=point, box=box)
        key = (image_key(rgb), label, self.store.count(self.config.library), region)
        if self._prompt_proposals is not None and self._prompt_proposals[0] == key:
            candidates, own = self._prompt_proposals[1]
        else:
            x0, y0, x1, y1 = region
            own = {**profile, "classes": {label: entry}}
            if region != (0, 0, rgb.shape[1], rgb.shape[0]) and "grey_levels" in entry:
                from sam_detect.profile import grey_levels

                # the region's exposure is the whole image's (profile.grey_ratio, level_gain)
                own["image_grey_levels"] = grey_levels(rgb)
            if region != (0, 0, rgb.shape[1], rgb.shape[0]) and follows_ground(entry):
                # and so is its ground (profile.ground_shift)
                own["image_ground"] = {label: ground_colour(rgb, entry["direction"])}
            candidates = segment_with_profile(self.segmenter, rgb[y0:y1, x0:x1], own)
            own = at_scale(own, candidates.metadata.get("size_shift") or {})
            candidates, _ = size_filter(candidates, own, pale=False, tiny=False)  # the click says it is one
            candidates.data.pop("below_floor", None)  # detect's note only: prompts' answers merge as one
            if region != (0, 0, rgb.shape[1], rgb.shape[0]):  # objects the region cuts are left out
                from sam_detect.segment.tiling import cut_by_window

                candidates = candidates.placed(x0, y0, rgb.shape[:2])
                candidates = candidates[np.array([not cut_by_window(b, region, rgb.shape[:2])
                                                  for b in candidates.boxes], bool)]
            self._prompt_proposals = (key, (candidates, own))
        found = choose_prompt(own_prompt, candidates, label, own, point=point, box=box)
        if found is not own_prompt:
            found.metadata["segmenter"] = self.segmenter.name
        return found

    def add_example(
        self,
        image: Any,
        *,
        label: str,
        mask: np.ndarray | None = None,
        box: Sequence[float] | None = None,
        point: Sequence[float] | None = None,
        polygon: Any = None,
    ) -> list[str]:
        """Add one labelled example given by exactly one of:

        ``mask`` ``(H, W)`` bool; ``box`` XYXY pixels or ``point`` XY pixels (turned into a
        mask by the segmenter); ``polygon`` ``(K, 2)`` XY pixels. Use ``label="__negative__"``
        for a look-alike that must not be detected. Returns a list of one id, the example's
        (the stored one's where the library holds this object already: :meth:`add_examples`).
        """
        label = self._check_label(label)
        loaded = self._load(image)
        inst = self.prompt_to_instances(loaded, mask=mask, box=box, point=point, polygon=polygon, label=label)
        inst.labels[:] = [label]
        if mask is not None:  # a label image given as the mask: one example of every object in it
            from sam_detect.masks import many_in_mask

            if (what := many_in_mask(mask, inst.mask(0))) is not None:
                log.warning("the mask %s, added as ONE example; add_examples_from_annotations(image, label_image, "
                            "label=...) adds each object as an example", what)
        return self.add_examples(loaded, inst)

    @heavy
    def add_examples(
        self,
        image: Any,
        instances: Instances | np.ndarray,
        labels: str | Sequence[str] | None = None,
        *,
        progress: bool = False,
        again: bool = False,
        annotation: Instances | None = None,
    ) -> list[str]:
        """Add every instance of ``image`` as an example (labels from ``labels`` or ``instances.labels``;
        one string labels every instance); ``instances`` may be masks, ``(H, W)`` or ``(N, H, W)``
        bool (a label image given as one ``(H, W)`` mask is one example, with a warning naming
        :meth:`add_examples_from_annotations`).

        All-or-nothing: every crop is embedded before anything is written, and the store
        adds the batch atomically.

        An object the library already holds as an example of the same label on this very
        image (masks at IoU >= ``SAME_EXAMPLE``: an ``add`` run twice, an object added again
        by a box) is not added again: a warning says how many, and its place in the returned
        ids holds the stored example's id. Returns one id per instance. ``again=True`` adds
        every instance, repeats too (the returned ids are then all new ones, as the browser
        UI's undo needs).

        ``annotation``: the image's whole annotation where ``instances`` are some of its
        objects (a ``--limit``, a protocol's draw); default ``instances``. It is read for
        whether it leaves out the objects the image border cuts
        (:func:`sam_detect.unlabelled.border_record`): where the library's annotations do,
        ``detect`` leaves them out too (``DetectorConfig.drop_border``).
        """
        loaded = self._load(image)
        given = instances
        # masks as an (H, W) or (N, H, W) array, as detect and embed take them (an AttributeError before)
        instances = as_instances(instances, loaded.rgb.shape[:2])
        if not isinstance(given, Instances) and np.ndim(given) == 2 and len(instances) == 1:
            from sam_detect.masks import many_in_mask

            if (what := many_in_mask(given, instances.mask(0))) is not None:  # as add_example(mask=) says
                log.warning("the mask %s, added as ONE example; add_examples_from_annotations(image, label_image, "
                            "label=...) adds each object as an example", what)
        if len(instances) == 0:
            raise AnnotationError("no examples to add (the annotation holds no objects)")
        if not np.ptp(loaded.rgb):  # detect says of such an image that it holds no object to find
            raise AnnotationError("the image holds one value everywhere (a blank frame, or all NaN): an example "
                                  "there shows nothing of its object")
        if instances.image_hw != loaded.rgb.shape[:2]:
            raise AnnotationError(
                f"annotation size {instances.image_hw} does not match the image's {loaded.rgb.shape[:2]}"
            )
        if annotation is not None and annotation.image_hw != instances.image_hw:
            raise AnnotationError(f"the whole annotation's size {annotation.image_hw} does not match the "
                                  f"examples' {instances.image_hw}")
        labels = self._labels_of(instances, labels)
        areas = instances.areas
        empty = np.flatnonzero(areas == 0)
        if empty.size:
            raise AnnotationError(f"annotation {int(empty[0])} has zero area")
        regions = not_objects(instances)
        if regions:
            i, why = next(iter(regions.items()))
            raise AnnotationError(f"annotation {i} {why}: an example is one object (leave it out; the command "
                                  "line's add skips such regions with a warning)")
        existed = self._library_meta() is not None
        self.check_library(create=True)
        repeats, relabelled = self._repeated_examples(loaded.rgb, instances, labels) if existed and not again \
            else ([None] * len(instances), [])
        new = [i for i, r in enumerate(repeats) if r is None]
        if len(new) < len(instances):
            log.warning("%d of %d example(s) already in library '%s' (the same object, label and image): "
                        "not added again", len(instances) - len(new), len(instances), self.config.library)
        if relabelled:  # contradictory examples: the user may mean the new label to replace the old
            from sam_detect.names import display_label

            shown = ", ".join(f"{i} ({display_label(lab)})" for i, lab in relabelled[:3]) + (
                ", ..." if len(relabelled) > 3 else "")
            log.warning("%d example(s) repeat objects library '%s' holds on this image under another label, "
                        "both kept: delete the old ones if the new label is right (sam-detect library delete "
                        "%s --id ID): %s", len(relabelled), self.config.library, self.config.library, shown)
        if not new:
            return [str(r) for r in repeats]
        try:
            from sam_detect.unlabelled import border_record

            border = border_record(instances if annotation is None else annotation)
            ids = self._add_examples(loaded, instances[np.array(new)], [labels[i] for i in new], areas[new], progress,
                                     border)
        except BaseException:
            if not existed:  # nothing was added: the library this call made goes again
                import contextlib

                with contextlib.suppress(Exception):
                    self.store.delete_library(self.config.library)
            raise
        made = dict(zip(new, ids, strict=True))
        return [made[i] if r is None else str(r) for i, r in enumerate(repeats)]

    def _labels_of(self, instances: Instances, labels: str | Sequence[str] | None) -> list[str]:
        """One checked label per instance: ``labels`` (one string labels every instance; its
        letters were taken as N labels) or ``instances.labels``; an :class:`AnnotationError`
        where their count differs (an IndexError, or the rest ignored, before) or one is missing."""
        if isinstance(labels, str):
            labels = [labels] * len(instances)
        labels = list(labels) if labels is not None else list(instances.labels)
        if len(labels) != len(instances):
            raise AnnotationError(f"need {len(instances)} labels, got {len(labels)}")
        if any(lab is None for lab in labels):
            raise AnnotationError("some annotations carry no label; pass a label")
        return [self._check_label(lab) for lab in labels]

    def repeated_examples(self, image: Any, instances: Instances | np.ndarray,
                          labels: str | Sequence[str] | None = None) -> list[str | None]:
        """Per instance of ``image``, the id of the library's example it repeats (the same label
        on this image, masks at IoU >= ``SAME_EXAMPLE``: what :meth:`add_examples` does not add
        again), else ``None``. For a caller that adds the rest with ``again=True`` and must
        know which ids are its own: the browser UI, whose undo deletes exactly those."""
        loaded = self._load(image)
        instances = as_instances(instances, loaded.rgb.shape[:2])
        labels = self._labels_of(instances, labels)
        if not len(instances) or self._library_meta() is None:  # a library not made yet holds nothing
            return [None] * len(instances)
        return self._repeated_examples(loaded.rgb, instances, labels)[0]

    def _repeated_examples(self, rgb: np.ndarray, instances: Instances,
                           labels: list[str]) -> tuple[list[str | None], list[tuple[str, str]]]:
        """Per new example, the id of the library's example of the same label on this image
        (``rgb``) that it repeats (masks at IoU >= ``SAME_EXAMPLE``), else ``None``; and the
        ``(id, label)`` of stored examples that new ones repeat under another label."""
        from sam_detect.masks import crop_intersections

        # every stored example, an object's earlier labels too (coin -> penny -> coin: the first
        # coin is still there, and the third add repeats it)
        stored = self._examples_of_image(rgb, every=True)
        out: list[str | None] = [None] * len(instances)
        if stored is None or not len(stored):
            return out, []
        ii, jj, inter = crop_intersections(instances.crops, stored.crops)
        a, b = instances.areas.astype(np.float64), stored.areas.astype(np.float64)
        iou = inter / np.maximum(a[ii] + b[jj] - inter, 1.0)
        other: dict[str, tuple[str, int]] = {}
        for i, j, v in zip(ii.tolist(), jj.tolist(), iou.tolist(), strict=True):
            if v < SAME_EXAMPLE:
                continue
            if str(stored.labels[j]) == labels[i]:
                out[i] = out[i] or str(stored.data["example_id"][j])
            else:
                other[str(stored.data["example_id"][j])] = (str(stored.labels[j]), i)
        same = set(out)
        # only a new example's: one not added again (it repeats an example of its own label) keeps
        # both labels as they were, and was said to be "both kept" beside "added 0 example(s)"
        return out, [(k, lab) for k, (lab, i) in other.items() if k not in same and out[i] is None]

    def _add_examples(self, loaded: Any, instances: Instances, labels: list[str], areas: np.ndarray,
                      progress: bool, border: dict | None = None) -> list[str]:
        from sam_detect.store import journal

        emb = self.embedder
        # a dense embedder sees the whole image once: one call, at one scale
        chunk = len(instances) if embeds_instances(emb) else (self.config.batch_size or 32)
        starts = range(0, len(instances), chunk)
        if progress and len(starts) > 1:
            from tqdm.auto import tqdm

            starts = tqdm(starts, desc="embedding examples", unit="batch")
        decision = self.decision
        typical = (decision or {}).get("typical_area") or float(np.median(areas))
        vectors = np.concatenate(
            [self._embed(loaded.rgb, instances[s : s + chunk], {}, typical_area=typical) for s in starts]
        )
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        source = str(Path(loaded.path).resolve()) if loaded.path else None  # absolute, as the UI: found from any folder
        from tqdm.auto import tqdm

        from sam_detect.masks import crop_to_rle
        from sam_detect.profile import describe_examples

        # measuring the examples takes 1-10 s (large objects on a small image take longest:
        # docs/performance.md, session 33), so a progress bar says what is being done
        steps = tqdm(total=2, desc="measuring examples", unit="step", leave=False, disable=not progress,
                     postfix="the proposal settings")
        # what the profile is rebuilt from after any add or delete, without the images. The
        # library's earlier examples of this image are measured again with these, as one
        # batch: their settings' levels are fractions of the batch's contrast, and examples
        # clicked one at a time had each been measured at its own (bright and faint nuclei
        # clicked in turn then proposed the bright ones only; docs/performance.md, session 88)
        same = self._examples_of_image(loaded.rgb, every=True)
        if same is not None and len(same) > self.REMEASURE_UP_TO:
            # many already: they count in the scale as measured, and only these are measured
            ids_before = {str(i) for i in same.data["example_id"]}
            stored = {str(i): (pay or {}).get("shape") for batch, _, _, pays in self.store.iter_examples(self.config.library)
                      for i, pay in zip(batch, pays, strict=True) if str(i) in ids_before}
            shapes = describe_examples(loaded.rgb, instances, labels, own=self._own_segmenter(), beside=(
                same, [str(lab) for lab in same.labels], [stored.get(str(i)) for i in same.data["example_id"]]))
            again = {}
        else:
            shapes, again = self._measured_with(loaded.rgb, same, instances, labels)
        steps.set_postfix_str("the image's other candidates", refresh=False)
        steps.update()
        # the example image's other candidates: what it shows that is not an example (unlabelled)
        from sam_detect.unlabelled import image_key

        key = image_key(loaded.rgb)
        unlabelled, joint_rows = self._unlabelled_rows(loaded.rgb, instances, labels, shapes, key, again)
        steps.update()
        steps.close()
        measured_at = time.time_ns()

        # The mask travels with the example so a library can be exported with crops and re-embedded.
        payloads = []
        reading = getattr(loaded, "reading", None)  # a multi-channel image's channels, as read
        for i in range(len(instances)):
            crop, (rows, cols) = instances.mask_crop(i)
            payloads.append(
                {"source": source, "box": [float(v) for v in instances.boxes[i]], "area": int(areas[i]),
                 "added": now, "mask_rle": crop_to_rle(crop, (cols.start, rows.start), instances.image_hw),
                 "shape": shapes[i], "image_key": key,
                 "embed_area": typical,  # the scale its vector was made at (library_state: typical_area)
                 "added_ns": measured_at + i}  # the order examples were added in, to the example
            )
            if unlabelled is not None:
                payloads[-1]["unlabelled"] = unlabelled[i]
                payloads[-1]["unlabelled_at"] = measured_at
            if joint_rows is not None:
                payloads[-1]["unlabelled_joint"] = joint_rows[i]
            if reading is not None:
                payloads[-1]["reading"] = reading
            if border is not None:  # what the image's annotation does at the border (unlabelled.border_convention)
                payloads[-1]["border"] = border
            if getattr(loaded, "frame", None) is not None:  # a stack's frame: export --crops and
                payloads[-1]["frame"] = int(loaded.frame)  # reembed cut the crop from it again
        # journaled: a kill at any moment leaves all of these examples or none (store.journal)
        ids = journal.add(self.store, self.config.library, vectors, labels, payloads)
        try:
            if again:  # after the add: a failed add leaves the earlier examples as they were
                try:
                    self.store.update_payloads(self.config.library, {i: {"shape": s} for i, s in again.items()})
                except LibraryError as e:  # the examples are stored: the next add of the image measures them again
                    log.warning("the %d example(s) added are stored, but the image's earlier examples were not "
                                "measured again with them: %s", len(ids), e)
            self.refresh_profile()
        except KeyboardInterrupt:  # the examples are stored: "Aborted!" alone said they were not
            log.warning("interrupted after the %d example(s) were stored, before the library's settings were "
                        "rebuilt: the next use of library %r rebuilds them", len(ids), self.config.library)
            raise
        return ids

    def _measured_with(self, rgb: np.ndarray, same: Instances | None, instances: Instances | None = None,
                       labels: Sequence[str] = ()) -> tuple[list[dict], dict[str, dict]]:
        """``(shapes of instances, {id: shape} of same)``: ``instances`` (labels ``labels``) and
        the library's examples ``same`` of image ``rgb`` (:meth:`_examples_of_image`, the
        latest first) measured as one batch, the earliest first as one ``add`` would hold them."""
        from sam_detect.profile import describe_examples

        new = [] if instances is None else list(instances.crops)
        if same is None or not len(same):
            return (describe_examples(rgb, instances, list(labels), own=self._own_segmenter()) if new else []), {}
        same = same[np.arange(len(same))[::-1]]
        together = Instances.from_crops(list(same.crops) + new, image_hw=rgb.shape[:2])
        measured = describe_examples(rgb, together, [str(lab) for lab in same.labels] + list(labels),
                                     own=self._own_segmenter())
        return measured[len(same):], {str(i): sh for i, sh in zip(same.data["example_id"], measured[: len(same)],
                                                                   strict=True)}

    def measure_again(self, image_keys: Iterable[str]) -> int:
        """Measure the library's examples of these images (``image_key``) again, each image's
        as one ``add`` of them all would (:meth:`add_examples` measures an image's earlier
        examples with every later one): after a delete, the rest are measured without the
        deleted ones again, as if those had never been added (an undone click left its
        neighbours measured with it: another profile, another count). An image no longer at
        its source path with the same pixels is left as it is. Returns how many examples
        were measured; the profile is rebuilt by the caller (:meth:`refresh_profile`)."""
        from sam_detect.store.reembed import source_of

        keys = {image_keys} if isinstance(image_keys, str) else set(image_keys)  # one key, not its letters
        if not keys or not self.store.has_library(self.config.library):
            return 0
        sources: dict[str, dict] = {}  # one example's payload per image: where to read the image
        for _, _, _, pays in self.store.iter_examples(self.config.library):
            for pay in pays:
                if (pay or {}).get("image_key") in keys and pay.get("mask_rle") and pay.get("source"):
                    sources.setdefault(pay["image_key"], pay)
        done, was = 0, getattr(self, "_rebuilding", False)
        # part of the rebuild after a delete: the library's derived state, one delete behind,
        # is not to be rebuilt on the way ("stopped before they were rebuilt: rebuilt now", said
        # of every delete) -- its record of the examples' images still holds the ones left
        self._rebuilding = True
        try:
            for pay in sources.values():
                found = source_of(pay)  # the image as add read it, its pixels checked against its key
                if found is None:
                    continue
                _, again = self._measured_with(found[1], self._examples_of_image(found[1], every=True))
                done += self.store.update_payloads(self.config.library, {i: {"shape": sh} for i, sh in again.items()})
        finally:
            self._rebuilding = was
        return done

    def add_examples_from_annotations(
        self,
        image: Any,
        annotations: Any,
        *,
        label: str | None = None,
        frame: int | str | None = None,
        progress: bool = False,
    ) -> list[str]:
        """Add many examples at once.

        ``annotations``: an ``Instances`` (labels used unless ``label`` is given), a label
        image ``(H, W)`` int (0 = background; needs ``label``) or one drawn in flat colours
        on black, or a path to a label image, COCO, labelme, GeoJSON, ``.npz`` or polygon
        file. A file of several images gives the image's own: ``frame`` (a stack's frame
        index, a COCO ``file_name`` or id), else the frame ``image`` was read from, else the
        entry named as ``image``'s file is (as ``sam-detect add --annotations`` does).
        """
        loaded = self._load(image)
        at = frame if frame is not None else getattr(loaded, "frame", None)
        inst = self.annotations_to_instances(annotations, loaded.rgb.shape[:2], image=at,
                                             name=getattr(loaded, "path", None))
        from sam_detect.formats.labelme import check_drawn_on

        check_drawn_on(inst, loaded.rgb, str(annotations) if isinstance(annotations, (str, Path)) else "the annotations")
        labels = [self._check_label(label)] * len(inst) if label is not None else None
        return self.add_examples(loaded, inst, labels, progress=progress)

    @staticmethod
    def annotations_to_instances(annotations: Any, image_hw: tuple[int, int], *, image: int | str | None = None,
                                 name: str | None = None) -> Instances:
        """:meth:`add_examples_from_annotations`'s reading of ``annotations`` (``image``, ``name``:
        which entry of a file of several images, as :func:`sam_detect.formats.load_annotations`)."""
        if isinstance(annotations, Instances):
            return annotations
        if isinstance(annotations, (str, Path)):
            from sam_detect.formats import load_annotations

            return load_annotations(annotations, image_shape=image_hw, image=image, name=name)
        lab = np.asarray(annotations)
        if lab.ndim == 3 and lab.shape[:2] == tuple(image_hw) and lab.shape[2] in (3, 4):
            from sam_detect.formats.label_image import colour_coded_ids

            ids = colour_coded_ids(lab, "the label image")  # objects drawn in flat colours on black
            if ids is None:
                raise AnnotationError(f"the label array {lab.shape} is a colour image, not objects drawn in "
                                      "flat colours on black; give one integer id per pixel (0 = background)")
            lab = ids
        if lab.shape != tuple(image_hw):
            raise AnnotationError(f"label image shape {lab.shape} does not match the image's {tuple(image_hw)}")
        from sam_detect.formats.label_image import background_as_zero, binary_as_pieces, label_ids

        lab = label_ids(lab, "the label array")  # as a file's ids are read (negative ids were taken)
        inst, _ = Instances.from_label_image(binary_as_pieces(background_as_zero(lab)))
        if len(inst) == 0:
            raise AnnotationError("the label image holds no objects (all pixels are 0)")
        return inst

    # -- detection ----------------------------------------------------------------------
    @heavy
    def detect(
        self,
        image: Any,
        *,
        top_k: int | None = None,
        threshold: float | None = None,
        drop_border: bool | None = None,
        progress: bool = False,
    ) -> Instances:
        """Segment ``image``, embed every candidate, and label it by the vote of each label's
        nearest examples (``classify.vote``).

        ``top_k``, ``threshold``, ``drop_border``: this call's, where given, instead of the
        config's (``drop_border=False`` keeps the objects the image border cuts where the
        library's examples leave them out; ``True`` leaves them out anyway).

        ``progress``: on an image of at least :data:`PROGRESS_PIXELS` pixels (seconds of
        work: a 4096² mosaic takes ~15 s on two cores), a tqdm bar on stderr says which stage
        runs (proposals, descriptions, search, selection).

        Returns ``Instances`` with ``labels`` (``"unknown"`` below ``threshold``, kept only when
        ``keep_unknown``), ``label_confidences``, ``data["similarity"]`` (best cosine similarity)
        and ``data["neighbours"]`` (``[{"id", "label", "score"}]`` per instance);
        ``metadata["timings"]`` holds seconds per stage, ``metadata["dropped"]`` how many
        candidates each filter dropped before the vote (``profile.DROP_REASONS``' codes, and
        ``unlabelled``, ``example``, ``border``) and the vote gave the negative examples
        (``negative``).
        """
        # per-call overrides go through the settings' one validation (top_k=0 is an error,
        # not "the default")
        from sam_detect.config import check

        top_k = self.config.top_k if top_k is None else check("top_k", top_k)
        threshold = self.config.threshold if threshold is None else check("threshold", threshold)
        if drop_border is not None and not isinstance(drop_border, (bool, np.bool_)):  # "no" is truthy
            from sam_detect.errors import SettingError

            raise SettingError(f"drop_border must be True, False or None, got {drop_border!r}")
        drop_border = self.config.drop_border if drop_border is None else bool(drop_border)
        self.check_library(create=False)
        whole = self._load(image)
        # padding round a registered, rotated or stitched frame is not image: the frame inside
        # it is detected, and what it cuts is cut by the frame's border
        loaded, padding = _inside_padding(whole)
        self._last_padding = padding  # what eval places the candidates it records by
        timings: dict[str, float] = {}
        self._share_example_features()
        from sam_detect.profile import at_stain, examples_tint, stain_gain

        profile = self.profile
        # a grey frame saved blue, or the other way round: seen in the examples' images' colours
        rgb, tint = examples_tint(loaded.rgb, profile)
        stain = stain_gain(rgb, profile)  # another slide's stain: seen as the examples' slide's
        rgb = rgb if stain is None else at_stain(rgb, stain)
        prefetched = self._prefetch_maps(rgb)
        stages = _stages(rgb.shape[0] * rgb.shape[1], progress)
        try:
            out = self._detect(loaded, rgb, stain, profile, timings, top_k, threshold, prefetched, stages, tint,
                               whole=whole, padding=padding, drop_border=drop_border)
            return out if padding is None else self._placed_back(out, whole, padding)
        finally:
            if prefetched is not None:
                prefetched.close()
            if stages is not None:
                stages.close()

    @staticmethod
    def _placed_back(out: Instances, whole: Any, padding: tuple[int, int, int, int]) -> Instances:
        """``out``, found inside ``whole``'s ``padding``, in ``whole``'s pixels, with a note."""
        top, _, left, _ = padding
        hw = whole.rgb.shape[:2]
        out = out.placed(left, top, hw)
        names = ("rows at the top", "at the bottom", "columns at the left", "at the right")
        sides = ", ".join(f"{n} {side}" for n, side in zip(padding, names, strict=True) if n)
        note = f"padding of one value round the image left out ({sides}): its objects are cut by the padding's edge"
        log.info("%s", note)
        out.metadata["notes"] = [note, *out.metadata.get("notes", [])]
        out.metadata["image_hw"] = list(hw)
        out.metadata["padding"] = list(padding)
        return out

    def _prefetch_maps(self, rgb: np.ndarray) -> Any:
        """The embedder's network pass over ``rgb``, started on a worker thread so that it runs
        beside segmentation (``ViewsEmbedder.prefetch``), or ``None``: only for an embedder
        that offers it, a library that knows its typical object area, and a segmenter that
        does not run a network of its own (two networks would only share the cores)."""
        emb = self.embedder
        typical = (self.decision or {}).get("typical_area")
        if (not typical or not callable(getattr(emb, "prefetch", None))
                or getattr(self.segmenter, "uses_network", True)):
            return None
        return emb.prefetch(rgb, float(typical))

    def _detect(self, loaded: Any, rgb: np.ndarray, stain: float | None, profile: dict | None,
                timings: dict[str, float], top_k: int, threshold: float, prefetched: Any,
                stages: Any = None, tint: str | None = None, *, whole: Any = None,
                padding: tuple[int, int, int, int] | None = None, drop_border: bool | None = None) -> Instances:
        """:meth:`detect` from segmentation on: ``rgb`` is ``loaded.rgb`` as the examples' slide
        would show it where its stain is ``stain`` times as dense (``profile.stain_gain``), in
        the examples' images' colours where ``tint`` says so (``profile.examples_tint``), else
        ``loaded.rgb``; ``prefetched``: its network pass, if started; ``stages``: the progress
        bar over the stages (:func:`_stages`), or ``None``; ``whole``: the image ``loaded`` was
        cut from, inside its ``padding`` (:func:`_inside_padding`), or ``None``; ``drop_border``:
        as :meth:`detect`'s (already resolved against the config)."""
        t0 = time.perf_counter()
        from sam_detect.profile import (
            DIM_NOISE,
            JOINT,
            at_scale,
            filter_with_reasons,
            ground_notes,
            joint_profile,
        )
        from sam_detect.segment.base import segment_with_profile

        # a library of several classes finds its objects with every class's examples as one
        # class, as it would had they been given so, and types each by the vote among the
        # classes (profile.JOINT)
        typed = self.decision
        decision = (typed or {}).get("joint")
        joint = joint_profile(profile) if decision else None
        typed_profile, profile = profile, joint or profile
        if joint is None:
            decision = typed
        inst = segment_with_profile(self.segmenter, rgb, profile)
        timings["segment"] = time.perf_counter() - t0
        _stage_done(stages, "descriptions")
        n_proposed = len(inst)
        steered = bool(inst.metadata.get("calibrated"))  # proposed by settings the examples chose
        oversize = int(inst.metadata.get("oversize") or 0)  # the lead setting's regions over the size range
        shifts = inst.metadata.get("size_shift") or {}
        profile = at_scale(profile, shifts)  # an image at another magnification than the examples
        border_note = None
        # how many candidates each filter dropped before the vote (``metadata["dropped"]``), and
        # the candidates themselves for eval's error breakdown (sam_detect.eval.errors) where it
        # asks (``keep_dropped``)
        dropped: list[tuple[Instances, np.ndarray]] = []
        dropped_by: dict[str, int] = {}

        def dropping(cands: Instances, gone: np.ndarray, why: np.ndarray | str) -> None:
            if not gone.any():
                return
            codes = np.broadcast_to(np.asarray(why, object), gone.shape)[gone]
            for code, n in zip(*np.unique(codes.astype(str), return_counts=True), strict=True):
                dropped_by[str(code)] = dropped_by.get(str(code), 0) + int(n)
            if self.keep_dropped:
                dropped.append((cands[gone], codes))

        # left out where asked, or where the examples' annotations leave them out (unlabelled.border_convention)
        drop, followed = self.border_rule(drop_border)  # followed: the library's convention, not the caller's
        why_border = "left out as the examples' annotation leaves them out; --keep-border keeps them" \
            if followed else "drop_border"
        if drop and len(inst):
            from sam_detect.profile import cut_by_border

            cut = cut_by_border(inst.boxes, inst.image_hw)
            if cut.any():
                border_note = f"{int(cut.sum())} of {len(inst)} candidates touch the image border ({why_border})"
                dropping(inst, cut, "border")
                inst = inst[~cut]
        from sam_detect.profile import with_floor_scaled
        from sam_detect.unlabelled import floor_factor

        model = self.unlabelled_model if joint is None else self.joint_unlabelled_model
        filtered, size_note, why = filter_with_reasons(inst, with_floor_scaled(profile, floor_factor(model)))
        dropping(inst, why != "", why)
        inst = filtered
        low, unlike_note, unlike_image = _unlabelled_filter(inst, profile, model)
        if low.any():
            dropping(inst, low, "unlabelled")
            inst = inst[~low]
        if unlike_note:
            size_note = f"{size_note}; {unlike_note}" if size_note else unlike_note
        if border_note:
            size_note = border_note + (f"; {size_note}" if size_note else "")
        # the library's examples drawn on this very image are known objects: returned as
        # drawn, and no candidate that the selection could not keep beside them is embedded
        own = self._examples_of_image((loaded if whole is None else whole).rgb) if self.config.keep_examples else None
        if own is not None and padding is not None:
            own = _inside(own, padding)
        own_note = None
        if own is not None:
            from sam_detect.select import overlapping

            clash = overlapping(inst, own)
            dropping(inst, clash, "example")
            inst = inst[~clash]
            shown = own[np.array([lab != NEGATIVE for lab in own.labels], bool)]
            own_note = (f"{len(own)} of the library's examples were drawn on this image: "
                        f"{len(shown)} returned as drawn" + (f", {int(clash.sum())} candidates overlapping "
                                                             "them left out" if clash.any() else ""))
            own = shown
        typical = (decision or {}).get("typical_area")
        if typical and shifts:
            typical *= float(np.exp(np.mean(list(shifts.values()))))
        seen = rgb
        gains = inst.metadata.get("level_gain") or {}
        if gains:  # a grey image at another exposure: described at the examples' grey levels too
            from sam_detect.profile import at_levels

            seen = at_levels(rgb, tuple(next(iter(gains.values()))))
        from sam_detect.profile import with_brightness

        with_brightness(seen, inst, typed_profile)  # several classes: their brightness types too
        vectors = self._embed(seen, inst, timings, typical_area=typical, prefetched=prefetched)
        _stage_done(stages, "search")
        t = time.perf_counter()
        results = self._search(vectors, top_k, decision) if len(inst) else []
        typing, types = None, None
        if joint is not None and len(inst):  # each candidate's class: the vote among the classes
            from sam_detect.select import Typing

            scaled = at_scale(typed_profile, {lab: shifts[JOINT] for lab in (typed_profile or {}).get("classes", {})}
                              if JOINT in shifts else {})
            typing = Typing(self._search(vectors, top_k, typed), scaled, typed)
            results = [[n if n.label == NEGATIVE else dataclasses.replace(n, label=JOINT) for n in hits]
                       for hits in results]
            types = typing.vote(inst, top_k, threshold)
        timings["search"] = time.perf_counter() - t
        _stage_done(stages, "selection")
        t = time.perf_counter()
        from sam_detect.select import decide

        self._last_decided = (inst, results, profile, own, decision, typing)  # what eval re-scores
        self._last_dropped = dropped
        d = decide(inst, results, threshold=threshold, top_k=top_k, profile=profile,
                   keep_unknown=self.config.keep_unknown, decision=decision, types=types)
        inst.labels = np.array(d.labels, dtype=object) if d.labels else np.empty(0, dtype=object)
        inst.label_confidences = d.confidences
        inst.data["similarity"] = d.similarities
        inst.data["fit"] = d.fit
        inst.data["neighbours"] = [  # the nearest top_k, whatever their label
            [{"id": n.id, "label": n.label, "score": round(float(n.score), 4)} for n in r[:top_k]]
            for r in (typing.neighbours if typing is not None else results)
        ]
        out = inst[d.keep]
        if own is not None and len(own):
            out = _with_examples(own, out)
        timings["select"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        _stage_done(stages, None)
        voted = sum(lab not in (UNKNOWN, NEGATIVE) for lab in d.labels)
        from sam_detect.calibrate import counts

        negative = np.array([lab == NEGATIVE for lab in d.labels], bool)
        labelled = counts(decision)  # None for a library made before the counts were kept
        objects = labelled is None or any(lab != NEGATIVE for lab in labelled)
        # (where the examples drawn here took every candidate, their note says it all)
        notes = [] if own_note and not len(inst) and len(out) else \
            _why_few(n_proposed, size_note, len(inst), np.asarray(d.similarities, np.float64)[~negative],
                     d.thresholds, voted, len(out), int(negative.sum()), objects,
                     self.store.count(self.config.library) if voted == 0 and len(inst) else None,
                     "flat" if n_proposed == 0 and not np.ptp(rgb) else steered)  # a blank image: none could
        if own_note:
            notes.insert(0, own_note)
        if voted and negative.any():  # the look-alikes the negative examples took: said, and counted
            n = int(negative.sum())
            dropped_by["negative"] = n
            notes.append(f"{n} candidate{'s' if n != 1 else ''} like the negative examples (look-alikes to suppress) "
                         "left out")
        if unlike_image:
            notes.append(unlike_image)
        if followed and dropped_by.get("border"):  # not asked for here: said, as every other drop is
            n = dropped_by["border"]
            notes.append(f"{n} candidate{'s' if n != 1 else ''} cut by the image border left out, as the examples' "
                         "annotation leaves such objects out (--keep-border keeps them)")
        if oversize:  # calibrated.propose: the lead setting's regions over the size range
            notes.append(f"{oversize} region{'s' if oversize != 1 else ''} larger than the examples' size range "
                         "left out (clumps of touching objects the split left whole, or objects larger than the "
                         "examples? add examples of them, or of touching ones)")
        below = inst.data.get("below_floor")
        if below is not None and (n := sum(bool(below[i]) and d.labels[i] not in (UNKNOWN, NEGATIVE) for i in d.keep)):
            notes.append(f"{n} object{'s' if n != 1 else ''} fainter than the examples allow kept: shaped like them "
                         f"and at least {DIM_NOISE:g} sds above the image's noise (dimmer nuclei?)")
        if d.standing_out:
            n = d.standing_out
            notes.append(f"{n} object{'s' if n != 1 else ''} unlike every example, but standing out at least as far "
                         "as the examples: kept at a low confidence (brighter or more deeply stained than they are?)")
        if d.clear_of_noise:
            n = d.clear_of_noise
            notes.append(f"{n} object{'s' if n != 1 else ''} unlike every example, but shaped like them and at least "
                         f"{DIM_NOISE:g} sds above the image's noise: kept at a low confidence (fainter than the "
                         "examples?)")
        from sam_detect.names import display_label

        # on the examples' own image the magnification is theirs: its other objects are smaller or larger
        # than the examples drawn (picked for their size?)
        why_shift = "the examples drawn here picked for their size?" if own_note else "another magnification?"
        notes[:0] = [f"{display_label(lab)}: objects here are {np.exp(v):.2g}x the examples' area ({why_shift}): "
                     "proposed and sized at this image's scale" for lab, v in shifts.items()]
        notes[:0] = [f"{display_label(lab)}: objects here stand out {a:.2g}x as far as in the examples' images "
                     "(another exposure?): proposed and described at the examples' grey levels"
                     for lab, (a, _) in gains.items()]
        notes[:0] = [f"{display_label(lab)}: objects here stand out {r:.2g}x as far as in the examples' images: "
                     "thresholded at this image's contrast" for lab, r in (inst.metadata.get("grey_ratio") or {}).items()]
        notes[:0] = [f"{display_label(lab)}: this image's ground lies {v:.0f} above the examples' images' along "
                     "their colour (haze, a brighter background?): thresholded above its own ground"
                     for lab, v in ground_notes(inst.metadata.get("ground_shift"), profile).items()]
        if stain is not None:
            notes.insert(0, f"the tissue here is stained {stain:.2g}x as densely as in the examples' images (another "
                            "slide?): proposed and described at the examples' stain density")
        channels = self._channel_note(loaded)
        if channels:
            notes.insert(0, channels)
        planes = getattr(loaded, "planes", None)  # a TIFF's planes read as one colour image
        if planes:
            notes.insert(0, planes)
        if tint:
            notes.insert(0, tint)
        for note in notes:
            log.info("%s", note)
        out.metadata.update(
            {
                "image_path": str(loaded.path) if loaded.path else None,
                "image_hw": list(loaded.rgb.shape[:2]),
                "candidates": n_proposed,
                "dropped": dict(sorted(dropped_by.items(), key=lambda kv: (-kv[1], kv[0]))),
                "segmenter": self.choices.get("segmenter"),
                "embedder": self.choices.get("embedder"),
                "library": self.config.library,
                "profile": bool(profile and profile.get("classes")),
                "stain_gain": None if stain is None else round(stain, 4),
                "notes": notes,
                **({"oversize": oversize} if oversize else {}),
                "timings": timings,
            }
        )
        return out

    def _channel_note(self, loaded: Any) -> str | None:
        """A line where this image's channels, none chosen, are read otherwise than the
        examples' images of as many channels were (``add --channel 0``, then ``detect``
        without it: every channel merged, label channels too), naming the option that reads
        it as they were. Channels chosen are not second-guessed: another file may hold its
        channels in another order."""
        from sam_detect.io.images import describe_reading

        here = getattr(loaded, "reading", None)
        if here is None or here["channel"] is not None:  # channels chosen: the user's choice, not a slip
            return None
        reads = [r for r in (self._extra("channel_reads") or []) if isinstance(r, dict) and r.get("of") == here["of"]]
        if not reads or any(r.get("channel") == here["channel"] for r in reads):
            return None
        was = reads[0].get("channel")
        option = "all channels (no --channel)" if was is None else " ".join(f"--channel {c}" for c in was)
        return (f"the examples were read from {describe_reading(reads[0])} of {here['of']}-channel images; this one "
                f"from {describe_reading(here)}: give {option} to read it as they were")

    def _search(self, vectors: np.ndarray, top_k: int, decision: dict | None) -> list:
        """k-NN search, with the library's view weights applied to the queries (the scores
        come back as weighted view similarities); ``top_k`` nearest examples per label of
        the library as a rule (``classify.retrieval_k``), since each label votes with its own."""
        from sam_detect.calibrate import counts
        from sam_detect.classify import retrieval_k
        from sam_detect.embed.views import views_of, weighted_query

        top_k = retrieval_k(top_k, counts(decision))
        weights = (decision or {}).get("weights")
        meta = self._library_meta() if weights else None
        views = views_of(meta.embedder_id) if meta else None
        # the vote reads ids, labels and scores only: no payloads (masks, measurements) per hit
        if not weights or not views:
            return self.store.search(self.config.library, vectors, top_k, with_payload=False)
        queries, factor = weighted_query(vectors, weights, views)
        results = self.store.search(self.config.library, queries, top_k, with_payload=False)
        return [[dataclasses.replace(n, score=float(n.score) * factor) for n in hits] for hits in results]

    def detect_stream(self, frames: Any, **options: Any) -> Iterator[Any]:
        """Detect on a stream of frames (video, camera, stack), yielding a ``FrameResult`` per
        frame with tracked, label-smoothed instances; see :func:`sam_detect.video.runner.detect_stream`."""
        from sam_detect.video.runner import detect_stream

        return detect_stream(self, frames, **options)

    def detect_many(self, images: Iterable[Any], *, cluster: Any = None) -> Iterator[tuple[Any, Instances]]:
        """Detect on each image in turn, yielding ``(image, instances)``.

        ``cluster``: ``"local[:N]"``, a Dask scheduler address or a ``distributed.Client``:
        the images (file paths) run on Dask workers, results still in input order
        (:func:`sam_detect.cluster.detect_images`; an image that fails raises here).
        One path (a str or ``os.PathLike``) is one image.
        """
        import os

        if isinstance(images, (str, os.PathLike)):  # one image, not one per letter of its name
            images = [images]
        if cluster is None:
            from sam_detect._heavy import running

            with running():  # the images share one set-up: each reuses the memory the others freed
                for image in images:
                    yield image, self.detect(image)
            return
        from sam_detect.cluster import OutputSpec, check_sendable, detect_images, file_paths

        images = list(images)
        # refused before a cluster starts (an array went to the workers as str(array), a file name)
        file_paths(images, "detect_many(cluster=...) sends file paths to the workers", "detect it without cluster=")
        self.check_library(create=False)
        check_sendable(self.config)  # before the close: an in-memory library would be lost by it
        self.close()  # the workers read a snapshot of the library
        for image, res in zip(images, detect_images(self.config, images, cluster=cluster,
                                                    spec=OutputSpec(polygons=False, coco=True)), strict=True):
            if res.error is not None:
                raise SamDetectError(f"{res.path}: {res.error}")
            yield image, res.instances

    # -- output -------------------------------------------------------------------------
    def visualize(self, image: Any, instances: Instances, **kwargs: Any) -> np.ndarray:
        """An RGB ``(H, W, 3)`` uint8 overlay: masks coloured by label, boxes, labels, confidences."""
        from sam_detect.outputs import render_overlay

        return render_overlay(self._load(image).rgb, instances, **kwargs)

    def close(self) -> None:
        """Release the store (the embedded library folder's lock) if this detector opened it."""
        if self._store is not None and self._owns_store:
            self._store.close()
            self._store = None

    def __enter__(self) -> SAMDetect:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


#: a prompt that follows the examples on an image larger than this (pixels a side) proposes
#: only a region of this side around it, the whole image when it is no larger (as
#: ``detect`` proposes it): the first click on a 4096 x 4096 image took 8.6 s, and again
#: after every example added (docs/performance.md, session 19)
PROMPT_REGION = 1024


def prompt_region(hw: tuple[int, int], *, point: Sequence[float] | None = None,
                  box: Sequence[float] | None = None) -> tuple[int, int, int, int]:
    """The region (XYXY pixels) a prompt's proposals are made in: the image when it is at
    most ``PROMPT_REGION`` a side; else a window of that side (wider where the box is more
    than half of it: the box and its own size around it) centred on the point or the box,
    moved inside the image."""
    h, w = (int(v) for v in hw)
    if max(h, w) <= PROMPT_REGION:
        return 0, 0, w, h
    if box is not None:
        bx0, by0, bx1, by1 = (float(v) for v in box)
        cx, cy, need_w, need_h = (bx0 + bx1) / 2, (by0 + by1) / 2, 2 * (bx1 - bx0), 2 * (by1 - by0)
    else:
        cx, cy, need_w, need_h = float(point[0]), float(point[1]), 0.0, 0.0
    side_w = min(w, max(PROMPT_REGION, int(np.ceil(need_w))))
    side_h = min(h, max(PROMPT_REGION, int(np.ceil(need_h))))
    x0 = int(np.clip(round(cx - side_w / 2), 0, w - side_w))
    y0 = int(np.clip(round(cy - side_h / 2), 0, h - side_h))
    return x0, y0, x0 + side_w, y0 + side_h


def _inside_padding(loaded: Any) -> tuple[Any, tuple[int, int, int, int] | None]:
    """``loaded`` cut to the image inside its padding (:func:`sam_detect.io.render.padding_bands`
    of the pixels as read), and the padding ``(top, bottom, left, right)``; ``(loaded, None)``
    where it has none."""
    from sam_detect.io.render import padding_bands

    original = np.asarray(loaded.original)
    if original.ndim not in (2, 3) or original.shape[:2] != loaded.rgb.shape[:2]:
        return loaded, None
    padding = padding_bands(original)
    if padding is None:
        return loaded, None
    top, bottom, left, right = padding
    h, w = original.shape[:2]
    window = (slice(top, h - bottom), slice(left, w - right))
    return dataclasses.replace(loaded, rgb=np.ascontiguousarray(loaded.rgb[window]),
                               original=original[window]), padding


def _inside(inst: Instances, padding: tuple[int, int, int, int]) -> Instances:
    """``inst`` in the pixels of its image inside ``padding``: each mask cut to that window,
    and those with nothing inside it left out."""
    top, bottom, left, right = padding
    h, w = inst.image_hw
    crops, origins, keep = [], [], []
    for i in range(len(inst)):
        x0, y0, x1, y1 = inst.crop(i).box
        x0, y0, x1, y1 = max(x0, left), max(y0, top), min(x1, w - right), min(y1, h - bottom)
        region = inst.mask_region(i, x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None
        if region is not None and region.any():
            crops.append(region)
            origins.append((x0 - left, y0 - top))
            keep.append(i)
    inst = inst[np.asarray(keep, np.int64)]
    return Instances.from_crops(crops, np.asarray(origins, np.int64).reshape(-1, 2),
                                (h - top - bottom, w - left - right), scores=inst.scores, labels=inst.labels,
                                label_confidences=inst.label_confidences, data=inst.data, metadata=inst.metadata)


def _with_examples(examples: Instances, found: Instances) -> Instances:
    """``examples`` (the library's own, drawn on this image; ``data["example_id"]``) as
    detections before ``found``: label as given, confidence and similarity 1, each its own
    nearest neighbour; ``data["example"]`` tells the two apart. Measurements the segmenter
    made of ``found`` only are left empty (NaN, -1, ``None``) for the examples."""
    k = len(examples)
    ids = list(examples.data["example_id"])
    filled: dict[str, Any] = {
        "similarity": np.ones(k, np.float32),
        "fit": np.ones(k, np.float32),
        "neighbours": [[{"id": i, "label": str(lab), "score": 1.0}] for i, lab in zip(ids, examples.labels, strict=True)],
    }
    data: dict[str, Any] = {"example": np.ones(k, bool)}
    for key, value in found.data.items():  # the found objects' fields, so that the two merge
        if not isinstance(value, np.ndarray):
            data[key] = filled.get(key, [None] * k)
        elif key in filled:
            data[key] = filled[key].astype(value.dtype, copy=False)
        else:
            fill = {"f": np.nan, "i": -1, "u": 0, "b": False, "U": "", "S": b""}.get(value.dtype.kind)
            data[key] = np.full((k, *value.shape[1:]), fill, dtype=value.dtype if fill is not None else object)
    found = found[np.arange(len(found))]  # a copy, to flag
    found.data["example"] = np.zeros(len(found), bool)
    shown = Instances.from_crops(list(examples.crops), image_hw=examples.image_hw, labels=list(examples.labels),
                                 label_confidences=np.ones(k, np.float32), data=data)
    return Instances.merge([shown, found])


def _unlabelled_filter(inst: Instances, profile: dict | None,
                       model: dict | None) -> tuple[np.ndarray, str | None, str | None]:
    """The candidates unlikely to be objects by what the example images' unlabelled
    candidates say (``model``, ``sam_detect.unlabelled``; only where that model applies).
    ``(dropped (N,) bool, what was dropped or None, a note for the user or None)``: the note
    where the image loses far more candidates than the example images did
    (``unlabelled.unlike_examples``), as an image holding objects the examples do not show would."""
    from sam_detect.unlabelled import (
        MIN_PROBABILITY,
        applies,
        features,
        probability,
        unlike_examples,
    )

    none = np.zeros(len(inst), bool)
    if not applies(model) or not len(inst):
        return none, None, None
    x = features(inst, profile)
    if x is None:
        return none, None, None
    low = probability(model, x) < MIN_PROBABILITY
    if not low.any():
        return low, None, None
    note = (f"{int(low.sum())} of {len(inst)} candidates look like what the example images left "
            "unlabelled")
    unlike = None
    if unlike_examples(model, int(low.sum()), len(inst)):
        unlike = (f"{int(low.sum())} of {len(inst)} candidates dropped as like what the example images left "
                  f"unlabelled, against {float(model['dropped_share']):.0%} of theirs: this image is unlike "
                  "them (objects missing? add examples from it, or --no-profile)")
    return low, note, unlike


#: an annotation holding this many others (each at least ``REGION_HOLDS`` inside it) is a
#: region drawn round them (QuPath's annotation of the area its detections lie in), not an object
REGION_OBJECTS = 3  # a cell of two nuclei, given as examples of two classes, is no region
REGION_HOLDS = 0.9


#: a mask over more than this share of its image that reaches all four edges is the ground
GROUND_SHARE = 0.5


def ground_like(mask: np.ndarray) -> bool:
    """Whether an ``(H, W)`` bool mask is the ground around objects rather than one: over
    :data:`GROUND_SHARE` of the image and touching all four edges (a label image's zero
    pixels, or a mask drawn the other way round)."""
    return bool(mask.mean() > GROUND_SHARE and mask[0].any() and mask[-1].any()
                and mask[:, 0].any() and mask[:, -1].any())


def not_objects(instances: Instances) -> dict[int, str]:
    """``{index: why}``: annotations that are not objects, so no examples: one covering the
    whole image, or a region that holds ``REGION_OBJECTS`` or more of the others. Added as an
    example, a region made the class's size range 16-347,475 px and every real object fail the
    noise floor: the library found nothing."""
    from sam_detect.select import overlap_pairs

    h, w = instances.image_hw
    out = {int(i): "covers the whole image" for i in np.flatnonzero(instances.areas >= h * w)}
    held: dict[int, int] = {}
    areas = instances.areas
    for i, j, frac in overlap_pairs(instances):
        if frac >= REGION_HOLDS and areas[i] != areas[j]:
            outer = i if areas[i] > areas[j] else j
            held[outer] = held.get(outer, 0) + 1
    for i, n in held.items():
        if n >= REGION_OBJECTS and i not in out:
            out[int(i)] = f"encloses {n} of the other annotations (a region drawn round them)"
    return dict(sorted(out.items()))


def _why_few(
    proposed: int, size_note: str | None, sized: int, sim: np.ndarray, threshold: str, voted: int, kept: int,
    negative: int = 0, objects: bool = True, examples: int | None = None, steered: bool | str = False,
) -> list[str]:
    """One line per stage that left nothing (or almost nothing): never a silent empty result.
    ``sim``: the best similarities of the candidates not voted negative; ``negative``: how
    many were; ``objects``: whether the library holds examples of any object (not only
    negative ones); ``examples``: how many it holds, where known; ``steered``: the segmenter
    proposed with the settings the examples chose (their profile), ``"flat"`` where the image
    holds one value everywhere."""
    if proposed == 0 and steered == "flat":
        return ["the image holds one value everywhere: no object to find"]
    if proposed == 0 and steered:
        return ["the segmenter, set by the examples, proposed no candidates in this image: nothing here is "
                "drawn as their settings draw objects of their size and contrast (objects of another size or "
                "look? --no-profile proposes with the segmenter's own settings)"]
    if proposed == 0:
        return ["the segmenter proposed no candidates in this image"]
    if sized == 0:
        return [size_note or "no candidate within the examples' size range"]
    if voted == 0:
        if examples == 0:
            return ["the library holds no examples (all deleted?): add some with `sam-detect add`"]
        if not objects:
            return ["the library holds only negative examples (look-alikes to suppress): add examples "
                    "of the objects to find"]
        if negative == sized:
            return [f"all {sized} candidates look like the negative examples (look-alikes to suppress)"]
        best = float(np.max(sim)) if len(sim) else 0.0
        like = f"; {negative} look like the negative examples" if negative else ""
        return [
            f"none of {sized} candidates is similar enough to an example "
            f"(best similarity {best:.3f} < threshold {threshold}){like}"
        ]
    notes = []
    if size_note and sized < 0.1 * proposed:
        notes.append(size_note)
    if voted < 0.1 * sized and sized >= 20:
        notes.append(f"{sized - voted} of {sized} candidates were below the similarity threshold {threshold}")
    return notes


__all__ = ["DetectorConfig", "SAMDetect", "SamDetectError"]
