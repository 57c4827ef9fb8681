"""The store protocol and a library's metadata.

A *library* is a named collection of labelled example vectors plus :class:`LibraryMeta`,
which records how the vectors were made. Every add and query checks the caller's settings
against it (:meth:`LibraryMeta.check_compatible`), so vectors from different embedders or
crop settings never mix.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sam_detect.errors import EmbedderMismatchError

META_FORMAT_VERSION = 1
#: the key of ``LibraryMeta.extra`` that holds the model identity
MODEL_KEY = "model"


@dataclass
class LibraryMeta:
    """How a library's vectors were made.

    ``embedder_id`` and ``dim`` identify the embedder; ``fade`` (``{"name": ..., **params}``)
    and ``crop`` (``{"occupancy": ...}``) the context crop. ``extra`` is free-form.
    """

    name: str
    embedder_id: str
    dim: int
    fade: dict[str, Any] = field(default_factory=dict)
    crop: dict[str, Any] = field(default_factory=dict)
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    format_version: int = META_FORMAT_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LibraryMeta:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        return cls(**known)

    @property
    def model(self) -> dict[str, Any] | None:
        """The model identity the vectors were made with (``extra["model"]``: family, name,
        checkpoint sha256, input size; see :class:`sam_detect.models.ModelIdentity`), or
        ``None``: an embedder without downloadable weights, or a library made before
        identities were recorded."""
        value = (self.extra or {}).get(MODEL_KEY)
        return value if isinstance(value, dict) else None

    def check_compatible(
        self,
        embedder_id: str,
        dim: int,
        fade: dict | None = None,
        crop: dict | None = None,
        model: dict | None = None,
    ) -> None:
        """Raise :class:`EmbedderMismatchError` if these settings would make other vectors.

        ``model``: the caller's model identity (``ModelIdentity.to_dict()``); compared with
        the recorded one when both exist, and reported on its own line when they differ.
        """
        check_same_model(self.model, model, f"library {self.name!r} was made with", "this detector uses")
        problems = []
        if embedder_id != self.embedder_id:
            problems.append(f"embedder {embedder_id!r} (library: {self.embedder_id!r})")
        if dim != self.dim:
            problems.append(f"vector size {dim} (library: {self.dim})")
        if fade is not None and self.fade and fade != self.fade:
            problems.append(f"fade {fade} (library: {self.fade})")
        if crop is not None and self.crop and crop != self.crop:
            problems.append(f"crop {crop} (library: {self.crop})")
        if problems:
            raise EmbedderMismatchError(
                f"library {self.name!r} was built with other settings: got " + "; ".join(problems)
                + ". Use the library's settings, or another --library."
            )


def check_same_model(recorded: dict | None, given: dict | None, recorded_by: str, given_by: str) -> None:
    """Raise :class:`EmbedderMismatchError` when two model identities differ.

    Either being ``None`` (nothing recorded: an old library, an embedder without
    downloadable weights) passes: the embedder id check still applies there.
    ``recorded_by`` / ``given_by`` say whose identities they are in the message
    (``"library 'x' was made with"``, ``"this detector uses"``).
    """
    from sam_detect.models import ModelIdentity

    want, have = ModelIdentity.from_dict(recorded), ModelIdentity.from_dict(given)
    if want is None or have is None or want == have:
        return
    raise EmbedderMismatchError(
        f"{recorded_by} {want.describe()}, but {given_by} {have.describe()}: their features "
        "are not comparable. Use the same model, checkpoint file and input size "
        "(--sam-model/--sam-checkpoint or --clip-model/--clip-checkpoint), another --library, "
        "or re-embed the library with `sam-detect library reembed`."
    )


@dataclass
class Neighbour:
    """One search hit: ``score`` is cosine similarity in [-1, 1] (higher is closer)."""

    id: str
    score: float
    label: str
    payload: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Store(Protocol):
    """A vector store holding libraries. ``backend`` names it (``"qdrant-local"``...).

    The backends subclass it and share the checks every backend makes: :meth:`add`,
    :meth:`search` and :meth:`delete` check their input, then call the backend's own
    ``_insert(name, vectors, labels, payloads, ids, given_ids)``, ``_search(name, queries,
    top_k, with_payload)``, ``_delete(name, ids, label)`` and ``_update_payloads(name,
    updates)``; and its context manager (``with store:`` closes it).
    """

    backend: str

    def list_libraries(self) -> list[str]: ...

    def has_library(self, name: str) -> bool: ...

    def create_library(self, meta: LibraryMeta) -> None:
        """Create an empty library; raises ``LibraryError`` if it exists."""
        ...

    def get_meta(self, name: str) -> LibraryMeta:
        """Raises ``LibraryNotFoundError`` naming the available libraries."""
        ...

    def delete_library(self, name: str) -> None: ...

    def update_extra(self, name: str, key: str, value: Any) -> None:
        """Set ``meta.extra[key] = value`` (JSON types) and persist it; ``None`` removes the key.

        For what a library derives from its examples (the proposal profile, decision
        calibration): recomputed after every add and delete, never part of the vectors.
        """
        ...

    def add(
        self,
        name: str,
        vectors: np.ndarray,
        labels: Sequence[str],
        payloads: Sequence[dict[str, Any]] | None = None,
        *,
        ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Add ``(N, D)`` float32 L2-normalised vectors with labels; returns their ids.

        ``ids`` (UUID strings) keeps given ids (import, re-embedding, a journal replay);
        by default new ones are made; given ones must not be in the library yet.
        All-or-nothing: a failure leaves the library as it was.
        """
        from sam_detect.store._common import check_items, check_vectors

        vecs = check_vectors(vectors, self.get_meta(name).dim, name)
        given_ids = ids is not None
        labels, payloads, ids = check_items(len(vecs), labels, payloads, ids)
        if len(vecs):
            # the backend's own write: (N, D) float32, checked labels, payloads and ids
            self._insert(name, vecs, labels, payloads, ids, given_ids)  # type: ignore[attr-defined]
        return list(ids)

    def update_payloads(self, name: str, updates: Mapping[str, dict[str, Any]]) -> int:
        """Set the given top-level payload keys of stored examples (``{id: {key: value}}``;
        their other keys, vectors and labels kept); ids the library does not hold are
        ignored. Returns how many examples were updated.

        For what is measured of an example again: its ``"shape"`` when later examples of its
        image are added (``SAMDetect.add_examples``)."""
        from sam_detect.store._common import LABEL_KEY, normalise_id

        self.get_meta(name)
        updates = {normalise_id(i): dict(fields) for i, fields in updates.items()}
        if any(LABEL_KEY in fields for fields in updates.values()):  # the server and Edge keep it there
            raise ValueError(f"update_payloads sets measurements, not labels ({LABEL_KEY!r}): delete and add "
                             "an example to relabel it")
        if not updates:
            return 0
        # the backend's own write: canonical UUID strings -> the keys to set
        return self._update_payloads(name, updates)  # type: ignore[attr-defined]

    def search(
        self, name: str, queries: np.ndarray, top_k: int, *, with_payload: bool = True
    ) -> list[list[Neighbour]]:
        """Batched k-NN: ``(M, D)`` queries -> M lists of up to ``top_k`` neighbours, best
        first; scores are cosine similarities.

        ``with_payload=False``: each neighbour's ``payload`` is ``{}`` (ids, labels and
        scores as with it). The vote needs no more, and an example's payload (its mask,
        shape measurements, the example image's candidate rows) is most of what a search
        would otherwise read and copy per hit: 4x the search time for 3,000 queries
        on the quickstart's 10-example Edge library (docs/performance.md, "Session 18").
        """
        from sam_detect.store._common import check_top_k, check_vectors

        top_k = check_top_k(top_k)
        q = check_vectors(queries, self.get_meta(name).dim, name, what="queries")
        # the backend's own search: (M, D) float32 L2-normalised queries
        return self._search(name, q, top_k, bool(with_payload))  # type: ignore[attr-defined]

    def delete(self, name: str, ids: Sequence[str] | None = None, label: str | None = None) -> int:
        """Delete examples by ids (unknown ids are ignored) or every example of ``label``;
        returns how many were deleted."""
        from sam_detect.store._common import check_delete_args

        ids = check_delete_args(ids, label)
        # the backend's own delete: canonical UUID strings, or None and a label
        return self._delete(name, ids, label)  # type: ignore[attr-defined]

    def labels(self, name: str) -> dict[str, int]:
        """Example count per label."""
        ...

    def iter_examples(
        self, name: str, batch_size: int = ...
    ) -> Iterator[tuple[list[str], np.ndarray, list[str], list[dict[str, Any]]]]:
        """Every example once, in batches of up to ``batch_size`` (each backend has its
        default): ``(ids, vectors (n, D) float32, labels, payloads)``."""
        ...

    def count(self, name: str) -> int: ...

    def close(self) -> None: ...

    def holds_file(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` is one of the files the store keeps its libraries in (an export
        written there would overwrite them); a store on no file holds none."""
        return False

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
