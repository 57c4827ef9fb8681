"""Vector stores holding example libraries. ``create_store(name, **options)``."""

from __future__ import annotations

from sam_detect.registry import Registry
from sam_detect.store.base import LibraryMeta, Neighbour, Store

STORES: Registry[Store] = Registry("store")


@STORES.register("qdrant", help="Qdrant via qdrant-client: local folder (default), ':memory:' or a server URL")
def _qdrant(**kwargs) -> Store:
    from sam_detect.store.qdrant import QdrantStore

    return QdrantStore(**kwargs)


@STORES.register("memory", help="numpy arrays in this process (tests, tiny jobs); optional .npz file")
def _memory(**kwargs) -> Store:
    from sam_detect.store.memory import MemoryStore

    return MemoryStore(**kwargs)


@STORES.register("edge", help="Qdrant Edge: the Qdrant engine in-process on a folder")
def _edge(**kwargs) -> Store:
    from sam_detect.store.edge import EdgeStore

    return EdgeStore(**kwargs)


def create_store(name: str, **kwargs) -> Store:
    return STORES.create(name, **kwargs)


def list_stores(pattern: str = "*") -> list[str]:
    return STORES.list(pattern)


__all__ = ["STORES", "LibraryMeta", "Neighbour", "Store", "create_store", "list_stores"]
