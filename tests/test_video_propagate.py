"""SAM2 mask propagation between full detections, on a randomly initialised SAM 2.1 tiny.

Random weights give arbitrary masks, so these tests check structure only: shapes, dtypes,
which rows (labels, track ids) a propagated frame carries, statuses and counts. The
encoder runs at 128 px to keep them fast on a CPU.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_main

from sam_detect.instances import Instances, masks_to_xyxy
from sam_detect.masks import label_image_to_masks
from sam_detect.pipeline import DetectorConfig, SAMDetect
from sam_detect.video import StreamStats, detect_stream
from sam_detect.video.synthetic import MovingShapes

SIZE = 128  # encoder input side
WH = (96, 72)
N = 6


@pytest.fixture(scope="module")
def prop(sam2_ckpt):
    from sam_detect.video.propagate import SAM2Propagator

    return SAM2Propagator(checkpoint=str(sam2_ckpt), device="cpu", image_size=SIZE, drop_lost=False)


@pytest.fixture(scope="module")
def scene():
    return MovingShapes(3, WH, radius=8, speed=3.0, noise=2.0, seed=5)


@pytest.fixture(scope="module")
def detector(scene):
    det = SAMDetect(
        DetectorConfig(
            store="memory", segmenter="classical", embedder="handcrafted", library="shapes"
        )
    )
    masks, ids = label_image_to_masks(scene.label_image(0))
    det.add_examples(
        scene.frame(0), Instances(masks=masks), [scene.shapes[i - 1].label for i in ids]
    )
    return det


def seed(scene):
    masks, ids = label_image_to_masks(scene.label_image(0))
    return Instances(
        masks=masks,
        scores=np.linspace(0.9, 0.6, len(ids)),
        labels=[scene.shapes[i - 1].label for i in ids],
        data={"track_id": np.arange(10, 10 + len(ids), dtype=np.int64)},
        metadata={"frame": 0},
    )


def check(inst: Instances, det: Instances, hw) -> None:
    n = len(inst)
    assert inst.masks.shape == (n, *hw) and inst.masks.dtype == bool
    np.testing.assert_array_equal(inst.boxes, masks_to_xyxy(inst.masks))
    pres = inst.data["presence"]
    assert pres.shape == (n,) and pres.dtype == np.float32 and np.all((pres >= 0) & (pres <= 1))
    by_id = {
        int(t): (lab, s)
        for t, lab, s in zip(det.data["track_id"], det.labels, det.scores, strict=True)
    }
    for t, lab, s in zip(inst.data["track_id"], inst.labels, inst.scores, strict=True):
        assert by_id[int(t)][0] == lab and np.isclose(by_id[int(t)][1], s)


def test_propagate_window_keeps_rows(prop, scene):
    det = seed(scene)
    frames = [scene.frame(t) for t in range(1, N)]
    out = prop.propagate(scene.frame(0), det, frames)
    assert len(out) == N - 1 and not prop.active
    hw = (WH[1], WH[0])
    for inst in out:
        check(inst, det, hw)
        assert list(inst.data["track_id"]) == list(det.data["track_id"])  # drop_lost=False
        assert list(inst.labels) == list(det.labels)
        assert inst.metadata["propagated_from"] == 0


def _jpeg_video(folder: Path, frames: list[np.ndarray]) -> list[np.ndarray]:
    """Write ``frames`` as sam2's ``init_state`` reads a video (``00000.jpg``, ...) and return
    them as decoded from those files, so both paths see the same pixels."""
    from PIL import Image

    folder.mkdir()
    out = []
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / f"{i:05d}.jpg", quality=95)
        out.append(np.asarray(Image.open(folder / f"{i:05d}.jpg").convert("RGB")))
    return out


def _sam2_reference(pred, folder: Path, masks: np.ndarray):
    """sam2's own video path: ``init_state`` on the JPEG folder, a mask per object on frame
    0, ``propagate_in_video``. Returns ``(masks per frame {index: (N, H, W) bool}, state)``."""
    import torch

    with torch.inference_mode():
        state = pred.init_state(video_path=str(folder))
        for i, m in enumerate(masks):
            pred.add_new_mask(state, frame_idx=0, obj_id=i, mask=m)
        out = {
            int(k): (logits[:, 0] > 0).cpu().numpy()
            for k, _, logits in pred.propagate_in_video(state)
        }
    return out, state


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(float((a | b).sum()), 1.0)


def test_propagation_matches_sam2_video_predictor(prop, tmp_path):
    """The per-frame propagation (a hand-built inference state, one frame at a time) gives
    sam2's own ``init_state`` + ``propagate_in_video`` masks on the same model and frames:
    IoU >= 0.99 per object and frame, and the mask logits and object scores agree."""
    video = MovingShapes(3, WH, radius=12, speed=3.0, noise=2.0, seed=5)
    frames = _jpeg_video(tmp_path / "video", [video.frame(t) for t in range(5)])
    masks, _ = label_image_to_masks(video.label_image(0))
    ref, ref_state = _sam2_reference(prop.predictor, tmp_path / "video", masks)
    assert sorted(ref) == list(range(5))

    prop.start(frames[0], Instances(masks=masks), window=len(frames))
    try:
        ours = [prop.step(f) for f in frames[1:]]
        state = prop._state
        for k in range(1, len(frames)):
            for obj in range(len(masks)):
                a = state["output_dict_per_obj"][obj]["non_cond_frame_outputs"][k]
                b = ref_state["output_dict_per_obj"][obj]["non_cond_frame_outputs"][k]
                np.testing.assert_allclose(a["pred_masks"].numpy(), b["pred_masks"].numpy(), atol=1e-5)
                np.testing.assert_allclose(
                    a["object_score_logits"].numpy(), b["object_score_logits"].numpy(), atol=1e-5
                )
    finally:
        prop.reset()
    area = WH[0] * WH[1]
    for k, inst in enumerate(ours, start=1):
        assert len(inst) == len(masks) and inst.masks.shape == ref[k].shape
        for obj in range(len(masks)):
            n = int(ref[k][obj].sum())
            assert 0 < n < area  # neither empty nor the whole frame: the IoU means something
            assert _iou(inst.masks[obj], ref[k][obj]) >= 0.99, (k, obj)
    # the window-at-once API gives the same masks
    for k, inst in enumerate(prop.propagate(frames[0], Instances(masks=masks), frames[1:]), start=1):
        np.testing.assert_array_equal(inst.masks, ours[k - 1].masks)


@pytest.mark.slow
def test_stream_propagation_matches_sam2_on_a_long_video(prop, tmp_path):
    """A stream (window length unknown) is tracked as sam2 tracks a video of 16 frames or
    more, and dropping memory older than sam2 reads (after 16 frames) changes nothing."""
    video = MovingShapes(1, WH, radius=12, speed=2.0, noise=2.0, seed=7)
    n = 20
    frames = _jpeg_video(tmp_path / "video", [video.frame(t) for t in range(n)])
    masks, _ = label_image_to_masks(video.label_image(0))
    ref, ref_state = _sam2_reference(prop.predictor, tmp_path / "video", masks)
    prop.start(frames[0], Instances(masks=masks))  # no window: a stream
    try:
        for k in range(1, n):
            got = prop.step(frames[k])
            assert 0 < int(ref[k][0].sum()) < WH[0] * WH[1]
            assert _iou(got.masks[0], ref[k][0]) >= 0.99, k
            a = prop._state["output_dict_per_obj"][0]["non_cond_frame_outputs"][k]
            b = ref_state["output_dict_per_obj"][0]["non_cond_frame_outputs"][k]
            np.testing.assert_allclose(a["pred_masks"].numpy(), b["pred_masks"].numpy(), atol=1e-5)
        # memory sam2 no longer reads was dropped as the window went on
        kept = prop._state["output_dict_per_obj"][0]["non_cond_frame_outputs"]
        assert min(kept) == n - 1 - 16 + 1
    finally:
        prop.reset()


def test_step_stream_and_errors(sam2_ckpt, scene):
    from sam_detect.video.propagate import SAM2Propagator

    p = SAM2Propagator(checkpoint=str(sam2_ckpt), device="cpu", image_size=SIZE)  # drop_lost
    with pytest.raises(RuntimeError, match="before start"):
        p.step(scene.frame(1))
    det = seed(scene)
    p.start(scene.frame(0), det)
    assert p.active
    for t in (1, 2):
        inst = p.step(scene.frame(t))
        check(inst, det, (WH[1], WH[0]))
        assert set(inst.data["track_id"]) <= set(det.data["track_id"])
        assert inst.masks.reshape(len(inst), -1).any(axis=1).all()  # lost objects dropped
    with pytest.raises(ValueError, match="detected frame was"):
        p.step(np.zeros((10, 10, 3), np.uint8))
    # a float frame in [0, 1] is refused, not clipped to black
    with pytest.raises(ValueError, match="uint8 RGB frames, got float32.*to_rgb_uint8"):
        p.step(scene.frame(1).astype(np.float32) / 255)
    # no objects detected: every step is empty
    p.start(scene.frame(0), det[np.zeros(0, int)])
    empty = p.step(scene.frame(1))
    assert len(empty) == 0 and empty.masks.shape == (0, WH[1], WH[0])


def test_detect_stream_propagates_between_detections(detector, prop, scene):
    stats = StreamStats()
    frames = [scene.frame(t) for t in range(N)]
    results = list(
        detect_stream(detector, frames, every=3, change_threshold=0, propagate=prop, stats=stats)
    )
    assert [r.status for r in results] == ["detected", "propagated", "propagated"] * 2
    assert [r.result_of for r in results] == [0, 0, 0, 3, 3, 3]
    assert (stats.frames, stats.detected, stats.propagated, stats.skipped) == (N, 2, 4, 0)
    assert stats.summary()["propagated"] == 4 and "4 propagated" in stats.describe()
    for r in results:
        assert r.fresh
        if r.status == "propagated":
            det = results[r.result_of].instances
            check(r.instances, det, (WH[1], WH[0]))
            assert list(r.instances.data["track_id"]) == list(det.data["track_id"])
            assert r.instances.metadata["frame"] == r.index


class _Broken:
    def start(self, rgb, instances):
        pass

    def step(self, rgb):
        raise RuntimeError("boom")


def test_propagation_failure_falls_back_to_skipped(detector, scene, caplog):
    stats = StreamStats()
    frames = [scene.frame(t) for t in range(4)]
    res = list(
        detect_stream(
            detector, frames, every=2, change_threshold=0, propagate=_Broken(), stats=stats
        )
    )
    assert [r.status for r in res] == ["detected", "skipped", "detected", "skipped"]
    assert stats.propagated == 0 and stats.skipped == 2
    assert "propagation failed" in caplog.text
    with pytest.raises(ValueError, match="propagate must be"):
        detect_stream(detector, frames, propagate="optical-flow")


def run_cli(args, capsys):
    return run_main(*args)  # conftest's: the entry point's exit code, stdout and stderr


@pytest.fixture(scope="module")
def cli_setup(scene, tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    video = scene.write(root / "shapes.avi", n_frames=N, fps=10)
    return root, video


def cli_args(root, *extra):
    lib = root / "lib"
    return [*extra, "--store", "memory", "--library-path", str(lib), "--segmenter",
            "classical", "--embedder", "handcrafted", "-q"]  # fmt: skip


def test_cli_propagate_without_checkpoint(cli_setup, tmp_path, monkeypatch, capsys):
    root, video = cli_setup
    monkeypatch.setenv("SAM_DETECT_CACHE", str(tmp_path / "empty"))
    monkeypatch.setenv("SAM_DETECT_OFFLINE", "1")
    code, _, err = run_cli(
        ["video", str(video), *cli_args(root, "--every", "2", "--propagate", "sam2")], capsys
    )
    assert code == 1 and "Error: cannot --propagate sam2:" in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, _, err = run_cli(
        ["video", str(video), *cli_args(root, "--propagate", "sam2", "--sam-checkpoint",
                                         str(tmp_path / "nope.pt"), "--every", "2")],
        capsys,
    )  # fmt: skip
    assert code == 1 and "nope.pt does not exist" in err, err
    code, _, err = run_cli(["video", str(video), *cli_args(root, "--propagate", "sam2")], capsys)
    assert code == 2 and "--every N" in err, err


def test_cli_propagate_writes_propagated_records(cli_setup, sam2_ckpt, scene, monkeypatch, capsys):
    from sam_detect.video import propagate

    root, video = cli_setup
    lib = root / "lib2"  # the memory store keeps memory_store.npz in this folder
    det = SAMDetect(
        DetectorConfig(
            store="memory",
            store_options={"path": str(lib)},
            segmenter="classical",
            embedder="handcrafted",
            library="shapes",
        )
    )
    masks, ids = label_image_to_masks(scene.label_image(0))
    det.add_examples(
        scene.frame(0), Instances(masks=masks), [scene.shapes[i - 1].label for i in ids]
    )
    det.close()
    monkeypatch.setattr(
        propagate,
        "SAM2Propagator",
        functools.partial(propagate.SAM2Propagator, image_size=SIZE),  # 128 px for speed
    )
    code, out, err = run_cli(
        ["video", str(video), "--library-path", str(lib), "--store", "memory", "-q",
         "--segmenter", "classical", "--embedder", "handcrafted", "--library", "shapes",
         "--every", "3", "--change-threshold", "0", "--propagate", "sam2",
         "--sam-checkpoint", str(sam2_ckpt), "--device", "cpu", "--jsonl", "-"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    records = [json.loads(x) for x in out.splitlines()]
    assert [r["status"] for r in records] == ["detected", "propagated", "propagated"] * 2
    assert "4 propagated" in err
    for r in records[1:3]:
        assert {o["track_id"] for o in r["objects"]} <= {
            o["track_id"] for o in records[0]["objects"]
        }
        assert r["result_of"] == 0
