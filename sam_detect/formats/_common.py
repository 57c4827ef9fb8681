"""What every reader and writer shares: paths, the default label, size checks, JSON files."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError
from sam_detect.instances import Instances

PathLike = str | os.PathLike
DEFAULT_LABEL = "object"


def image_names_of(image_names: Any) -> Any:
    """``image_names`` as given, except one name (a str or ``os.PathLike``): a list of it, not a
    name per letter (labelme wrote ``imagePath`` "h" of "h0.tif", COCO counted 5 names)."""
    return [os.fspath(image_names)] if isinstance(image_names, (str, os.PathLike)) else image_names


def check_exists(path: Path) -> None:
    if not path.exists():
        raise AnnotationError(f"{path}: annotation file not found")
    if path.is_dir():
        raise AnnotationError(f"{path}: is a folder; expected an annotation file")


def check_hw(path: Path, got_hw: tuple[int, int], image_shape: Sequence[int], where: Any = None) -> None:
    """Raise when annotations of ``got_hw`` do not fit an image of ``image_shape`` ``(H, W[, C])``."""
    want = (int(image_shape[0]), int(image_shape[1]))
    if tuple(got_hw) != want:
        which = f" (image {where})" if where not in (None, 0) else ""
        raise AnnotationError(
            f"{path}{which}: annotations are {got_hw[0]}x{got_hw[1]} (HxW) but the image is "
            f"{want[0]}x{want[1]}; use the annotation file made for this image"
        )


def select_image(path: Path, items: list[Instances], image: int | str) -> Instances:
    """The item of a multi-image file for ``image``: a COCO image id, an index, or a name."""
    if isinstance(image, (int, np.integer)) and not isinstance(image, bool):
        for it in items:
            if it.metadata.get("image_id") == image:
                return it
        if 0 <= image < len(items):
            return items[int(image)]
        raise AnnotationError(f"{path}: image index {image} out of range (0..{len(items) - 1})")
    name = str(image)
    winners = name_matches(path, items, name)
    if len(winners) == 1:
        return winners[0]
    listed = ", ".join(str(it.metadata.get("image")) for it in winners[:8])
    raise AnnotationError(f"{path}: {len(winners)} images match {name!r} alike ({listed}); give the image's "
                          "path as the file lists it")


def name_matches(path: Path, items: list[Instances], name: str) -> list[Instances]:
    """The items of a multi-image file whose image is ``name`` (those that match it best,
    :func:`_name_match`); an :class:`AnnotationError` naming the file's images where none does.

    Where the file lists ``name``'s file name in two or more folders (``plate1/A01.tif``,
    ``plate2/A01.tif``), the folder tells its images apart: one in another folder than
    ``name``'s is another image (matched by the file name alone, its objects were used as the
    ground truth or the examples of the wrong image). Where it lists the name in one folder
    only, that image is taken (an image moved or copied since it was annotated, or a
    labelling tool's ``images/`` prefix), and stderr says so where the folders differ."""
    refs = [str(it.metadata.get("image")) for it in items]
    scores = [_name_match(ref, str(name)) for ref in refs]
    if _folders_tell_apart(refs, str(name)):
        scores = [0.0 if other_folder(ref, str(name)) else sc for ref, sc in zip(refs, scores, strict=True)]
    best = max(scores, default=0.0)
    if best <= 0:
        refuse_elsewhere(path, items, name)
        available = ", ".join(refs[:8])
        raise AnnotationError(f"{path}: no annotations for image {name!r}; the file lists: {available}")
    winners = [it for it, sc in zip(items, scores, strict=True) if sc == best]
    if len(winners) == 1:
        warn_elsewhere(path, winners, name)
    return winners


def _folders_tell_apart(refs: list[str], name: str) -> bool:
    """Whether the file lists ``name``'s file name (or stem) in two or more folders."""
    stem = Path(name).stem
    return len({Path(ref).parent for ref in refs if Path(ref).stem == stem}) > 1


def _name_match(ref: str, name: str) -> float:
    """How well an image the file lists (``ref``) matches the image asked for (``name``): the
    number of their paths' last parts that agree (``plate/B1/image.tif`` matches
    ``/data/plate/B1/image.tif`` by 3, ``A1/image.tif`` by 1), the whole path counting as
    most; 0.5 where only the stems agree (``image`` for ``B1/image.tif``); 0 for none."""
    if ref == name:
        return float("inf")
    a, b = Path(ref).parts, Path(name).parts
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    if n:
        return float(n)
    return 0.5 if Path(ref).stem == Path(name).stem else 0.0


def elsewhere(items: list[Instances], name: str) -> list[str]:
    """The images a file lists under ``name``'s file name (or stem) in other folders
    (``sub/p.png`` for ``sub2/p.png``)."""
    return [ref for ref in (str(it.metadata.get("image")) for it in items)
            if other_folder(ref, str(name)) and Path(ref).stem == Path(str(name)).stem]


def refuse_elsewhere(path: Path, items: list[Instances], name: str) -> None:
    """Raise where the file lists ``name``'s file name (or stem) only in other folders, in
    two or more of them (:func:`name_matches`): another image of the same name, whose
    annotations are not this image's."""
    other = elsewhere(items, name)
    if other:
        raise AnnotationError(
            f"{path}: lists {', '.join(other[:3])}, not {str(name)!r}: the same file name in another "
            "folder is another image; give the image the file lists, or the annotation file made for this one")


#: the annotation files :func:`warn_elsewhere` spoke of (once a file: a labelling tool's export
#: of 1,000 images under ``images/`` said it 1,000 times)
_SAID_ELSEWHERE: set[str] = set()


def warn_elsewhere(path: Path, items: list[Instances], name: str) -> None:
    """Say where the image taken for ``name`` (``items``: the one chosen) is listed in another
    folder than ``name``'s: taken as this image's (an image moved or copied since it was
    annotated, most often), said on stderr once a file, in case it is another image of the
    same name."""
    import logging

    other = elsewhere(items, name)
    if other and str(path) not in _SAID_ELSEWHERE:
        _SAID_ELSEWHERE.add(str(path))
        logging.getLogger("sam_detect").warning(
            "%s lists %s, not %r: its annotations are taken as this image's (the same file name in another "
            "folder; so for each image of the file so listed); if that is another image, give the annotation file "
            "made for this one", path, other[0], str(name))


def other_folder(ref: str, name: str) -> bool:
    """Whether ``ref`` and ``name`` name their folders and the folders differ: two files of one
    name in two folders are two images (``plate1/A01.tif``, ``plate2/A01.tif``), which their
    names alone matched (the wrong image's objects used as ground truth, or stored as examples).
    A path without a folder (``p.png``) may be any folder's. The folders are compared as deep
    as the shorter path names them: ``plateA/w1/x.tif`` and ``/data/plateC/w1/x.tif`` are in
    other folders, though both wells are ``w1``."""
    a, b = Path(ref).parent.parts, Path(name).parent.parts
    n = min(len(a), len(b))
    return n > 0 and a[-n:] != b[-n:]


def warn_untraced(n: int, what: str) -> None:
    """Say that ``n`` objects too small to trace (one or two pixels) were left out of a
    ``what`` file, whose polygons cannot hold them."""
    import logging

    logging.getLogger("sam_detect").warning(
        "%d object(s) of one or two pixels left out of the %s file: too small for a polygon "
        "(COCO keeps them as RLE, GeoJSON on their pixels' edges, a label image as they are)", n, what)


def label_str(label: Any) -> str:
    return DEFAULT_LABEL if label is None else str(label)


def read_json(path: Path) -> Any:
    """The JSON document in ``path``; an unreadable or malformed file is one :class:`AnnotationError`."""
    try:
        return json.loads(Path(path).read_bytes())  # UTF-8 (or -16, -32) by its bytes, not the locale
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationError(f"{path}: not valid JSON ({e})") from e


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """A temporary file beside ``path`` to write, renamed over ``path`` when the block ends and
    removed when it raises (a full disk, Ctrl-C): no half-written output is left, under
    either name. It keeps ``path``'s suffix, for writers that choose a format by it."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.partial-{os.getpid()}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def polygon_tolerance(fmt: str, tolerance: float | None) -> float:
    """The polygon simplification, in pixels, that ``fmt`` is written at: ``tolerance``
    where given, else exact pixel edges for GeoJSON (GIS and QuPath users measure on them)
    and 1 pixel for every other format."""
    if tolerance is not None:
        return float(tolerance)
    return 0.0 if fmt == "geojson" else 1.0


def write_json(path: PathLike, doc: Any, indent: int | None = None) -> Path:
    """Write ``doc`` as JSON to ``path`` (its folder made as needed), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(doc, indent=indent)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path
