"""Library exchange: export to / import from a portable file, copy between stores (and
re-embed: :mod:`sam_detect.store.reembed`, re-exported here).

File format ``sam-detect-library``, version 1: a ZIP archive (suggested suffix
``.samlib.zip``) holding, with no pickled data anywhere::

    manifest.json     {"format": "sam-detect-library", "format_version": 1,
                       "created_by": "sam-detect 0.1.0", "exported": ISO-8601 time,
                       "library": LibraryMeta as a dict, "count": N, "dim": D,
                       "labels": {label: count},
                       "vectors":  {"file": "vectors.npy", "dtype": "float32", "shape": [N, D], "sha256": ...},
                       "payloads": {"file": "payloads.jsonl", "sha256": ...},
                       "crops": {"dir": "crops/", "format": "png", "count": K} or null}
    vectors.npy       (N, D) little-endian float32, rows L2-normalised (numpy .npy, no pickle)
    payloads.jsonl    N lines, row i of vectors.npy: {"id": UUID, "label": str, "payload": {...}}
    crops/<id>.png    optional: the RGB context crop each example was embedded from

Examples are written sorted by id, so exporting the same library from any backend gives
the same bytes (apart from the ``exported`` time). Readers refuse a newer
``format_version``, a wrong checksum, a shape that does not match, or anything else
inconsistent, before a store is touched.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import AnnotationError, EmbedderMismatchError, LibraryError
from sam_detect.names import check_label, display_label, renamed_label
from sam_detect.store import journal
from sam_detect.store._common import COUNT_KEY, check_library_name, normalise_id
from sam_detect.store.base import LibraryMeta, Store, check_same_model
from sam_detect.store.reembed import ReembedResult, crop_from_payload, reembed_library

__all__ = [
    "ExportSummary",
    "ImportResult",
    "LibraryArchive",
    "ReembedResult",
    "copy_library",
    "crop_from_payload",
    "export_examples",
    "export_library",
    "import_library",
    "read_examples",
    "read_library_file",
    "reembed_library",
]

FORMAT_NAME = "sam-detect-library"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
PAYLOADS = "payloads.jsonl"
CROPS_DIR = "crops/"
ADD_BATCH = 2048
#: Limits on an export file before anything is decompressed (a zip bomb is refused from its
#: directory): members, total uncompressed bytes, and the compression ratio of any member.
MAX_MEMBERS = 1_000_000
MAX_UNCOMPRESSED = 16 * 2**30
MAX_RATIO = 200

CropFn = Callable[[str, dict[str, Any]], "np.ndarray | None"]


@dataclass
class LibraryArchive:
    """A library read from an export file and fully validated.

    ``vectors`` is ``(N, D)`` float32; ``ids``, ``labels``, ``payloads`` have N entries in
    the same order. ``crop_ids`` names the examples that have a crop (read with :meth:`crop`).
    """

    path: Path
    meta: LibraryMeta
    ids: list[str]
    vectors: np.ndarray
    labels: list[str]
    payloads: list[dict[str, Any]]
    crop_ids: set[str] = field(default_factory=set)
    manifest: dict[str, Any] = field(default_factory=dict)
    #: labels of the file that break the label rule, renamed (``rename_bad_labels``): ``{old: new}``
    renamed: dict[str, str] = field(default_factory=dict)
    #: the ``image_key`` of the images a merge added examples of: the library's other examples
    #: of them are to be measured again with these (``SAMDetect.measure_again``), as an ``add``
    #: of them measures them
    images: set[str] = field(default_factory=set)

    def crop(self, example_id: str) -> np.ndarray | None:
        """The example's ``(h, w, 3)`` uint8 RGB crop, or None if the file has none for it."""
        if example_id not in self.crop_ids:
            return None
        from PIL import Image

        with zipfile.ZipFile(self.path) as z:
            data = z.read(f"{CROPS_DIR}{example_id}.png")
        try:
            with Image.open(io.BytesIO(data)) as im:
                return np.asarray(im.convert("RGB"))
        except Exception as e:
            raise LibraryError(
                f"{self.path}: crop of example {example_id} is not a valid PNG ({e})"
            ) from e


@dataclass
class ExportSummary:
    examples: int
    crops: int
    path: Path


