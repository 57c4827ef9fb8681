"""Model weights: what is known, where it is cached, how it is fetched and loaded.

SAM2 and CLIP weights come from the Hugging Face hub. A checkpoint is resolved in this
order:

1. an explicit path (``--sam-checkpoint`` / ``--clip-checkpoint``): it must exist;
2. the local model cache (``$SAM_DETECT_CACHE``, default: the per-user cache folder's
   ``models``), laid out as ``sam2/<file>`` and ``clip/<model>/<tag>/<file>``;
3. a download through ``huggingface_hub`` into that cache, with a progress bar (skipped when
   ``SAM_DETECT_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``, or when the hub's host cannot be
   reached within a few seconds);
4. otherwise :class:`~sam_detect.errors.ModelNotAvailableError` naming the missing file and
   the ``sam-detect models download NAME`` command that fetches it.

The package, below ``segment/``, ``embed/`` and ``video/``, which all use it:

- here: the known models (:class:`ModelSpec`), the cache, downloads, model identities;
- :mod:`~sam_detect.models.loading`: building networks and reading checkpoints
  (``torch.load(..., weights_only=True)`` or ``safetensors``; an unreadable or mismatched
  file raises ``ModelNotAvailableError`` saying which and what to do);
- :mod:`~sam_detect.models.torch_utils`: device choice, autocast, the shared model cache;
- :mod:`~sam_detect.models.sam2_runtime`: the SAM2 model the ``sam2`` segmenter and
  embedder share, its feature maps and the pooling under masks.

Importing this package is cheap: torch, sam2 and open_clip are imported inside the loaders,
and the last two modules are imported on first use.
"""

from __future__ import annotations

import hashlib
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from sam_detect.errors import ModelNotAvailableError
from sam_detect.paths import CACHE_ENV, default_cache_path

OFFLINE_ENV = "SAM_DETECT_OFFLINE"
HF_HOST = "huggingface.co"


@dataclass(frozen=True)
class ModelSpec:
    """One downloadable checkpoint.

    Attributes:
        name: the name ``sam-detect models download`` takes (``"sam2.1-tiny"``).
        family: ``"sam2"`` or ``"clip"``.
        repo_id: Hugging Face repository.
        filenames: candidate file names in the repository, tried in order (the first that
            downloads is kept; CLIP repositories hold safetensors and/or a pickle).
        size_mb: approximate download size in MB (fp32 weights).
        arch: SAM2: the size key (``"tiny"``); CLIP: the open_clip model name.
        tag: CLIP pretrained tag; ``""`` for SAM2.
        config: SAM2 Hydra config name inside the ``sam2`` package.
        aliases: other accepted names.
    """

    name: str
    family: str
    repo_id: str
    filenames: tuple[str, ...]
    size_mb: float
    arch: str
    tag: str = ""
    config: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def cache_subdir(self) -> Path:
        """Folder of this checkpoint, relative to the cache root."""
        if self.family == "sam2":
            return Path("sam2")
        return Path("clip") / self.arch / self.tag

    def cached_path(self, cache: Path | None = None) -> Path | None:
        """The cached file, or ``None`` when it is not in the cache."""
        folder = (cache or cache_dir()) / self.cache_subdir
        for fn in self.filenames:
            p = folder / fn
            if p.is_file() and p.stat().st_size > 0:
                return p
        return None

    def download_command(self) -> str:
        return f"sam-detect models download {self.name}"


def _sam2(key: str, short: str, mb: float) -> ModelSpec:
    stem = f"sam2.1_hiera_{key}"
    return ModelSpec(
        name=f"sam2.1-{key.replace('_', '-')}",
        family="sam2",
        repo_id=f"facebook/sam2.1-hiera-{key.replace('_', '-')}",
        filenames=(f"{stem}.pt",),
        size_mb=mb,
        arch=key,
        config=f"configs/sam2.1/sam2.1_hiera_{short}.yaml",
        aliases=(key, stem, f"sam2-{key}", f"sam2.1_{key}"),
    )


_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


def _clip(model: str, tag: str, repo: str, mb: float) -> ModelSpec:
    return ModelSpec(
        name=f"clip-{model}-{tag}",
        family="clip",
        repo_id=repo,
        filenames=_CLIP_FILES,
        size_mb=mb,
        arch=model,
        tag=tag,
        aliases=(f"{model}:{tag}", f"{model}/{tag}"),
    )


