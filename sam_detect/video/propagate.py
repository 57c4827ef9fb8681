"""Carry masks between full detections with SAM2's video predictor.

Full detection (segment + embed + classify) is the slow part of the video loop. With
``every=N`` the frames in between can get *propagated* masks instead of a stale copy:
:class:`SAM2Propagator` seeds SAM2's video predictor with the last detection's masks on the
detected frame and tracks them, frame by frame, through the following frames. Each object
keeps its row's label, scores, ``data`` (``track_id``, ...) from the detection; only the
masks (and the boxes around them) move.

SAM2's :class:`~sam2.sam2_video_predictor.SAM2VideoPredictor` normally loads a whole video
(a JPEG folder) in ``init_state``. For a stream, this module builds the same inference state
for one window (the detected frame plus the frames after it) and appends frames one at a
time: each new frame is preprocessed the way ``load_video_frames`` does it (resize to the
model's square input, ImageNet normalisation), ``num_frames`` grows by one, and
``propagate_in_video(start_frame_idx=i, max_frame_num_to_track=0)`` tracks just that frame
from the memory of the frames before it. So results come out causally, with no look-ahead,
and the window's images are dropped as soon as they are encoded.

Objects that SAM2 judges gone (an empty mask) are dropped from a frame by default
(``drop_lost=True``); ``data["presence"]`` is SAM2's object score (sigmoid) per row.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import Any

import numpy as np

from sam_detect.instances import Instances

log = logging.getLogger("sam_detect.video")

# frames of non-conditioning memory kept per object (SAM2 reads at most 16 object pointers
# and 7 memory frames back; older outputs are dropped so long windows stay bounded)
_KEEP_FRAMES = 16
# the length sam2 is told for a window whose length is not known (a stream): any video of
# 16 frames or more is the same to it (it reads at most 16 object pointers back)
_LONG_VIDEO = 1 << 20
_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def load_sam2_video_predictor(
    model: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    *,
    device: Any = "cpu",
    image_size: int | None = None,
):
    """SAM2's video predictor of size ``model`` with the weights of ``checkpoint``.

    The checkpoint is resolved like the segmenter's (explicit path, model cache, download:
    see :mod:`sam_detect.models`) and loaded with the same checks.

    Returns:
        ``(predictor in eval mode on device, checkpoint path)``.

    Raises:
        ModelNotAvailableError: sam2 not installed, weights missing, unreadable or of
            another architecture.
    """
    from sam_detect.models import (
        build_sam2_from_checkpoint,
        pick_sam2_model,
        resolve_checkpoint,
        sam2_spec,
    )

    spec = sam2_spec(pick_sam2_model(model, checkpoint))
    path = resolve_checkpoint(spec, checkpoint)
    net = build_sam2_from_checkpoint(spec, path, image_size, "build_sam2_video_predictor", "--propagate sam2")
    if importlib.util.find_spec("sam2._C") is None:
        # sam2 built without its CUDA extension (as scripts/install.sh builds it) cannot fill
        # mask holes and warns about it on every frame: turn the step off instead.
        net.fill_hole_area = 0
    return net.to(device).eval(), path


class SAM2Propagator:
    """Propagate a detection's masks to the following frames with SAM2's video predictor.

    Two ways to use it:

    - streaming: :meth:`start` with the detected frame and its :class:`Instances`, then
      :meth:`step` with each following frame (one :class:`Instances` per call);
    - a window at once: :meth:`propagate` ``(detected_rgb, instances, frames)`` returns one
      :class:`Instances` per frame in ``frames``.

    Args:
        checkpoint: a SAM 2.1 checkpoint file (``None``: the model cache, else a download).
        model: ``"tiny"``, ``"small"``, ``"base_plus"``, ``"large"`` or ``None``/``"auto"``
            (from the checkpoint's file name, else the smallest cached size).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        image_size: the encoder's input side (default: the config's 1024; a multiple of 64).
        drop_lost: leave out objects whose propagated mask is empty.

    Raises:
        ModelNotAvailableError: sam2 or the weights are missing (at construction).
    """

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        model: str | None = None,
        device: Any = "auto",
        image_size: int | None = None,
        *,
        drop_lost: bool = True,
    ) -> None:
        if image_size is not None and (int(image_size) < 64 or int(image_size) % 64):
            raise ValueError(f"image_size must be a multiple of 64 (>= 64), got {image_size}")
        from sam_detect.models.torch_utils import resolve_device

        self.device = resolve_device(device)
        self.predictor, self.checkpoint = load_sam2_video_predictor(
            model, checkpoint, device=self.device, image_size=image_size
        )
        self.image_size = int(self.predictor.image_size)
        self.drop_lost = bool(drop_lost)
        self._state: dict[str, Any] | None = None
        self._seed: Instances | None = None
        self._hw: tuple[int, int] | None = None
        self._window = _LONG_VIDEO  # the window's length as sam2 is told it (see start)
        self._next = 0  # the index of the next frame in the window

    # -- the window ---------------------------------------------------------------------
    @property
    def active(self) -> bool:
        """Whether a detection has been given (:meth:`start`) and frames can be stepped."""
        return self._seed is not None

    def reset(self) -> None:
        """Forget the current window (its frames and memory)."""
        self._state = None
        self._seed = None
        self._hw = None
        self._window = _LONG_VIDEO
        self._next = 0

    def start(self, rgb: np.ndarray, instances: Instances, *, window: int | None = None) -> None:
        """Begin a window on the detected frame ``rgb`` with its ``instances`` as the masks.

        ``window``: how many frames the window will hold, the detected one included, when
        that is known (``propagate`` knows it). SAM2 reads it as the video's length:
        in a video shorter than 16 frames it scales the temporal distances of the object
        pointers by the length. ``None``: a long video (16 frames or more), as a stream is.
        """
        if window is not None and int(window) < 1:
            raise ValueError(f"window must be >= 1 frame, got {window}")
        rgb = _as_rgb(rgb)
        hw = rgb.shape[:2]
        if len(instances) and tuple(instances.image_hw) != tuple(hw):
            raise ValueError(
                f"instances are for a {instances.image_hw} image, the frame is {tuple(hw)}"
            )
        self.reset()
        self._seed, self._hw = instances, (int(hw[0]), int(hw[1]))
        self._window = int(window) if window is not None else _LONG_VIDEO
        self._next = 1
        if not len(instances):
            return  # nothing to track: every step returns no objects
        pred = self.predictor
        state = self._new_state(hw)
        state["images"][0] = self._preprocess(rgb)
        state["num_frames"] = self._window
        with self._context():
            for i, mask in enumerate(instances.masks):
                pred.add_new_mask(state, frame_idx=0, obj_id=i, mask=mask)
        self._state = state

    def step(self, rgb: np.ndarray) -> Instances:
        """The started detection's objects on the next frame ``rgb`` (same rows, moved masks).

        Raises:
            RuntimeError: :meth:`start` was not called.
            ValueError: the frame's size differs from the detected frame's.
        """
        if self._seed is None or self._hw is None:
            raise RuntimeError("SAM2Propagator.step() before start()")
        rgb = _as_rgb(rgb)
        if tuple(rgb.shape[:2]) != self._hw:
            raise ValueError(f"frame is {rgb.shape[:2]}, the detected frame was {self._hw}")
        seed = self._seed
        if self._state is None:
            return _with_masks(seed, np.zeros((0, *self._hw), bool), None, np.zeros(0, int))
        state = self._state
        idx = self._next
        self._next = idx + 1
        state["images"][idx] = self._preprocess(rgb)
        # sam2 reads num_frames as the video's length (init_state sets it from the whole
        # video), not as the frames seen so far: it normalises the object pointers' temporal
        # positions by min(num_frames, 16) - 1. Counting the frames seen instead made frame k
        # of a window see them scaled by k, so the logits drifted from sam2's own by 1e-4
        # (random weights; tests/test_video_propagate.py compares the two).
        state["num_frames"] = max(self._window, idx + 1)
        import torch

        with self._context():
            obj_ids, logits, scores = self._track(state, idx)
            masks = (logits[:, 0] > 0).cpu().numpy()
            presence = torch.sigmoid(scores.float().reshape(-1)).cpu().numpy().astype(np.float32)
        self._forget(state, idx)
        rows = np.asarray(obj_ids, dtype=np.int64)
        keep = (
            masks.reshape(len(rows), -1).any(axis=1) if self.drop_lost else np.ones(len(rows), bool)
        )
        return _with_masks(seed, masks[keep], presence[keep], rows[keep])

    def propagate(
        self, rgb: np.ndarray, instances: Instances, frames: list[np.ndarray]
    ) -> list[Instances]:
        """The detection ``instances`` (on ``rgb``) propagated to each of ``frames`` in order."""
        frames = list(frames)
        self.start(rgb, instances, window=len(frames) + 1)
        try:
            return [self.step(f) for f in frames]
        finally:
            self.reset()

    # -- internals ------------------------------------------------------------------------
    def _track(self, state: dict[str, Any], idx: int):
        """Track every object on frame ``idx`` from the memory of the frames before it.

        The body of sam2's ``propagate_in_video`` for one frame (without its progress bar):
        ``(obj_ids, mask logits (N, 1, H, W) at video resolution, object score logits (N,))``.
        """
        import torch

        pred = self.predictor
        pred.propagate_in_video_preflight(state)
        masks, scores = [], []
        for obj_idx in range(pred._get_obj_num(state)):
            out_dict = state["output_dict_per_obj"][obj_idx]
            current, pred_masks = pred._run_single_frame_inference(
                inference_state=state,
                output_dict=out_dict,
                frame_idx=idx,
                batch_size=1,
                is_init_cond_frame=False,
                point_inputs=None,
                mask_inputs=None,
                reverse=False,
                run_mem_encoder=True,
            )
            out_dict["non_cond_frame_outputs"][idx] = current
            state["frames_tracked_per_obj"][obj_idx][idx] = {"reverse": False}
            masks.append(pred_masks)
            scores.append(current["object_score_logits"].reshape(-1)[:1])
        _, video_masks = pred._get_orig_video_res_output(state, torch.cat(masks, dim=0))
        return list(state["obj_ids"]), video_masks, torch.cat(scores)

    def _context(self):
        from sam_detect.models.torch_utils import inference_context

        return inference_context(self.device)

    def _preprocess(self, rgb: np.ndarray):
        """As sam2's ``load_video_frames``: square resize (bicubic), /255, ImageNet norm."""
        import torch
        from PIL import Image

        s = self.image_size
        img = np.asarray(Image.fromarray(rgb).resize((s, s)), dtype=np.float32) / 255.0
        img = (img - _MEAN) / _STD
        return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))

    def _new_state(self, hw: tuple[int, int]) -> dict[str, Any]:
        """The inference state ``init_state`` builds, with frames added one at a time
        (``images`` is a dict frame index -> tensor; only the newest is kept)."""
        from collections import OrderedDict

        dev = self.device
        return {
            "images": {},
            "num_frames": 0,
            "offload_video_to_cpu": False,
            "offload_state_to_cpu": False,
            "video_height": int(hw[0]),
            "video_width": int(hw[1]),
            "device": dev,
            "storage_device": dev,
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }

    @staticmethod
    def _forget(state: dict[str, Any], idx: int) -> None:
        """Drop the images before ``idx`` and memory older than SAM2 can read."""
        for k in [k for k in state["images"] if k < idx]:
            del state["images"][k]
        old = idx - _KEEP_FRAMES
        for per_obj in state["output_dict_per_obj"].values():
            non_cond = per_obj["non_cond_frame_outputs"]
            for k in [k for k in non_cond if k <= old]:
                del non_cond[k]
        for tracked in state["frames_tracked_per_obj"].values():
            for k in [k for k in tracked if 0 < k <= old]:
                del tracked[k]