@dataclass
class ImportResult:
    name: str
    added: int
    skipped: int
    #: the file's labels that broke the label rule, renamed (``rename_bad_labels``): ``{old: new}``
    renamed: dict[str, str] = field(default_factory=dict)
    #: the ``image_key`` of the images a merge added examples of: the library's other examples
    #: of them are to be measured again with these (``SAMDetect.measure_again``), as an ``add``
    #: of them measures them
    images: set[str] = field(default_factory=set)


# -- reading everything out of a store -------------------------------------------------------


def read_examples(
    store: Store, name: str
) -> tuple[list[str], np.ndarray, list[str], list[dict[str, Any]]]:
    """All of a library's examples, sorted by id: ``(ids, vectors (N, D) float32, labels, payloads)``."""
    meta = store.get_meta(name)
    ids: list[str] = []
    vecs: list[np.ndarray] = []
    labels: list[str] = []
    payloads: list[dict[str, Any]] = []
    for b_ids, b_vecs, b_labels, b_payloads in store.iter_examples(name):
        ids.extend(b_ids)
        vecs.append(np.asarray(b_vecs, np.float32))
        labels.extend(b_labels)
        payloads.extend(b_payloads)
    order = sorted(range(len(ids)), key=ids.__getitem__)
    matrix = np.concatenate(vecs) if vecs else np.zeros((0, meta.dim), np.float32)
    return (
        [ids[i] for i in order],
        np.ascontiguousarray(matrix[order], dtype=np.float32),
        [labels[i] for i in order],
        [payloads[i] for i in order],
    )


# -- export ----------------------------------------------------------------------------------


