"""Every detector setting's one home: its default, its range, and how a library's recorded
settings are adopted.

- :data:`PARAMS`: the numeric settings (``occupancy``, ``top_k``, ``threshold``) with their
  default and range; :func:`check` is the one validation of a value, used by
  :class:`DetectorConfig`, ``SAMDetect.detect``'s per-call overrides and the context crop.
- :class:`DetectorConfig`: every setting of a detector; the choices (``segmenter``,
  ``store``...) default here. ``library`` and ``store`` left unset are read from
  ``SAM_DETECT_LIBRARY`` / ``SAM_DETECT_STORE`` (:data:`ENV_SETTINGS`), as the CLI reads them.
- :func:`adopt_library_settings`: the fade, occupancy and embedder a detector (or a re-cut of
  a library's crops) uses with a library: a setting given wins, an unset one is the library's,
  else the default for a new library.

The CLI's options default to "unset" and only override; its ``--help``, the API and the UI
read the defaults from here when they run (:func:`default_text`), so a default changed here
shows everywhere. Nothing here imports numpy or torch.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sam_detect.errors import InvalidNameError, SettingError

#: the fade of a new library (its settings: the fade's own defaults)
DEFAULT_FADE = "gaussian"


@dataclass(frozen=True)
class Param:
    """A numeric setting: ``default`` and the range ``[low, high]`` (``low_open``: ``(low, high]``).

    ``meaning`` (optional) says what a value is, for the error message ("a cosine similarity").
    """

    name: str
    default: float | int | None
    low: float
    high: float
    low_open: bool = False
    integer: bool = False
    meaning: str = ""

    @property
    def interval(self) -> str:
        return f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}]"

    def error(self, value: Any) -> str:
        if self.integer:
            return f"{self.name} must be >= {self.low:g} and <= {self.high:g}, got {value!r}"
        if self.meaning:
            return f"{self.name} is {self.meaning} in {self.interval}, got {value!r}"
        return f"{self.name} must be in {self.interval}, got {value!r}"

    def check(self, value: Any) -> Any:
        """``value`` as an ``int`` (integer settings) or ``float``; ``ValueError`` saying the range
        otherwise (:class:`~sam_detect.errors.SettingError`, a ``ValueError``; ``bool``, strings, ``nan`` and ``inf``
        included)."""
        kind = "an integer" if self.integer else "a number"
        if isinstance(value, bool) or not hasattr(value, "__index__" if self.integer else "__float__") \
                or isinstance(value, (str, bytes)):
            raise SettingError(f"{self.name} must be {kind} in {self.interval}, got {value!r}")
        number = int(value) if self.integer else float(value)
        below = number <= self.low if self.low_open else number < self.low
        if not math.isfinite(number) or below or number > self.high:
            raise SettingError(self.error(value))
        return number


#: the numeric settings: default and range, each written once
PARAMS: dict[str, Param] = {
    # the share of the context crop the object fills: side = sqrt(mask area / occupancy); at
    # least 0.001 (a crop 32 times the object's side): 1e-300 asked for crops 1e151 px wide,
    # numpy's "Maximum allowed dimension exceeded" (smaller ones ran out of memory)
    "occupancy": Param("occupancy", 0.2, 0.001, 1.0),
    # neighbours that vote; past 10,000 nothing is gained, and values past the stores'
    # 64-bit limits ended in an OverflowError deep inside Qdrant
    "top_k": Param("top_k", 5, 1, 10_000, integer=True),
    # None: each class's own threshold, calibrated from its examples (sam_detect.calibrate)
    "threshold": Param("threshold", None, -1.0, 1.0, meaning="a cosine similarity"),
}


#: the words an on/off environment variable (``SAM_DETECT_*``) takes, either case
ENV_OFF = ("0", "off", "false", "no")
ENV_ON = ("1", "on", "true", "yes")


def env_switch(name: str, expected: str, auto: bool = False) -> bool | None:
    """Environment variable ``name`` as a switch: ``True`` / ``False`` for the words of
    :data:`ENV_ON` / :data:`ENV_OFF`, ``None`` where it is unset or empty (and, with
    ``auto``, ``"auto"``): the default. Any other value is refused in one line naming it
    and what it takes (``expected``): it was taken as the default without a word."""
    import os

    raw = os.environ.get(name, "")
    setting = raw.strip().lower()
    if setting in ENV_ON or setting in ENV_OFF:
        return setting in ENV_ON
    if setting == "" or (auto and setting == "auto"):
        return None
    from sam_detect.errors import SamDetectError

    raise SamDetectError(f"{name}={raw!r}: expected {expected}")


#: the settings an environment variable gives where they are not given, as the CLI's
#: ``--library`` and ``--store`` read them: (variable, default without it)
ENV_SETTINGS: dict[str, tuple[str, str]] = {
    "library": ("SAM_DETECT_LIBRARY", "default"),
    "store": ("SAM_DETECT_STORE", "edge"),
}


def env_setting(name: str) -> str:
    """Setting ``name`` of :data:`ENV_SETTINGS` as the environment gives it now: its variable
    where set and not empty (an empty one is unset, as click takes it), else its default. A
    store the registry does not know is refused here, naming the variable: it failed when the
    store was built, naming no variable."""
    import os

    env, fallback = ENV_SETTINGS[name]
    value = os.environ.get(env) or fallback
    if name == "store" and value != fallback:
        from sam_detect.store import list_stores

        if value not in list_stores():
            raise SettingError(f"{env}={value!r}: expected one of {', '.join(list_stores())}")
    return value


def command_store_options(store: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` for store ``store`` as a command opens it (and a config whose store the
    environment chose): a ``memory`` store without a ``path`` keeps its libraries in the
    library folder's file (``sam_detect.paths.default_library_path``); in memory alone, what
    a command added was lost at exit, and a script did not see the library a command built."""
    if store != "memory" or "path" in options:
        return dict(options)
    from sam_detect.paths import default_library_path

    return {**options, "path": str(default_library_path())}


