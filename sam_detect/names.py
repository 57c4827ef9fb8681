"""The name policy for labels and libraries (stated in README.md, "Names").

* A **library name** is 1-64 characters of letters, digits, ``_``, ``-`` and ``.``, starting
  with a letter or digit: it names a folder or a collection, so ``../x``, ``a/b``, ``.``,
  ``..`` and ``-rf`` are refused (the store backends apply the same pattern,
  :data:`sam_detect.store._common.LIBRARY_NAME_RE`), and so are the names a store keeps
  for itself (:data:`RESERVED_LIBRARY_NAMES`).
* A **label** is 1-100 characters once surrounding spaces are stripped, with no control
  characters (newline, tab, NUL...) and no line separators, so that every table, JSON line
  and overlay can show it on one line; ``unknown`` (in any letter case) is refused, because
  it is what the output calls a candidate that matches no label.
  :data:`~sam_detect.instances.NEGATIVE` is the label of negative examples (``--negative``).

:func:`display_label` renders any stored label (one made before this policy, or through
another tool) safely on one line, for listings.
"""

from __future__ import annotations

import re
import unicodedata

from sam_detect.errors import AnnotationError, InvalidNameError

MAX_LABEL_CHARS = 100
LIBRARY_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$"
_LIBRARY_NAME_RE = re.compile(LIBRARY_NAME_PATTERN)
#: Library names no store may make: the ``qdrant`` store's local mode keeps its data in a
#: folder ``collection`` of the libraries folder, which the ``edge`` store shares. Refused for
#: every store, before any work (an edge library of that name failed at its creation, after
#: every example was embedded, as an "internal error"), so that a name good in one store is good
#: in all and a ``library copy`` between them cannot fail on it.
RESERVED_LIBRARY_NAMES = ("collection",)


def _short(value: object, n: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= n else f"{text[: n - 5]}...{text[-1]} ({len(str(value)):,} characters)"


def check_library_name(name: object) -> str:
    """Return ``name`` if it is a valid name for a new library, else raise :class:`InvalidNameError`."""
    check_existing_library_name(name)
    refuse_reserved(name)
    return name


def check_existing_library_name(name: object) -> str:
    """Return ``name`` if it may name a library that exists, else raise :class:`InvalidNameError`:
    the pattern only, so that a library an older version made under a name now reserved (a
    qdrant library ``collection``) can still be read, used, exported, copied and deleted;
    where the library does not exist, its making refuses the name (:func:`refuse_reserved`)."""
    if not isinstance(name, str) or not _LIBRARY_NAME_RE.fullmatch(name):  # `$` matches before a final newline
        raise InvalidNameError(
            f"invalid library name {_short(name)}: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (e.g. 'nuclei' or 'hela-v2')"
        )
    return name


def refuse_reserved(name: str) -> None:
    """Raise :class:`InvalidNameError` where ``name`` is one of :data:`RESERVED_LIBRARY_NAMES`."""
    if name in RESERVED_LIBRARY_NAMES:
        raise InvalidNameError(
            f"invalid library name {name!r}: reserved (the qdrant store keeps its data in a folder of "
            f"that name in the libraries folder); pick another name (e.g. '{name}-1')"
        )


def _bad_char(text: str) -> str | None:
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"):
            return ch
    return None


def check_label(label: object) -> str:
    """Return ``label`` stripped if it follows the label policy, else raise :class:`AnnotationError`."""
    from sam_detect.instances import NEGATIVE, UNKNOWN

    if not isinstance(label, str) or not label.strip():
        raise AnnotationError(f"a label must be a non-empty string, got {_short(label)}")
    text = label.strip()
    if text == NEGATIVE:
        return text
    if len(text) > MAX_LABEL_CHARS:
        raise AnnotationError(
            f"label {_short(text)} is too long: at most {MAX_LABEL_CHARS} characters; use a short class name"
        )
    bad = _bad_char(text)
    if bad is not None:
        raise AnnotationError(
            f"label {_short(text)} holds the control character {bad!r}: a label is one line of "
            "printable text"
        )
    if text.casefold() == UNKNOWN:
        raise AnnotationError(
            f"{text!r} is reserved: the output labels candidates that match no example "
            f"'{UNKNOWN}'; pick another label (or use --negative for look-alikes to suppress)"
        )
    return text


def renamed_label(label: str, taken: set[str]) -> str:
    """A label that follows the rule for ``label``, one stored before it (an old library's
    export): each control character a space, spaces run together, cut to
    :data:`MAX_LABEL_CHARS`; where that is ``unknown`` (any case), empty, or one of ``taken``
    (the other labels: two classes are not merged), a number after it (``unknown-2``)."""
    from sam_detect.instances import NEGATIVE

    text = " ".join("".join(" " if _bad_char(ch) else ch for ch in label).split())
    base = text[:MAX_LABEL_CHARS].strip() or "unnamed"
    name, n = base, 1
    while name.casefold() == "unknown" or name == NEGATIVE or name in taken:
        n += 1
        name = f"{base[: MAX_LABEL_CHARS - len(str(n)) - 1].rstrip()}-{n}"
    return check_label(name)


def display_label(label: str, max_chars: int = 60) -> str:
    """``label`` on one line for a listing: control characters escaped, long labels cut."""
    text = label if _bad_char(label) is None else label.encode("unicode_escape").decode("ascii")
    if len(text) > max_chars:
        text = f"{text[: max_chars - 1]}… ({len(label):,} characters)"
    return text


__all__ = [
    "LIBRARY_NAME_PATTERN",
    "MAX_LABEL_CHARS",
    "RESERVED_LIBRARY_NAMES",
    "check_label",
    "check_existing_library_name",
    "check_library_name",
    "display_label",
    "refuse_reserved",
    "renamed_label",
]