def _umask() -> int:
    """The process's umask, read without setting it (``os.umask`` sets it for every thread
    while it is read): Linux's ``/proc/self/status``, else the common 022."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return 0o022


def export_library(
    store: Store,
    name: str,
    file: str | os.PathLike,
    *,
    crops: CropFn | None = None,
    overwrite: bool = False,
) -> ExportSummary:
    """Write library ``name`` to ``file`` in the format described in this module.

    ``crops(id, payload)`` may return each example's ``(h, w, 3)`` uint8 crop (or None) to
    store as PNG. The file is written to a temporary name and renamed, so a failed export
    never leaves a half file behind.
    """
    path = Path(file)
    if store.holds_file(path):  # --force or not: it would replace the libraries the export reads
        raise LibraryError(f"{path} is one of the library store's own files; an export there would overwrite "
                           "the libraries it holds: choose a file outside the store")
    if path.exists() and not _replaceable(path):  # --force or not: an image, another archive, a folder
        raise LibraryError(f"{path} exists and is not a sam-detect library export (--force replaces only an "
                           "earlier export); choose another file, or remove it first")
    if path.exists() and not overwrite:
        raise LibraryError(f"{path} exists; pass --force to overwrite it, or choose another file")
    meta = store.get_meta(name)
    ids, vectors, labels, payloads = read_examples(store, name)
    return _write_archive(meta, ids, vectors, labels, payloads, path, crops)


def _replaceable(path: Path) -> bool:
    """Whether an export may replace the file at ``path``: an earlier export (a ZIP archive whose
    manifest names this format; its checksums unread), or an empty file."""
    try:
        if path.is_file() and path.stat().st_size == 0:
            return True
        with zipfile.ZipFile(path) as z:
            info = z.getinfo(MANIFEST)
            if info.file_size > 2**26:  # an export's is about 100 bytes a crop: this is something else
                return False
            manifest = json.loads(z.read(info))
    except (KeyError, ValueError, zipfile.BadZipFile, zlib.error, EOFError, OSError):
        return False
    return isinstance(manifest, dict) and manifest.get("format") == FORMAT_NAME


def export_examples(
    meta: LibraryMeta,
    examples: Sequence[tuple[str, np.ndarray, str, dict[str, Any]]],
    file: str | os.PathLike,
) -> ExportSummary:
    """Write ``(id, vector, label, payload)`` examples with ``meta`` as an export file
    (``library repair`` saves what reads this way before it rebuilds)."""
    rows = sorted(examples, key=lambda e: e[0])
    vectors = (
        np.stack([np.asarray(e[1], np.float32) for e in rows])
        if rows else np.zeros((0, meta.dim), np.float32)
    )
    return _write_archive(
        meta, [e[0] for e in rows], vectors, [e[2] for e in rows], [e[3] for e in rows],
        Path(file), None,
    )


def _write_archive(
    meta: LibraryMeta,
    ids: list[str],
    vectors: np.ndarray,
    labels: list[str],
    payloads: list[dict[str, Any]],
    path: Path,
    crops: CropFn | None,
) -> ExportSummary:
    from sam_detect._version import __version__

    meta = LibraryMeta.from_dict(meta.to_dict())
    for key in (journal.PENDING_KEY, COUNT_KEY):  # the store's bookkeeping stays behind
        meta.extra.pop(key, None)

    vec_bytes = io.BytesIO()
    np.save(vec_bytes, vectors.astype("<f4"), allow_pickle=False)
    vec_bytes = vec_bytes.getvalue()
    lines = [
        json.dumps({"id": i, "label": lab, "payload": p}, sort_keys=True, allow_nan=False)
        for i, lab, p in zip(ids, labels, payloads, strict=True)
    ]
    pay_bytes = ("\n".join(lines) + ("\n" if lines else "")).encode("utf-8")
    counts: dict[str, int] = {}
    for lab in labels:
        counts[lab] = counts.get(lab, 0) + 1

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # as any file written: mkstemp's 0600 kept a shared export from the team
    n_crops = 0
    crop_sums: dict[str, str] = {}
    try:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as z:
            z.writestr(VECTORS, vec_bytes)
            z.writestr(PAYLOADS, pay_bytes)
            if crops is not None:
                # group by source so a crop function that caches images reads each once
                order = sorted(
                    range(len(ids)), key=lambda i: (str(payloads[i].get("source")), ids[i])
                )
                for i in order:
                    crop = crops(ids[i], payloads[i])
                    if crop is None:
                        continue
                    png = _png_bytes(crop)
                    z.writestr(f"{CROPS_DIR}{ids[i]}.png", png, compress_type=zipfile.ZIP_STORED)
                    crop_sums[ids[i]] = hashlib.sha256(png).hexdigest()
                    n_crops += 1
            manifest = {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "created_by": f"sam-detect {__version__}",
                "exported": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "library": meta.to_dict(),
                "count": len(ids),
                "dim": int(meta.dim),
                "labels": dict(sorted(counts.items())),
                "vectors": {
                    "file": VECTORS,
                    "dtype": "float32",
                    "shape": [len(ids), int(meta.dim)],
                    "sha256": hashlib.sha256(vec_bytes).hexdigest(),
                },
                "payloads": {"file": PAYLOADS, "sha256": hashlib.sha256(pay_bytes).hexdigest()},
                "crops": {"dir": CROPS_DIR, "format": "png", "count": n_crops,
                          "sha256": dict(sorted(crop_sums.items()))}
                if crops is not None
                else None,
            }
            z.writestr(MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return ExportSummary(examples=len(ids), crops=n_crops, path=path)


def _png_bytes(crop: np.ndarray) -> bytes:
    from PIL import Image

    arr = np.asarray(crop)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"a crop must be (h, w, 3) uint8 RGB, got {arr.shape} {arr.dtype}")
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


# -- reading an export file -------------------------------------------------------------------


def read_library_file(
    file: str | os.PathLike, *, rename_bad_labels: bool = False, keep_bad_labels: bool = False
) -> LibraryArchive:
    """Read and validate an export file; :class:`LibraryError` says what is wrong with it.

    A label that breaks the rule ``add`` enforces (:func:`~sam_detect.names.check_label`: a
    library made before it) is refused, naming every such label and what
    ``rename_bad_labels`` would rename it to; with it, each is renamed
    (:func:`~sam_detect.names.renamed_label`, ``LibraryArchive.renamed``); with
    ``keep_bad_labels``, each is kept as stored (``reembed``: the library holds them already)."""
    if rename_bad_labels and keep_bad_labels:
        raise ValueError("rename_bad_labels and keep_bad_labels exclude each other; give one")
    path = Path(file)

    def bad(why: str) -> LibraryError:
        return LibraryError(f"{path} is not a valid sam-detect library file: {why}")

    try:
        z = zipfile.ZipFile(path)
    except FileNotFoundError:
        raise LibraryError(f"{path} does not exist") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise bad(
            f"not a ZIP archive ({e}); was it written by `sam-detect library export`?"
        ) from None
    with z:
        _check_bounds(z, bad)
        names = set(z.namelist())
        if MANIFEST not in names:
            raise bad(f"no {MANIFEST} inside")
        raw_manifest = _read_member(z, MANIFEST, bad)
        try:
            manifest = json.loads(raw_manifest)
        except Exception as e:
            raise bad(f"{MANIFEST} is not valid JSON ({e})") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
            got = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
            raise bad(f"format is {got!r}, expected {FORMAT_NAME!r}")
        version = manifest.get("format_version")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise bad(f"format_version is {version!r}, expected a positive integer")
        if version > FORMAT_VERSION:
            raise LibraryError(
                f"{path} was written by a newer sam-detect ({manifest.get('created_by', '?')}, format "
                f"version {version}); this sam-detect reads version {FORMAT_VERSION}. Upgrade sam-detect."
            )
        try:
            meta = LibraryMeta.from_dict(manifest["library"])
            n, dim = int(manifest["count"]), int(manifest["dim"])
            vinfo, pinfo = manifest["vectors"], manifest["payloads"]
            vfile, pfile = vinfo["file"], pinfo["file"]
        except (KeyError, TypeError, ValueError) as e:
            raise bad(f"{MANIFEST} is missing or has a malformed field ({e})") from None
        if meta.dim != dim:
            raise bad(f"library dim {meta.dim} differs from the manifest's dim {dim}")
        for f in (vfile, pfile):
            if f not in names:
                raise bad(f"{f} is missing")
        vec_bytes, pay_bytes = _read_member(z, vfile, bad), _read_member(z, pfile, bad)
        for what, data, info in (("vectors", vec_bytes, vinfo), ("payloads", pay_bytes, pinfo)):
            if hashlib.sha256(data).hexdigest() != info.get("sha256"):
                raise bad(f"{what} checksum mismatch: the file is damaged or was edited")
        try:
            vectors = np.load(io.BytesIO(vec_bytes), allow_pickle=False)
        except Exception as e:
            raise bad(f"{vfile} is not a numpy array ({e})") from None
        if vectors.dtype != np.dtype("<f4") or vectors.shape != (n, dim):
            raise bad(f"vectors are {vectors.dtype} {vectors.shape}, expected float32 {(n, dim)}")
        if not np.isfinite(vectors).all():
            raise bad("vectors contain NaN or infinite values")
        ids, labels, payloads = [], [], []
        broken: dict[str, tuple[int, str, int]] = {}  # a label add refuses: (its first line, why, examples)
        try:
            lines = pay_bytes.decode("utf-8").splitlines()
            for k, line in enumerate(lines):
                rec = json.loads(line)
                ids.append(normalise_id(rec["id"]))
                lab = rec["label"]
                if not isinstance(lab, str):
                    raise ValueError(f"line {k + 1}: label must be a non-empty string")
                try:  # the rule of add: a reserved 'unknown', a line break or 101 characters is refused
                    labels.append(check_label(lab))
                except AnnotationError as e:
                    first, why, times = broken.get(lab, (k + 1, str(e), 0))
                    broken[lab] = (first, why, times + 1)
                    labels.append(lab)
                if not isinstance(rec.get("payload", {}), dict):
                    raise ValueError(f"line {k + 1}: payload must be an object")
                payloads.append(rec.get("payload", {}))
        except (ValueError, KeyError, TypeError) as e:
            raise bad(f"{pfile}: {e}") from None
        renamed: dict[str, str] = {}
        if broken and not keep_bad_labels:  # each renamed apart from the file's other labels, in the order they come
            taken = {lab for lab in labels if lab not in broken}
            for lab in broken:
                renamed[lab] = renamed_label(lab, taken)
                taken.add(renamed[lab])
            if not rename_bad_labels:
                (_, (first, why, times)), *others = broken.items()
                said = ", ".join(f"'{display_label(o, 30)}' ({m})" for o, (_, _, m) in others[:3])
                raise bad(f"{pfile}: line {first}: {why.split('; ')[0]} ({times} example{'s' if times > 1 else ''})"
                          + (f"; {len(others)} other label(s) break the label rule too: {said}"
                             + (", ..." if len(others) > 3 else "") if others else "")
                          + "; to import a library made before the rule, add --rename-bad-labels (each such label "
                            "renamed to one that keeps it, as stderr says; nothing else changes)")
            labels = [renamed.get(lab, lab) for lab in labels]
        if len(ids) != n:
            raise bad(f"{pfile} has {len(ids)} examples, the manifest says {n}")
        if len(set(ids)) != n:
            raise bad(f"{pfile} repeats example ids")
        crop_ids = {
            x[len(CROPS_DIR) : -4] for x in names if x.startswith(CROPS_DIR) and x.endswith(".png")
        }
        unknown = crop_ids - set(ids)
        if unknown:
            raise bad(f"crops for unknown examples, e.g. {sorted(unknown)[0]}")
        cinfo = manifest.get("crops")
        sums = cinfo.get("sha256") if isinstance(cinfo, dict) else None
        if isinstance(sums, dict) and (lost := sorted(set(sums) - crop_ids)):  # listed, checksummed, not there
            raise bad(f"crop {CROPS_DIR}{lost[0]}.png is listed but missing"
                      + (f" (and {len(lost) - 1} more)" if len(lost) > 1 else "") + ": the file is damaged or was edited")
        if crop_ids and isinstance(sums, dict):  # files before checksums have none
            for cid in sorted(crop_ids):
                member = f"{CROPS_DIR}{cid}.png"
                if hashlib.sha256(_read_member(z, member, bad)).hexdigest() != sums.get(cid):
                    raise bad(f"crop {member} does not match its checksum: the file is damaged or was edited")
    return LibraryArchive(path, meta, ids, vectors, labels, payloads, crop_ids, manifest, renamed)


def _read_member(z: zipfile.ZipFile, member: str, bad: Callable[[str], LibraryError]) -> bytes:
    """``member``'s bytes; a member whose compressed bytes were damaged on disk (zipfile's CRC
    check, zlib's stream error, a stream cut short) is a damaged file, not an internal error."""
    try:
        return z.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError) as e:
        raise bad(f"{member} does not read back ({e}): the file is damaged") from None