def check(name: str, value: Any) -> Any:
    """``value`` checked against setting ``name``'s range (:meth:`Param.check`)."""
    return PARAMS[name].check(value)


def default(name: str) -> Any:
    """Setting ``name``'s default, read now: a numeric setting's from :data:`PARAMS`, the
    library's and the store's from the environment (:func:`env_setting`), any other from
    :class:`DetectorConfig`."""
    if name in PARAMS:
        return PARAMS[name].default
    if name in ENV_SETTINGS:
        return env_setting(name)
    f = DetectorConfig.__dataclass_fields__[name]
    return f.default_factory() if f.default is dataclasses.MISSING else f.default  # type: ignore[misc]


def default_text(name: str) -> str:
    """Setting ``name``'s default in words, for ``--help`` and the docs (read when called)."""
    if name == "occupancy":
        return f"the library's, {default('occupancy'):g} for a new library"
    if name == "threshold":
        from sam_detect.calibrate import DEFAULT_THRESHOLD

        return (f"each class's own, calibrated from its examples (see `library show`); "
                f"{DEFAULT_THRESHOLD:g} for a class with one example")
    if name == "fade":
        return f"the library's, {DEFAULT_FADE} for a new library"
    if name in ("sigma", "min_fade", "max_distance", "decay"):
        return fade_defaults(name)
    value = default(name)
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def fade_defaults(option: str) -> str:
    """A fade setting's defaults, from the fades' own signatures: ``"30 (gaussian)"``."""
    import inspect

    from sam_detect.fade import FADES, list_fades

    found = []
    for name in list_fades():
        p = inspect.signature(FADES.factory(name)).parameters.get(option)
        if p is not None and p.default is not inspect.Parameter.empty:
            found.append(f"{p.default:g} ({name})")
    return ", ".join(found) or "none"


