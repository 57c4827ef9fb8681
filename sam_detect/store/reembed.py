"""Re-embedding a library with another embedder: its examples' crops, re-cut from their
source images and masks (or read from an export made with crops), into a new library."""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam_detect.errors import LibraryError
from sam_detect.store import journal
from sam_detect.store._common import check_library_name, portable_options
from sam_detect.store.base import MODEL_KEY, LibraryMeta, Store


@dataclass
class ReembedResult:
    examples: int
    added: int
    missing: int  # left out: no crop to embed
    changed: int = 0  # of ``missing``: their source path holds other pixels (:func:`source_of`)
    #: the new library's labels that break today's label rule (stored before it), kept as
    #: stored: ``{label: examples}``, in the order they first come
    bad_labels: dict[str, int] = field(default_factory=dict)


#: why :func:`source_of` found no source, as its ``skipped`` counts it
MISSING, CHANGED = "missing", "changed"

#: the line that says what ``changed`` examples are
CHANGED_WHY = ("the image at their source path is not the one they were added from: its pixels differ "
               "(another image saved under that name or path, or the file edited since)")


def source_of(payload: dict[str, Any], _cache: dict | None = None,
              skipped: Counter | None = None) -> tuple[tuple, np.ndarray, np.ndarray] | None:
    """``(key, rgb, mask)``: an example's source image as ``add`` read it (payload ``source``,
    its ``frame`` and the channels of its ``reading``; ``key`` names that reading) and its mask
    (payload ``mask_rle``, COCO RLE); ``None`` where the source or mask is missing, or where
    the image read is not the one the example was added from (payload ``image_key``, the
    pixels' hash, where the payload has one; else its size). A path is all a payload has to
    find its image by: an ``add`` made with a relative one found another folder's
    ``image.tif`` from another current folder, and its crops were cut from the wrong pixels
    without a word. ``skipped`` counts each ``None`` as ``MISSING`` or ``CHANGED``."""
    skipped = Counter() if skipped is None else skipped
    source, rle = payload.get("source"), payload.get("mask_rle")
    if not source or not rle or not Path(source).is_file():
        skipped[MISSING] += 1
        return None
    from sam_detect.io.images import load_image
    from sam_detect.masks import rle_to_mask
    from sam_detect.unlabelled import image_key

    key = _reading_of(payload)
    _, frame, channel, merge = key
    cache = _IMAGE_CACHE if _cache is None else _cache
    st = Path(source).stat()
    held = (key, st.st_mtime_ns, st.st_size)  # a file written again since is read again
    if held not in cache:
        if len(cache) >= 4:
            cache.pop(next(iter(cache)))
        rgb = load_image(source, frame=frame, channel=None if channel is None else list(channel), merge=merge).rgb
        cache[held] = rgb, image_key(rgb)  # hashed once per image, not once per example
    rgb, pixels = cache[held]
    mask = rle_to_mask(rle)
    if payload.get("image_key") not in (None, pixels) or mask.shape != rgb.shape[:2]:
        skipped[CHANGED] += 1
        return None
    return key, rgb, mask


def _reading_of(payload: dict[str, Any]) -> tuple:
    """``(source, frame, channels, merge)``: the image an example was read from -- its file,
    the frame of a stack, the channels of a multi-channel image (``None`` for all; in the
    order given where ``rgb`` places them so) and how they were made one image."""
    reading = payload.get("reading") if isinstance(payload.get("reading"), dict) else {}
    channel = reading.get("order") or reading.get("channel")
    return (payload.get("source"), payload.get("frame"), None if channel is None else tuple(channel),
            str(reading.get("merge") or "max"))