def _check_bounds(z: zipfile.ZipFile, bad: Callable[[str], LibraryError]) -> None:
    """Refuse a zip bomb from the archive's directory, before decompressing anything."""
    infos = z.infolist()
    if len(infos) > MAX_MEMBERS:
        raise bad(f"{len(infos):,} members (at most {MAX_MEMBERS:,}); refusing to read it")
    total = sum(i.file_size for i in infos)
    if total > MAX_UNCOMPRESSED:
        raise bad(
            f"{total / 2**30:.1f} GiB uncompressed (at most {MAX_UNCOMPRESSED / 2**30:.0f} GiB); "
            "refusing to read it"
        )
    for i in infos:
        if i.file_size > 2**20 and i.file_size > MAX_RATIO * max(i.compress_size, 1):
            raise bad(
                f"{i.filename} expands {i.file_size / max(i.compress_size, 1):,.0f}-fold "
                f"(at most {MAX_RATIO}); refusing to read it (a zip bomb?)"
            )


# -- import ----------------------------------------------------------------------------------


def import_library(
    store: Store, file: str | os.PathLike, *, name: str | None = None, merge: bool = False,
    rename_bad_labels: bool = False,
) -> ImportResult:
    """Import an export file into ``store`` as library ``name`` (default: the file's name).

    The whole file is validated first; nothing in the store changes if it is corrupt, of a
    newer format version, holds labels that break the label rule (unless
    ``rename_bad_labels``: each renamed, ``ImportResult.renamed``; the library's derived
    settings then name the old labels until ``SAMDetect.refresh_profile``, as the CLI runs),
    or (with ``merge=True``) built with other settings than the existing library. Without
    ``merge`` the target library must not exist. After a merge that added examples, the
    library's derived settings describe its old examples until they are rebuilt, as the CLI
    does: ``SAMDetect.measure_again(result.images)`` (the images' earlier examples measured
    with the new ones), then ``SAMDetect.refresh_profile()``.
    """
    archive = read_library_file(file, rename_bad_labels=rename_bad_labels)
    target = check_library_name(name or archive.meta.name)
    meta = LibraryMeta.from_dict({**archive.meta.to_dict(), "name": target})
    if store.has_library(target):
        if not merge:
            raise LibraryError(
                f"library {target!r} already exists; import with --as NEW_NAME, or --merge to add "
                "these examples to it"
            )
        have = store.get_meta(target)
        try:
            check_same_model(have.model, meta.model, f"library {target!r} was made with", "the file's examples were made with")
            have.check_compatible(meta.embedder_id, meta.dim, fade=meta.fade, crop=meta.crop)
        except EmbedderMismatchError as e:
            why = str(e).replace(". Use the library's settings, or another --library.", "")
            raise EmbedderMismatchError(
                f"cannot merge {archive.path} into library {target!r}: {why}; its examples would not be comparable "
                "(import it under another name with --as)") from None
        existing, held = set(), []
        for ids, _, labels, payloads in store.iter_examples(target):
            existing.update(ids)
            held += [(lab, pay) for lab, pay in zip(labels, payloads, strict=True)]
        keep = [k for k, i in enumerate(archive.ids) if i not in existing]
        # an object the library holds already under another id (the same examples added here and
        # there, then exported): the same label, image and mask, as `add` refuses it again
        again = _same_objects([(archive.labels[k], archive.payloads[k]) for k in keep], held)
        keep = [k for k, same in zip(keep, again, strict=True) if not same]
        _add_batched(store, target, archive, keep)
        images = {str(archive.payloads[k]["image_key"]) for k in keep
                  if isinstance(archive.payloads[k], dict) and archive.payloads[k].get("image_key")}
        return ImportResult(target, len(keep), len(archive.ids) - len(keep), archive.renamed, images)
    # created provisional: a crash before the commit leaves no library (see store.journal)
    store.create_library(journal.provisional(meta))
    _add_batched(store, target, archive, list(range(len(archive.ids))))
    return ImportResult(target, len(archive.ids), 0, archive.renamed)