#: SAM 2.1 checkpoints by size key; sizes are the fp32 parameter bytes.
SAM2_MODELS: dict[str, ModelSpec] = {
    "tiny": _sam2("tiny", "t", 156),
    "small": _sam2("small", "s", 184),
    "base_plus": _sam2("base_plus", "b+", 323),
    "large": _sam2("large", "l", 898),
}

#: the SAM2 encoder's input side the official weights were trained at
SAM2_DEFAULT_INPUT = 1024

DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"

#: CLIP checkpoints listed by ``sam-detect models list``; any other open_clip
#: ``(model, tag)`` with a Hugging Face source can be resolved as well.
CLIP_MODELS: dict[tuple[str, str], ModelSpec] = {
    (m, t): _clip(m, t, repo, mb)
    for m, t, repo, mb in [
        ("ViT-B-32", "laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K", 605),
        ("ViT-B-16", "laion2b_s34b_b88k", "laion/CLIP-ViT-B-16-laion2B-s34B-b88K", 599),
        ("ViT-L-14", "laion2b_s32b_b82k", "laion/CLIP-ViT-L-14-laion2B-s32B-b82K", 1710),
    ]
}


# ----------------------------------------------------------------------------------------
# the registry
# ----------------------------------------------------------------------------------------
def cache_dir() -> Path:
    """The model cache root: ``$SAM_DETECT_CACHE`` or the per-user cache folder's ``models``."""
    return default_cache_path()


def known_models() -> list[ModelSpec]:
    """Every listed checkpoint: SAM2 sizes, then CLIP models."""
    return [*SAM2_MODELS.values(), *CLIP_MODELS.values()]


def get_spec(name: str) -> ModelSpec:
    """The checkpoint called ``name`` (a listed name, alias, or ``MODEL:TAG`` for CLIP).

    Raises:
        ValueError: unknown name; the message lists the known ones.
    """
    key = name.strip()
    for spec in known_models():
        if key == spec.name or key in spec.aliases:
            return spec
    if ":" in key or key.startswith("clip-"):
        model, _, tag = key.removeprefix("clip-").partition(":")
        if tag:
            return clip_spec(model, tag)
    valid = ", ".join(s.name for s in known_models())
    raise ValueError(
        f"unknown model {name!r}; known: {valid} (or any open_clip MODEL:TAG, "
        "e.g. ViT-B-32:laion2b_s34b_b79k)"
    )


def sam2_spec(model: str) -> ModelSpec:
    """The SAM 2.1 checkpoint for a size key (``tiny``, ``small``, ``base_plus``, ``large``)."""
    key = str(model).strip().lower().replace("-", "_").replace("b+", "base_plus")
    if key in SAM2_MODELS:
        return SAM2_MODELS[key]
    for spec in SAM2_MODELS.values():
        if model == spec.name or model in spec.aliases:
            return spec
    raise ValueError(f"unknown SAM2 model {model!r}; valid: {', '.join(SAM2_MODELS)}")


def default_clip_tag(model: str) -> str | None:
    """The pretrained tag ``model`` is taken with where none is given: the listed one
    (``CLIP_MODELS``; ViT-B-32's is the default), else the first of open_clip's tags for it
    that has Hugging Face weights; ``None`` where it has none (a local file only)."""
    for arch, tag in CLIP_MODELS:
        if arch == model:
            return tag
    try:
        import open_clip
    except ImportError:
        return None
    for tag in open_clip.list_pretrained_tags_by_model(model):
        if (open_clip.get_pretrained_cfg(model, tag) or {}).get("hf_hub"):
            return tag
    return None


def clip_tag_of(model: str, pretrained: str | None, checkpoint: Any = None) -> str | None:
    """The tag a CLIP embedder takes for ``model`` given ``pretrained``: where that is the
    default model's default tag but ``model`` is another architecture and no local file is
    given (``--clip-model ViT-B-16`` alone always failed: no ViT-B-16 weights carry ViT-B-32's
    tag), the model's own default tag; else ``pretrained`` as given (a local file keeps the tag
    its libraries were made under: their embedder ids name it)."""
    if pretrained != DEFAULT_CLIP_PRETRAINED or model == DEFAULT_CLIP_MODEL:
        return pretrained
    if checkpoint is not None and str(checkpoint) != "":
        return pretrained
    return default_clip_tag(model)