def crop_from_payload(
    payload: dict[str, Any], meta: LibraryMeta, _cache: dict | None = None, skipped: Counter | None = None
) -> np.ndarray | None:
    """Re-cut an example's context crop from its source image (payload ``source``) and mask
    (payload ``mask_rle``, COCO RLE), with the library's fade and occupancy.

    Returns ``(s, s, 3)`` uint8, or None when the source or mask is missing or the source
    holds other pixels than the example was added from (:func:`source_of`, which counts
    why in ``skipped``).
    """
    found = source_of(payload, _cache, skipped)
    if found is None:
        return None
    from sam_detect.config import adopt_library_settings
    from sam_detect.fade import create_fade
    from sam_detect.fade.crops import context_crop

    _, rgb, mask = found
    settings = adopt_library_settings(meta)  # as a detector on this library would cut it
    fade = create_fade(settings.fade, **settings.fade_options)
    return context_crop(rgb, mask, occupancy=settings.occupancy, fade=fade).image


_IMAGE_CACHE: dict[tuple, tuple[np.ndarray, str]] = {}


def reembed_library(
    store: Store,
    name: str,
    embedder: str | Any,
    new_name: str,
    *,
    from_file: str | os.PathLike | None = None,
    embedder_options: dict[str, Any] | None = None,
    batch_size: int = 32,
) -> ReembedResult:
    """Embed library ``name``'s examples with another embedder into new library ``new_name``.

    Crops come from ``from_file`` (an export made with crops) or are re-cut from each
    example's source image and mask (:func:`crop_from_payload`); an embedder of whole images
    (``embed_instances``: ``views``) gets each source image with its examples' masks instead,
    as ``add`` embeds them. Examples without a crop are left out and counted in ``missing``.
    Ids, labels and payloads are kept, labels stored before today's label rule too (those of
    ``from_file`` as those of the store); the new library records the new embedder and the old
    fade and crop settings. What the library derives from its vectors (the decision) is the
    old library's until rebuilt (``sam-detect library reembed`` rebuilds it:
    ``SAMDetect.refresh_profile``).
    """
    if isinstance(embedder, str):
        from sam_detect.embed import create_embedder

        emb = create_embedder(embedder, **(embedder_options or {}))
    else:
        emb = embedder
    check_library_name(new_name)
    if store.has_library(new_name):
        raise LibraryError(f"library {new_name!r} already exists; choose another --as name")
    from sam_detect.embed.base import embeds_instances
    from sam_detect.store.exchange import read_examples, read_library_file

    if from_file is not None and embeds_instances(emb):
        # its crops were embedded alone: vectors 0.74-0.83 alike to the ones add and detect make in
        # the whole image, stored under the same embedder id, silently
        raise LibraryError(
            f"the {getattr(emb, 'name', emb)} embedder describes each example in its whole image (one "
            f"network pass pooled under its mask), and {Path(from_file).name} holds context crops only: "
            "vectors made from them would not match the ones detect makes; reembed without --from-file "
            "where the examples' images are, or with an embedder of crops (effnet, clip, handcrafted, "
            "sam2 with --sam-embed-mode crop)")

    skipped: Counter = Counter()  # why examples have no crop (source_of)
    if from_file is not None:
        # the file's labels are the library's: kept as stored, as they are re-embedded from the
        # store (a label made before the rule refused the file, naming an option reembed lacks)
        archive = read_library_file(from_file, keep_bad_labels=True)
        if not archive.crop_ids:  # the file holds none: made without --crops, or where no image was found
            why = ("it was exported without --crops" if archive.manifest.get("crops") is None
                   else "no example's image was found when it was exported")
            raise LibraryError(f"{from_file} holds no crops ({why}): export with --crops where the images are, "
                               "then reembed --from-file")
        old = archive.meta
        ids, labels, payloads = archive.ids, archive.labels, archive.payloads

        def get_crop(k: int) -> np.ndarray | None:
            return archive.crop(ids[k])
    else:
        old = store.get_meta(name)
        ids, _, labels, payloads = read_examples(store, name)

        def get_crop(k: int) -> np.ndarray | None:
            return crop_from_payload(payloads[k], old, skipped=skipped)

    keep, vectors = [], []
    if from_file is None and embeds_instances(emb):
        # an embedder of whole images (``views``: one network pass pooled under each mask) sees
        # each example in its image, as ``add`` gives it: embedded from a context crop alone its
        # vectors came out 0.74-0.83 alike to add's, and later adds mixed the two kinds
        keep, vectors = _embed_in_images(emb, labels, payloads, skipped)
    else:
        batch: list[np.ndarray] = []
        for k in range(len(ids)):
            crop = get_crop(k)
            if crop is None:
                continue
            keep.append(k)
            batch.append(crop)
            if len(batch) >= batch_size:
                vectors.append(np.asarray(emb.embed(batch), np.float32))
                batch = []
        if batch:
            vectors.append(np.asarray(emb.embed(batch), np.float32))
    if not keep:
        raise LibraryError(
            f"no example of {name!r} has a crop to re-embed: "
            + (f"{skipped[CHANGED]} of {len(ids)} because {CHANGED_WHY}; " if skipped[CHANGED] else "")
            + ("the source images are missing or the payloads carry no mask_rle; " if skipped[CHANGED] < len(ids) else "")
            + "export with --crops where the images are, then reembed --from-file"
        )
    meta = LibraryMeta(
        name=new_name,
        embedder_id=emb.id,
        dim=int(emb.dim),
        fade=dict(old.fade),
        crop=dict(old.crop),
        extra={
            **old.extra,
            "embedder": {
                "name": getattr(emb, "name", str(embedder)),
                "options": portable_options(embedder_options or {}),
            },
            "reembedded_from": {"library": old.name, "embedder_id": old.embedder_id},
        },
    )
    meta.extra.pop(journal.PENDING_KEY, None)
    ident = getattr(emb, "model_identity", None)  # the new embedder's, never the old one's
    meta.extra.pop(MODEL_KEY, None)
    if ident is not None:
        meta.extra[MODEL_KEY] = ident.to_dict()
    store.create_library(journal.provisional(meta))
    order = np.argsort(keep, kind="stable")  # the examples' own order (grouped by image above)
    keep = [keep[i] for i in order]
    try:
        store.add(
            new_name,
            np.concatenate(vectors)[order],
            [labels[k] for k in keep],
            [payloads[k] for k in keep],
            ids=[ids[k] for k in keep],
        )
    except BaseException:
        store.delete_library(new_name)
        raise
    journal.commit(store, new_name)
    return ReembedResult(examples=len(ids), added=len(keep), missing=len(ids) - len(keep),
                         changed=skipped[CHANGED], bad_labels=_breaking_rule(labels[k] for k in keep))