def _same_objects(new: Sequence[tuple[str, dict]], held: Sequence[tuple[str, dict]]) -> list[bool]:
    """Per ``(label, payload)`` of ``new``: whether ``held`` has an example of the same label on
    the same image (payload ``image_key``) whose mask (``mask_rle``) overlaps its own at IoU >=
    ``pipeline.SAME_EXAMPLE``, as ``add`` counts an object added again."""
    from sam_detect.masks import rle_ious
    from sam_detect.pipeline import SAME_EXAMPLE

    def key(lab: str, pay: Any) -> tuple | None:
        pay = pay if isinstance(pay, dict) else {}
        rle = pay.get("mask_rle")
        return (lab, str(pay["image_key"]), tuple(rle.get("size", ()))) if pay.get("image_key") and isinstance(rle, dict) else None

    by_key: dict[tuple, list[dict]] = {}  # masks of one label and image (and size)
    for lab, pay in held:
        if (k := key(lab, pay)) is not None:
            by_key.setdefault(k, []).append(pay["mask_rle"])
    out = []
    for lab, pay in new:
        theirs = by_key.get(key(lab, pay)) or []
        out.append(bool(theirs) and float(rle_ious([pay["mask_rle"]], theirs).max()) >= SAME_EXAMPLE)
    return out