def clip_spec(model: str, pretrained: str) -> ModelSpec:
    """The CLIP checkpoint of an open_clip ``model`` name and ``pretrained`` tag.

    Listed pairs need no import; others are looked up in open_clip's pretrained table.

    Raises:
        ValueError: open_clip knows no Hugging Face source for this pair.
    """
    if (model, pretrained) in CLIP_MODELS:
        return CLIP_MODELS[(model, pretrained)]
    try:
        import open_clip
    except ImportError as e:
        raise ModelNotAvailableError(
            "the clip embedder needs open_clip: pip install 'sam-detect[models]' "
            "(or pip install open_clip_torch)"
        ) from e
    cfg = open_clip.get_pretrained_cfg(model, pretrained) or {}
    hub = str(cfg.get("hf_hub") or "")
    if not hub:
        from sam_detect.errors import SettingError

        known = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
        raise SettingError(
            f"open_clip has no Hugging Face weights for model {model!r} tag {pretrained!r} "
            f"(tags of {model}: {known}): choose one with --clip-pretrained, or pass a local file with "
            "--clip-checkpoint"
        )
    parts = hub.split("/")  # "org/repo/" or "org/repo/filename"
    repo = "/".join(parts[:2])
    fname = "/".join(p for p in parts[2:] if p)
    files = (fname,) if fname else _CLIP_FILES
    return ModelSpec(
        name=f"{model}:{pretrained}",  # the name `models download` and `models path` take
        family="clip",
        repo_id=repo,
        filenames=files,
        size_mb=float("nan"),
        arch=model,
        tag=pretrained,
        aliases=(f"{model}:{pretrained}",),
    )


def is_cached(spec: ModelSpec) -> bool:
    return spec.cached_path() is not None


def auto_models() -> tuple[str, str, str]:
    """``(segmenter, embedder, reason)`` for ``auto``: SAM2 / CLIP when cached.

    The segmenter is ``"sam2"`` when any SAM2 checkpoint is cached (the smallest one is
    used, see :func:`default_sam2_model`), else ``"classical"``; the embedder is ``"clip"``
    when the default CLIP (ViT-B-32, laion2b_s34b_b79k) is cached, else ``"views"`` (the
    offline multi-view embedder: EfficientNet-Lite0 features pooled under each mask, with
    colour, shape and texture views).
    Nothing is downloaded.
    """
    import importlib.util

    cache = cache_dir()
    damaged: list[str] = []
    sam = next((s for s in SAM2_MODELS.values() if _whole_in_cache(s, cache, damaged)), None)
    clip = CLIP_MODELS[(DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED)]
    has_clip = _whole_in_cache(clip, cache, damaged) is not None
    # weights without the package that runs them (a shared model cache, an install without the
    # `models` extra): the offline stages, said (every auto detect and add failed)
    installed = {pkg: importlib.util.find_spec(pkg) is not None for pkg in ("sam2", "open_clip")}
    missing = [f"{what} weights found in {cache} but the {pkg} package is not installed"
               for what, pkg, found in (("SAM2", "sam2", sam), ("CLIP", "open_clip", has_clip))
               if found and not installed[pkg]]
    if missing:
        sam = sam if installed["sam2"] else None
        has_clip = has_clip and installed["open_clip"]
        usable = [f"{what} {arch} weights found in {cache}" for what, arch, ok in
                  (("SAM2", sam.arch if sam else "", sam), ("CLIP", clip.arch, has_clip)) if ok]
        reason = "; ".join(usable + missing) + " (pip install 'sam-detect[models]')"
    elif sam and has_clip:
        reason = f"SAM2 {sam.arch} and CLIP {clip.arch} weights found in {cache}"
    elif sam:
        reason = f"SAM2 {sam.arch} weights found in {cache}; no CLIP weights there"
    elif has_clip:
        reason = f"CLIP {clip.arch} weights found in {cache}; no SAM2 weights there"
    else:
        reason = f"no SAM2/CLIP weights in {cache}"
    segmenter = "sam2" if sam else "classical"
    embedder = "clip" if has_clip else "views"
    return segmenter, embedder, "; ".join([reason, *dict.fromkeys(damaged)])


