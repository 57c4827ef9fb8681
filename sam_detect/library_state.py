"""What a detector derives from its library's examples, kept in the library's metadata:
the proposal profile and the decision settings (rebuilt after every add and delete, re-read
only when the library's size changes), and the SAM2 example features handed to a SAM2
segmenter for example-guided prompts.

:class:`LibraryState` is a part of :class:`sam_detect.pipeline.SAMDetect`; it uses the
detector's ``config``, ``store``, ``segmenter``, ``embedder``, ``choices``, ``_cache`` and
``_library_meta()``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from sam_detect.embed.base import embeds_instances
from sam_detect.instances import NEGATIVE
from sam_detect.store._common import DERIVED_KEY, normalise_id, settings_behind

log = logging.getLogger("sam_detect")


def typical_area(labels: list[str], payloads: list[dict]) -> float | None:
    """The object area (pixels) that the library's candidates are embedded at: the scale its
    examples' vectors were made at (each payload's ``embed_area``: an ``add`` embeds at the
    library's scale, the first at the median of its own examples), so that an example and a
    candidate are always compared at one scale, whichever add came first. A library whose
    examples do not all record it (made before they did): the median example area, as then.
    ``None`` without a positive example."""
    positive = [pay or {} for lab, pay in zip(labels, payloads, strict=True) if lab != NEGATIVE]
    scales = [float(pay["embed_area"]) for pay in positive if pay.get("embed_area")]
    if scales and len(scales) == len(positive):
        return float(np.median(scales))
    areas = [float(pay.get("area") or 0) for pay in positive]
    areas = [a for a in areas if a > 0]
    return float(np.median(areas)) if areas else None


def images_of(store: Any, name: str, ids: Sequence[str] = (), labels: Sequence[str] = ()) -> set[str]:
    """The ``image_key`` of the images library ``name``'s examples ``ids``, or of ``labels``,
    were drawn on: read before a delete, whose images' other examples are measured again
    after it (``SAMDetect.measure_again``)."""
    ids, labels = ([v] if isinstance(v, str) else v for v in (ids, labels))  # one id or label, not its letters
    wanted, labels = {normalise_id(i) for i in ids}, set(labels)
    return {pay["image_key"] for batch, _, labs, pays in store.iter_examples(name)
            for i, lab, pay in zip(batch, labs, pays, strict=True)
            if pay and pay.get("image_key") and (i in wanted or lab in labels)}


class LibraryState:
    """The library's proposal profile, decision settings and shared example features."""

    # -- the proposal profile -----------------------------------------------------------
    def _own_segmenter(self) -> Any:
        """The classical segmenter whose own settings calibration scores, or ``None`` (another
        segmenter: it does not propose from the profile; never built only for this)."""
        seg = self._segmenter
        if seg is None:
            name = self.config.segmenter
            if name == "auto":
                name = self._auto_models()[0]
            if name != "classical":
                return None
            seg = self.segmenter
        return seg if getattr(seg, "name", None) == "classical" else None

    def _examples(self) -> tuple[np.ndarray, list[str], list[dict]]:
        """Every stored example of the library, read once: ``(vectors (N, D), labels, payloads)``."""
        vectors, labels, payloads = [], [], []
        for _, vecs, labs, pays in self.store.iter_examples(self.config.library):
            vectors.append(np.asarray(vecs, np.float32))
            labels.extend(labs)
            payloads.extend(pay or {} for pay in pays)
        meta = self._library_meta()
        dim = int(meta.dim) if meta else 0
        return (np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32)), labels, payloads

    def refresh_profile(self) -> dict:
        """Rebuild the library's proposal profile and decision settings from its examples
        (one read of them) and store both.

        Called after every add; call it after deleting examples
        (``sam_detect.store.journal.delete``, the crash-safe form of ``store.delete``), after
        :meth:`measure_again` of the images that lost examples, as ``sam-detect library
        delete`` does (the rest of an image's examples measured without the deleted ones):
        ``images = images_of(store, name, ids=ids)`` before the delete, then
        ``det.measure_again(images)`` and ``det.refresh_profile()``.
        Returns the profile (``sam_detect.profile.build_profile``).
        """
        from sam_detect.profile import build_profile, joint_profile

        vectors, labels, payloads = self._examples()
        from sam_detect.unlabelled import admitted_sizes, model_from_payloads

        profile = build_profile([(lab, pay.get("shape")) for lab, pay in zip(labels, payloads, strict=True)])
        self.store.update_extra(self.config.library, "profile", profile)
        self._cache["profile"] = (self.store.count(self.config.library), profile)
        for key in ("unlabelled", "unlabelled_joint"):
            # the joint rows are measured against the classes found as one
            of = profile if key == "unlabelled" else joint_profile(profile)
            model = model_from_payloads(payloads, key, admitted_sizes(of)) if of is not None else None
            self.store.update_extra(self.config.library, key, model)
            self._cache[key] = (self.store.count(self.config.library), model)
        # which images the examples were drawn on, so that a detect on one of them knows
        # without reading every payload (:meth:`_examples_of_image`)
        keys = sorted({str(pay["image_key"]) for pay in payloads if pay.get("image_key") and pay.get("mask_rle")})
        self.store.update_extra(self.config.library, "image_keys", keys)
        self._cache["image_keys"] = (self.store.count(self.config.library), keys)
        # how the examples' multi-channel images were read (which channels), so that detect can
        # say where an image is read otherwise (SAMDetect._channel_note)
        reads = [dict(r) for r in {json.dumps(pay["reading"], sort_keys=True): pay["reading"] for pay in payloads
                                    if isinstance(pay.get("reading"), dict)}.values()]
        self.store.update_extra(self.config.library, "channel_reads", reads)
        self._cache["channel_reads"] = (self.store.count(self.config.library), reads)
        self._cache.pop("by_image", None)
        # whether the examples' annotations leave out the objects the border cuts (detect follows)
        from sam_detect.unlabelled import border_convention

        border = border_convention(payloads)
        self.store.update_extra(self.config.library, "border_left_out", border)
        self._cache["border_left_out"] = (self.store.count(self.config.library), border)
        self._store_decision(vectors, labels, payloads, profile)
        # written last: an add or delete stopped before here leaves a count the library no
        # longer holds, and the next use rebuilds them (_extra) and `library check` says so
        self.store.update_extra(self.config.library, DERIVED_KEY, len(labels))
        return profile

    #: two examples of one image under two labels are one object relabelled where their masks
    #: overlap at least this much (IoU); else two objects, one in front of the other
    SAME_OBJECT_IOU = 0.5

    def _examples_of_image(self, rgb: np.ndarray, every: bool = False) -> Any:
        """The library's examples drawn on this very image (the same pixels,
        :func:`sam_detect.unlabelled.image_key`) as ``Instances`` with their labels (negative
        ones too) and ``data["example_id"]``, or ``None`` where it holds none of this image.

        One per object: where two of them overlap by more than half the smaller (the same
        object added twice, by its mask and by a box), the one added last -- under two labels
        only where they overlap at IoU >= ``SAME_OBJECT_IOU`` (a relabel; else two objects,
        one in front of the other). ``every``: all of them, an object added twice twice. The library's
        record of its examples' images (``image_keys``, rebuilt on every add and delete)
        answers for any other image without reading a payload; a library made before that
        record is read once per size.
        """
        from sam_detect.unlabelled import image_key

        if not self.store.has_library(self.config.library):
            return None
        keys = self._extra("image_keys")
        if keys is not None and not keys:
            return None
        key = image_key(rgb)
        if keys is not None and key not in keys:
            return None
        count = self.store.count(self.config.library)
        cached = self._cache.get("by_image")
        if cached is None or cached[0] != count:
            by_image: dict[str, list[tuple[tuple, str, str, dict]]] = {}
            for ids, _, labs, pays in self.store.iter_examples(self.config.library):
                for i, lab, pay in zip(ids, labs, pays, strict=True):
                    pay = pay or {}
                    if pay.get("image_key") and pay.get("mask_rle"):
                        order = (int(pay.get("added_ns") or 0), str(pay.get("added") or ""), str(i))
                        by_image.setdefault(str(pay["image_key"]), []).append((order, str(i), str(lab), pay["mask_rle"]))
            cached = (count, by_image)
            self._cache["by_image"] = cached
        from sam_detect.instances import Instances
        from sam_detect.masks import MaskCrop, rle_to_mask
        from sam_detect.select import MAX_OVERLAP, overlap_pairs

        crops, labels, ids = [], [], []
        for _, i, lab, rle in sorted(cached[1].get(key, []), key=lambda e: e[0], reverse=True):  # the latest first
            mask = rle_to_mask(rle)
            if mask.shape == rgb.shape[:2] and mask.any():
                crops.append(MaskCrop.from_full(mask))
                labels.append(lab)
                ids.append(i)
        if not crops:
            return None
        mine = Instances.from_crops(crops, image_hw=rgb.shape[:2], labels=labels,
                                    data={"example_id": np.array(ids, dtype=object)})
        if every:
            return mine
        later = np.zeros(len(mine), bool)  # an earlier example of an object added again
        areas = mine.areas.astype(np.float64)
        for a, b, frac in overlap_pairs(mine):  # a < b: a was added later
            if frac <= MAX_OVERLAP or later[a]:
                continue
            inter = frac * min(areas[a], areas[b])
            # one object added again: by its mask and by a box (one label), or drawn alike under
            # another label; objects drawn whole where one lies in front of another are two
            # (ARC's tote: 76 % of the mouse traps inside the ice cube tray's outline, IoU 0.34;
            # the traps were returned as nothing and added again by every `add` run again)
            if mine.labels[a] == mine.labels[b] or inter / max(areas[a] + areas[b] - inter, 1.0) >= self.SAME_OBJECT_IOU:
                later[b] = True
        return mine[~later]

    def _unlabelled_rows(self, rgb: np.ndarray, instances: Any, labels: list[str],
                         shapes: list[dict], key: str,
                         again: dict[str, dict] | None = None) -> tuple[list | None, list | None]:
        """Per new example, the rows of the example image's candidates it carries
        (``sam_detect.unlabelled.rows_for_examples``), proposed as ``detect`` would with the
        profile this add will give, and the same with its classes found as one (its
        ``"joint"`` profile; ``None`` where it has none); the library's earlier examples of the same image
        (``key``: :func:`sam_detect.unlabelled.image_key`) are matched too, so adding one
        example at a time does not mark the earlier ones unlabelled. ``(None, None)`` where the
        segmenter does not propose from a profile (not the classical one), profiles are off, or
        the image holds no positive example (negatives only). ``again``: the earlier examples'
        shapes measured again with these (``{id: shape}``), in place of their stored ones."""
        seg = self._own_segmenter()
        if seg is None or not self.config.profile:
            return None, None
        from sam_detect.instances import Instances
        from sam_detect.masks import MaskCrop, rle_to_mask
        from sam_detect.profile import at_scale, build_profile, joint_profile, size_filter
        from sam_detect.segment.base import segment_with_profile
        from sam_detect.unlabelled import rows_for_examples

        old, same_crops, same_labels = [], [], []
        if self.store.has_library(self.config.library):
            for ids, _, labs, pays in self.store.iter_examples(self.config.library):
                for i, lab, pay in zip(ids, labs, pays, strict=True):
                    pay = pay or {}
                    old.append((lab, (again or {}).get(str(i), pay.get("shape"))))
                    if pay.get("image_key") == key and pay.get("mask_rle"):
                        mask = rle_to_mask(pay["mask_rle"])
                        if mask.shape == rgb.shape[:2] and mask.any():
                            same_crops.append(MaskCrop.from_full(mask))
                            same_labels.append(lab)
        profile = build_profile(old + list(zip(labels, shapes, strict=True)))
        if not profile.get("classes"):
            return None, None
        examples = Instances.from_crops(list(instances.crops) + same_crops, image_hw=rgb.shape[:2]) \
            if same_crops else instances
        positive = [lab != NEGATIVE for lab in list(labels) + same_labels]
        if not any(positive):
            # an image with negative examples only (a false detection marked on a new image)
            # says nothing of what the examples leave unlabelled: its objects were never
            # labelled, and read as "left unlabelled" they halved what was found there
            return None, None

        def rows(profile: dict | None) -> list | None:
            if profile is None:
                return None
            candidates = segment_with_profile(seg, rgb, profile)
            profile = at_scale(profile, candidates.metadata.get("size_shift") or {})
            candidates, _ = size_filter(candidates, profile, pale=False, tiny=False)  # as the model was chosen
            return rows_for_examples(candidates, profile, examples, positive, owners=len(instances))

        return rows(profile), rows(joint_profile(profile))

    @property
    def unlabelled_model(self) -> dict | None:
        """The model of what the example images' unlabelled candidates say
        (``sam_detect.unlabelled``), or ``None`` (profiles off, none fitted)."""
        return self._extra("unlabelled") if self.config.profile else None

    @property
    def border_convention(self) -> dict | None:
        """Where the library's example images' annotations leave out the objects the image
        border cuts, their pooled record (``sam_detect.unlabelled.border_convention``), else
        ``None`` (or profiles off): ``detect`` then leaves such objects out too unless
        ``config.drop_border`` says otherwise."""
        return self._extra("border_left_out") if self.config.profile else None

    @property
    def border_followed(self) -> dict | None:
        """:attr:`border_convention` where ``detect`` follows it (``config.drop_border``
        unset), else ``None``: what leaves the border's objects out, and what stderr says."""
        return self.border_rule(self.config.drop_border)[1]

    def border_rule(self, drop_border: bool | None) -> tuple[bool, dict | None]:
        """``(drop, followed)`` for a detection asked to ``drop_border`` (``None``: as the
        library's examples say): whether the objects the image border cuts are left out, and
        :attr:`border_convention` where that is the library's rule, not the caller's."""
        if drop_border is not None:
            return bool(drop_border), None
        followed = self.border_convention
        return followed is not None, followed

    @property
    def joint_unlabelled_model(self) -> dict | None:
        """:attr:`unlabelled_model` of the classes found as one (the profile's ``"joint"``)."""
        return self._extra("unlabelled_joint") if self.config.profile else None

    def refresh_decision(self) -> dict:
        """Rebuild the library's decision settings (view weights, class thresholds,
        typicality; ``sam_detect.calibrate.fit_decision``) from its stored vectors, and store them.

        :meth:`refresh_profile` (after every add and delete) rebuilds them too.
        """
        return self._store_decision(*self._examples())

    def _store_decision(self, vectors: np.ndarray, labels: list[str], payloads: list[dict],
                        profile: dict | None = None) -> dict:
        """``profile``: the one just built (else the stored one): classes it keeps apart
        (``profile.JOINT_ANGLE``) get no joint decision."""
        from sam_detect.calibrate import fit_decision, twin_pairs
        from sam_detect.embed.views import views_of
        from sam_detect.profile import apart, joint_labels

        meta = self._library_meta()
        twins = twin_pairs(payloads)
        decision = fit_decision(vectors, labels, views_of(meta.embedder_id if meta else ""), twins)
        decision["typical_area"] = typical_area(labels, payloads)
        joint = joint_labels(labels)
        if profile is None:
            profile = self._extra("profile")
        if joint is not None and apart(profile) is None:  # the classes found as one (profile.JOINT) vote so too
            decision["joint"] = fit_decision(vectors, joint, views_of(meta.embedder_id if meta else ""), twins)
            decision["joint"]["typical_area"] = decision["typical_area"]
        self.store.update_extra(self.config.library, "decision", decision)
        self._cache["decision"] = (self.store.count(self.config.library), decision)
        return decision

    def _extra(self, key: str) -> Any:
        """``key`` of the library's metadata extra (``None`` without a library), re-read only
        when the library's size changes."""
        if not self.store.has_library(self.config.library):
            return None
        count = self.store.count(self.config.library)
        cached = self._cache.get(key)
        if cached is not None and cached[0] == count:
            return cached[1]
        meta = self._library_meta()
        made_from = settings_behind(meta.extra, count) if meta else None
        if made_from is not None and not getattr(self, "_rebuilding", False):
            log.warning("library %r: its settings were made from %d examples, it holds %d (an add or delete "
                        "stopped before they were rebuilt): rebuilt now", self.config.library, made_from, count)
            self._rebuilding = True
            try:
                self.refresh_profile()
            finally:
                self._rebuilding = False
            meta = self._library_meta()
        value = (meta.extra or {}).get(key) if meta else None
        self._cache[key] = (count, value)
        return value

    @property
    def decision(self) -> dict | None:
        """The library's decision settings (``refresh_decision``), or ``None`` (no library, or
        a library made before them)."""
        return self._extra("decision")

    @property
    def profile(self) -> dict | None:
        """The library's proposal profile, or ``None`` (``config.profile`` off, no library,
        or a library made before profiles: ``refresh_profile()`` builds one)."""
        return self._extra("profile") if self.config.profile else None

    def _share_example_features(self) -> None:
        """Example-guided prompting: hand the library's SAM2 features to a SAM2 segmenter.

        Only when the library's vectors are SAM2 image-mode features of the segmenter's own
        model — the same model size, checkpoint (sha256) and input size, in the library's
        record and in the embedder — so their similarity with the image's feature map means
        something. Otherwise nothing is shared, and the reason is logged once and kept in
        ``choices["example_prompts"]``. Re-read only when the library's size changes.
        """
        seg, emb = self.segmenter, self.embedder
        if not hasattr(seg, "set_example_features") or getattr(emb, "name", "") != "sam2" \
                or not embeds_instances(emb):
            return
        why_not = self._why_not_share(seg, emb)
        if why_not:
            seg.set_example_features(None)
            if self.choices.get("example_prompts") != f"off: {why_not}":
                log.warning("example-guided prompts are off: %s", why_not)
            self.choices["example_prompts"] = f"off: {why_not}"
            self._shared_count = None
            return
        count = self.store.count(self.config.library)
        if getattr(self, "_shared_count", None) == count:
            return
        feats: dict[str, list[np.ndarray]] = {}
        for _, vectors, labels, _ in self.store.iter_examples(self.config.library):
            for vec, lab in zip(vectors, labels, strict=True):
                if lab != NEGATIVE:
                    feats.setdefault(lab, []).append(np.asarray(vec, dtype=np.float32))
        seg.set_example_features({lab: np.stack(v) for lab, v in feats.items()})
        self._shared_count = count
        self.choices["example_prompts"] = f"on: {sum(len(v) for v in feats.values())} example features"

    def _why_not_share(self, seg: Any, emb: Any) -> str | None:
        """Why the library's SAM2 features must not steer ``seg`` (``None``: they may)."""
        from sam_detect.models import ModelIdentity

        mine = getattr(seg, "model_identity", None)
        if mine is None:
            return f"the segmenter {getattr(seg, 'name', type(seg).__name__)} states no model identity"
        meta = self._library_meta()
        recorded = ModelIdentity.from_dict(meta.model) if meta else None
        theirs = recorded or getattr(emb, "model_identity", None)
        whose = f"library {self.config.library!r} was made with" if recorded else "the embedder uses"
        if theirs is None:
            return "the embedder states no model identity"
        if theirs != mine:
            return f"{whose} {theirs.describe()}, the segmenter uses {mine.describe()}"
        return None


__all__ = ["LibraryState"]