@dataclass
class DetectorConfig:
    """Everything that chooses and tunes the stages.

    ``segmenter`` / ``embedder``: a registry name or ``"auto"`` (SAM2/CLIP when their weights
    are cached, else ``classical`` + ``views``; an existing library's own embedder wins).
    ``fade``: a fade name, or ``None`` for the library's fade (``DEFAULT_FADE`` for a new one).
    ``occupancy``: the share of the context crop the object fills (``side = sqrt(area / occupancy)``);
    ``None``: the library's, else ``PARAMS["occupancy"].default`` for a new library.
    ``store``: ``edge`` (Qdrant Edge, the Qdrant engine in-process on a folder: the default),
    ``qdrant`` (qdrant-client: local folder, ``:memory:``, or a server by ``url``) or ``memory``;
    without a ``path``, ``url`` or ``location`` in ``store_options`` a store uses its default
    folder (``sam_detect.paths.default_library_path``).
    ``library`` / ``store`` unset (``None``): ``$SAM_DETECT_LIBRARY`` / ``$SAM_DETECT_STORE``
    where set, as for the CLI, else ``"default"`` / ``"edge"``; a ``memory`` store taken from
    the variable keeps its libraries in the library folder's file, as the CLI's does (given
    as ``store="memory"``, in this process alone unless ``store_options`` has a ``path``).
    ``threshold``: the minimum similarity for a label; below it a candidate is ``unknown``.
    ``None`` (default): each class's own threshold, calibrated from its examples
    (``sam_detect.calibrate``; ``DEFAULT_THRESHOLD`` for a class with one example); a number
    overrides them all.
    ``profile``: use the library's proposal profile (what its examples say about the
    objects' size, shape and contrast) to calibrate the segmenter, filter and select
    candidates; ``False``: the segmenter's own settings and every candidate the vote labels.
    ``drop_border``: leave out objects that touch the image border (counting protocols that
    count only whole objects); ``False``: find them like any other; ``None`` (default): leave
    them out where the library's example images' annotations leave them out
    (``sam_detect.unlabelled.border_convention``; a whole label image that holds next to none
    of the objects its border cuts), else find them.
    ``keep_examples``: on an image the library's examples were drawn on (the same pixels),
    return those examples as drawn, with their labels, and leave out the candidates that
    overlap them (negative examples too); ``False``: find them like any other object.
    Ranges: :data:`PARAMS`.
    """

    segmenter: str = "auto"
    segmenter_options: dict[str, Any] = field(default_factory=dict)
    embedder: str = "auto"
    embedder_options: dict[str, Any] = field(default_factory=dict)
    fade: str | None = None
    fade_options: dict[str, Any] = field(default_factory=dict)
    occupancy: float | None = None
    store: str | None = None  # None: $SAM_DETECT_STORE, else edge (ENV_SETTINGS)
    store_options: dict[str, Any] = field(default_factory=dict)
    library: str | None = None  # None: $SAM_DETECT_LIBRARY, else default
    top_k: int = field(default_factory=lambda: default("top_k"))
    threshold: float | None = field(default_factory=lambda: default("threshold"))
    keep_unknown: bool = False
    profile: bool = True
    drop_border: bool | None = None
    keep_examples: bool = True
    device: str = "auto"
    batch_size: int | None = None  # None: the embedder's own default (8 on CPU, 32 on CUDA for effnet)

    def __post_init__(self) -> None:
        for name in PARAMS:
            if getattr(self, name) is not None:
                check(name, getattr(self, name))
        for name in _SWITCHES:  # "no" and "off" are truthy: from YAML or the environment they read as on
            value = getattr(self, name)
            if value is None and name == "drop_border":
                continue
            if not _is_bool(value):
                either = "True, False or None" if name == "drop_border" else "True or False"
                raise SettingError(f"{name} must be {either}, got {value!r}")
            setattr(self, name, bool(value))
        if self.batch_size is not None:  # "8" or 8.0 reached the embedder's slicing; 0 was the default unsaid
            value = self.batch_size
            if isinstance(value, bool) or not hasattr(value, "__index__") or int(value) < 1:
                raise SettingError(f"batch_size must be a positive integer (or None: the embedder's own), "
                                   f"got {value!r}")
            self.batch_size = int(value)
        for name in ("segmenter_options", "embedder_options", "fade_options", "store_options"):
            value = getattr(self, name)
            if value is None:  # "no options", as the stage's own defaults
                setattr(self, name, {})
            elif not isinstance(value, Mapping):  # a TypeError from inside the stage's factory before
                raise SettingError(f"{name} must be a dict of option names and values, got {value!r:.80}")
        if self.library is None:
            self.library = env_setting("library")
        if self.store is None:
            self.store = env_setting("store")
            self.store_options = command_store_options(self.store, self.store_options)
        if not self.library or not str(self.library).strip():
            raise InvalidNameError("library name must not be empty")