def _whole_in_cache(spec: ModelSpec, cache: Path, damaged: list[str] | None = None) -> Path | None:
    """``spec``'s cached file where it reads whole (:func:`checkpoint_problem`); a damaged one
    (an interrupted copy) is ``None``, and said in ``damaged``: ``auto`` chose a cut-short
    SAM2 file, and every ``detect`` then failed on it."""
    hit = spec.cached_path(cache)
    problem = _cached_problem(hit) if hit is not None else None
    if problem is not None and damaged is not None:
        damaged.append(f"{spec.name}'s cached {hit.name} is damaged ({problem}; run "
                       f"`{spec.download_command()}`), so it is not used")
    return None if problem is not None else hit


def _cached_problem(hit: Path) -> str | None:
    """:func:`checkpoint_problem` of a cached file, one gone or unreadable since it was listed
    said so."""
    try:
        return checkpoint_problem(hit)
    except OSError as e:
        return f"unreadable: {e.strerror or e}"


def pick_sam2_model(model: str | None, checkpoint: str | os.PathLike | None = None) -> str:
    """The SAM2 size for ``model``: itself, or for ``"auto"``/``None`` the size named in
    the checkpoint's file name (``sam2.1_hiera_small.pt`` -> ``small``), else the size of the
    checkpoint's weights (:func:`sam2_size_of`: a fine-tuned ``small`` saved as
    ``finetuned.pt`` was taken for ``tiny`` and refused); without a checkpoint the smallest
    cached size; else ``"tiny"``."""
    if model not in (None, "auto"):
        return sam2_spec(model).arch
    if checkpoint:
        name = Path(checkpoint).name.lower().replace("-", "_").replace("b+", "base_plus")
        for key in ("base_plus", "large", "small", "tiny"):
            if key in name:
                return key
        # a file named otherwise (finetuned.pt): the size its weights have, else tiny
        return sam2_size_of(checkpoint) or "tiny"
    return default_sam2_model()


#: SAM 2.1's sizes by the number of blocks in their image encoder's trunk
_SAM2_BLOCKS = {12: "tiny", 16: "small", 24: "base_plus", 48: "large"}


def sam2_size_of(checkpoint: str | os.PathLike) -> str | None:
    """The SAM 2.1 size of a checkpoint file's weights (its encoder's block count), read from
    the file; ``None`` where it cannot be read or matches no size."""
    try:
        import torch

        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - unreadable here: the loader says why
        return None
    state = state.get("model", state) if isinstance(state, dict) else {}
    blocks = {int(k.split(".")[3]) for k in state if isinstance(k, str) and k.startswith("image_encoder.trunk.blocks.")
              and k.split(".")[3].isdigit()}
    return _SAM2_BLOCKS.get(len(blocks))


def default_sam2_model() -> str:
    """The smallest SAM2 size whose weights are cached whole; ``"tiny"`` when none is."""
    cache = cache_dir()
    for key, spec in SAM2_MODELS.items():
        if _whole_in_cache(spec, cache):
            return key
    return "tiny"


# ----------------------------------------------------------------------------------------
# resolving and downloading
# ----------------------------------------------------------------------------------------
def _offline() -> bool:
    from sam_detect.errors import SettingError

    value = os.environ.get(OFFLINE_ENV, "").strip().lower()
    if value not in ("", "0", "1", "true", "false", "yes", "no", "on", "off"):  # "junk" meant online
        raise SettingError(f"{OFFLINE_ENV}={os.environ[OFFLINE_ENV]!r}: set it to 1 (offline) or 0 (online)")
    return any(
        os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
        for v in (OFFLINE_ENV, "HF_HUB_OFFLINE")
    )


