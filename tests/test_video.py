"""Video building blocks without a detector: frame selection, sources, tracking, writers."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from sam_detect.errors import ImageLoadError, SamDetectError
from sam_detect.instances import Instances
from sam_detect.video.sources import (
    CaptureSource,
    ImageFolderSource,
    StackSource,
    open_source,
    parse_frames,
)
from sam_detect.video.synthetic import MovingShapes
from sam_detect.video.tracking import Tracker, box_iou
from sam_detect.video.writer import (
    JsonlWriter,
    LabelStackWriter,
    VideoWriter,
    display_problem,
    draw_annotations,
)


def colour_video(path, colours, size_wh=(64, 48), fps=10.0, fourcc="mp4v"):
    """A video whose frame i is filled with RGB ``colours[i]``."""
    w, h = size_wh
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (w, h))
    assert vw.isOpened()
    for c in colours:
        vw.write(np.full((h, w, 3), c[::-1], np.uint8))
    vw.release()
    return path


def count_frames(path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.read()[0]:
        n += 1
    cap.release()
    return n


# -- frame selection -------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, n, expected",
    [
        ("0-2,4-7", 10, [0, 1, 2, 4, 5, 6, 7]),
        ("3", 10, [3]),
        ("7-", 10, [7, 8, 9]),
        ("-2", 10, [0, 1, 2]),
        ("0-9:3", 10, [0, 3, 6, 9]),
        ("5-8, 1-2, 5", 10, [1, 2, 5, 6, 7, 8]),
        ([4, 1, 1], 10, [1, 4]),
    ],
)
def test_parse_frames(text, n, expected):
    assert parse_frames(text).indices(n) == expected


@pytest.mark.parametrize("text", ["a-b", "3-1", "1-2:0", ",", "1,,2", "--3", "1.5"])
def test_parse_frames_rejects(text):
    with pytest.raises(ValueError, match="frame range"):
        parse_frames(text)


def test_a_step_after_one_frame_is_refused_as_the_slice_it_was_meant_for():
    """``1:3`` is a slice in ``eval --detect-on`` (images 1 and 2); here it read as frame 1 with
    a step, one frame, silently."""
    with pytest.raises(ValueError, match=r"'1:3': a step goes after a range \('1-99:3'\); frames 1 to 3 are '1-3'"):
        parse_frames("1:3")
    assert parse_frames("1-:3").indices(8) == [1, 4, 7]


def test_frame_selection_past_the_end():
    with pytest.raises(
        ImageLoadError, match=r"frame 12 is out of range: the source has 10 frames \(0-9\)"
    ):
        parse_frames("0-2,12").indices(10)
    assert parse_frames(None) is None and parse_frames(" ") is None
    assert parse_frames("2-4").last == 4 and parse_frames("2-").last is None
    assert parse_frames("0-10:5").indices(11) == [0, 5, 10] and parse_frames("0-11:5").indices(11) == [0, 5, 10]
    # a stepped range's end is the last frame it selects: 0-11:5 on 11 frames ends at 10, inside
    assert parse_frames("0-11:5").clipped(11) is None and parse_frames("0-2,12").clipped(20) is None


def test_a_range_that_ends_past_the_last_frame_stops_there():
    """``video --help``'s own example ``--frames 0-99:5`` failed on any source shorter than 96
    frames ("frame 95 is out of range"): a range that starts inside the source is cut at its
    last frame, with one line saying so; one that starts past it stays an error."""
    sel = parse_frames("0-99:2")
    assert sel.indices(5) == [0, 2, 4]
    assert sel.clipped(5) == ("--frames '0-99:2' ends past the source's last frame: read up to frame 4 "
                              "(the source has 5 frames, 0-4)")
    assert parse_frames("1-2,4-50").indices(7) == [1, 2, 4, 5, 6] and parse_frames("1-2,4-50").clipped(7)
    with pytest.raises(ImageLoadError, match=r"frame 8 is out of range: the source has 5 frames \(0-4\); fix "
                                              r"--frames '0-2,8-99'"):
        parse_frames("0-2,8-99").indices(5)


# -- capture sources -------------------------------------------------------------------
COLOURS = [(10 * i, 255 - 10 * i, 128) for i in range(12)]


def test_video_file_source_reads_rgb_frames(tmp_path):
    path = colour_video(tmp_path / "c.mp4", COLOURS)
    with open_source(path) as src:
        assert isinstance(src, CaptureSource) and not src.live
        assert src.fps == pytest.approx(10.0) and src.frame_count == 12
        frames = list(src)
    assert [f.index for f in frames] == list(range(12))
    for f, c in zip(frames, COLOURS, strict=True):
        assert f.rgb.shape == (48, 64, 3) and f.rgb.dtype == np.uint8
        assert np.abs(f.rgb.reshape(-1, 3).mean(0) - c).max() < 8  # RGB, not BGR
        assert f.time == pytest.approx(f.index / 10.0)


def test_video_file_frame_selection(tmp_path):
    path = colour_video(tmp_path / "c.mp4", COLOURS)
    with open_source(path, frames="1-2,5,9-") as src:
        assert src.frame_count == 6
        frames = list(src)
    assert [f.index for f in frames] == [1, 2, 5, 9, 10, 11]
    assert np.abs(frames[2].rgb.reshape(-1, 3).mean(0) - COLOURS[5]).max() < 8
    with open_source(path, frames="8-99:2") as src:  # a range past the last frame stops there
        assert src.frame_count == 2 and [f.index for f in src] == [8, 10] and "read up to frame 11" in src.note


def test_truncated_avi_ends_cleanly(tmp_path, caplog):
    full = MovingShapes(3, (96, 64), seed=1).write(tmp_path / "full.avi", n_frames=20)
    data = (tmp_path / "full.avi").read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    readable = count_frames(cut)
    assert 0 < readable < 20
    with caplog.at_level(logging.WARNING, logger="sam_detect.video"), open_source(cut) as src:
        frames = list(src)  # no exception
    assert [f.index for f in frames] == list(range(readable))
    assert src.failed >= 1 and "could not be decoded" in caplog.text
    assert full.endswith("full.avi")


def test_truncated_mp4_says_what_is_wrong(tmp_path):
    MovingShapes(3, (96, 64), seed=1).write(tmp_path / "full.mp4", n_frames=10)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes((tmp_path / "full.mp4").read_bytes()[:2000])  # the index (moov) is at the end
    with pytest.raises(ImageLoadError, match="cannot open video file; the file may be truncated"):
        open_source(cut)


def test_open_source_dispatch_and_errors(tmp_path):
    with pytest.raises(ImageLoadError, match="no such file, folder or camera"):
        open_source(tmp_path / "missing.mp4")
    with pytest.raises(ImageLoadError, match="cannot open camera"):
        open_source("/dev/video97")
    with pytest.raises(ImageLoadError, match="cannot open camera"):
        CaptureSource(97, capture_factory=lambda t: _DeadCapture())
    with pytest.raises(ImageLoadError, match="cannot open stream"):
        CaptureSource("rtsp://127.0.0.1:1/none", capture_factory=lambda t: _DeadCapture())


class _DeadCapture:
    def isOpened(self):  # noqa: N802
        return False

    def release(self):
        pass


class _DisappearingCamera:
    """A file capture that stops delivering after ``fail_after`` frames, like an unplugged camera."""

    opened = 0

    def __init__(self, path, fail_after):
        type(self).opened += 1
        self.cap = cv2.VideoCapture(str(path)) if type(self).opened == 1 else None
        self.reads = 0
        self.fail_after = fail_after

    def isOpened(self):  # noqa: N802
        return self.cap is not None and self.cap.isOpened()

    def read(self):
        self.reads += 1
        if self.reads > self.fail_after:
            return False, None
        return self.cap.read()

    def grab(self):
        return self.cap.grab()

    def get(self, prop):
        return self.cap.get(prop) if self.cap is not None else 0

    def release(self):
        if self.cap is not None:
            self.cap.release()


def test_camera_path_with_a_file_source(tmp_path):
    """The camera code path (live, wall-clock time) through the same capture interface."""
    path = colour_video(tmp_path / "cam.mp4", COLOURS)
    with open_source(path, live=True) as src:
        assert src.live and src.frame_count is None
        frames = list(src)
    assert [f.index for f in frames] == list(range(12))
    times = [f.time for f in frames]
    assert times == sorted(times) and times[-1] < 5.0  # seconds since start, not media time


def test_camera_that_disappears_ends_the_stream(tmp_path, caplog):
    path = colour_video(tmp_path / "cam.mp4", COLOURS)
    _DisappearingCamera.opened = 0
    src = CaptureSource(
        0,
        capture_factory=lambda t: _DisappearingCamera(path, fail_after=4),
        reconnect=2,
        retry_delay=0.01,
    )
    with caplog.at_level(logging.WARNING, logger="sam_detect.video"), src:
        frames = list(src)
    assert len(frames) == 4
    assert "reconnecting (attempt 2 of 2)" in caplog.text
    assert "gone after 2 reconnection attempts" in caplog.text
    assert _DisappearingCamera.opened == 3  # first open + two reconnection attempts


def test_tiff_stack_source(tmp_path):
    import tifffile

    rng = np.random.default_rng(0)
    stack = (30000 + rng.integers(0, 5000, (8, 40, 50))).astype(np.uint16)
    stack[:, 10:20, 10:20] = 60000
    tifffile.imwrite(tmp_path / "t.tif", stack, imagej=True, metadata={"axes": "TYX"})
    with open_source(tmp_path / "t.tif", frames="0-2,4-7", fps=2.0) as src:
        assert isinstance(src, StackSource) and src.frame_count == 7
        frames = list(src)
    assert [f.index for f in frames] == [0, 1, 2, 4, 5, 6, 7]
    f = frames[3]
    assert f.rgb.dtype == np.uint8 and f.rgb.shape == (40, 50, 3)
    assert f.original.dtype == np.uint16 and np.array_equal(f.original, stack[4])
    assert f.rgb[15, 15, 0] == 255 and f.rgb[30, 40, 0] < 255
    assert f.time == pytest.approx(2.0)
    with pytest.raises(ImageLoadError, match="frame 9 is out of range: the source has 8 frames"):
        open_source(tmp_path / "t.tif", frames="9")
    with open_source(tmp_path / "t.tif", frames="2-99:3") as src:  # cut at frame 7, and said
        assert src.indices == [2, 5] and "read up to frame 7 (the source has 8 frames, 0-7)" in src.note
    with open_source(tmp_path / "t.tif", frames="2-7") as src:
        assert src.note is None


@pytest.mark.parametrize("kind", ["channels", "colour"])
def test_a_stack_frame_is_read_as_detect_reads_it(tmp_path, kind):
    """Each frame of a stack as ``load_image(frame=k)`` (``detect --frame k``) reads it: a
    4-channel TIFF's channels merged (the video read them as an RGBA photograph, channel 0
    red and channel 1 green, and found no nucleus where ``detect`` found 46), an RGB stack's
    frames in colour."""
    import tifffile

    from sam_detect.io.images import load_image

    rng = np.random.default_rng(1)
    if kind == "channels":
        stack = rng.integers(0, 4000, (3, 4, 30, 40), dtype=np.uint16)  # 3 frames of 4 channels
        tifffile.imwrite(tmp_path / "s.tif", stack, imagej=True, metadata={"axes": "TCYX"})
    else:
        stack = rng.integers(0, 256, (3, 30, 40, 3), dtype=np.uint8)
        tifffile.imwrite(tmp_path / "s.tif", stack, photometric="rgb")
    with open_source(tmp_path / "s.tif") as src:
        frames = list(src)
    assert len(frames) == 3
    for f in frames:
        want = load_image(tmp_path / "s.tif", frame=f.index).rgb
        assert np.array_equal(f.rgb, want)
        grey = (f.rgb[..., 0] == f.rgb[..., 1]).all() and (f.rgb[..., 1] == f.rgb[..., 2]).all()
        assert grey == (kind == "channels")


def test_image_folder_skips_unreadable_files(tmp_path, caplog):
    for i in range(4):
        cv2.imwrite(str(tmp_path / f"f{i}.png"), np.full((20, 30, 3), 40 * i, np.uint8))
    (tmp_path / "f2.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING, logger="sam_detect.video"):
        src = open_source(tmp_path)
        frames = list(src)
    assert isinstance(src, ImageFolderSource)
    assert [f.index for f in frames] == [0, 1, 3] and src.failed == 1
    assert "f2.png" in caplog.text
    glob_frames = list(open_source(str(tmp_path / "f[013].png"), frames="1-"))
    assert [f.name.rsplit("/", 1)[-1] for f in glob_frames] == ["f1.png", "f3.png"]


# -- tracking --------------------------------------------------------------------------
def box_instances(boxes, hw=(100, 200), labels=None, conf=None):
    masks = np.zeros((len(boxes), *hw), bool)
    for i, (x1, y1, x2, y2) in enumerate(boxes):
        masks[i, int(y1) : int(y2), int(x1) : int(x2)] = True
    return Instances(masks=masks, labels=labels, label_confidences=conf)


def test_tracker_keeps_ids_of_moving_objects_and_retires_lost_ones():
    tr = Tracker(max_age=2)
    seen = []
    for t in range(6):
        boxes = [(10 + 4 * t, 10, 30 + 4 * t, 30), (150 - 4 * t, 60, 170 - 4 * t, 80)]
        out = tr.update(box_instances(boxes, labels=["a", "b"], conf=[0.9, 0.8]), t)
        seen.append(list(out.data["track_id"]))
    assert all(ids == [1, 2] for ids in seen)
    # object 1 leaves; it survives max_age updates, then its id is retired for good
    for t in range(6, 10):
        out = tr.update(
            box_instances([(150 - 4 * t, 60, 170 - 4 * t, 80)], labels=["b"], conf=[0.8]), t
        )
        assert list(out.data["track_id"]) == [2]
    assert tr.active_ids == [2]
    out = tr.update(box_instances([(34, 10, 54, 30), (110, 60, 130, 80)], labels=["a", "b"]), 10)
    assert list(out.data["track_id"]) == [3, 2]


def test_tracker_follows_crossing_and_fast_objects():
    """Two objects cross paths, each moving too fast for an IoU match (IoU 0.14 < 0.2)."""
    tr = Tracker()
    ids = []
    for t in range(10):
        a = (10 + 15 * t, 20, 30 + 15 * t, 40)  # rightwards, 15 px/frame, 20 px wide
        b = (190 - 15 * t, 28, 210 - 15 * t, 48)  # leftwards, overlapping rows; they cross at t=6
        order = [b, a] if t % 2 else [a, b]  # detection order must not matter
        out = tr.update(box_instances(order, hw=(100, 240)), t)
        got = dict(
            zip(
                map(tuple, out.boxes.astype(int).tolist()),
                out.data["track_id"].tolist(),
                strict=True,
            )
        )
        ids.append((got[a], got[b]))
    assert len(set(ids)) == 1, ids


def test_label_smoothing_majority_over_recent_frames():
    tr = Tracker(smooth=5)
    raw = ["cell", "cell", "debris", "cell", "debris", "debris", "debris", "debris"]
    shown = []
    for t, lab in enumerate(raw):
        out = tr.update(box_instances([(10 + t, 10, 30 + t, 30)], labels=[lab], conf=[0.7]), t)
        shown.append(out.labels[0])
        assert out.data["raw_label"][0] == lab
    # one doubtful frame does not flip the label; a sustained change does, after a majority
    assert shown == ["cell", "cell", "cell", "cell", "cell", "debris", "debris", "debris"]
    assert tr.history == {1: "debris"}


def test_box_iou_and_tracker_validation():
    iou = box_iou(
        np.array([[0, 0, 10, 10]]), np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    )
    assert iou[0].tolist() == pytest.approx([1.0, 1 / 3, 0.0])
    with pytest.raises(ValueError, match="smooth must be >= 1"):
        Tracker(smooth=0)
    empty = Tracker().update(Instances.empty((10, 10)), 0)
    assert len(empty) == 0 and empty.data["track_id"].shape == (0,)


# -- writers ---------------------------------------------------------------------------
@pytest.mark.parametrize("ext", [".mp4", ".avi"])
def test_video_writer_round_trip(tmp_path, ext):
    path = tmp_path / f"out{ext}"
    scene = MovingShapes(4, (96, 64), seed=2)
    with VideoWriter(path, fps=12) as vw:
        for t in range(7):
            vw.write(scene.frame(t))
    assert vw.frames == 7 and count_frames(path) == 7
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(12)
    cap.release()


@pytest.mark.parametrize("ext", [".mp4", ".avi"])
def test_a_slow_time_lapse_s_video_is_written_at_the_slowest_rate_a_file_plays_at(tmp_path, ext, caplog):
    """``video timelapse.tif --fps 0.002 -o out.mp4`` (a frame every 8 minutes, as the JSON
    lines' times should say) opened no file: "OpenCV could not open it with codec(s) mp4v,
    avc1; try another extension" (the encoder takes no rate under 0.01)."""
    path = tmp_path / f"slow{ext}"
    scene = MovingShapes(2, (64, 48), seed=1)
    with caplog.at_level("WARNING", logger="sam_detect"), VideoWriter(path, fps=0.002) as vw:
        for t in range(3):
            vw.write(scene.frame(t))
    assert count_frames(path) == 3
    assert "written at 0.01 frames per second, the slowest a video file plays at" in caplog.text
    cap = cv2.VideoCapture(str(path))
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(0.01)
    cap.release()


def test_video_writer_errors(tmp_path):
    with pytest.raises(SamDetectError, match="unknown extension '.gif'"):
        VideoWriter(tmp_path / "x.gif", fps=10)
    with pytest.raises(SamDetectError, match="does not exist"):
        VideoWriter(tmp_path / "nope" / "x.mp4", fps=10)
    with pytest.raises(ValueError, match=r"expected an \(H, W, 3\) uint8 RGB frame"):
        VideoWriter(tmp_path / "x.mp4", fps=10).write(np.zeros((5, 5), np.uint8))


def test_label_stack_holds_each_frame_with_its_track_ids(tmp_path):
    import tifffile

    tracked = box_instances([(10, 10, 30, 30), (50, 40, 70, 60)], hw=(80, 100), labels=["a", "b"])
    tracked.data["track_id"] = np.array([7, 3])
    untracked = box_instances([(0, 0, 5, 5), (90, 70, 100, 80)], hw=(80, 100))
    with LabelStackWriter(tmp_path / "s.tif") as w:
        w.write(tracked, (80, 100))
        w.write(Instances.empty((80, 100)), (80, 100))  # a failed frame: a plane of background
        w.write(untracked, (80, 100))
    stack = tifffile.imread(tmp_path / "s.tif")
    assert stack.shape == (3, 80, 100) and stack.dtype == np.uint16
    assert stack[0, 20, 20] == 7 and stack[0, 50, 60] == 3 and set(np.unique(stack[0])) == {0, 3, 7}
    assert not stack[1].any()
    assert stack[2, 2, 2] == 1 and stack[2, 75, 95] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.tif"]  # the raw planes are gone


def test_label_stack_as_npy_and_track_ids_past_uint16(tmp_path):
    inst = box_instances([(10, 10, 30, 30)], hw=(40, 50))
    inst.data["track_id"] = np.array([70_000])
    w = LabelStackWriter(tmp_path / "s.npy")
    w.write(inst, (40, 50))
    w.write(inst, (40, 50))
    w.close()
    w.close()  # twice is harmless
    stack = np.load(tmp_path / "s.npy")
    assert stack.shape == (2, 40, 50) and stack.dtype == np.uint32 and stack[1, 20, 20] == 70_000


def test_label_stack_errors_keep_the_frames_written(tmp_path):
    import tifffile

    with pytest.raises(SamDetectError, match="use one of .tif, .tiff, .npy"):
        LabelStackWriter(tmp_path / "s.png")
    with pytest.raises(SamDetectError, match="does not exist"):
        LabelStackWriter(tmp_path / "nope" / "s.tif")
    w = LabelStackWriter(tmp_path / "s.tif")
    w.close()  # no frame: no file
    assert not (tmp_path / "s.tif").exists()
    w = LabelStackWriter(tmp_path / "s.tif")
    w.write(box_instances([(1, 1, 9, 9)], hw=(20, 30)), (20, 30))
    with pytest.raises(SamDetectError, match="frames are 30 x 20: a stack holds frames of one size"):
        w.write(Instances.empty((25, 30)), (25, 30))
    w.close()
    assert tifffile.imread(tmp_path / "s.tif").shape == (1, 20, 30)  # the one frame written


def test_jsonl_writer_flushes_every_line(tmp_path):
    path = tmp_path / "r.jsonl"
    w = JsonlWriter(path)
    w.write({"frame": 0})
    w.write({"frame": 1, "objects": []})
    # readable before close: nothing is lost if the process dies now
    assert [json.loads(x)["frame"] for x in path.read_text().splitlines()] == [0, 1]
    w.close()


def test_draw_annotations_marks_objects_and_track_ids():
    rgb = np.zeros((60, 80, 3), np.uint8)
    inst = box_instances([(10, 20, 30, 40)], hw=(60, 80), labels=["disc"], conf=[0.9])
    inst.data["track_id"] = np.array([7])
    out = draw_annotations(rgb, inst, hud="frame 0")
    assert out.shape == rgb.shape and out[30, 20].any()  # mask tinted
    assert not rgb.any()  # input untouched
    assert draw_annotations(rgb, None).sum() == 0


def test_display_problem_without_display(monkeypatch):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    problem = display_problem()
    assert problem is not None and ("--output" in problem)


# -- session 87: what the stack and folder sources read --------------------------------
def test_a_video_files_channel_is_read_and_a_wrong_one_refused(tmp_path):
    """``--channel`` was ignored for video files (channels 0, 2 and 9 gave the same frames):
    a frame's colour channel is read as grey, as a stack's is; a channel past blue is one error."""
    path = colour_video(tmp_path / "c.avi", [(200, 40, 90)] * 3, fourcc="MJPG")
    with open_source(str(path), channel=0) as src:
        red = [f.rgb for f in src]
    with open_source(str(path), channel=2) as src:
        blue = [f.rgb for f in src]
    assert len(red) == len(blue) == 3
    assert all(abs(int(f[..., 0].mean()) - 200) <= 8 and np.ptp(f, axis=2).max() == 0 for f in red)
    assert all(abs(int(f[..., 0].mean()) - 90) <= 8 for f in blue)
    with pytest.raises(ImageLoadError, match="channel 9 out of range"):
        open_source(str(path), channel=9)
    with pytest.raises(ImageLoadError, match="planes_as_frames"):
        open_source(str(path), planes_as_frames=True)


def test_a_folder_is_read_in_numeric_order_and_a_stack_in_it_refused(tmp_path):
    for k in (0, 1, 2, 10, 11):
        cv2.imwrite(str(tmp_path / f"t{k}.png"), np.full((8, 9), 10 * k, np.uint8))
    src = ImageFolderSource(tmp_path)
    assert [p.name for p in src.paths] == ["t0.png", "t1.png", "t2.png", "t10.png", "t11.png"]
    import tifffile

    zdir = tmp_path / "z"
    zdir.mkdir()
    tifffile.imwrite(zdir / "t000.tif", np.zeros((3, 8, 9), np.uint16), metadata={"axes": "ZYX"})
    with pytest.raises(ImageLoadError, match="holds a stack of several frames; a folder or glob is read as one frame per file"):
        list(ImageFolderSource(zdir))  # its first plane alone was read, without a word


def test_an_axes_less_tiff_of_two_channels_is_frames_of_two_channels(tmp_path):
    """``tifffile.imwrite`` of a ``(T, C, H, W)`` array saves no axes: read as T x C frames,
    the channels interleaved as time points; now as the same array saved as ``.npy``."""
    import tifffile

    from sam_detect.io.images import load_image

    stack = np.zeros((4, 2, 16, 20), np.uint16)
    stack[:, 0, 4:8, 4:8] = 1000
    stack[:, 1] = 500
    for t in range(4):
        stack[t, 0, 10:12, t:t + 2] = 2000
    tifffile.imwrite(tmp_path / "tc.tif", stack)
    np.save(tmp_path / "tc.npy", stack)
    for name in ("tc.tif", "tc.npy"):
        src = StackSource(tmp_path / name, channel=0)
        assert src.frame_count == 4, name
        frames = [f.rgb for f in src]
        assert all(f[10, t] .max() > f[0, 0].max() for t, f in enumerate(frames)), name
    one = load_image(tmp_path / "tc.tif", frame=2, channel=1)
    assert one.n_frames == 4 and one.original.shape == (16, 20, 2)


def test_a_time_lapse_of_z_stacks_says_how_its_planes_become_frames(tmp_path):
    import tifffile

    tifffile.imwrite(tmp_path / "tz.tif", np.zeros((3, 2, 8, 9), np.uint8), imagej=True, metadata={"axes": "TZYX"})
    src = StackSource(tmp_path / "tz.tif")
    assert src.frame_count == 6
    assert src.note == "axes TZYX: 3 T x 2 Z planes read as 6 frames in file order, Z fastest (frame 1 is T 0, Z 1)"


def test_a_label_stack_says_its_axes_and_each_planes_frame(tmp_path):
    import tifffile

    masks = np.zeros((1, 10, 12), bool)
    masks[0, 2:5, 3:7] = True
    with LabelStackWriter(tmp_path / "l.tif") as w:
        for k in (3, 4, 5):
            w.write(Instances(masks=masks), (10, 12), k)
    with tifffile.TiffFile(tmp_path / "l.tif") as tif:
        assert tif.series[0].axes == "TYX" and tif.is_imagej
        assert tif.imagej_metadata["Labels"] == ["frame 3", "frame 4", "frame 5"]
    assert tifffile.imread(tmp_path / "l.tif").shape == (3, 10, 12)


@pytest.mark.parametrize("suffix", [".tif", ".npy"])
def test_a_stack_too_large_to_read_whole_gives_its_selected_frames(tmp_path, monkeypatch, suffix):
    """``video big.npy --frames 0-1`` read the whole 4.7 GiB stack first and was refused,
    pointing to ``--frame``, which ``video`` has not: the frames asked for are read one by one,
    the same frames a whole read gives."""
    import tifffile

    from sam_detect.io import images

    stack = (np.arange(6 * 20 * 24, dtype=np.uint16).reshape(6, 20, 24) * 7) % 4000
    path = tmp_path / f"big{suffix}"
    if suffix == ".npy":
        np.save(path, stack)
    else:
        tifffile.imwrite(path, stack, metadata={"axes": "TYX"})
    whole = [f.rgb for f in StackSource(path, frames="2-3")]
    monkeypatch.setattr(images, "MAX_READ_BYTES", 1000)
    with pytest.raises(ImageLoadError, match=r"pick some frames \(--frames\)"):
        StackSource(path)
    src = StackSource(path, frames="2-3")
    assert src.lazy and src.frame_count == 2
    frames = list(src)
    assert [f.index for f in frames] == [2, 3]
    assert all(np.array_equal(a.rgb, b) for a, b in zip(frames, whole, strict=True))
