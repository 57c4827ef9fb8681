"""Exceptions raised by sam-detect.

Every error a user can cause derives from :class:`SamDetectError`; the CLI turns it into a
one-line ``Error: ...`` message and a non-zero exit code, never a traceback. Messages say
what was expected, what arrived, and what to do.
"""

from __future__ import annotations


class SamDetectError(Exception):
    """Base class for errors caused by input, configuration or environment."""


class ImageLoadError(SamDetectError, ValueError):
    """An image file is missing, unreadable, truncated, empty or of an unsupported shape."""


class FrameRequiredError(ImageLoadError):
    """A file holding a stack of several frames was read without a frame given;
    ``n_frames`` is how many it holds."""

    def __init__(self, message: str, n_frames: int) -> None:
        super().__init__(message)
        self.n_frames = int(n_frames)

    def __reduce__(self):  # pickled with its count (the default passes the message alone)
        return type(self), (str(self), self.n_frames)


class AnnotationError(SamDetectError, ValueError):
    """An annotation (mask, box, point, polygon, label image, file) is invalid."""


class LibraryError(SamDetectError):
    """A library is missing, incompatible, locked or corrupt."""


class LibraryNotFoundError(LibraryError, KeyError):
    """The named library does not exist in the store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class EmbedderMismatchError(LibraryError, ValueError):
    """The library was built with another embedder, fade or crop setting."""


class LibraryPathError(LibraryError, ValueError):
    """The library location cannot hold libraries (a file where a folder is needed)."""


class LibraryLockedError(LibraryError):
    """Another process holds the embedded library folder."""


class LibraryUnwritableError(LibraryLockedError):
    """The embedded library's folder cannot be written (a read-only disk or folder): it is
    not damaged, but the store opens a library for writing, so it cannot be used there."""


class LibraryDamagedError(LibraryError):
    """A library's files are unreadable or disagree with its metadata (``library check``).

    ``what``: the damage alone, without the message's advice to run ``library check`` (what
    ``library check`` and ``library repair`` say of it themselves)."""

    def __init__(self, message: str = "", what: str | None = None) -> None:
        super().__init__(message)
        self.what = what or message


class ModelNotAvailableError(SamDetectError):
    """Model weights are missing and cannot be fetched (offline, bad path, corrupt file)."""


class DeviceNotAvailableError(SamDetectError, ValueError):
    """The requested torch device (``cuda``, ``mps``) does not exist on this machine."""


class InvalidNameError(SamDetectError, ValueError):
    """A library name breaks the name policy (see :mod:`sam_detect.names`)."""


class SettingError(SamDetectError, ValueError):
    """A setting out of its range or of the wrong kind, or an unknown component or option
    name (``top_k=0``, ``store="nosuch"``, ``drop_border="no"``)."""


class UnknownOptionError(SettingError, TypeError):
    """A keyword option a component does not take (``create_embedder("clip", ckpt=...)``): a
    setting error, and the ``TypeError`` Python gives a wrong keyword."""
