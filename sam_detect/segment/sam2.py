"""The ``sam2`` segmenter: SAM 2.1 masks, automatic or guided, tiled for large images.

Modes:

- ``"auto"``: SAM2's ``SAM2AutomaticMaskGenerator`` — a grid of ``points_per_side``²
  point prompts, filtered by predicted IoU and stability and de-duplicated by box NMS.
  Thorough and slow on a CPU (the decoder runs for every grid point).
- ``"guided"``: prompts where objects are likely, all decoded in batches against one image
  encoding, duplicates merged by mask NMS. Prompt sources (``prompt_sources``):

  - ``"classical"``: one point deep inside each object of the classical segmenter
    (threshold + watershed; the distance-transform maximum of each region);
  - ``"blobs"``: Laplacian-of-Gaussian blob centres;
  - ``"examples"``: example-guided prompts (the PerSAM / Matcher idea): the cosine
    similarity between the examples' SAM2 features (:meth:`SAM2Segmenter.set_example_features`)
    and every location of the image's SAM2 feature map; its peaks, per label, become prompts.
    This finds objects that look like the examples where intensity thresholds fail.

Images larger than ``tile_size`` are cut into overlapping tiles, each encoded on its own,
and the masks merged across tile borders (:mod:`sam_detect.segment.tiling`).

``prompt(image, box=, point=)`` turns one prompt into one mask (``multimask_output=False``);
``prompt_batch`` does many against one encoding (used by ``sam-detect refine``).

Input must be ``(H, W, 3)`` uint8 RGB; float images are refused (SAM2 silently returns
no masks for them).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.instances import Instances, as_instances
from sam_detect.masks import MaskCrop
from sam_detect.segment.sam2_config import SAM2Config
from sam_detect.segment.sam2_prompts import (
    blob_points,
    dedupe_points,
    inner_points,
    similarity_peaks,
)
from sam_detect.segment.tiling import (
    TileMask,
    best_window,
    mark_cut,
    mask_nms,
    merge_tiled,
    sam2_windows,
)


class SAM2Segmenter:
    """SAM 2.1 segmenter; ``SAM2Segmenter(model="tiny", mode="guided")``.

    ``model="auto"`` (the default) uses the size named in ``checkpoint``'s file name, else
    the smallest SAM2 whose weights are cached, else ``"tiny"``.

    Keyword options are the fields of :class:`SAM2Config` (or pass ``config=``); unknown
    options raise ``ValueError`` listing the valid ones. The model loads on first use; the
    weights are located (cache, download) at construction so a missing file fails early.

    Raises:
        ModelNotAvailableError: the weights are missing (named, with the download command).
    """

    uses_network = True  # detect does not run the embedder's network beside it

    def __init__(self, config: SAM2Config | None = None, **options: Any) -> None:
        from sam_detect.models import pick_sam2_model, resolve_checkpoint, sam2_spec
        from sam_detect.registry import merge_config

        base = merge_config(SAM2Config, config, options, "sam2 segmenter")
        base["model"] = pick_sam2_model(base.get("model"), base.get("checkpoint"))
        self.config = SAM2Config(**base)
        self.spec = sam2_spec(self.config.model)
        self.checkpoint = resolve_checkpoint(self.spec, self.config.checkpoint)
        self.name = f"sam2:{self.spec.arch}:{self.config.mode}"
        self._runtime = None
        self._classical = None
        self._amg = None
        self._examples: dict[str, np.ndarray] = {}
        self._identity = None

    @property
    def model_identity(self):
        """:class:`~sam_detect.models.ModelIdentity` of this segmenter's encoder: example
        features are shared with it only from a library made with the same one."""
        if self._identity is None:
            from sam_detect.models import sam2_identity

            self._identity = sam2_identity(self.spec.arch, self.checkpoint, self.config.image_size)
        return self._identity

    def __repr__(self) -> str:
        return f"SAM2Segmenter({self.config})"

    @property
    def runtime(self):
        """The shared SAM2 model (:class:`sam_detect.models.sam2_runtime.SAM2Runtime`), loaded on first use."""
        if self._runtime is None:
            from sam_detect.models.sam2_runtime import get_sam2_runtime

            self._runtime = get_sam2_runtime(
                self.spec.arch, self.checkpoint, self.config.device, self.config.image_size
            )
        return self._runtime

    @property
    def _batch(self) -> int:
        if self.config.points_per_batch:
            return int(self.config.points_per_batch)
        return 64 if self.runtime.device.type == "cuda" else 8

    # -- examples -------------------------------------------------------------------------
    def set_example_features(self, feats: dict[str, np.ndarray] | None) -> None:
        """Examples for example-guided prompts: ``{label: (K, 256) array}``.

        Vectors are SAM2 features of example objects from the same model — the library
        vectors of a ``sam2`` embedder in image mode, or :meth:`pool_features` of example
        masks. ``None`` or ``{}`` clears them.

        Raises:
            ValueError: a label's array is not ``(K, 256)`` finite numbers.
        """
        from sam_detect.embed.base import l2_normalize
        from sam_detect.models.sam2_runtime import FEATURE_DIM

        out: dict[str, np.ndarray] = {}
        for label, arr in (feats or {}).items():
            a = np.asarray(arr, dtype=np.float32)
            if a.ndim == 1:
                a = a[None]
            if a.ndim != 2 or a.shape[1] != FEATURE_DIM or len(a) == 0:
                raise ValueError(
                    f"example features for {label!r} must be (K, {FEATURE_DIM}) SAM2 features, got {a.shape}"
                )
            if not np.isfinite(a).all():
                raise ValueError(f"example features for {label!r} contain NaN or inf")
            out[str(label)] = l2_normalize(a)
        self._examples = out

    def pool_features(self, image: np.ndarray, masks: np.ndarray | Instances) -> np.ndarray:
        """SAM2 features ``(N, 256)`` (L2-normalised) pooled under ``masks`` ``(N, H, W)`` bool.

        The same vectors as ``SAM2Embedder(mode="image")`` with this model and tiling (a
        large image: each object from the tile that holds it); feed them, per label, to
        :meth:`set_example_features`.
        """
        from sam_detect.models.sam2_runtime import (
            check_sam2_image,
            instance_windows,
            pool_in_windows,
        )

        image = check_sam2_image(image)
        masks = as_instances(masks, image.shape[:2])
        if len(masks) == 0:
            return np.zeros((0, 256), dtype=np.float32)
        c = self.config
        windows = instance_windows(masks.image_hw, masks.boxes, self.runtime.image_size, c.tile_size, c.tile_overlap)
        return pool_in_windows(self.runtime, image, masks, windows)

    # -- protocol ---------------------------------------------------------------------------
    def segment(self, image: np.ndarray, profile: dict | None = None) -> Instances:
        """Candidate instances of ``image`` ``(H, W, 3)`` uint8 RGB. ``profile`` is not used
        here: the pipeline filters and selects SAM2's overlapping masks by it.

        Returns:
            ``Instances``: masks ``(N, H, W)`` bool, boxes XYXY, ``scores`` = SAM2's
            predicted IoU (clipped to [0, 1]); ``data``: ``area`` (int64), ``stability_score``
            (float32), ``point`` ((N, 2) float32 XY of the prompt), ``prompt_source``
            (list of str: ``grid``, ``classical``, ``blobs``, ``examples:<label>``);
            ``metadata["segmenter"]`` and ``metadata["sam2"]`` (mode, prompts, tiles, seconds).

        Raises:
            ImageLoadError: not a uint8 image (float input would silently give no masks).
        """
        from sam_detect.models.sam2_runtime import check_sam2_image

        image = check_sam2_image(image)
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        stats: dict[str, Any] = {"mode": self.config.mode, "prompts": {}, "tiles": 1}
        windows = self._windows((h, w))
        if len(windows) == 1:
            items = self._segment_window(image, stats)
        else:
            stats["tiles"] = len(windows)
            items = []
            for t, (x0, y0, x1, y1) in enumerate(windows):
                for m in self._segment_window(image[y0:y1, x0:x1], stats):
                    g = m.shifted(x0, y0)
                    g.tile = t
                    items.append(mark_cut(g, (x0, y0, x1, y1), (h, w)))
            items = merge_tiled(items, iou_thresh=self.config.mask_nms_thresh)
        items = self._area_filter(items, h * w)
        items.sort(key=lambda m: -m.score)
        stats["seconds"] = round(time.perf_counter() - t0, 4)
        return self._to_instances(items, (h, w), stats)

    def prompt(
        self, image: np.ndarray, box: np.ndarray | None = None, point: np.ndarray | None = None
    ) -> Instances:
        """One mask for a prompt (``multimask_output=False``).

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            box: ``(4,)`` XYXY pixels.
            point: ``(2,)`` XY pixels of a foreground point. Box and point may be combined.

        Returns:
            One instance (score: predicted IoU), or an empty ``Instances`` when SAM2 returns
            an empty mask.

        Raises:
            AnnotationError: no prompt, or a box/point that is malformed or outside the image.
        """
        if box is None and point is None:
            raise AnnotationError("give a box (x1, y1, x2, y2) or a point (x, y) to prompt SAM2")
        out = self.prompt_batch(
            image,
            boxes=None if box is None else np.asarray(box, dtype=np.float32).reshape(1, 4),
            points=None if point is None else np.asarray(point, dtype=np.float32).reshape(1, 2),
        )
        return out[out.areas > 0]

    def prompt_batch(
        self, image: np.ndarray, boxes: np.ndarray | None = None, points: np.ndarray | None = None
    ) -> Instances:
        """One mask per prompt, decoded in batches against one encoding per image (or tile).

        Args:
            image: ``(H, W, 3)`` uint8 RGB.
            boxes: ``(N, 4)`` XYXY pixels, or ``None``.
            points: ``(N, 2)`` XY pixels, or ``None``; with ``boxes``, prompt ``i`` uses both.

        Returns:
            ``Instances`` with exactly N entries in prompt order (a mask may be empty);
            ``data`` as in :meth:`segment`.

        Raises:
            AnnotationError: no prompts, mismatched counts, a box or point outside the image.
        """
        from sam_detect.masks import validate_box, validate_point
        from sam_detect.models.sam2_runtime import check_sam2_image

        image = check_sam2_image(image)
        h, w = image.shape[:2]
        if boxes is None and points is None:
            raise AnnotationError("give boxes (N, 4) and/or points (N, 2) to prompt SAM2")
        bx = None if boxes is None else np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        pt = None if points is None else np.asarray(points, dtype=np.float32).reshape(-1, 2)
        n = len(bx) if bx is not None else len(pt)
        if bx is not None and pt is not None and len(pt) != n:
            raise AnnotationError(
                f"got {n} boxes but {len(pt)} points; give one point per box or none"
            )
        if bx is not None:
            bx = np.stack([validate_box(b, (h, w)) for b in bx]) if n else bx
        if pt is not None:
            pt = np.stack([validate_point(p, (h, w)) for p in pt]) if n else pt
        if n == 0:
            return self._to_instances([], (h, w), {"mode": "prompt"})
        results: list[TileMask | None] = [None] * n
        for window, idx in self._prompt_groups((h, w), bx, pt):
            x0, y0, x1, y1 = window
            off = np.array([x0, y0], dtype=np.float32)
            sub_b = None if bx is None else bx[idx] - np.tile(off, 2)
            sub_p = None if pt is None else pt[idx] - off
            decoded = self._decode(
                image[y0:y1, x0:x1], sub_p, sub_b, multimask=False, keep_all=True
            )
            for i, m in zip(idx, decoded, strict=True):
                if m is not None:
                    m = m.shifted(x0, y0)
                    m.info["prompt_source"] = "box" if bx is not None else "point"
                    if pt is None:
                        m.info["point"] = np.array(
                            [(bx[i, 0] + bx[i, 2]) / 2, (bx[i, 1] + bx[i, 3]) / 2], dtype=np.float32
                        )
                    else:
                        m.info["point"] = pt[i]
                results[i] = m
        return self._to_instances(results, (h, w), {"mode": "prompt"}, keep_empty=True)

    # -- internals: windows -------------------------------------------------------------------
    def _tile_side(self) -> int:
        return int(self.config.tile_size or self.runtime.image_size)

    def _needs_tiling(self, hw: tuple[int, int]) -> bool:
        return len(self._windows(hw)) > 1

    def _windows(self, hw: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        return sam2_windows(hw, self.runtime.image_size, self.config.tile_size, self.config.tile_overlap)

    def _prompt_groups(self, hw: tuple[int, int], bx: np.ndarray | None, pt: np.ndarray | None):
        """``(window, prompt indices)`` groups: the whole image, or tiles for large images."""
        n = len(bx) if bx is not None else len(pt)
        tiles = self._windows(hw)
        if len(tiles) == 1:
            return [(tiles[0], np.arange(n))]
        side = self._tile_side()
        groups: dict[tuple[int, int, int, int], list[int]] = {}
        for i in range(n):
            if bx is not None:
                x0, y0, x1, y1 = bx[i]
            else:
                x0 = x1 = float(pt[i, 0])
                y0 = y1 = float(pt[i, 1])
            if pt is not None:
                x0, y0 = min(x0, pt[i, 0]), min(y0, pt[i, 1])
                x1, y1 = max(x1, pt[i, 0]), max(y1, pt[i, 1])
            groups.setdefault(best_window((x0, y0, x1, y1), tiles, hw, side), []).append(i)
        return [(win, np.array(idx)) for win, idx in groups.items()]

    # -- internals: one window ----------------------------------------------------------------
    def _segment_window(self, image: np.ndarray, stats: dict[str, Any]) -> list[TileMask]:
        if self.config.mode == "auto":
            return self._auto(image)
        return self._guided(image, stats)

    def _auto(self, image: np.ndarray) -> list[TileMask]:
        from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

        from sam_detect.models.torch_utils import inference_context

        c = self.config
        rt = self.runtime
        if self._amg is not None:
            amg = self._amg
        else:
            with warnings.catch_warnings():  # its own predictor's transforms use torch.jit.script
                warnings.filterwarnings(
                    "ignore", message=".*torch.jit.script.*", category=FutureWarning
                )
                amg = SAM2AutomaticMaskGenerator(
                    rt.model,
                    points_per_side=int(c.points_per_side),
                    points_per_batch=self._batch,
                    pred_iou_thresh=c.pred_iou_thresh,
                    stability_score_thresh=c.stability_score_thresh,
                    stability_score_offset=c.stability_score_offset,
                    box_nms_thresh=c.box_nms_thresh,
                    crop_n_layers=c.crop_n_layers,
                    crop_n_points_downscale_factor=c.crop_n_points_downscale_factor,
                    min_mask_region_area=0,
                    output_mode="binary_mask",
                    multimask_output=c.multimask_output,
                )
            amg.predictor = rt.predictor  # shares the model and the cached encodings
            self._amg = amg
        with rt.lock, inference_context(rt.device):
            records = amg.generate(image)
        out = []
        for r in records:
            m = TileMask.from_full(
                r["segmentation"],
                score=float(np.clip(r["predicted_iou"], 0.0, 1.0)),
                info={
                    "stability_score": float(r["stability_score"]),
                    "point": np.asarray(r["point_coords"][0], dtype=np.float32),
                    "prompt_source": "grid",
                },
            )
            if m.crop.size:
                out.append(m)
        return out

    def _guided(self, image: np.ndarray, stats: dict[str, Any]) -> list[TileMask]:
        pts, sources = self.propose_points(image)
        counts = stats["prompts"]
        for s in sources:
            key = s.split(":")[0]
            counts[key] = counts.get(key, 0) + 1
        if len(pts) == 0:
            return []
        decoded = self._decode(
            image, pts, None, multimask=self.config.guided_multimask, keep_all=False
        )
        items = []
        for m, src in zip(decoded, sources, strict=True):
            if m is not None:
                m.info["prompt_source"] = src
                items.append(m)
        return mask_nms(items, self.config.mask_nms_thresh)

    def propose_points(self, image: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Guided-mode prompts for ``image`` ``(H, W, 3)`` uint8 (one window, no tiling).

        Returns:
            ``(points, sources)``: ``(P, 2)`` float32 XY pixels, and per point its source
            (``"classical"``, ``"blobs"``, ``"examples:<label>"``), in source order, with
            points closer than ``prompt_min_distance`` to an earlier one dropped and at most
            ``max_prompts`` kept.
        """
        from sam_detect.models.sam2_runtime import check_sam2_image

        image = check_sam2_image(image)
        chunks: list[np.ndarray] = []
        names: list[str] = []
        for src in self.config.prompt_sources:
            if src == "classical":
                p = self._classical_points(image)
                chunks.append(p)
                names += ["classical"] * len(p)
            elif src == "blobs":
                p = self._blob_points(image)
                chunks.append(p)
                names += ["blobs"] * len(p)
            elif src == "examples" and self._examples:
                p, labels = self._example_points(image)
                chunks.append(p)
                names += [f"examples:{lab}" for lab in labels]
        if not chunks:
            return np.zeros((0, 2), dtype=np.float32), []
        pts = np.concatenate(chunks).astype(np.float32).reshape(-1, 2)
        keep = dedupe_points(pts, self.config.prompt_min_distance)[: self.config.max_prompts]
        return pts[keep], [names[i] for i in keep]

    def _classical_points(self, image: np.ndarray) -> np.ndarray:
        """One point per classical-segmenter object (see :func:`sam2_prompts.inner_points`)."""
        if self._classical is None:
            from sam_detect.segment.classical import ClassicalSegmenter

            self._classical = ClassicalSegmenter(**self.config.classical_options)
        return inner_points(self._classical.segment(image))

    def _blob_points(self, image: np.ndarray) -> np.ndarray:
        return blob_points(image, self.config.blob_threshold)

    def example_similarity(self, image: np.ndarray) -> dict[str, np.ndarray]:
        """Per label, the ``(g, g)`` float32 cosine similarity of the examples to each feature cell.

        Cell ``(r, c)`` covers image pixels ``[c * W / g, (c + 1) * W / g)`` x
        ``[r * H / g, (r + 1) * H / g)``; the value is the best match over the label's examples.
        """
        from sam_detect.models.sam2_runtime import check_sam2_image

        image = check_sam2_image(image)
        feats = self.runtime.image_embed(image).cpu().numpy()  # (C, g, g)
        c, gh, gw = feats.shape
        flat = feats.reshape(c, -1)
        flat = flat / np.maximum(np.linalg.norm(flat, axis=0, keepdims=True), 1e-12)
        return {lab: (ex @ flat).max(axis=0).reshape(gh, gw) for lab, ex in self._examples.items()}

    def _example_points(self, image: np.ndarray) -> tuple[np.ndarray, list[str]]:
        c = self.config
        return similarity_peaks(
            self.example_similarity(image), image.shape[:2], c.example_min_distance,
            c.example_threshold, c.max_example_prompts,
        )

    # -- internals: decoding -------------------------------------------------------------------
    def _decode(
        self,
        image: np.ndarray,
        points: np.ndarray | None,
        boxes: np.ndarray | None,
        *,
        multimask: bool,
        keep_all: bool,
    ) -> list[TileMask | None]:
        """Decode prompts against one encoding of ``image``; one entry per prompt.

        ``keep_all``: return every mask (``None`` only when empty); otherwise drop masks that
        fail the guided-mode filters (predicted IoU, stability, prompt point outside the mask).
        """
        import torch
        from sam2.utils.amg import calculate_stability_score

        from sam_detect.models.torch_utils import batches, inference_context

        c = self.config
        rt = self.runtime
        pred = rt.predictor
        hw = image.shape[:2]
        n = len(points) if points is not None else len(boxes)
        out: list[TileMask | None] = [None] * n
        with rt.lock, inference_context(rt.device):
            pred.set_image(image)
            for sl in batches(n, self._batch):
                coords = labels = box_t = None
                if points is not None:
                    p = torch.as_tensor(points[sl], dtype=torch.float32, device=rt.device)
                    coords = pred._transforms.transform_coords(p, normalize=True, orig_hw=hw)[
                        :, None, :
                    ]
                    labels = torch.ones(coords.shape[:2], dtype=torch.int, device=rt.device)
                if boxes is not None:
                    b = torch.as_tensor(boxes[sl], dtype=torch.float32, device=rt.device)
                    box_t = pred._transforms.transform_boxes(b, normalize=True, orig_hw=hw)
                logits, iou, _ = pred._predict(
                    coords, labels, box_t, multimask_output=multimask, return_logits=True
                )
                if logits.shape[1] > 1:
                    best = iou.argmax(dim=1)
                    ar = torch.arange(len(best), device=best.device)
                    logits, iou = logits[ar, best][:, None], iou[ar, best][:, None]
                logits = logits[:, 0].float()
                stab = (
                    calculate_stability_score(logits, 0.0, c.stability_score_offset)
                    .float()
                    .cpu()
                    .numpy()
                )
                binary = (logits > 0.0).cpu().numpy()
                scores = iou[:, 0].float().cpu().numpy()
                for j, i in enumerate(range(sl.start, sl.stop)):
                    if not keep_all:
                        if not (
                            scores[j] > c.guided_pred_iou_thresh
                            and stab[j] >= c.guided_stability_thresh
                        ):
                            continue
                        x, y = int(points[i, 0]), int(points[i, 1])
                        if not binary[j, min(y, hw[0] - 1), min(x, hw[1] - 1)]:
                            continue
                    m = TileMask.from_full(
                        binary[j],
                        score=float(np.clip(scores[j], 0.0, 1.0)),
                        info={
                            "stability_score": float(np.nan_to_num(stab[j])),
                            "point": None
                            if points is None
                            else np.asarray(points[i], dtype=np.float32),
                        },
                    )
                    out[i] = m if m.crop.size else None
        return out

    # -- internals: output ---------------------------------------------------------------------
    def _area_filter(self, items: list[TileMask], image_area: int) -> list[TileMask]:
        c = self.config
        hi = None
        if c.max_mask_area is not None:
            hi = c.max_mask_area * image_area if c.max_mask_area <= 1 else c.max_mask_area
        return [m for m in items if m.area >= c.min_mask_area and (hi is None or m.area <= hi)]

    def _to_instances(
        self,
        items: list[TileMask | None],
        hw: tuple[int, int],
        stats: dict[str, Any],
        keep_empty: bool = False,
    ) -> Instances:
        n = len(items)
        crops = _clipped_crops(items, hw)
        points = np.zeros((n, 2), dtype=np.float32)
        stab = np.zeros(n, dtype=np.float32)
        scores = np.zeros(n, dtype=np.float32)
        area = np.zeros(n, dtype=np.int64)
        src = []
        for i, m in enumerate(items):
            if m is None:
                src.append("none")
                continue
            scores[i] = m.score
            area[i] = m.area
            stab[i] = m.info.get("stability_score", 0.0)
            if m.info.get("point") is not None:
                points[i] = m.info["point"]
            src.append(str(m.info.get("prompt_source", "")))
        inst = Instances.from_crops(
            crops,
            None,
            hw,
            scores=scores,
            data={
                "area": area,
                "stability_score": stab,
                "point": points,
                "prompt_source": src,
            },
            metadata={"segmenter": self.name, "sam2": stats},
        )
        return inst


def _clipped_crops(items: list[TileMask | None], hw: tuple[int, int]) -> list[MaskCrop]:
    """The masks clipped to the image (``None``: an empty mask)."""
    h, w = hw
    out = []
    for m in items:
        if m is None:
            out.append(MaskCrop.empty())
            continue
        x0, y0, x1, y1 = max(m.x0, 0), max(m.y0, 0), min(m.box[2], w), min(m.box[3], h)
        out.append(MaskCrop(m.region(x0, y0, x1, y1), (x0, y0)) if x1 > x0 and y1 > y0 else MaskCrop.empty())
    return out


__all__ = ["SAM2Config", "SAM2Segmenter"]
