"""EfficientNet-Lite0 as the ``effnet`` and ``views`` embedders run it, and its TorchScript
copy in the model cache, which later processes load without importing timm.

``import timm`` imports every timm model (and torchvision, and torch._dynamo through it):
1.5-3.4 s of a ~6.5 s ``sam-detect detect`` on 2 cores, where the network itself needs
none of it. So the first process that builds the network through timm also saves it,
scripted, as ``effnet/<arch>-<weights sha256>-torch<v>-timm<v>-<format>.ts`` under the
model cache (``$SAM_DETECT_CACHE``); later processes load that file (~0.1 s) instead. The
saved module runs the same modules with the same weights: in float32 its outputs are
bit-identical to the timm model's (``tests/test_lite0.py``). Under the CPU's bf16 autocast
(``models.torch_utils.cpu_bf16``) the two round in another order (cosine 0.9999), so the
process that fills the cache runs the saved copy too, and every process gives the same
vectors. The ``views`` embedder runs it frozen (:func:`freeze`), made anew in each process
from what it loads.

A missing, unreadable or foreign cache file means the timm path runs, with a one-line
warning for a file that exists but cannot be used, and the file is written again. An
unwritable cache only costs the timm path on every run. ``SAM_DETECT_EFFNET_SCRIPT=0``
turns the cache off (both reading and writing), e.g. to measure the timm path.

Used on CPU only: a scripted module under CUDA's bf16 autocast has not been checked on a GPU
against the eager one, so there the timm path runs as before.

This module imports torch: import it from factories or on first use.
"""

import logging
import os
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger("sam_detect")

#: set to ``0`` to build the network through timm on every run, with no cache file
SCRIPT_ENV = "SAM_DETECT_EFFNET_SCRIPT"
#: the version of :class:`Lite0`'s interface; a change makes older cache files unused
FORMAT = "v1"


class Lite0(nn.Module):
    """The parts of timm's ``tf_efficientnet_lite0`` that the embedders run.

    - ``forward(x)``: ``(f8, f16, f32)``: the stride-8 (40 channels), stride-16 (112) and
      stride-32 (1280) feature maps of ``x`` ``(B, 3, H, W)`` float, H and W multiples of 32;
      ``f32`` is timm's ``forward_features``.
    - ``forward_features(x)``: ``f32`` alone.
    - ``forward_head(f32)``: ``(B, 1000)`` ImageNet logits (global average pool, classifier).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.conv_stem = model.conv_stem
        self.bn1 = model.bn1
        self.blocks = model.blocks
        self.conv_head = model.conv_head
        self.bn2 = model.bn2
        self.global_pool = model.global_pool
        self.classifier = model.classifier
        self.sam_detect_key = ""  # the cache file's name, set when it is saved

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.bn1(self.conv_stem(x))
        f8, f16 = x, x
        for i, block in enumerate(self.blocks):  # blocks 2 and 4 end at stride 8 and 16
            x = block(x)
            if i == 2:
                f8 = x
            elif i == 4:
                f16 = x
        return f8, f16, self.bn2(self.conv_head(x))

    @torch.jit.export
    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(self.conv_stem(x))
        x = self.blocks(x)
        return self.bn2(self.conv_head(x))

    @torch.jit.export
    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.global_pool(x))


def _enabled() -> bool:
    from sam_detect.config import env_switch

    return env_switch(SCRIPT_ENV, "1 (the cached network, the default) or 0 (timm's, every run)") is not False


def _timm_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("timm")  # without importing timm
    except PackageNotFoundError:
        return "none"


def script_path(weights: Path, arch: str) -> Path:
    """The cache file of ``arch`` with the weights file ``weights`` under this torch and timm."""
    from sam_detect.models import cache_dir, checkpoint_sha256

    sha = checkpoint_sha256(weights)[:16]
    torch_v = torch.__version__.replace("+", "_")
    name = f"{arch}-{sha}-torch{torch_v}-timm{_timm_version()}-{FORMAT}.ts"
    return cache_dir() / "effnet" / name


def _key(path: Path) -> str:
    return path.stem  # recorded inside the file too: a renamed or copied file is refused


def _why(e: Exception) -> str:
    """Why a cache file was refused, in one line: the error's first sentence (torch's zip
    reader appends a paragraph of advice), or its type where it says nothing."""
    text = str(e).strip()
    return text.splitlines()[0].split(". ")[0][:200] if text else type(e).__name__


def load_script(path: Path):
    """The scripted :class:`Lite0` saved at ``path``, or ``None`` (after a warning when the
    file exists but cannot be used)."""
    if not path.is_file():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            module = torch.jit.load(str(path), map_location="cpu")
        key = getattr(module, "sam_detect_key", None)
        if key != _key(path):
            raise ValueError(f"it holds {key!r}, expected {_key(path)!r}")
        for method in ("forward_features", "forward_head"):
            if not callable(getattr(module, method, None)):
                raise ValueError(f"it has no {method} method")
    except Exception as e:  # noqa: BLE001 - any failure means: build it through timm again
        log.warning("the cached EfficientNet-Lite0 %s cannot be used (%s); building it with timm "
                    "and caching it again", path, _why(e))
        return None
    return module.eval()


def _write_cache(path: Path, write, what: str) -> bool:
    """``write(tmp)`` a cache file next to ``path``, then move it there atomically (a reader
    sees no file or a whole one); ``False`` when it cannot be (an unwritable cache, or a
    torch without TorchScript): the slower path then runs again next time."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".lite0-", suffix=".ts", dir=path.parent)
        os.close(fd)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would lock others out of a shared cache
        os.replace(tmp, path)
        return True
    except Exception as e:  # noqa: BLE001 - the cache is an optimisation, never a failure
        log.debug("could not cache the %s EfficientNet-Lite0 at %s: %s", what, path, e)
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        return False