def _breaking_rule(labels: Any) -> dict[str, int]:
    """``{label: examples}`` of ``labels`` that break the label rule (:func:`check_label`)."""
    from sam_detect.errors import AnnotationError
    from sam_detect.names import check_label

    bad = {}
    for lab, n in Counter(labels).items():
        try:
            check_label(lab)
        except AnnotationError:
            bad[lab] = n
    return bad


def _embed_in_images(emb: Any, labels: list[str], payloads: list[dict],
                     skipped: Counter) -> tuple[list[int], list[np.ndarray]]:
    """``(kept, vectors)``: the examples whose source image and mask are there, embedded image
    by image (one image in memory at a time) through ``emb.embed_instances`` at the library's
    embedding scale (``library_state.typical_area``), as ``add`` embeds them; ``kept`` lists
    their indices in the order of ``vectors``' rows."""
    from sam_detect.instances import Instances
    from sam_detect.library_state import typical_area
    from sam_detect.masks import MaskCrop

    by_image: dict[tuple, list[int]] = {}
    for k, pay in enumerate(payloads):
        by_image.setdefault(_reading_of(pay or {}), []).append(k)
    options = {"typical_area": typical_area(labels, payloads)} if getattr(emb, "scales_by_area", False) else {}
    kept, vectors = [], []
    for idx in by_image.values():
        cache: dict = {}
        found = [(k, source_of(payloads[k] or {}, cache, skipped)) for k in idx]
        found = [(k, f) for k, f in found if f is not None]
        if not found:
            continue
        rgb = found[0][1][1]
        inst = Instances.from_crops([MaskCrop.from_full(f[2]) for _, f in found], None, rgb.shape[:2],
                                    labels=[labels[k] for k, _ in found])
        vectors.append(np.asarray(emb.embed_instances(rgb, inst, **options), np.float32))
        kept.extend(k for k, _ in found)
    return kept, vectors
