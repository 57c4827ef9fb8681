"""Embedders: crops in, L2-normalised vectors out. ``create_embedder(name, **options)``."""

from __future__ import annotations

from sam_detect.embed.base import Embedder, l2_normalize
from sam_detect.registry import Registry

EMBEDDERS: Registry[Embedder] = Registry("embedder")


@EMBEDDERS.register("effnet", help="EfficientNet-Lite0, ImageNet weights shipped in a package; offline")
def _effnet(**kwargs) -> Embedder:
    from sam_detect.embed.effnet import EffNetEmbedder

    return EffNetEmbedder(**kwargs)


@EMBEDDERS.register("handcrafted", help="intensity, shape and texture statistics; no weights, no torch")
def _handcrafted(**kwargs) -> Embedder:
    from sam_detect.embed.handcrafted import HandcraftedEmbedder

    return HandcraftedEmbedder(**kwargs)


@EMBEDDERS.register(
    "views", help="EfficientNet-Lite0 features pooled under each mask + colour, shape, texture; offline"
)
def _views(**kwargs) -> Embedder:
    from sam_detect.embed.views import ViewsEmbedder

    return ViewsEmbedder(**kwargs)


@EMBEDDERS.register("clip", help="open_clip image features (needs open_clip and weights)")
def _clip(**kwargs) -> Embedder:
    from sam_detect.embed.clip import ClipEmbedder

    return ClipEmbedder(**kwargs)


@EMBEDDERS.register("sam2", help="SAM2 image-encoder features pooled under each mask")
def _sam2(**kwargs) -> Embedder:
    from sam_detect.embed.sam2 import SAM2Embedder

    return SAM2Embedder(**kwargs)


def create_embedder(name: str, **kwargs) -> Embedder:
    return EMBEDDERS.create(name, **kwargs)


def list_embedders(pattern: str = "*") -> list[str]:
    return EMBEDDERS.list(pattern)


__all__ = ["EMBEDDERS", "Embedder", "create_embedder", "l2_normalize", "list_embedders"]