def save_script(model: Lite0, path: Path) -> bool:
    """Script ``model`` and write it to ``path`` atomically; ``False`` when it cannot be
    (an unwritable cache, or a torch without TorchScript): the timm path then runs again
    next time."""

    def write(tmp: str) -> None:
        model.sam_detect_key = _key(path)
        torch.jit.save(torch.jit.script(model), tmp)

    return _write_cache(path, write, "scripted")


def freeze(module: nn.Module) -> nn.Module:
    """``module`` frozen for inference (``torch.jit.freeze``, its three methods kept) where it
    is the scripted copy, else ``module`` itself (timm's eager module, a GPU's).

    Freezing makes the weights constants and folds each batch norm into the convolution
    before it: fewer passes over the feature maps, and a shorter warm-up (TorchScript
    profiles an unfrozen graph's first two calls of a process; on a HeLa frame those took
    0.78 + 0.54 s unfrozen, 0.34 + 0.31 s frozen, against ~0.26 s after). In float32 the
    outputs are the unfrozen module's to rounding (relative ~1e-6). Under bf16 autocast
    the folded convolutions round otherwise: on a synthetic scene the ``views`` vectors lie at
    cosine 0.996-0.998 of float32's, against 0.999 unfolded. Speed and what it changes
    downstream: docs/performance.md, "Session 55".
    """
    if not isinstance(module, torch.jit.ScriptModule):
        return module
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            return torch.jit.freeze(module.eval(), preserved_attrs=["forward_features", "forward_head"])
    except Exception as e:  # noqa: BLE001 - freezing only speeds the network up
        log.debug("could not freeze the scripted EfficientNet-Lite0: %s", e)
        return module