def _as_rgb(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    if rgb.ndim != 3 or rgb.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB frame, got shape {rgb.shape}")
    rgb = rgb[..., :3]
    if rgb.dtype != np.uint8:
        # clipping a float frame in [0, 1] (or a 16-bit one) to uint8 would silently make it
        # black (or saturated): refuse it and say how to convert
        raise ValueError(
            f"propagation needs uint8 RGB frames, got {rgb.dtype}; convert with "
            "sam_detect.io.images.to_rgb_uint8(frame) (percentile-normalised, as detect does)"
        )
    return np.ascontiguousarray(rgb)


def _with_masks(
    seed: Instances, masks: np.ndarray, presence: np.ndarray | None, rows: np.ndarray
) -> Instances:
    """Rows ``rows`` of ``seed`` with new ``masks`` (boxes recomputed), same labels/data."""
    sub = seed[rows]
    data = dict(sub.data)
    data["presence"] = presence if presence is not None else np.zeros(len(rows), np.float32)
    metadata = {k: v for k, v in sub.metadata.items() if k != "timings"}
    metadata["propagated_from"] = seed.metadata.get("frame")
    return Instances(
        masks=masks,
        scores=sub.scores,
        labels=sub.labels,
        label_confidences=sub.label_confidences,
        data=data,
        metadata=metadata,
    )