#: the on/off settings of :class:`DetectorConfig` (``drop_border`` ``None`` too: the library's convention)
_SWITCHES = ("keep_unknown", "profile", "drop_border", "keep_examples")


def _is_bool(value: Any) -> bool:
    """``value`` is ``True`` or ``False``, numpy's too (``np.True_``); not 1, 0 or ``"no"``."""
    kind = type(value)
    return isinstance(value, bool) or (kind.__module__ == "numpy" and kind.__name__ in ("bool", "bool_"))


# -- a library's settings ---------------------------------------------------------------------
@dataclass(frozen=True)
class LibrarySettings:
    """The fade, occupancy and embedder to use with a library (:func:`adopt_library_settings`).

    ``embedder`` is ``None`` when it is neither given nor recorded (the caller picks one);
    ``adopted`` names the settings taken from the library's record.
    """

    fade: str
    fade_options: dict[str, Any]
    occupancy: float
    embedder: str | None
    embedder_options: dict[str, Any]
    adopted: tuple[str, ...] = ()


def adopt_library_settings(
    meta: Any,
    *,
    fade: str | None = None,
    fade_options: dict[str, Any] | None = None,
    occupancy: float | None = None,
    embedder: str = "auto",
    embedder_options: dict[str, Any] | None = None,
) -> LibrarySettings:
    """The settings to use with library ``meta`` (a ``LibraryMeta``, or ``None``: a new library).

    Each setting given (a fade name, an occupancy, an embedder other than ``"auto"``) wins;
    an unset one is the library's recorded one, with the given options on top; else the
    default for a new library (:data:`DEFAULT_FADE` with the fade's own defaults, the
    occupancy in :data:`PARAMS`, no embedder). The one place a library's record is read back
    into settings: the detector and ``store.exchange`` both call it.
    """
    fade_options = dict(fade_options or {})
    embedder_options = dict(embedder_options or {})
    adopted = []
    recorded_fade = dict(getattr(meta, "fade", None) or {})
    if fade is None and recorded_fade.get("name"):
        fade = recorded_fade.pop("name")
        fade_options = {**recorded_fade, **fade_options}
        adopted.append("fade")
    elif fade is None:
        fade = DEFAULT_FADE
    if occupancy is None:
        recorded = (getattr(meta, "crop", None) or {}).get("occupancy")
        if recorded is not None:
            adopted.append("occupancy")
        occupancy = float(recorded) if recorded is not None else default("occupancy")
    name: str | None = embedder
    if embedder == "auto":
        recorded_emb = (getattr(meta, "extra", None) or {}).get("embedder")
        name = None
        if recorded_emb:
            name = recorded_emb["name"]
            recorded_opts = dict(recorded_emb.get("options", {}))
            gone = recorded_opts.get("checkpoint")
            if gone and "checkpoint" not in embedder_options and not Path(str(gone)).expanduser().is_file():
                # the file the library was made with is not here (moved, another machine): its
                # weights are looked for in the model cache by their tag (the library's recorded
                # weights identity then says whether they are the same)
                del recorded_opts["checkpoint"]
                import logging

                logging.getLogger("sam_detect").warning(
                    "library made with the weights in %s, which is not there: looking for them in the model cache "
                    "(give the file with --clip-checkpoint / --sam-checkpoint where they are elsewhere)", gone)
            embedder_options = {**recorded_opts, **embedder_options}
            adopted.append("embedder")
            if name == "sam2" and embedder_options.get("mode", "image") == "image" \
                    and ":tiles=" not in meta.embedder_id:
                embedder_options.setdefault("tile_size", 0)  # made before tiled image mode: whole images
    return LibrarySettings(fade, fade_options, float(occupancy), name, embedder_options, tuple(adopted))


__all__ = [
    "DEFAULT_FADE",
    "ENV_SETTINGS",
    "PARAMS",
    "DetectorConfig",
    "LibrarySettings",
    "Param",
    "adopt_library_settings",
    "check",
    "command_store_options",
    "default",
    "default_text",
    "env_setting",
]