def load_lite0(weights: Path, arch: str, build) -> nn.Module:
    """:class:`Lite0` (eval mode, CPU) of the weights file ``weights``: the cached scripted
    copy when there is a usable one, else ``Lite0(build())`` (timm), cached for next time.

    ``build``: a callable returning timm's model with the weights loaded (``build_model``).
    """
    if not _enabled():
        return Lite0(build()).eval()
    path = script_path(weights, arch)
    module = load_script(path)
    if module is not None:
        return module
    model = Lite0(build()).eval()
    if save_script(model, path):
        # run the copy later processes will load: under the CPU's bf16 autocast the scripted
        # and the eager module round in another order (cosine 0.9999), and a library's
        # vectors should not depend on which process filled the cache
        module = load_script(path)
        if module is not None:
            return module
    return model


#: the version of what :func:`freeze` makes of the scripted network; a change to it (what is
#: folded, the methods kept) must change this, so that older frozen files go unused
FROZEN_FORMAT = "frozen1"


def frozen_path(weights: Path, arch: str) -> Path:
    """The cache file of :func:`script_path`'s network frozen (:func:`freeze`): what ``views``
    runs on the CPU."""
    path = script_path(weights, arch)
    return path.with_name(f"{path.stem}-{FROZEN_FORMAT}.ts")


#: the archive member that names a frozen file's network (``torch.jit.freeze`` folds the
#: module's own attributes away, so the key travels as an extra file of the archive)
_KEY_MEMBER = "sam_detect_key"


def load_frozen(path: Path):
    """The frozen network saved at ``path`` (:func:`frozen_lite0`), or ``None`` (after a
    warning when the file exists but cannot be used)."""
    if not path.is_file():
        return None
    try:
        extra = {_KEY_MEMBER: ""}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            module = torch.jit.load(str(path), map_location="cpu", _extra_files=extra)
        key = extra[_KEY_MEMBER]
        key = key.decode() if isinstance(key, bytes) else key
        if key != _key(path):
            raise ValueError(f"it holds {key!r}, expected {_key(path)!r}")
        for method in ("forward", "forward_features", "forward_head"):
            if not callable(getattr(module, method, None)):
                raise ValueError(f"it has no {method} method")
    except Exception as e:  # noqa: BLE001 - any failure means: freeze it again
        log.warning("the cached frozen EfficientNet-Lite0 %s cannot be used (%s); freezing it again "
                    "and caching it", path, _why(e))
        return None
    return module.eval()


def _save_frozen(module: nn.Module, path: Path) -> bool:
    """Write the frozen ``module`` to ``path`` atomically (its key an extra archive member);
    ``False`` when it cannot be written."""
    return _write_cache(path, lambda tmp: torch.jit.save(module, tmp, _extra_files={_KEY_MEMBER: _key(path)}),
                        "frozen")


def cached_frozen(weights: Path, arch: str):
    """The frozen network of the model cache (:func:`frozen_path`), or ``None`` where there is
    none (or the cache is off, ``SAM_DETECT_EFFNET_SCRIPT=0``)."""
    return load_frozen(frozen_path(weights, arch)) if _enabled() else None


def frozen_lite0(net: nn.Module, weights: Path, arch: str) -> nn.Module:
    """``net`` (the scripted network on the CPU) frozen (:func:`freeze`) and cached for later
    processes, which load it (0.06 s) instead of loading the scripted copy and freezing it
    (0.14 + 0.13 s). This process runs the copy loaded back from the file, as later ones do,
    so that a library's vectors do not depend on which process filled the cache (the two
    gave the same outputs bit for bit where checked; docs/performance.md, session 64)."""
    frozen = freeze(net)
    if frozen is net or not _enabled():
        return frozen
    path = frozen_path(weights, arch)
    if _save_frozen(frozen, path):
        loaded = load_frozen(path)
        if loaded is not None:
            return loaded
    return frozen


__all__ = ["FORMAT", "FROZEN_FORMAT", "SCRIPT_ENV", "Lite0", "cached_frozen", "freeze", "frozen_lite0", "frozen_path", "load_frozen",
           "load_lite0", "load_script", "save_script", "script_path"]
