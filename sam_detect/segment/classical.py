"""The ``classical`` segmenter: threshold, fill, distance-transform watershed. No weights.

The offline default for microscopy (fluorescent nuclei, blobs on a plain background):

1. intensity from the RGB image (luminance, one channel, or the channel maximum; a frame of
   one channel shown in one colour, such as a blue DAPI frame, is read in that channel; a
   stained slide in transmitted light, such as H&E, by its haematoxylin density);
2. optional Gaussian smoothing;
3. a threshold (``tophat``: k noise sigmas above a local background, the default, or Otsu's
   on a stain's density; or ``otsu``, ``li``, ``triangle``, ``yen``, ``mean``, ``local``) with
   a polarity: ``bright`` objects, ``dark`` objects, or ``auto`` (the minority class; a
   stain's dense pixels);
4. hole filling; per-object refinement (each object cut at a fraction of its own height
   above the background, trimming halos and haze); a small opening;
5. touching objects split by a watershed on the smoothed distance transform, seeded at its
   regional maxima (h-maxima, so that one elongated object does not get one seed per bump);
6. ``min_area`` / ``max_area`` filters; border-touching objects dropped only if asked.

Steps 1-3 and the first hole filling run on the whole image; the rest runs on the whole
image or, for large images, in overlapping tiles whose objects are merged across the
seams (``tile_size``). Masks are
kept as box crops (``Instances.from_crops``), never as one full-image array per object.

Scores in ``[0, 1]`` rank how object-like a region is: the mean of its solidity and its
contrast against the threshold (``data["contrast"]``, ``data["solidity"]``, ``data["area"]``).

Options: :mod:`sam_detect.segment.classical_config`; the array operations (thresholds,
background, refinement, watershed split, label statistics):
:mod:`sam_detect.segment.classical_ops`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections import OrderedDict
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.instances import Instances
from sam_detect.segment.classical_config import (
    _AUTO_TILE_SIZE,
    ClassicalConfig,
    Polarity,
    ThresholdMethod,
)
from sam_detect.segment.classical_ops import (
    _background,
    _build_instances,
    _clip_crop,
    _component_at,
    _fill_holes,
    _global_threshold,
    _label_counts,
    _label_sums,
    _local_mean,
    _local_noise_sigma,
    _median_outside,
    _noise_sigma,
    _object_scale_radius,
    _refine_objects,
    _relabel,
    _split_touching,
    along_border,
    flat,
    otsu,
)

# thresholding inside a prompt box: minimum Otsu effectiveness (between-class over total
# variance) of the box blurred by a Gaussian of _GATE_BLUR px, and class contrast (0..255).
# Noise scores ~0.64 blurred or not (uniform noise 0.75 unblurred, 0.64 blurred); a coin in a
# box drawn tight around it 0.76 unblurred, 0.83 blurred. Chosen on the development sets
# (scripts/bench_clicks.py; docs/performance.md, session 19): unblurred at 0.8 before
_MIN_OTSU_EFFECTIVENESS = 0.75
_GATE_BLUR = 1.0
_MIN_BOX_CONTRAST = 8.0
#: images whose segmentation the segmenter keeps for the prompts that follow, the newest
#: always, older ones while all of them hold at most LABEL_CACHE_PIXELS pixels (a 4096 x 4096
#: image and the 1024 x 1024 region a guided prompt proposes in; not two large images of a
#: batch, which would double its memory)
LABEL_CACHE = 2
LABEL_CACHE_PIXELS = 4096 * 4096 + 1024 * 1024
#: half the side of the first window a point prompt thresholds around the point (pixels)
POINT_WINDOW = 16
#: a region that a point prompt's window thresholding grows into and that lies along more
#: than this share of a side of the image is ground, not an object (a click on the
#: background of scikit-image's coins gave its 9,416-px bright top band, along 0.84 of the
#: top). An object the border cuts lies along a short stretch of it
GROUND_SPAN = 0.5
#: a ``tophat`` foreground below this share of the image is nothing: the noise is measured
#: again from neighbouring pixels (the dense-field fallback)
NEARLY_NOTHING = 1e-3
#: how many windows (each twice as wide as the last) a prompt's own class is looked for in
PROMPT_POLARITY_WINDOWS = 3
#: a box prompt's edge: the pixels within this many of its sides, its ground
BOX_EDGE = 2


class ClassicalSegmenter:
    """Threshold + watershed segmenter; ``ClassicalSegmenter(sigma=2, threshold="li")``.

    Keyword options are the fields of :class:`ClassicalConfig` (or pass ``config=``);
    unknown options raise ``ValueError`` listing the valid ones.
    """

    name = "classical"
    uses_network = False  # host work only: detect runs the embedder's network beside it

    def __init__(self, config: ClassicalConfig | None = None, **options: Any) -> None:
        from sam_detect.registry import merge_config

        self.config = ClassicalConfig(**merge_config(ClassicalConfig, config, options, "classical segmenter"))
        # the last LABEL_CACHE images' segmentations, newest last (prompts reuse them)
        self._cache: OrderedDict[bytes, tuple[np.ndarray, np.ndarray, np.ndarray, float, str]] = OrderedDict()
        self._cache_objects: tuple[np.ndarray, list, np.ndarray] | None = None
        self._cache_total: tuple[np.ndarray, float] | None = None
        self._as_light: ClassicalSegmenter | None = None  # own_setting's reading, made once

    def __repr__(self) -> str:
        return f"ClassicalSegmenter({self.config})"

    # -- protocol -------------------------------------------------------------------------
    def segment(self, image: np.ndarray, profile: dict | None = None) -> Instances:
        """Candidate instances of ``image`` ``(H, W, 3)`` uint8 RGB (gray ``(H, W)`` accepted).

        ``profile``: a library's proposal profile (``sam_detect.profile``). Each class that
        has calibrated settings proposes with them instead of this segmenter's own options:
        its colour direction, background, levels and split strength, within its size range
        (overlapping alternatives: the pipeline's selection step chooses); this segmenter's
        own settings are one of them where the examples chose them.
        ``metadata["calibrated"]`` lists the classes that proposed; ``metadata["size_shift"]``
        (only where there is one) the classes proposed again at this image's own scale,
        with their log-area shift from the examples (``sam_detect.profile.size_shift``:
        an image taken at another magnification; ``probe_shift``: objects so far off the
        examples' size that it proposes them only in pieces, looked for at 4x and a quarter
        of it; none where another class finds its objects at its examples' size,
        ``profile.holds_size``: a magnification is the image's, not one class's; none where
        the image's other whole objects lag behind it towards the examples' size,
        ``profile.wholes_follow``, or the class proposed at it keeps too few of its sure
        objects, ``profile.shift_holds``,
        and then ``metadata["size_shift_refused"]`` says the shift refused);
        ``metadata["ground_shift"]`` how far each bright class's flat background was raised
        to follow this image's brighter ground (``sam_detect.profile.ground_shift``; only
        where it was); ``metadata["noise"]`` each bright class's pixel noise along its colour direction
        (``calibrated.noise_sigma``: what ``profile.size_filter`` asks a candidate dimmer
        than the examples to stand out by) and ``metadata["pixel_noise"]`` the same from
        neighbouring pixels' differences (``calibrated.pixel_noise``: what every candidate
        must stand out by).

        Returns:
            ``Instances`` with masks (kept as box crops), boxes XYXY, scores in ``[0, 1]``,
            ``data["area"]`` (int64 pixels), ``data["contrast"]``, ``data["solidity"]``;
            ``metadata["segmenter"]``, ``metadata["threshold"]`` (0..255 units, or
            ``None`` for ``local``), ``metadata["polarity"]`` (``bright``/``dark``) and
            ``metadata["tiles"]`` (how many tiles the per-object stages ran in; 1: none).
        """
        calibrated = _calibrated_classes(profile)
        if calibrated:
            return self._segment_calibrated(image, calibrated, (profile or {}).get("image_grey_levels"),
                                            (profile or {}).get("image_ground"))
        labels, fg_raw, intensity, thr, polarity = self._label(image)
        inst = self._instances_from_labels(labels, intensity, thr, polarity)
        inst.metadata.update(
            {
                "segmenter": self.name,
                "threshold": thr if self.config.threshold != "local" else None,
                "polarity": polarity,
                "tiles": len(self._windows(labels.shape)),
            }
        )
        return inst

    def own_setting(self, image: np.ndarray) -> Instances:
        """What this segmenter's own settings propose as one setting of the examples' grid
        (``calibrated.OWN``, measured at ``add`` and offered at ``detect`` where it reproduces
        the examples about as well as their lead): :meth:`segment` without a profile, but with
        the reading and threshold left to the segmenter (``"auto"``) taken as light is read,
        luminance and ``tophat``, on every image. A stained slide's haematoxylin reading,
        offered there, joined the H&E settings and cost the development H&E patches 0.567 ->
        0.556 (docs/performance.md, session 85); the examples' own settings read the stain."""
        if self.config.intensity != "auto" and self.config.threshold != "auto":
            return self.segment(image)
        return self._light().segment(image)

    def _light(self) -> ClassicalSegmenter:
        """This segmenter with the reading and threshold left to it (``"auto"``) taken as light
        is read, luminance and ``tophat``, on every image (made once)."""
        cfg = self.config
        if self._as_light is None:
            self._as_light = ClassicalSegmenter(config=dataclasses.replace(
                cfg, intensity="gray" if cfg.intensity == "auto" else cfg.intensity,
                threshold="tophat" if cfg.threshold == "auto" else cfg.threshold))
        return self._as_light

    def _segment_calibrated(self, image: np.ndarray, classes: dict[str, dict],
                            levels: tuple[float, float] | None = None,
                            grounds: dict[str, list[float]] | None = None) -> Instances:
        """``levels``: the grey levels of the image ``image`` was cut from (a prompt's region:
        its exposure is judged on the whole image, so that the region is proposed as the
        whole image is); measured on ``image`` where ``None``. ``grounds``: that image's
        ground colour per class (``profile.ground_colour``), the same way."""
        from sam_detect.profile import (
            LEVEL_GAIN,
            SAME_EXPOSURE,
            at_levels,
            grey_levels,
            grey_ratio,
            ground_shift,
            holds_size,
            image_objects,
            level_gain,
            probe_shift,
            scale_of,
            shift_holds,
            size_shift,
            sure_objects,
            wholes_follow,
        )
        from sam_detect.segment.calibrated import OWN, Setting, noise_sigma, pixel_noise

        img = self._check_image(image)
        tile = self._tile_side(img.shape[:2])  # large images are proposed window by window
        parts, own, shifts, gains, ratios, noises, pixel, grounded = [], None, {}, {}, {}, {}, {}, {}
        if levels is None and any("grey_levels" in e for e in classes.values()):
            levels = grey_levels(img)
        first = []  # each class at its examples' size: (label, entry, its proposer, candidates, sure ones)
        for label, entry in classes.items():
            settings = [Setting(**s) for s in entry["settings"]]
            if OWN in settings and own is None:
                own = self.own_setting(img)  # this segmenter's own settings, one of the alternatives
            gain = level_gain(levels, entry)
            seen = img if gain is None else at_levels(img, gain)  # another exposure: the examples' levels
            if gain is not None:
                gains[label] = [float(gain[0]), float(gain[1])]  # (a, b): detect embeds the same mapping
            elif (ratio := grey_ratio(levels, entry)) is not None and 1.0 / LEVEL_GAIN <= ratio < 1 - SAME_EXPOSURE:
                ratios[label] = round(ratio, 4)  # dimmer than the examples' image, within the gain's limit
            exposure = ratios.get(label, 1.0)  # its levels and contrast floors in this image's grey values
            ground = ground_shift(img, entry, gain, (grounds or {}).get(label))  # its flat background's move
            if ground:
                grounded[label] = ground
            at = functools.partial(_propose_at, seen, label, entry, settings, exposure, ground or 0.0, own, tile)
            _, part = at(0.0)
            sure = sure_objects(part, label, entry) if len(part) else np.zeros(0, bool)
            first.append((label, entry, at, part, sure))
            if entry.get("polarity") == "bright" and "contrast_floor" in entry:
                # what a dim candidate must stand out by to be kept below the examples' floor
                scale = scale_of(entry)
                noises[label] = round(noise_sigma(seen, scale), 4)
                pixel[label] = round(pixel_noise(seen, scale), 4)
        # a magnification is the image's, not a class's: where one class finds its objects at its
        # examples' size, no class is looked for at another
        same_scale = len(first) > 1 and any(holds_size(part, entry, sure) for _, entry, _, part, sure in first)
        refused: dict[str, float] = {}  # shifts said by the sure objects that did not hold (profile.shift_holds)
        for label, entry, at, part, sure in first:
            # its sure objects, or its isolated wholes where too few are sure, may say a shift;
            # the probes below ask the sure ones (isolated wholes at the examples' size may be
            # clumps of smaller objects drawn at that size)
            shift = 0.0 if same_scale else size_shift(part, label, entry, sure=image_objects(part, label, entry, sure))
            if shift:  # another magnification: propose again at the image's own scale
                # unless the image's other whole objects lag behind it towards the examples' size, or the
                # settings agree on far fewer objects there: its largest objects, not a magnification
                holds = wholes_follow(part, label, entry, sure, shift)
                if holds:
                    moved, shifted = at(shift)
                    holds = shift_holds(int(sure.sum()), shifted, label, moved)
                if holds:
                    part = shifted
                else:
                    refused[label] = round(shift, 4)
                    shift = 0.0
            elif not same_scale:  # too few of the image's objects at the examples' size? try far off it
                shift, probed = probe_shift(part, label, entry, at, sure=sure)
                part = part if probed is None else probed  # proposed at that scale already
            if shift:
                shifts[label] = shift
            parts.append(part)
        tiles = max((p.metadata.get("tiles", 1) for p in parts), default=1)
        inst = Instances.merge(parts)
        if len(inst) == 0:
            inst = Instances.empty(img.shape[:2])
        inst.metadata.update({"segmenter": self.name, "calibrated": sorted(classes), "tiles": tiles})
        if shifts:
            inst.metadata["size_shift"] = {k: round(v, 4) for k, v in shifts.items()}
        oversize = sum(int(p.metadata.get("oversize", 0)) for p in parts)
        if oversize:  # the lead setting's regions larger than the examples' size range, left out (calibrated.propose)
            inst.metadata["oversize"] = oversize
        if refused:
            inst.metadata["size_shift_refused"] = refused
        if gains:
            inst.metadata["level_gain"] = gains
        if ratios:
            inst.metadata["grey_ratio"] = ratios
        if grounded:
            inst.metadata["ground_shift"] = grounded
        if noises:
            inst.metadata["noise"] = noises
            inst.metadata["pixel_noise"] = pixel
        return inst

    def label_image(self, image: np.ndarray) -> np.ndarray:
        """The segmentation as an ``(H, W)`` int32 label image (0: background, 1..N)."""
        return self._label(image)[0].copy()

    def prompt(self, image: np.ndarray, box: np.ndarray | None = None,
               point: np.ndarray | None = None) -> Instances:
        """One instance for a prompt on ``image`` ``(H, W, 3)`` uint8 RGB.

        Args:
            box: ``(4,)`` XYXY pixels: the instance overlapping the box best (IoU with the
                box rectangle, mask clipped to the box); if none overlaps, the thresholded
                object inside the box (Otsu on the box, largest component); if the box holds
                too little background for two clear classes (drawn tight around the
                object), Otsu on the box grown by half its longer side, the object covering
                the most of the box, clipped to it; else the image-wide foreground's piece
                in the box with the most pixels in its middle half. The first of these that
                holds some of the box's middle ninth is taken; where none does and the first
                does not lie round the box's centre either (a gap between packed bright
                nuclei in a corner, which the image-wide reading took for an object; a
                crescent round a hollow middle does), the other polarity's thresholded object
                that holds the middle and is not the box itself (``BOX_ITSELF``); else the
                first answer.
            point: ``(2,)`` XY pixels: the instance under the point; else the thresholded
                component under it (before size filters); else the object under it that
                Otsu separates in a window around it, grown until the object no longer
                reaches the window's edge (a click on a coin, whose grey levels the
                image-wide threshold made for fluorescence puts below the threshold).
            Both: the instance under the point, clipped to the box.

        What the prompt asks for is read first (:meth:`_prompt_class`, with ``polarity``
        ``auto``): where the clicked pixels, or a box's middle against its edge, are of the
        other class than the image-wide reading (a dark nucleus in an IHC slide's white
        stroma, which the image-wide threshold takes for the bright objects), the object of
        that class is looked for first: a box's pixels beyond the level half-way between its
        middle and its edge, else Otsu around the point or in the box, else (a click alone)
        the pixels beyond the level half-way between the clicked ones and their ground that
        hold the point (:meth:`_half_way_at_point`). The answers above follow where that
        finds nothing, but not for a click alone: a click whose pixels read as the other
        class finds nothing rather than the image-wide object under it, which is then its
        ground (the white stroma gap round a pale nucleus on the IHC slide).

        Returns:
            ``Instances`` of length 1, or empty when nothing is found there (with
            ``metadata["why"]`` where the click read as the other class).
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
        found: tuple[np.ndarray, tuple[int, int]] | None = None  # (mask crop, (x0, y0))
        # the prompt's own class decides what it asks for: a click on a dark nucleus in a
        # pale field whose image-wide polarity is bright (the white gaps of an IHC slide's
        # stroma, where the click gave the gap around the nucleus, holes filled, or nothing)
        asked = self._prompt_class(intensity, pt, bx) if self.config.polarity == "auto" else None
        if asked is not None and asked[0] != polarity:
            if pt is None:
                found = self._half_way_in_box(intensity, bx, *asked)
            if found is None:
                found = self._thresholded_at_prompt(intensity, pt, bx, asked[0])
            if found is None and pt is not None and bx is None:
                found = self._half_way_at_point(intensity, pt, *asked)
            if found is not None and pt is None and not _holds_middle(*found, bx):
                # a box round one of many touching bright nuclei: its edge is its brighter
                # neighbours, and the other class's piece is a gap between them in a corner (12 of
                # 30 boxes in a dense field; the profile then read the class as dark)
                found = None
            if found is not None:
                polarity = asked[0]
        if found is None and pt is not None and bx is None and asked is not None and asked[0] != polarity:
            # the clicked pixels read as the other class than the image-wide objects', and no
            # object of theirs separates there: the image-wide object under the click would
            # be its ground (the white gap round a pale nucleus, 10,150 px for 115)
            out = Instances.empty((h, w))
            out.metadata["why"] = (f"the pixels there are {'darker' if asked[0] == 'dark' else 'brighter'} than "
                                   "around them, but no such object separates from its ground there; a box "
                                   "around the object may find it")
            return out
        if found is None and pt is not None:
            x, y = pt
            lab = int(labels[y, x])
            if lab > 0:
                sl = self._object_slices(labels)[0][lab - 1]
                found = labels[sl] == lab, (sl[1].start, sl[0].start)
            elif fg_raw[y, x]:
                found = _component_at(fg_raw, x, y)
            else:
                found = self._threshold_at_point(intensity, pt, polarity)
            if found is not None and bx is not None:
                found = _clip_crop(*found, bx)
        elif found is None:
            # the first answer that holds the box's middle (else the first answer): in a field packed
            # with bright nuclei the image-wide reading may take the gaps between them for the
            # objects, and a box round a nucleus then gave a gap in its corner (12 of 30 boxes)
            answers = (lambda: self._best_in_box(labels, bx),
                       lambda: self._thresholded_at_prompt(intensity, None, bx, polarity),
                       lambda: _foreground_in_box(fg_raw, bx))
            first = None  # the image-wide reading's first answer, where none holds the middle
            for answer in answers:
                got = answer()
                if got is None or not got[0].any():
                    continue
                if _holds_middle(*got, bx):
                    found = got
                    break
                first = first or got
            if found is None and first is not None and not _round_middle(*first, bx):
                # what the reading took for objects lies off the box's middle, not round it (a gap
                # between packed nuclei in a corner; a crescent or a horseshoe round a hollow middle
                # stays the answer): the other look's object there
                other = self._thresholded_at_prompt(intensity, None, bx, _OTHER[polarity])
                box_area = max((bx[2] - bx[0]) * (bx[3] - bx[1]), 1)
                if other is not None and other[0].any() and _holds_middle(*other, bx) \
                        and np.count_nonzero(other[0]) < BOX_ITSELF * box_area:
                    found, polarity = other, _OTHER[polarity]
            found = found or first
        if found is None or not found[0].any():
            return Instances.empty((h, w))
        crop, (x0, y0) = found
        inside = float(intensity[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]][crop].sum(dtype=np.float64))
        area = int(np.count_nonzero(crop))
        rest = h * w - area
        bg = (self._intensity_total(intensity) - inside) / rest if rest else 0.0
        inst = _build_instances(
            [crop], [(x0, y0)], (h, w), np.array([area]), np.array([inside]), bg, thr, polarity
        )
        inst.metadata.update(
            {"segmenter": self.name, "prompt": "point" if pt is not None else "box"}
        )
        return inst

    # -- internals ------------------------------------------------------------------------
    @staticmethod
    def _check_image(image: np.ndarray) -> np.ndarray:
        """``(H, W, 3)``, ``(H, W)`` or ``(H, W, 4)`` uint8 as given; else ``to_rgb_uint8``."""
        from sam_detect.segment.base import as_segmenter_image

        return as_segmenter_image(image, keep_gray=True)

    def _reading(self, img: np.ndarray) -> str:
        """How ``img`` becomes one channel: ``config.intensity``, with ``"auto"`` resolved
        (``"stain"`` for a stained slide in transmitted light, ``io.render.stained``, where
        the polarity is left to the segmenter; else ``"gray"``)."""
        mode = self.config.intensity
        if mode != "auto":
            return mode
        from sam_detect.io.render import stained

        return "stain" if self.config.polarity == "auto" and img.ndim == 3 and stained(img) else "gray"

    def _intensity(self, img: np.ndarray, mode: str | None = None) -> np.ndarray:
        """``(H, W)`` uint8 (0..255): exact, a quarter of the memory of float32. ``mode``:
        :meth:`_reading`'s, found here where ``None``."""
        if img.ndim == 2:
            return img
        rgb = img[..., :3]
        mode = mode or self._reading(img)
        if mode == "gray":  # luminance; a DAPI frame in blue: its channel, not a ninth of it
            from sam_detect.io.render import luminance

            return luminance(rgb)
        if mode == "stain":  # the haematoxylin density: nuclei bright, whatever the eosin does
            from sam_detect.io.render import haematoxylin

            return haematoxylin(rgb)
        if mode == "max":
            return rgb.max(axis=2)
        return np.ascontiguousarray(rgb[..., {"red": 0, "green": 1, "blue": 2}[mode]])

    def _method(self, stain: bool) -> str:
        """``config.threshold`` with ``"auto"`` resolved: ``"otsu"`` on a stain's density,
        else ``"tophat"``."""
        if self.config.threshold != "auto":
            return self.config.threshold
        return "otsu" if stain else "tophat"

    def _label(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, str]:
        """(labels int32, foreground before size filters, intensity, threshold, polarity)."""
        img = self._check_image(image)
        # the options are part of the key: a config edited in place must not hit a stale entry
        key = (
            hashlib.blake2b(memoryview(np.ascontiguousarray(img)).cast("B"), digest_size=16).digest()
            + repr((img.shape, self.config)).encode()
        )
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        result = self._compute_labels(img)
        # prompts reuse one segmentation per image: the image prompted on, and the region
        # around the prompt that a guided prompt proposes in (SAMDetect.prompt_to_instances)
        self._cache[key] = result
        while len(self._cache) > 1 and (len(self._cache) > LABEL_CACHE or sum(
                v[0].size for v in self._cache.values()) > LABEL_CACHE_PIXELS):
            self._cache.popitem(last=False)
        return result

    def _compute_labels(self, img: np.ndarray):
        """Pixel stages on the whole image (so that tiles share one threshold, polarity and
        background), then the per-object stages on the whole image or in tiles."""
        import cv2

        cfg = self.config
        mode = self._reading(img) if img.ndim == 3 else "gray"
        inten = self._intensity(img, mode)
        stain = mode == "stain"
        smooth = inten.astype(np.float32)
        if cfg.sigma > 0:
            smooth = cv2.GaussianBlur(smooth, (0, 0), cfg.sigma, borderType=cv2.BORDER_REFLECT)
        if np.ptp(smooth) == 0:  # a flat image holds no objects
            h, w = smooth.shape
            empty = np.zeros((h, w), dtype=np.int32)
            return empty, np.zeros((h, w), bool), inten, float(smooth.flat[0]), "bright"
        fg, thr, polarity = self._threshold(smooth, stain)
        if cfg.fill_holes:
            fg = _fill_holes(fg)
        x = refine_bg = None
        if cfg.refine and fg.any():
            x = smooth if polarity == "bright" else 255.0 - smooth
            # one background level for every tile: the median outside all objects
            refine_bg = _median_outside(x, fg)
        del smooth
        windows = self._windows(fg.shape)
        if len(windows) == 1:
            fg = self._refine(fg, x, refine_bg)
            del x  # not needed any more: free it before the splitting
            fg_raw, labels = self._split_labels(fg)
        else:
            fg_raw, labels = self._tiled_labels(fg, x, refine_bg, windows)
            del x
        del fg
        labels = self._filter(labels.astype(np.int32, copy=False), labels.shape)
        return labels, fg_raw, inten, float(thr), polarity

    def _threshold(self, smooth: np.ndarray, stain: bool = False) -> tuple[np.ndarray, float, str]:
        """(foreground, threshold in intensity units, polarity) of the whole image; ``stain``:
        ``smooth`` is a stain's density (:meth:`_reading`), whose objects are the dense pixels."""
        import cv2

        cfg = self.config
        method = self._method(stain)
        # a stain's objects are its dense pixels, where the polarity is left to the segmenter
        dense = "bright" if stain and cfg.polarity == "auto" else None
        if method == "tophat":
            radius = cfg.background_radius or _object_scale_radius(smooth, cfg.min_area)
            polarity = dense or self._local_polarity(smooth, radius)
            x = smooth if polarity == "bright" else 255.0 - smooth
            resid = _background(x, radius)
            np.subtract(x, resid, out=resid)  # in place: one image-sized float32 array less
            offset = max(cfg.k_noise * _noise_sigma(resid), 1.0)
            fg = resid > offset
            if fg.mean() < NEARLY_NOTHING:
                # a dense field (objects over ~45 % of the image): the residual's median lies
                # inside the objects and its MAD measures their contrast, not the noise (a
                # few specks above that offset are nothing either: macrophages over half
                # of a frame left 13 pixels)
                offset = max(cfg.k_noise * _local_noise_sigma(resid, cfg.sigma), 1.0)
                fg = resid > offset
            del resid
            bg_level = _median_outside(x, fg)
            # in intensity units, for scores and metadata
            thr = bg_level + offset if polarity == "bright" else 255.0 - (bg_level + offset)
        elif method == "local":
            # skimage's threshold_local(method="gaussian") computed with OpenCV's faster blur
            resid = cv2.GaussianBlur(
                smooth, (0, 0), (cfg.block_size - 1) / 6.0, borderType=cv2.BORDER_REFLECT
            )
            np.subtract(smooth, resid, out=resid)
            if cfg.local_offset is None:
                offset = max(3.0 * _noise_sigma(resid), 1.0)  # objects: the far tail
            else:
                offset = float(cfg.local_offset)
            polarity = dense or self._local_polarity(smooth, (cfg.block_size - 1) / 3.0)
            fg = resid > offset if polarity == "bright" else resid < -offset
            # for scores only: a global level between objects and background
            thr = otsu(smooth)
        else:
            thr = float(_global_threshold(smooth, method)) * cfg.threshold_scale
            polarity = dense or self._polarity(smooth, thr)
            fg = smooth > thr if polarity == "bright" else smooth < thr
        return fg, float(thr), polarity

    def _object_labels(
        self, fg: np.ndarray, x: np.ndarray | None, refine_bg: float | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-object stages of one window: refine, fill, opening, split or label.

        Returns ``(foreground before size filters, labels int32 before size filters)``.
        """
        return self._split_labels(self._refine(fg, x, refine_bg))

    def _refine(self, fg: np.ndarray, x: np.ndarray | None, refine_bg: float | None) -> np.ndarray:
        """Refine each object (``x`` None: no refine) and fill the holes that it opens."""
        if x is not None and refine_bg is not None and fg.any():
            fg = _refine_objects(fg, x, self.config.refine_fraction, refine_bg)
            if self.config.fill_holes:
                fg = _fill_holes(fg)
        return fg

    def _split_labels(self, fg: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Opening, then touching objects split (or connected components labelled)."""
        import cv2

        cfg = self.config
        if cfg.opening > 0:
            fg = cv2.morphologyEx(
                np.ascontiguousarray(fg).view(np.uint8),
                cv2.MORPH_OPEN,
                cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * cfg.opening + 1,) * 2),
            ).view(bool)
        if cfg.split and fg.any():
            labels = _split_touching(fg, cfg.split_sigma, cfg.h, cfg.min_distance)
        else:
            labels = cv2.connectedComponents(
                np.ascontiguousarray(fg).view(np.uint8), connectivity=8, ltype=cv2.CV_32S
            )[1]
        return fg, labels

    # -- tiling -----------------------------------------------------------------------------
    def _tile_side(self, hw: tuple[int, int]) -> int:
        """The tile side for an image of ``hw`` (0: do not tile)."""
        ts = self.config.tile_size
        if ts is None:
            ts = _AUTO_TILE_SIZE
        return 0 if ts == 0 or (hw[0] <= ts and hw[1] <= ts) else int(ts)

    def _window_objects(
        self,
        fg: np.ndarray,
        x: np.ndarray | None,
        refine_bg: float | None,
        win: tuple[int, int, int, int],
        tile: int,
    ) -> tuple[np.ndarray, list]:
        """The per-object stages on window ``win`` (XYXY) of the image: ``(foreground of the
        window, its objects as TileMasks in image coordinates, scored by area)``."""
        from scipy import ndimage as ndi

        from sam_detect.segment.tiling import TileMask

        x0, y0, x1, y1 = win
        fg_t = np.ascontiguousarray(fg[y0:y1, x0:x1])
        x_t = None if x is None else np.ascontiguousarray(x[y0:y1, x0:x1])
        raw_t, lab_t = self._object_labels(fg_t, x_t, refine_bg)
        found = []
        for i, sl in enumerate(ndi.find_objects(lab_t), 1):
            if sl is None:
                continue
            crop = lab_t[sl] == i
            found.append(
                TileMask(crop, (x0 + sl[1].start, y0 + sl[0].start), float(np.count_nonzero(crop)), tile=tile)
            )
        return raw_t, found

    def _windows(self, hw: tuple[int, int]) -> list[tuple[int, int, int, int]]:
        from sam_detect.segment.tiling import tile_windows

        side = self._tile_side(hw)
        if side == 0:
            return [(0, 0, hw[1], hw[0])]
        return tile_windows(hw, side, self.config.tile_overlap, even=True)

    def _tiled_labels(
        self,
        fg: np.ndarray,
        x: np.ndarray | None,
        refine_bg: float | None,
        windows: list[tuple[int, int, int, int]],
    ) -> tuple[np.ndarray, np.ndarray]:
        """The per-object stages tile by tile, objects merged across seams.

        An object touching a tile side inside the image is cut there: where another tile
        saw it whole, that one is kept; pieces cut in every tile (objects or clusters wider
        than the overlap) are joined (:func:`~sam_detect.segment.tiling.merge_tiled`) and
        then segmented again in a window of their own around them, so that touching
        objects among them are split as without tiles. Objects come out in raster order
        of their first pixel, as connected-component labelling numbers them.
        """
        from sam_detect.segment.tiling import mark_cut, merge_tiled, tile_cores

        hw = fg.shape
        fg_raw = np.zeros(hw, dtype=bool)
        items = []
        for t, (win, core) in enumerate(zip(windows, tile_cores(windows, hw), strict=True)):
            raw_t, found = self._window_objects(fg, x, refine_bg, win, t)
            x0, y0 = win[:2]
            cx0, cy0, cx1, cy1 = core
            fg_raw[cy0:cy1, cx0:cx1] = raw_t[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
            items += [mark_cut(m, win, hw) for m in found]
        # whole objects first, largest first: a fragment that one tile cut off an object
        # (a seam inside a cluster) lies inside the object another tile saw whole
        merged = merge_tiled(items, iou_thresh=0.5, contain_thresh=0.5, disjoint=True)
        cut = [m for m in merged if m.cut]
        if cut:
            whole = [m for m in merged if not m.cut]
            pad = self.config.tile_overlap
            for j, m in enumerate(cut):
                bx0, by0, bx1, by1 = m.box
                win = (max(bx0 - pad, 0), max(by0 - pad, 0), min(bx1 + pad, hw[1]), min(by1 + pad, hw[0]))
                again = [o for o in self._window_objects(fg, x, refine_bg, win, len(windows) + j)[1]
                         if 2 * o.intersection(m) > o.area]  # what lies mostly inside m
                whole += again or [m]
            for m in whole:
                m.cut = False
            merged = merge_tiled(whole, iou_thresh=0.5, contain_thresh=0.5, disjoint=True)
        merged.sort(key=lambda m: (m.y0, m.x0 + int(np.argmax(m.crop[0]))))
        labels = np.zeros(hw, dtype=np.int32)
        for i, m in enumerate(merged, 1):
            h, w = m.crop.shape
            labels[m.y0 : m.y0 + h, m.x0 : m.x0 + w][m.crop] = i
        return fg_raw, labels

    def _local_polarity(self, smooth: np.ndarray, radius: float) -> str:
        """``auto`` for local methods: objects are the longer tail of (image - local mean),
        which an uneven background does not fool as it fools the global minority rule."""
        if self.config.polarity != "auto":
            return self.config.polarity
        local_mean = _local_mean(smooth, max(radius / 2.0, 1.0))
        step = max(1, smooth.size // 200_000)
        sample = smooth.ravel()[::step] - local_mean.ravel()[::step]  # the residual, subsampled
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
        areas = _label_counts(labels)
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
        return _relabel(lut, labels)  # in place: the label image is ours

    def _instances_from_labels(
        self,
        labels: np.ndarray,
        intensity: np.ndarray,
        thr: float,
        polarity: str,
    ) -> Instances:
        """Instances of a label image, built from per-object slices: each mask is kept as its
        box crop, never as an ``(N, H, W)`` array or ``N`` full-image comparisons."""
        from scipy import ndimage as ndi

        flat = labels.ravel()
        n_lab = int(flat.max()) if flat.size else 0
        counts = _label_counts(labels, n_lab + 1)
        sums = _label_sums(labels, intensity, n_lab + 1)
        objs = ndi.find_objects(labels)
        ids = [i for i, sl in enumerate(objs, 1) if sl is not None and counts[i] > 0]
        crops = []
        origins = np.zeros((len(ids), 2), dtype=np.int64)
        for k, i in enumerate(ids):
            sl = objs[i - 1]
            crops.append(labels[sl] == i)  # tight: find_objects gives the bounding box
            origins[k] = (sl[1].start, sl[0].start)
        # contrast: object mean vs the background level, relative to the threshold's margin
        bg = float(sums[0] / counts[0]) if counts[0] else 0.0
        return _build_instances(crops, origins, labels.shape, counts[ids], sums[ids], bg, thr, polarity)

    def _object_slices(self, labels: np.ndarray) -> tuple[list, np.ndarray]:
        """``(find_objects slices, areas)`` of the cached label image, computed once."""
        from scipy import ndimage as ndi

        if self._cache_objects is None or self._cache_objects[0] is not labels:
            self._cache_objects = (labels, ndi.find_objects(labels), _label_counts(labels))
        return self._cache_objects[1], self._cache_objects[2]

    def _intensity_total(self, intensity: np.ndarray) -> float:
        if self._cache_total is None or self._cache_total[0] is not intensity:
            self._cache_total = (intensity, float(np.sum(intensity, dtype=np.float64)))
        return self._cache_total[1]

    def _best_in_box(
        self, labels: np.ndarray, box: tuple[int, int, int, int]
    ) -> tuple[np.ndarray, tuple[int, int]] | None:
        x0, y0, x1, y1 = box
        sub = labels[y0:y1, x0:x1]
        ids, inside = np.unique(sub[sub > 0], return_counts=True)
        if ids.size == 0:
            return None
        slices, areas = self._object_slices(labels)
        totals = areas[ids]
        box_area = (x1 - x0) * (y1 - y0)
        iou = inside / (totals + box_area - inside)
        frac_inside = inside / totals
        ok = frac_inside >= 0.5
        if not ok.any():
            return None
        best = int(ids[ok][np.argmax(iou[ok])])
        sl = slices[best - 1]
        return _clip_crop(labels[sl] == best, (sl[1].start, sl[0].start), box)

    def _threshold_at_point(
        self, intensity: np.ndarray, point: tuple[int, int], polarity: str
    ) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The object under ``point`` that Otsu separates in a window around it where the
        object does not reach the window's edge (an image border may cut it): the first
        window reaches ``POINT_WINDOW`` pixels from the point; one that cuts the object is
        followed by the object's box grown by half its side (object and surroundings, as
        a box prompt would hold them), one with nothing under the point by a window twice
        as wide; up to the whole image. ``None`` when the point lies on the background's
        class (by ``polarity``) in every window, or no window has two clear classes."""
        x, y = point
        h, w = intensity.shape[:2]

        def window(x0: int, y0: int, x1: int, y1: int) -> tuple[int, int, int, int]:
            return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)

        from sam_detect.segment.tiling import cut_by_window

        r = POINT_WINDOW
        box = _point_window(point, r, (h, w))
        while True:
            found = self._threshold_in_box(intensity, box, polarity, at=point)
            grown = None
            if found is not None:
                crop, (x0, y0) = found
                ch, cw = crop.shape
                if not cut_by_window((x0, y0, x0 + cw, y0 + ch), box, (h, w)):
                    return None if along_border(crop, (x0, y0), (h, w)) > GROUND_SPAN else found
                m = max(ch, cw) // 2 + 1
                grown = window(min(x0 - m, box[0]), min(y0 - m, box[1]),
                               max(x0 + cw + m, box[2]), max(y0 + ch + m, box[3]))
            if box == (0, 0, w, h):
                return None
            if grown is None or grown == box:
                r *= 2
                grown = window(min(x - r, box[0]), min(y - r, box[1]),
                               max(x + r + 1, box[2]), max(y + r + 1, box[3]))
            box = grown

    def _prompt_class(
        self, intensity: np.ndarray, point: tuple[int, int] | None,
        box: tuple[int, int, int, int] | None,
    ) -> tuple[str, float] | None:
        """What a prompt points at against its ground: ``(polarity, level)``, ``polarity``
        ``bright`` or ``dark``, ``level`` half-way between the prompt's pixels and the
        ground; ``None`` when they do not differ clearly.

        A point: the 3 x 3 patch at the point against the median of the window around it
        (``POINT_WINDOW`` from the point, then twice and four times as wide, the first that
        tells: an object smaller than the window leaves the median to its ground), by at
        least ``_MIN_BOX_CONTRAST`` and the window's robust spread (noise tells nothing). A
        box: the median of its middle half against the median of its edge (the pixels within
        ``BOX_EDGE`` of its sides that are not on the image's border, where a cut object
        lies), as a box is drawn around an object on its ground, by at least
        ``_MIN_BOX_CONTRAST`` / 2 and the edge's robust spread.
        """
        if box is not None and point is None:
            x0, y0, x1, y1 = box
            sub = intensity[y0:y1, x0:x1]
            bh, bw = sub.shape
            e = BOX_EDGE
            if bh <= 2 * e + 1 or bw <= 2 * e + 1:
                return None
            h, w = intensity.shape[:2]
            edge = np.zeros(sub.shape, bool)
            for side, on_border in (((slice(None), slice(0, e)), x0 == 0), ((slice(None), slice(-e, None)), x1 == w),
                                    ((slice(0, e), slice(None)), y0 == 0), ((slice(-e, None), slice(None)), y1 == h)):
                if not on_border:
                    edge[side] = True
            if not edge.any():
                return None
            inside = float(np.median(sub[_middle_half(sub.shape)]))
            ring = sub[edge].astype(np.float32)
            ground = float(np.median(ring))
            spread = _robust_spread(ring, ground)
            if abs(inside - ground) < max(_MIN_BOX_CONTRAST / 2, spread):
                return None
            return ("bright" if inside > ground else "dark"), (inside + ground) / 2
        cx, cy = point
        v = float(np.median(intensity[max(cy - 1, 0): cy + 2, max(cx - 1, 0): cx + 2]))
        r = POINT_WINDOW
        for _ in range(PROMPT_POLARITY_WINDOWS):
            x0, y0, x1, y1 = _point_window(point, r, intensity.shape[:2])
            sub = intensity[y0:y1, x0:x1]
            ground = float(np.median(sub))
            spread = _robust_spread(sub, ground)
            if abs(v - ground) >= max(_MIN_BOX_CONTRAST, spread):
                return ("bright" if v > ground else "dark"), (v + ground) / 2
            r *= 2
        return None

    @staticmethod
    def _half_way_in_box(
        intensity: np.ndarray, box: tuple[int, int, int, int], polarity: str, level: float
    ) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The object of a box prompt whose class and level :meth:`_prompt_class` read: the
        box's pixels beyond ``level`` on the side of ``polarity``, holes filled, the piece
        with the most pixels in the box's middle half; ``None`` when none lies there."""
        x0, y0, x1, y1 = box
        sub = intensity[y0:y1, x0:x1]
        found = _foreground_in_box(sub > level if polarity == "bright" else sub < level, (0, 0, x1 - x0, y1 - y0))
        return None if found is None else (found[0], (x0, y0))

    @staticmethod
    def _half_way_at_point(
        intensity: np.ndarray, point: tuple[int, int], polarity: str, level: float
    ) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The object of a click whose class and level :meth:`_prompt_class` read, where Otsu
        finds no clear two classes round it (a pale nucleus in textured stroma: the window
        splits at an effectiveness of 0.63-0.73, and the wider windows take in darker tissue
        that Otsu splits from everything else): the pixels beyond ``level`` on the side of
        ``polarity`` that hold the point, after a light blur (``_GATE_BLUR``), holes filled,
        where they do not reach the edge of the first window (``POINT_WINDOW`` from the
        point); ``None`` where the point's own pixel lies short of ``level`` or they reach
        it. Only the first window: grown on, such pixels ran along the H&E stroma's darker
        fibres, and clicks on its ground gave objects 29 times in 100 instead of 13."""
        import cv2

        from sam_detect.segment.tiling import cut_by_window

        x, y = point
        h, w = intensity.shape[:2]
        box = _point_window(point, POINT_WINDOW, (h, w))
        sub = cv2.GaussianBlur(intensity[box[1]:box[3], box[0]:box[2]].astype(np.float32), (0, 0), _GATE_BLUR)
        fg = sub > level if polarity == "bright" else sub < level
        if not fg[y - box[1], x - box[0]]:
            return None
        crop, (cx, cy) = _component_at(fg, x - box[0], y - box[1])
        x0, y0 = box[0] + cx, box[1] + cy
        if cut_by_window((x0, y0, x0 + crop.shape[1], y0 + crop.shape[0]), box, (h, w)):
            return None
        return _fill_holes(crop), (x0, y0)

    def _thresholded_at_prompt(
        self, intensity: np.ndarray, point: tuple[int, int] | None,
        box: tuple[int, int, int, int] | None, polarity: str,
    ) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The object of class ``polarity`` that Otsu separates at a prompt: around the point
        (clipped to the box when both are given), else inside the box, else around a box
        drawn too tight for Otsu inside it."""
        if point is not None:
            found = self._threshold_at_point(intensity, point, polarity)
            return _clip_crop(*found, box) if found is not None and box is not None else found
        found = self._threshold_in_box(intensity, box, polarity)
        if found is None:  # a box drawn tight: too little background inside it
            found = self._threshold_around_box(intensity, box, polarity)
        return found

    def _threshold_around_box(
        self, intensity: np.ndarray, box: tuple[int, int, int, int], polarity: str
    ) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The object Otsu separates in the window of ``box`` grown by half its longer side
        (object and surroundings, as :meth:`_threshold_at_point` holds them) that covers
        the most of the box, clipped to the box. A box drawn tight around an object holds
        little background: Otsu inside it alone splits the object itself, or finds no two
        clear classes."""
        h, w = intensity.shape[:2]
        x0, y0, x1, y1 = box
        m = max(x1 - x0, y1 - y0) // 2 + 1
        win = (max(x0 - m, 0), max(y0 - m, 0), min(x1 + m, w), min(y1 + m, h))
        found = self._threshold_in_box(intensity, win, polarity, within=box)
        return _clip_crop(*found, box) if found is not None else None

    def _threshold_in_box(
        self, intensity: np.ndarray, box: tuple[int, int, int, int], polarity: str,
        at: tuple[int, int] | None = None, within: tuple[int, int, int, int] | None = None,
    ) -> tuple[np.ndarray, tuple[int, int]] | None:
        """The largest object Otsu separates in ``box`` (XYXY), the one under the point
        ``at`` (XY, ``None`` when the point is not on it), or the one with the most pixels
        inside the smaller box ``within``: ``(mask crop, (x0, y0))``."""
        from scipy import ndimage as ndi

        x0, y0, x1, y1 = box
        sub = intensity[y0:y1, x0:x1].astype(np.float32)
        if sub.size < 4 or flat(sub):
            return None
        t = otsu(sub)
        hi, lo = sub[sub > t], sub[sub <= t]
        # Otsu splits anything, plain noise too: require a clear two-class box. Judged
        # after a light blur, which evens out an object's texture but leaves noise noise
        if (_effectiveness(ndi.gaussian_filter(sub, _GATE_BLUR)) < _MIN_OTSU_EFFECTIVENESS
                or hi.mean() - lo.mean() < _MIN_BOX_CONTRAST):
            return None
        fg = sub > t if polarity == "bright" else sub < t
        fg = _fill_holes(fg)
        comp, n = ndi.label(fg)
        if n == 0:
            return None
        if at is not None:
            pick = int(comp[at[1] - y0, at[0] - x0])
            if pick == 0:
                return None
            sl = ndi.find_objects(comp, max_label=pick)[pick - 1]
            return comp[sl] == pick, (x0 + sl[1].start, y0 + sl[0].start)
        part = comp
        if within is not None:
            part = np.zeros_like(comp)
            wy, wx = slice(within[1] - y0, within[3] - y0), slice(within[0] - x0, within[2] - x0)
            part[wy, wx] = comp[wy, wx]
        sizes = np.bincount(part.ravel(), minlength=n + 1)
        sizes[0] = 0
        if not sizes.any():
            return None
        return comp == int(np.argmax(sizes)), (x0, y0)


def _foreground_in_box(fg: np.ndarray, box: tuple[int, int, int, int]) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The image-wide foreground's piece in ``box`` (holes filled) with the most pixels in its
    middle half: a box drawn tight round a thin object holds too little ground for a
    threshold of its own, and its object belongs to a larger one of the image-wide reading
    (a spindle nucleus touching the stroma's dark fibres: "no object found in box")."""
    from scipy import ndimage as ndi

    x0, y0, x1, y1 = box
    comp, n = ndi.label(_fill_holes(fg[y0:y1, x0:x1]))
    if n == 0:
        return None
    sizes = np.bincount(comp[_middle_half(comp.shape)].ravel(), minlength=n + 1)
    sizes[0] = 0
    if not sizes.any():
        return None
    return comp == int(np.argmax(sizes)), (x0, y0)


def _point_window(point: tuple[int, int], r: int, hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The window reaching ``r`` pixels from ``point`` (XY) on every side, within an ``hw``
    image: ``(x0, y0, x1, y1)``, ends exclusive."""
    x, y = point
    h, w = hw
    return max(x - r, 0), max(y - r, 0), min(x + r + 1, w), min(y + r + 1, h)


def _robust_spread(values: np.ndarray, centre: float) -> float:
    """1.4826 x the median absolute deviation of float32 ``values`` from ``centre`` (a
    robust standard deviation, in the values' own precision)."""
    return 1.4826 * float(np.median(np.abs(values - np.float32(centre))))


def _middle_half(shape: tuple[int, int]) -> tuple[slice, slice]:
    """The middle half of an ``(h, w)`` box (a quarter of each side left out), never empty."""
    h, w = shape
    return slice(h // 4, max(h - h // 4, h // 4 + 1)), slice(w // 4, max(w - w // 4, w // 4 + 1))


def _effectiveness(sub: np.ndarray) -> float:
    """Otsu's effectiveness on ``sub``: between-class over total variance at Otsu's threshold."""
    if flat(sub):
        return 0.0
    t = otsu(sub)
    hi, lo = sub[sub > t], sub[sub <= t]
    return float(hi.size * lo.size / sub.size**2 * (hi.mean() - lo.mean()) ** 2 / max(sub.var(), 1e-12))


def _calibrated_classes(profile: dict | None) -> dict[str, dict]:
    """The classes of a proposal profile that carry calibrated settings."""
    classes = (profile or {}).get("classes") or {}
    return {k: v for k, v in classes.items() if v.get("settings")}


_OTHER = {"bright": "dark", "dark": "bright"}


#: the most of a box the other polarity's answer may fill (a thin crescent's hollow and the ground
#: round it fill the whole box; a packed nucleus with its neighbours' edges in the corners, 90 %)
BOX_ITSELF = 0.97


def _round_middle(crop: np.ndarray, origin: tuple[int, int], box: tuple[int, int, int, int]) -> bool:
    """Whether a mask's convex hull holds the box's centre: an object drawn round by the box
    (a crescent or ring round a hollow middle too), not a piece in one of its corners."""
    import cv2

    pts = cv2.findNonZero(crop.astype(np.uint8))
    if pts is None:
        return False
    hull = cv2.convexHull(pts + np.array(origin, np.int32).reshape(1, 1, 2))
    centre = ((box[0] + box[2] - 1) / 2.0, (box[1] + box[3] - 1) / 2.0)
    return len(hull) >= 3 and cv2.pointPolygonTest(hull, centre, False) >= 0


def _holds_middle(crop: np.ndarray, origin: tuple[int, int], box: tuple[int, int, int, int]) -> bool:
    """Whether a box's mask (``crop`` at ``origin``) holds some of the box's middle, its
    central ninth: the object a box is drawn round lies there (a ring's dark middle too)."""
    x0, y0, x1, y1 = box
    mx0, mx1 = x0 + (x1 - x0) // 3, x1 - (x1 - x0) // 3
    my0, my1 = y0 + (y1 - y0) // 3, y1 - (y1 - y0) // 3
    ox, oy = origin
    h, w = crop.shape
    sub = crop[max(my0 - oy, 0):max(min(my1 - oy, h), 0), max(mx0 - ox, 0):max(min(mx1 - ox, w), 0)]
    return bool(sub.any())


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


def _propose_at(rgb: np.ndarray, label: str, entry: dict, settings: list, exposure: float, ground: float,
                own: Instances | None, tile: int, log_shift: float) -> tuple[dict, Instances]:
    """``(entry moved by log_shift, its candidates on rgb)``: class ``label``'s settings proposed at
    ``exp(log_shift)`` x its examples' area (``sam_detect.profile.at_scale``; 0: as they are),
    their flat background ``ground`` above the examples' (``profile.ground_shift``)."""
    from dataclasses import replace

    from sam_detect.profile import at_scale, scale_of
    from sam_detect.segment.calibrated import propose

    moved = at_scale({"classes": {label: entry}}, {label: log_shift})["classes"][label] if log_shift else entry
    scale = scale_of(moved)
    scale = replace(scale, exposure=exposure, ring_level=scale.ring_level + ground)
    return moved, propose(rgb, scale, settings, label, own=own, tile=tile)


__all__ = ["ClassicalConfig", "ClassicalSegmenter", "Polarity", "ThresholdMethod"]