def crops_in(file: str | os.PathLike) -> int:
    """How many crops an exported library file carries (its manifest's count; 0 for none)."""
    import zipfile

    try:
        with zipfile.ZipFile(file) as z:
            manifest = json.loads(z.read(MANIFEST))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return 0
    cinfo = manifest.get("crops") if isinstance(manifest, dict) else None
    return int(cinfo.get("count") or 0) if isinstance(cinfo, dict) else 0


def _add_batched(store: Store, name: str, archive: LibraryArchive, rows: Sequence[int]) -> None:
    """Add ``rows`` of the archive as one journaled batch: all of them or none, even if the
    process is killed (the next open rolls an unfinished batch back)."""
    with journal.batch(store, name, [archive.ids[k] for k in rows]):
        for s in range(0, len(rows), ADD_BATCH):
            r = list(rows[s : s + ADD_BATCH])
            store.add(
                name,
                archive.vectors[r],
                [archive.labels[k] for k in r],
                [archive.payloads[k] for k in r],
                ids=[archive.ids[k] for k in r],
            )


# -- copy ------------------------------------------------------------------------------------


def copy_library(src: Store, name: str, dst: Store, new_name: str | None = None) -> int:
    """Copy library ``name`` from ``src`` into ``dst`` (as ``new_name``); ids are kept.

    The destination library must not exist; if the copy fails it is removed again.
    Returns the number of examples copied.
    """
    target = check_library_name(new_name or name)
    if src is dst and target == name:
        raise LibraryError("copying a library onto itself: give another name or store")
    meta = LibraryMeta.from_dict({**src.get_meta(name).to_dict(), "name": target})
    if dst.has_library(target):
        raise LibraryError(
            f"library {target!r} already exists in the destination; delete it first or copy --as NEW"
        )
    dst.create_library(journal.provisional(meta))
    n = 0
    try:
        for ids, vecs, labels, payloads in src.iter_examples(name):
            dst.add(target, vecs, labels, payloads, ids=ids)
            n += len(ids)
    except BaseException:
        dst.delete_library(target)
        raise
    journal.commit(dst, target)
    return n