def _hub_reachable(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether the hub's host answers on TCP (skipped behind a proxy, where it may not)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True, ""
    endpoint = os.environ.get("HF_ENDPOINT") or f"https://{HF_HOST}"
    parsed = urlparse(endpoint)
    host = parsed.hostname or HF_HOST
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True, ""
    except OSError as e:
        return False, f"cannot reach {host}: {e}"


def _missing_message(spec: ModelSpec, cache: Path, why: str, flag: str) -> str:
    """Why ``spec``'s weights could not be fetched (``why``), in one line: not in the cache, or
    (fetched again over it) the cached file damaged, or whole and kept (``--force``)."""
    kind = f"{spec.family.upper() if spec.family == 'sam2' else 'CLIP'} weights"
    hit = spec.cached_path(cache)
    if hit is not None:  # fetched again: said as what it is, not "not in the model cache"
        problem = _cached_problem(hit)
        if problem is None:
            return f"{kind} {hit.name} ({spec.name}) could not be fetched again ({why}); the cached {hit} is kept"
        return (f"{kind} {hit.name} ({spec.name}): the cached {hit} is damaged ({problem}) and could not be fetched "
                f"again ({why}). Run `{spec.download_command()}` where the internet is reachable (and copy the "
                f"file to {hit}), or pass a local file with {flag} PATH")
    where = cache / spec.cache_subdir / spec.filenames[0]
    return (
        f"{kind} {spec.filenames[0]} "
        f"({spec.name}) are not in the model cache ({where}) and could not be downloaded "
        f"({why}). Run `{spec.download_command()}` where the internet is reachable (and copy the "
        f"file to {where}), or pass a local file with {flag} PATH"
    )


def download(spec: ModelSpec, *, force: bool = False, progress: bool = True) -> Path:
    """Download ``spec`` into the cache through ``huggingface_hub``; returns the file (the
    cached one, without ``force``, where it reads whole: :func:`checkpoint_problem`).

    Raises:
        ModelNotAvailableError: offline, the hub cannot be reached, or the file is missing there.
    """
    cache = cache_dir()
    flag = "--sam-checkpoint" if spec.family == "sam2" else "--clip-checkpoint"
    if not force:
        hit = spec.cached_path(cache)
        if hit is not None and checkpoint_problem(hit) is None:
            return hit
        # a cached file cut short or not of its format (:func:`checkpoint_problem`) is fetched
        # again over itself: "already in the model cache" sent the user back to a broken file
        force = hit is not None
    if _offline():
        raise ModelNotAvailableError(
            _missing_message(
                spec, cache, f"offline mode: {OFFLINE_ENV} or HF_HUB_OFFLINE is set", flag
            )
        )
    ok, why = _hub_reachable()
    if not ok:
        raise ModelNotAvailableError(_missing_message(spec, cache, why, flag))
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ModelNotAvailableError(
            "downloading weights needs huggingface_hub: pip install huggingface_hub"
        ) from e
    folder = cache / spec.cache_subdir
    folder.mkdir(parents=True, exist_ok=True)
    errors = []
    for fn in spec.filenames:
        try:
            kwargs: dict[str, Any] = {
                "repo_id": spec.repo_id,
                "filename": fn,
                "local_dir": str(folder),
            }
            if force:
                kwargs["force_download"] = True
            if not progress:
                from huggingface_hub.utils import disable_progress_bars

                disable_progress_bars()
            return Path(hf_hub_download(**kwargs))
        except Exception as e:  # noqa: BLE001 - every hub failure becomes one clear message
            errors.append(f"{fn}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    raise ModelNotAvailableError(
        _missing_message(
            spec,
            cache,
            f"download from huggingface.co/{spec.repo_id} failed: " + "; ".join(errors),
            flag,
        )
    )


def resolve_checkpoint(
    spec: ModelSpec, explicit: str | os.PathLike | None = None, *, download_missing: bool = True
) -> Path:
    """The checkpoint file for ``spec``: explicit path, else cache, else a download.

    Raises:
        ModelNotAvailableError: the explicit file does not exist, or the weights are not
            cached and cannot be downloaded (the message names the file and the command).
    """
    flag = "--sam-checkpoint" if spec.family == "sam2" else "--clip-checkpoint"
    if explicit is not None and str(explicit) != "":
        p = Path(explicit).expanduser()
        if not p.is_file():
            raise ModelNotAvailableError(
                f"checkpoint file {p} does not exist (given with {flag}); pass the path of a "
                f"downloaded {spec.filenames[0]} or run `{spec.download_command()}`"
            )
        return p
    cache = cache_dir()
    hit = spec.cached_path(cache)
    if hit is not None:
        return hit
    if not download_missing:
        raise ModelNotAvailableError(
            _missing_message(spec, cache, "downloads are disabled here", flag)
        )
    return download(spec)


def file_fingerprint(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """8 hex digits identifying a weights file: its size and first and last MiB (fast)."""
    p = Path(path)
    size = p.stat().st_size
    h = hashlib.blake2b(digest_size=4)
    h.update(str(size).encode())
    with open(p, "rb") as f:
        h.update(f.read(chunk))
        if size > chunk:
            f.seek(max(size - chunk, chunk))
            h.update(f.read(chunk))
    return h.hexdigest()


# ----------------------------------------------------------------------------------------
# model identity: what a library records and every comparison checks
# ----------------------------------------------------------------------------------------
DIGESTS_FILE = "digests.json"
_DIGEST_CHUNK = 8 << 20
#: in-process digests by (resolved path, size, mtime_ns)
_digests: dict[tuple[str, int, int], str] = {}


def checkpoint_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a weights file, computed once per version of the file.

    Hashing reads the whole file (about 2 s for SAM 2.1 large's 900 MB), so the digest is
    kept by (resolved path, size, modification time): in this process, and in
    ``digests.json`` in the model cache folder for later runs. A file rewritten in place
    gets a new modification time and is hashed again. An unwritable cache only costs the
    re-hash.
    """
    p = Path(path).expanduser().resolve()
    st = p.stat()
    key = (str(p), int(st.st_size), int(st.st_mtime_ns))
    hit = _digests.get(key)
    if hit is not None:
        return hit
    book_path = cache_dir() / DIGESTS_FILE
    book = _read_digests(book_path)
    entry = book.get(key[0])
    if isinstance(entry, dict) and entry.get("size") == key[1] and entry.get("mtime_ns") == key[2] \
            and isinstance(entry.get("sha256"), str) and len(entry["sha256"]) == 64:
        _digests[key] = entry["sha256"]
        return entry["sha256"]
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(_DIGEST_CHUNK):
            h.update(chunk)
    digest = h.hexdigest()
    _digests[key] = digest
    book = _read_digests(book_path)  # re-read: another process may have added entries
    book[key[0]] = {"size": key[1], "mtime_ns": key[2], "sha256": digest}
    _write_digests(book_path, book)
    return digest


def _read_digests(path: Path) -> dict[str, Any]:
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_digests(path: Path, book: dict[str, Any]) -> None:
    import json
    import tempfile

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".digests-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(book, f, indent=1, sort_keys=True)
        os.replace(tmp, path)  # atomic: a reader sees the old book or the new one
    except OSError:
        return


@dataclass(frozen=True)
class ModelIdentity:
    """Which weights made a set of features: recorded in a library, compared on every use.

    Attributes:
        family: ``"sam2"`` or ``"clip"``.
        name: the model (``"sam2.1-tiny"``; ``"ViT-B-32:laion2b_s34b_b79k"``, or
            ``"ViT-B-32:custom"`` for a local file without a tag).
        sha256: SHA-256 of the checkpoint file (:func:`checkpoint_sha256`).
        input_size: the encoder's input side in pixels.
    """

    family: str
    name: str
    sha256: str
    input_size: int

    def to_dict(self) -> dict[str, Any]:
        return {"family": self.family, "name": self.name, "sha256": self.sha256,
                "input_size": int(self.input_size)}

    @classmethod
    def from_dict(cls, d: Any) -> ModelIdentity | None:
        """The identity recorded in a library, or ``None`` (none recorded, or unreadable)."""
        if not isinstance(d, dict):
            return None
        try:
            return cls(str(d["family"]), str(d["name"]), str(d["sha256"]), int(d["input_size"]))
        except (KeyError, TypeError, ValueError):
            return None

    def describe(self) -> str:
        """One phrase: ``SAM2 sam2.1-tiny (checkpoint sha256 1a2b3c4d5e6f, input 1024 px)``."""
        family = "SAM2" if self.family == "sam2" else self.family.upper()
        return f"{family} {self.name} (checkpoint sha256 {self.sha256[:12]}, input {self.input_size} px)"


def sam2_identity(model: str, checkpoint: str | os.PathLike, image_size: int | None) -> ModelIdentity:
    """The identity of SAM 2.1 ``model`` (size key) with weights ``checkpoint`` run at
    ``image_size`` (``None``: the trained 1024)."""
    spec = sam2_spec(model)
    size = int(image_size or SAM2_DEFAULT_INPUT)
    return ModelIdentity("sam2", spec.name, checkpoint_sha256(checkpoint), size)


def clip_identity(model: str, pretrained: str | None, checkpoint: str | os.PathLike) -> ModelIdentity:
    """The identity of open_clip ``model`` with weights ``checkpoint``; the input size is the
    one its preprocessing resizes to (:func:`clip_options`)."""
    size = int(clip_options(model, pretrained)["image_size"])
    return ModelIdentity("clip", f"{model}:{pretrained or 'custom'}", checkpoint_sha256(checkpoint), size)


def checkpoint_problem(path: str | os.PathLike) -> str | None:
    """Why the weights file ``path`` cannot be read whole, found cheaply (its head and
    directory are read, never its tensors, and torch is not imported); ``None`` where it looks whole.

    - ``.safetensors``: the header (8 bytes of length, then JSON) must read, and the tensors'
      data it lists must end where the file ends;
    - a ``torch.save`` file (``.pt``, ``.bin``): a zip archive (torch's format since 1.6)
      whose directory, at the archive's end, opens; a file cut short has none. The older
      pickle format has nothing to check cheaply and is taken as it is.

    A file damaged inside its data is found only when it is loaded (``loading``'s error).
    """
    import json
    import struct
    import zipfile

    p = Path(path)
    size = p.stat().st_size
    with open(p, "rb") as f:
        head = f.read(8)
        if p.suffix == ".safetensors":
            if len(head) < 8:
                return f"incomplete: {size} bytes, shorter than a safetensors header"
            n = struct.unpack("<Q", head)[0]
            if n > size - 8:
                return f"incomplete: its header says {n} bytes of header, the file holds {size - 8} after the length"
            try:
                header = json.loads(f.read(n))
                end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
            except (ValueError, TypeError, KeyError, IndexError):
                return "unreadable: its safetensors header is not the format's JSON"
            expected = 8 + n + end
            if size < expected:
                return f"incomplete: {size:,} of {expected:,} bytes"
            if size > expected:
                return f"unreadable: {size - expected:,} bytes past the end of the tensors its header lists"
            return None
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(p):
                return None
        except (zipfile.BadZipFile, OSError):
            return "incomplete: a torch.save archive without its directory, which ends the file"
    if head[:1] == b"\x80":  # a pickle: torch.save's format before 1.6
        return None
    return "unreadable: neither the zip archive nor the pickle torch.save writes"


def iter_cache(cache: Path | None = None) -> Iterator[tuple[ModelSpec, Path | None]]:
    """``(spec, cached file or None)`` for every listed checkpoint."""
    cache = cache or cache_dir()
    for spec in known_models():
        yield spec, spec.cached_path(cache)


# loading (torch, sam2 and open_clip are imported inside these functions)
from sam_detect.models.loading import (  # noqa: E402 - it reads the specs above
    build_sam2_from_checkpoint,
    clip_options,
    import_open_clip,
    load_clip_model,
    load_sam2_model,
)

__all__ = [
    "CACHE_ENV",
    "CLIP_MODELS",
    "DEFAULT_CLIP_MODEL",
    "DEFAULT_CLIP_PRETRAINED",
    "OFFLINE_ENV",
    "SAM2_DEFAULT_INPUT",
    "SAM2_MODELS",
    "ModelIdentity",
    "ModelSpec",
    "auto_models",
    "build_sam2_from_checkpoint",
    "cache_dir",
    "clip_identity",
    "checkpoint_problem",
    "checkpoint_sha256",
    "clip_options",
    "clip_spec",
    "default_sam2_model",
    "pick_sam2_model",
    "sam2_size_of",
    "download",
    "file_fingerprint",
    "get_spec",
    "import_open_clip",
    "is_cached",
    "iter_cache",
    "known_models",
    "load_clip_model",
    "load_sam2_model",
    "resolve_checkpoint",
    "sam2_identity",
    "sam2_spec",
]
