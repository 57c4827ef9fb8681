"""The ``classical`` segmenter: threshold, fill, distance-transform watershed. No weights.

The offline default for microscopy (fluorescent nuclei, blobs on a plain background):

1. intensity from the RGB image (luminance, one channel, or the channel maximum);
2. optional Gaussian smoothing;
3. a threshold (``tophat``: k noise sigmas above a local background, the default; or
   ``otsu``, ``li``, ``triangle``, ``yen``, ``mean``, ``local``) with a polarity:
   ``bright`` objects, ``dark`` objects, or ``auto`` (the minority class);
4. hole filling; per-object refinement (each object cut at a fraction of its own height
   above the background, trimming halos and haze); a small opening;
5. touching objects split by a watershed on the smoothed distance transform, seeded at its
   regional maxima (h-maxima, so that one elongated object does not get one seed per bump);
6. ``min_area`` / ``max_area`` filters; border-touching objects dropped only if asked.

Scores in ``[0, 1]`` rank how object-like a region is: the mean of its solidity and its
contrast against the threshold (``data["contrast"]``, ``data["solidity"]``, ``data["area"]``).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from sam_detect.errors import AnnotationError, ImageLoadError
from sam_detect.instances import Instances

ThresholdMethod = Literal["tophat", "otsu", "li", "triangle", "yen", "mean", "local"]
Polarity = Literal["auto", "bright", "dark"]

_METHODS = ("tophat", "otsu", "li", "triangle", "yen", "mean", "local")
_POLARITIES = ("auto", "bright", "dark")
_INTENSITIES = ("gray", "max", "red", "green", "blue")
# thresholding inside a prompt box: minimum Otsu effectiveness and class contrast (0..255)
_MIN_OTSU_EFFECTIVENESS = 0.8
_MIN_BOX_CONTRAST = 8.0
# components smaller than this are not refined (too few pixels for a two-class split)
_MIN_REFINE_AREA = 30
_DEFAULT_BACKGROUND_RADIUS = 50
# components at least this convex are not split (a touching pair has a notch)
_CONVEX_SOLIDITY = 0.95


@dataclass
class ClassicalConfig:
    """Options of :class:`ClassicalSegmenter`; defaults tuned on fluorescent nuclei.

    Attributes:
        intensity: how RGB becomes one channel: ``"gray"`` (luminance), ``"max"`` (channel
            maximum, good for false-colour composites), ``"red"``/``"green"``/``"blue"``.
        sigma: Gaussian smoothing in pixels before thresholding (0: none).
        threshold: ``"tophat"`` (default): pixels more than ``k_noise`` robust noise
            standard deviations above a local background (a morphological opening of radius
            ``background_radius``), which keeps dim objects on uneven backgrounds;
            ``"otsu"``, ``"li"``, ``"triangle"``, ``"yen"``, ``"mean"``: one global
            threshold (scikit-image); ``"local"``: above a Gaussian-weighted local mean over
            ``block_size``.
        threshold_scale: multiply a global threshold by this (``< 1`` keeps dimmer objects).
        background_radius: for ``"tophat"``: radius in pixels of the opening that estimates
            the background; must exceed the radius of the largest object. ``None``: from the
            objects of a first Otsu pass (2.5 x the radius of the 95th-percentile area,
            between 15 and 400 pixels).
        k_noise: for ``"tophat"``: threshold in robust noise standard deviations
            (1.4826 x MAD of the background-subtracted image; at least 1 grey level).
        block_size: odd window side for ``"local"``, in pixels.
        local_offset: for ``"local"``: how far (0..255 units) above the local mean a pixel
            must be; ``None``: 3 robust standard deviations of the residual (noise-adaptive).
        refine: cut each object at ``refine_fraction`` of its own height above the
            background (its 95th intensity percentile), trimming blur halos and haze around
            bright objects while dim objects keep their extent.
        refine_fraction: that fraction, in ``[0, 1)``.
        polarity: ``"bright"`` objects on dark, ``"dark"`` on bright, or ``"auto"``
            (objects are the minority class of the threshold).
        fill_holes: fill holes inside objects.
        opening: radius of a binary opening that removes thin bridges and specks (0: none).
        split: split touching objects with a distance-transform watershed.
        split_sigma: smoothing of the distance transform before seeding (pixels).
        h: seeds are the distance-transform maxima at least ``h`` pixels above their
            surroundings; larger ``h`` splits less.
        min_distance: minimum distance between two seeds, in pixels.
        min_area: drop objects smaller than this many pixels.
        min_area_rel: also drop objects smaller than this fraction of the median object
            area (scale-free debris filter; 0: off).
        max_area: drop objects larger than this many pixels (``None``: no limit); a float in
            ``(0, 1]`` is a fraction of the image area.
        remove_border: drop objects touching the image border.
    """

    intensity: str = "gray"
    sigma: float = 1.0
    threshold: str = "tophat"
    threshold_scale: float = 1.0
    background_radius: int | None = None
    k_noise: float = 10.0
    block_size: int = 51
    local_offset: float | None = None
    refine: bool = True
    refine_fraction: float = 0.4
    polarity: str = "auto"
    fill_holes: bool = True
    opening: int = 1
    split: bool = True
    split_sigma: float = 1.0
    h: float = 1.0
    min_distance: int = 5
    min_area: int = 20
    min_area_rel: float = 0.2
    max_area: float | None = 0.25
    remove_border: bool = False

    def __post_init__(self) -> None:
        if self.threshold not in _METHODS:
            raise ValueError(
                f"threshold must be one of {', '.join(_METHODS)}, got {self.threshold!r}"
            )
        if self.polarity not in _POLARITIES:
            raise ValueError(
                f"polarity must be one of {', '.join(_POLARITIES)}, got {self.polarity!r}"
            )
        if self.intensity not in _INTENSITIES:
            raise ValueError(
                f"intensity must be one of {', '.join(_INTENSITIES)}, got {self.intensity!r}"
            )
        if self.sigma < 0 or self.split_sigma < 0:
            raise ValueError(
                f"sigma and split_sigma must be >= 0, got {self.sigma}, {self.split_sigma}"
            )
        if (self.background_radius is not None and self.background_radius < 1) or self.k_noise <= 0:
            raise ValueError(
                f"need background_radius >= 1 and k_noise > 0, got {self.background_radius}, {self.k_noise}"
            )
        if not 0.0 <= self.refine_fraction < 1.0:
            raise ValueError(f"refine_fraction must be in [0, 1), got {self.refine_fraction}")
        if self.block_size < 3 or self.block_size % 2 == 0:
            raise ValueError(f"block_size must be an odd int >= 3, got {self.block_size}")
        if not 0.0 <= self.min_area_rel < 1.0:
            raise ValueError(f"min_area_rel must be in [0, 1), got {self.min_area_rel}")
        if self.min_area < 0:
            raise ValueError(f"min_area must be >= 0, got {self.min_area}")
        if self.max_area is not None and self.max_area <= 0:
            raise ValueError(f"max_area must be > 0 or None, got {self.max_area}")
        if self.threshold_scale <= 0:
            raise ValueError(f"threshold_scale must be > 0, got {self.threshold_scale}")
        if self.opening < 0 or self.min_distance < 1 or self.h < 0:
            raise ValueError(
                f"need opening >= 0, min_distance >= 1, h >= 0; got {self.opening}, "
                f"{self.min_distance}, {self.h}"
            )


class ClassicalSegmenter:
    """Threshold + watershed segmenter; ``ClassicalSegmenter(sigma=2, threshold="li")``.

    Keyword options are the fields of :class:`ClassicalConfig` (or pass ``config=``);
    unknown options raise ``ValueError`` listing the valid ones.
    """

    name = "classical"

    def __init__(self, config: ClassicalConfig | None = None, **options: Any) -> None:
        from sam_detect.registry import merge_config

        self.config = ClassicalConfig(**merge_config(ClassicalConfig, config, options, "classical segmenter"))
        self._cache_key: bytes | None = None
        self._cache: tuple[np.ndarray, np.ndarray, np.ndarray, float, str] | None = None

    def __repr__(self) -> str:
        return f"ClassicalSegmenter({self.config})"

    # -- protocol -------------------------------------------------------------------------
    def segment(self, image: np.ndarray) -> Instances:
        """Candidate instances of ``image`` ``(H, W, 3)`` uint8 RGB (gray ``(H, W)`` accepted).

        Returns:
            ``Instances`` with masks ``(N, H, W)`` bool, boxes XYXY, scores in ``[0, 1]``,
            ``data["area"]`` (int64 pixels), ``data["contrast"]``, ``data["solidity"]``;
            ``metadata["segmenter"]``, ``metadata["threshold"]`` (0..255 units, or
            ``None`` for ``local``) and ``metadata["polarity"]`` (``bright``/``dark``).
        """
        labels, fg_raw, intensity, thr, polarity = self._label(image)
        inst = self._instances_from_labels(labels, intensity, thr, polarity)
        inst.metadata.update(
            {
                "segmenter": self.name,
                "threshold": thr if self.config.threshold != "local" else None,
                "polarity": polarity,
            }
        )
        return inst

    def label_image(self, image: np.ndarray) -> np.ndarray:
        """The segmentation as an ``(H, W)`` int32 label image (0: background, 1..N)."""
        return self._label(image)[0].copy()

    def prompt(
        self,
        image: np.ndarray,
        box: np.ndarray | None = None,
        point: np.ndarray | None = None,
    ) -> Instances:
        """One instance for a prompt on ``image`` ``(H, W, 3)`` uint8 RGB.

        Args:
            box: ``(4,)`` XYXY pixels: the instance overlapping the box best (IoU with the
                box rectangle, mask clipped to the box); if none overlaps, the thresholded
                object inside the box (Otsu on the box, largest component).
            point: ``(2,)`` XY pixels: the instance under the point; else the thresholded
                component under it (before size filters).
            Both: the instance under the point, clipped to the box.

        Returns:
            ``Instances`` of length 1, or empty when nothing is found there.
        """
        img = self._check_image(image)
        h, w = img.shape[:2]
        if box is None and point is None:
            raise AnnotationError(
                "prompt needs a box (x1, y1, x2, y2) or a point (x, y); got neither"
            )
        bx = _check_box(box, h, w) if box is not None else None
        pt = _check_point(point, h, w) if point is not None else None
        labels, fg_raw, intensity, thr, polarity = self._label(img)
        mask = None
        if pt is not None:
            x, y = pt
            lab = int(labels[y, x])
            if lab > 0:
                mask = labels == lab
            elif fg_raw[y, x]:
                from scipy import ndimage as ndi

                comp, _ = ndi.label(fg_raw)
                mask = comp == comp[y, x]
            if mask is not None and bx is not None:
                mask = _clip_to_box(mask, bx)
        else:
            mask = self._best_in_box(labels, bx)
            if mask is None:
                mask = self._threshold_in_box(intensity, bx, polarity)
        if mask is None or not mask.any():
            return Instances.empty((h, w))
        labels1 = mask.astype(np.int32)
        inst = self._instances_from_labels(labels1, intensity, thr, polarity, min_area=1)
        inst.metadata.update(
            {"segmenter": self.name, "prompt": "point" if pt is not None else "box"}
        )
        return inst

    # -- internals ------------------------------------------------------------------------
    @staticmethod
    def _check_image(image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)`` uint8 as given; other dtypes/layouts go through ``to_rgb_uint8``."""
        img = np.asarray(image)
        if img.ndim == 3 and img.shape[2] == 1:
            img = img[..., 0]
        if img.dtype == np.uint8 and (img.ndim == 2 or (img.ndim == 3 and img.shape[2] in (3, 4))):
            if img.shape[0] == 0 or img.shape[1] == 0:
                raise ImageLoadError(f"image is empty (shape {img.shape})")
            return img
        from sam_detect.io.images import to_rgb_uint8

        return to_rgb_uint8(img)

    def _intensity(self, img: np.ndarray) -> np.ndarray:
        """``(H, W)`` float32 in 0..255."""
        if img.ndim == 2:
            return img.astype(np.float32)
        rgb = img[..., :3]
        mode = self.config.intensity
        if mode == "gray":
            import cv2

            return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY).astype(np.float32)
        if mode == "max":
            return rgb.max(axis=2).astype(np.float32)
        return rgb[..., {"red": 0, "green": 1, "blue": 2}[mode]].astype(np.float32)

    def _label(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str]:
        """(labels int32, foreground before size filters, intensity, threshold, polarity)."""
        img = self._check_image(image)
        # the options are part of the key: a config edited in place must not hit a stale entry
        key = (
            hashlib.blake2b(img.tobytes(), digest_size=16).digest()
            + repr((img.shape, self.config)).encode()
        )
        if self._cache_key == key and self._cache is not None:
            return self._cache
        result = self._compute_labels(img)
        self._cache_key, self._cache = key, result  # prompts reuse one segmentation per image
        return result

    def _compute_labels(self, img: np.ndarray):
        import cv2
        from skimage import filters

        cfg = self.config
        inten = self._intensity(img)
        smooth = (
            cv2.GaussianBlur(inten, (0, 0), cfg.sigma, borderType=cv2.BORDER_REFLECT)
            if cfg.sigma > 0
            else inten
        )
        if np.ptp(smooth) == 0:  # a flat image holds no objects
            h, w = smooth.shape
            empty = np.zeros((h, w), dtype=np.int32)
            return empty, np.zeros((h, w), bool), inten, float(smooth.flat[0]), "bright"
        if cfg.threshold == "tophat":
            radius = cfg.background_radius or _object_scale_radius(smooth, cfg.min_area)
            polarity = self._local_polarity(smooth, radius)
            x = smooth if polarity == "bright" else 255.0 - smooth
            resid = x - _background(x, radius)
            offset = max(cfg.k_noise * _noise_sigma(resid), 1.0)
            fg = resid > offset
            bg_level = float(np.median(x[~fg])) if (~fg).any() else 0.0
            # in intensity units, for scores and metadata
            thr = bg_level + offset if polarity == "bright" else 255.0 - (bg_level + offset)
        elif cfg.threshold == "local":
            # skimage's threshold_local(method="gaussian") computed with OpenCV's faster blur
            thr_img = cv2.GaussianBlur(
                smooth, (0, 0), (cfg.block_size - 1) / 6.0, borderType=cv2.BORDER_REFLECT
            )
            resid = smooth - thr_img
            if cfg.local_offset is None:
                offset = max(3.0 * _noise_sigma(resid), 1.0)  # objects: the far tail
            else:
                offset = float(cfg.local_offset)
            polarity = self._local_polarity(smooth, (cfg.block_size - 1) / 3.0)
            fg = resid > offset if polarity == "bright" else resid < -offset
            # for scores only: a global level between objects and background
            thr = float(filters.threshold_otsu(smooth))
        else:
            thr = float(_global_threshold(smooth, cfg.threshold)) * cfg.threshold_scale
            polarity = self._polarity(smooth, thr)
            fg = smooth > thr if polarity == "bright" else smooth < thr
        if cfg.fill_holes:
            fg = _fill_holes(fg)
        if cfg.refine and fg.any():
            x = smooth if polarity == "bright" else 255.0 - smooth
            fg = _refine_objects(fg, x, cfg.refine_fraction)
            if cfg.fill_holes:
                fg = _fill_holes(fg)
        if cfg.opening > 0:
            fg = cv2.morphologyEx(
                fg.view(np.uint8),
                cv2.MORPH_OPEN,
                cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cfg.opening + 1,) * 2),
            ).view(bool)
        fg_raw = fg
        if cfg.split and fg.any():
            labels = _split_touching(fg, cfg.split_sigma, cfg.h, cfg.min_distance)
        else:
            labels = cv2.connectedComponents(fg.view(np.uint8), connectivity=8, ltype=cv2.CV_32S)[1]
        labels = self._filter(labels.astype(np.int32, copy=False), fg.shape)
        return labels, fg_raw, inten, float(thr), polarity

    def _local_polarity(self, smooth: np.ndarray, radius: float) -> str:
        """``auto`` for local methods: objects are the longer tail of (image - local mean),
        which an uneven background does not fool as it fools the global minority rule."""
        if self.config.polarity != "auto":
            return self.config.polarity
        import cv2

        resid = smooth - cv2.GaussianBlur(
            smooth, (0, 0), max(radius / 2.0, 1.0), borderType=cv2.BORDER_REFLECT
        )
        sample = resid.ravel()[:: max(1, resid.size // 200_000)]
        hi, lo = np.percentile(sample, [99.5, 0.5])
        return "bright" if hi >= -lo else "dark"

    def _polarity(self, smooth: np.ndarray, thr: float) -> str:
        if self.config.polarity != "auto":
            return self.config.polarity
        return "bright" if float((smooth > thr).mean()) <= 0.5 else "dark"

    def _filter(self, labels: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
        from skimage import segmentation

        cfg = self.config
        if cfg.remove_border:
            labels = segmentation.clear_border(labels)
        areas = np.bincount(labels.ravel())
        keep = areas >= max(cfg.min_area, 1)
        if cfg.min_area_rel > 0 and keep[1:].any():
            median = float(np.median(areas[1:][keep[1:]]))
            keep &= areas >= cfg.min_area_rel * median
        if cfg.max_area is not None:
            max_px = cfg.max_area * hw[0] * hw[1] if cfg.max_area <= 1 else cfg.max_area
            keep &= areas <= max_px
        keep[0] = False
        # relabel 1..N in order of first appearance
        lut = np.zeros(areas.shape[0], dtype=np.int32)
        lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        return lut[labels]

    def _instances_from_labels(
        self,
        labels: np.ndarray,
        intensity: np.ndarray,
        thr: float,
        polarity: str,
        min_area: int = 0,
    ) -> Instances:
        """Masks from a label image through per-object slices (never N full-image compares)."""
        from scipy import ndimage as ndi

        h, w = labels.shape
        flat = labels.ravel()
        n_lab = int(flat.max()) if flat.size else 0
        counts = np.bincount(flat, minlength=n_lab + 1)
        sums = np.bincount(flat, weights=intensity.ravel(), minlength=n_lab + 1)
        objs = ndi.find_objects(labels)
        ids = [
            i for i, sl in enumerate(objs, 1) if sl is not None and counts[i] >= max(min_area, 1)
        ]
        n = len(ids)
        masks = np.zeros((n, h, w), dtype=bool)
        boxes = np.zeros((n, 4), dtype=np.float32)
        areas = counts[ids].astype(np.int64) if n else np.zeros(0, np.int64)
        solidity = np.ones(n, dtype=np.float32)
        # contrast: object mean vs the background level, relative to the threshold's margin
        bg = float(sums[0] / counts[0]) if counts[0] else 0.0
        span = abs(thr - bg) + 1e-6
        means = sums[ids] / np.maximum(counts[ids], 1) if n else np.zeros(0)
        delta = (means - bg) if polarity == "bright" else (bg - means)
        contrast = np.clip(delta / (2.0 * span), 0.0, 1.0).astype(np.float32)
        for k, i in enumerate(ids):
            sl = objs[i - 1]
            m = labels[sl] == i
            masks[(k, *sl)] = m
            boxes[k] = (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
            solidity[k] = _solidity(m, int(areas[k]))
        scores = np.clip(0.5 * (contrast + solidity), 0.0, 1.0)
        return Instances(
            masks=masks,
            boxes=boxes,
            scores=scores,
            data={"area": areas, "contrast": contrast, "solidity": solidity},
        )

    @staticmethod
    def _best_in_box(labels: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray | None:
        x0, y0, x1, y1 = box
        sub = labels[y0:y1, x0:x1]
        ids, inside = np.unique(sub[sub > 0], return_counts=True)
        if ids.size == 0:
            return None
        totals = np.bincount(labels.ravel())[ids]
        box_area = (x1 - x0) * (y1 - y0)
        iou = inside / (totals + box_area - inside)
        frac_inside = inside / totals
        ok = frac_inside >= 0.5
        if not ok.any():
            return None
        best = ids[ok][np.argmax(iou[ok])]
        return _clip_to_box(labels == best, box)

    def _threshold_in_box(
        self, intensity: np.ndarray, box: tuple[int, int, int, int], polarity: str
    ) -> np.ndarray | None:
        from scipy import ndimage as ndi
        from skimage import filters

        x0, y0, x1, y1 = box
        sub = intensity[y0:y1, x0:x1]
        if sub.size < 4 or np.ptp(sub) == 0:
            return None
        t = filters.threshold_otsu(sub)
        hi, lo = sub[sub > t], sub[sub <= t]
        # Otsu splits anything, plain noise too: require a clear two-class box (Otsu's
        # effectiveness, between-class over total variance, is ~0.64 for Gaussian noise)
        eff = hi.size * lo.size / sub.size**2 * (hi.mean() - lo.mean()) ** 2 / max(sub.var(), 1e-12)
        if eff < _MIN_OTSU_EFFECTIVENESS or hi.mean() - lo.mean() < _MIN_BOX_CONTRAST:
            return None
        fg = sub > t if polarity == "bright" else sub < t
        fg = _fill_holes(fg)
        comp, n = ndi.label(fg)
        if n == 0:
            return None
        sizes = np.bincount(comp.ravel())
        sizes[0] = 0
        mask = np.zeros(intensity.shape, dtype=bool)
        mask[y0:y1, x0:x1] = comp == int(np.argmax(sizes))
        return mask


def _global_threshold(x: np.ndarray, method: str) -> float:
    from skimage import filters

    fn = {
        "otsu": filters.threshold_otsu,
        "li": filters.threshold_li,
        "triangle": filters.threshold_triangle,
        "yen": filters.threshold_yen,
        "mean": filters.threshold_mean,
    }[method]
    return float(fn(x))


def _fill_holes(fg: np.ndarray) -> np.ndarray:
    """Fill background regions not connected to the image border (``binary_fill_holes``)."""
    import cv2

    n, bg_lab = cv2.connectedComponents((~fg).view(np.uint8), connectivity=4, ltype=cv2.CV_32S)
    if n <= 1:  # no background at all
        return fg
    border = np.unique(np.concatenate([bg_lab[0], bg_lab[-1], bg_lab[:, 0], bg_lab[:, -1]]))
    outside = np.zeros(n, dtype=bool)
    outside[border] = True
    outside[0] = True  # label 0 is the foreground itself
    return fg | ~outside[bg_lab]


def _split_touching(fg: np.ndarray, split_sigma: float, h: float, min_distance: int) -> np.ndarray:
    """Watershed of touching objects, seeded at the h-maxima of the distance transform.

    The h-maxima are computed per connected component on its bounding box, which is much
    cheaper than on the whole image (their cost grows as ``n log n`` in pixels).
    """
    import cv2
    from skimage import morphology, segmentation

    fg8 = fg.view(np.uint8)
    # pad with background so objects cut by the border peak inside the image
    dist = cv2.distanceTransform(
        cv2.copyMakeBorder(fg8, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0),
        cv2.DIST_L2,
        cv2.DIST_MASK_PRECISE,
    )[1:-1, 1:-1]
    if split_sigma > 0:
        dist = cv2.GaussianBlur(dist, (0, 0), split_sigma)
    dist = np.where(fg, dist, 0).astype(np.float32)
    n, comp, stats, _ = cv2.connectedComponentsWithStats(fg8, connectivity=8, ltype=cv2.CV_32S)
    markers = np.zeros(fg.shape, dtype=np.int32)
    next_id = 1
    for c in range(1, n):
        x, y, bw, bh, _area = stats[c]
        sl = (slice(y, y + bh), slice(x, x + bw))
        m = comp[sl] == c
        d = np.where(m, dist[sl], 0)
        peak = float(d.max())
        if (h > 0 and peak < 2 * h) or _solidity(m, int(_area)) >= _CONVEX_SOLIDITY:
            # too thin to hold two h-separated maxima, or convex (touching objects leave a
            # notch): one seed, the component itself; skips the costly h-maxima
            markers[sl][m] = next_id
            next_id += 1
            continue
        seeds = morphology.h_maxima(d, h) if h > 0 else morphology.local_maxima(d)
        seed_lab = cv2.connectedComponents(
            seeds.astype(np.uint8), connectivity=8, ltype=cv2.CV_32S
        )[1]
        k = int(seed_lab.max())
        if k == 0:
            markers[sl][comp[sl] == c] = next_id
            next_id += 1
            continue
        if k > 1 and min_distance > 1:
            seed_lab = _merge_close_seeds(seed_lab, min_distance)
            k = int(seed_lab.max())
        if k == 1:
            markers[sl][comp[sl] == c] = next_id
            next_id += 1
            continue
        sub = markers[sl]
        sub[seed_lab > 0] = seed_lab[seed_lab > 0] + (next_id - 1)
        next_id += k
    if next_id - 1 == n - 1:  # nothing to split
        return comp
    return segmentation.watershed(-dist, markers, mask=fg).astype(np.int32)


def _object_scale_radius(smooth: np.ndarray, min_area: int) -> int:
    """Background radius for ``tophat`` from the object sizes of a first Otsu pass (either
    polarity: the minority class), ``2.5 x`` the radius of the 95th-percentile area."""
    import cv2
    from skimage import filters

    t = filters.threshold_otsu(smooth)
    fg = smooth > t
    if fg.mean() > 0.5:
        fg = ~fg
    n, _, stats, _ = cv2.connectedComponentsWithStats(
        fg.view(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    areas = stats[1:, cv2.CC_STAT_AREA]
    areas = areas[areas >= max(min_area, 1)]
    if areas.size == 0:
        return _DEFAULT_BACKGROUND_RADIUS
    r95 = float(np.sqrt(np.percentile(areas, 95) / np.pi))
    return int(np.clip(round(2.5 * r95), 15, 400))


def _background(x: np.ndarray, radius: int) -> np.ndarray:
    """Smooth background under bright objects narrower than ``2 * radius``: a morphological
    opening (rolling-ball-like) computed at reduced resolution for speed, then blurred."""
    import cv2

    h, w = x.shape
    # a kernel of radius ~12 at low resolution: elliptic erosion costs grow with its area
    f = int(np.clip(radius // 12, 1, max(1, min(h, w) // 16)))
    small = (
        cv2.resize(x, (max(1, w // f), max(1, h // f)), interpolation=cv2.INTER_AREA)
        if f > 1
        else x
    )
    r = max(1, radius // f)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
    # replicated borders keep the opening exact for backgrounds that rise toward an edge
    padded = cv2.copyMakeBorder(small, r, r, r, r, cv2.BORDER_REPLICATE)
    bg = cv2.morphologyEx(padded, cv2.MORPH_OPEN, kernel)
    bg = cv2.GaussianBlur(bg, (0, 0), max(1.0, r / 4), borderType=cv2.BORDER_REPLICATE)
    bg = bg[r:-r, r:-r]
    if f > 1:
        bg = cv2.resize(bg, (w, h), interpolation=cv2.INTER_LINEAR)
    return bg


def _noise_sigma(resid: np.ndarray) -> float:
    """Robust standard deviation (1.4826 x MAD) of a residual image, from a subsample."""
    sample = resid.ravel()[:: max(1, resid.size // 200_000)]
    return float(1.4826 * np.median(np.abs(sample - np.median(sample))))


def _refine_objects(fg: np.ndarray, x: np.ndarray, fraction: float) -> np.ndarray:
    """Per connected component, drop pixels below ``bg + fraction * (peak - bg)``.

    ``peak`` is the component's 95th intensity percentile and ``bg`` the median outside all
    components, so each object is cut at a fixed fraction of its own height: dim objects
    keep their extent while blur halos and haze around bright ones are trimmed (a pair
    joined only by haze falls apart into two components).
    """
    import cv2

    n, comp, stats, _ = cv2.connectedComponentsWithStats(
        fg.view(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    if n <= 1:
        return fg
    bg = float(np.median(x[~fg])) if (~fg).any() else 0.0
    out = fg.copy()
    for c in range(1, n):
        x0, y0, bw, bh, area = stats[c]
        if area < _MIN_REFINE_AREA:
            continue
        sl = (slice(y0, y0 + bh), slice(x0, x0 + bw))
        m = comp[sl] == c
        xs = x[sl]
        peak = float(np.percentile(xs[m], 95))
        out[sl][m & (xs <= bg + fraction * (peak - bg))] = False
    return out


def _merge_close_seeds(markers: np.ndarray, min_distance: int) -> np.ndarray:
    """Relabel ``1..K`` so that seeds whose centroids are closer than ``min_distance`` merge."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components
    from scipy.spatial import cKDTree

    ys, xs = np.nonzero(markers)
    lab = markers[ys, xs]
    n = int(markers.max())
    cnt = np.bincount(lab, minlength=n + 1)[1:]
    present = cnt > 0
    cy = np.bincount(lab, weights=ys, minlength=n + 1)[1:][present] / cnt[present]
    cx = np.bincount(lab, weights=xs, minlength=n + 1)[1:][present] / cnt[present]
    old_ids = np.flatnonzero(present) + 1
    pairs = cKDTree(np.column_stack([cy, cx])).query_pairs(r=min_distance, output_type="ndarray")
    m = len(old_ids)
    graph = coo_matrix(
        (np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])) if len(pairs) else ([], ([], [])),
        shape=(m, m),
    )
    _, comp = connected_components(graph, directed=False)
    lut = np.zeros(n + 1, dtype=np.int32)
    lut[old_ids] = comp + 1
    return lut[markers]


def _solidity(mask: np.ndarray, area: int) -> float:
    """Area over convex-hull area in pixels (skimage's ``solidity``, via OpenCV)."""
    import cv2

    if area < 3:
        return 1.0
    m8 = np.ascontiguousarray(mask, dtype=np.uint8)
    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    if not contours:
        return 1.0
    hull = cv2.convexHull(np.vstack(contours))
    filled = np.zeros_like(m8)
    cv2.fillConvexPoly(filled, hull, 1)
    return float(min(1.0, area / max(int(filled.sum()), 1)))


def _check_box(box: Any, h: int, w: int) -> tuple[int, int, int, int]:
    b = np.asarray(box, dtype=np.float64).reshape(-1)
    if b.shape != (4,) or not np.isfinite(b).all():
        raise AnnotationError(f"box must be 4 numbers (x1, y1, x2, y2), got {box!r}")
    x0, y0 = int(np.floor(max(b[0], 0))), int(np.floor(max(b[1], 0)))
    x1, y1 = int(np.ceil(min(b[2], w))), int(np.ceil(min(b[3], h)))
    if x1 <= x0 or y1 <= y0:
        raise AnnotationError(
            f"box {tuple(b.tolist())} is empty or outside the image ({w}x{h}); expected x1 < x2, y1 < y2"
        )
    return x0, y0, x1, y1


def _check_point(point: Any, h: int, w: int) -> tuple[int, int]:
    p = np.asarray(point, dtype=np.float64).reshape(-1)
    if p.shape != (2,) or not np.isfinite(p).all():
        raise AnnotationError(f"point must be 2 numbers (x, y), got {point!r}")
    x, y = int(np.floor(p[0])), int(np.floor(p[1]))
    if not (0 <= x < w and 0 <= y < h):
        raise AnnotationError(f"point ({p[0]:g}, {p[1]:g}) is outside the image ({w}x{h})")
    return x, y


def _clip_to_box(mask: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = mask[y0:y1, x0:x1]
    return out


__all__ = ["ClassicalConfig", "ClassicalSegmenter"]
