"""How the ``qdrant`` store reads qdrant-client's failures and warnings: which server
errors are worth a retry, which mean a refused key, one-line descriptions of them, and
the local mode's warnings that are muted."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

# HTTP statuses and gRPC codes worth retrying: the server is busy, restarting or overloaded.
_RETRY_STATUS = {408, 429, 500, 502, 503, 504}
_RETRY_GRPC = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}

# qdrant-client's local mode warns about sizes (we warn ourselves, naming a better
# backend) and ignored index settings (we do not create indexes there); nothing else is muted.
_MUTED_LOCAL_WARNINGS = (
    r"Local mode is not recommended",
    r"Payload indexes have no effect in the local Qdrant",
    r"Local mode performs exact",
)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Mute qdrant-client's local-mode chatter (see ``_MUTED_LOCAL_WARNINGS``)."""
    with warnings.catch_warnings():
        for pattern in _MUTED_LOCAL_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        yield


def classify(e: Exception) -> str:
    """What a server's failure is: ``"auth"`` (key refused), ``"transient"`` (busy,
    restarting, unreachable: worth retrying) or ``"other"``."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(e, UnexpectedResponse):
        if e.status_code in (401, 403):
            return "auth"
        return "transient" if e.status_code in _RETRY_STATUS else "other"
    if isinstance(e, (ResponseHandlingException, ConnectionError, TimeoutError)):
        return "transient"
    code = getattr(e, "code", None)
    if callable(code):  # grpc.RpcError
        with contextlib.suppress(Exception):
            name = code().name
            if name in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
                return "auth"
            if name in _RETRY_GRPC:
                return "transient"
    return "other"


def is_missing_collection(e: BaseException) -> bool:
    from qdrant_client.http.exceptions import UnexpectedResponse

    if isinstance(e, UnexpectedResponse):
        return e.status_code == 404
    return (
        isinstance(e, ValueError)
        and "not found" in str(e).lower()
        and "collection" in str(e).lower()
    )


def short(e: BaseException) -> str:
    """One line describing a client exception (their messages can span many lines)."""
    from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

    if isinstance(e, UnexpectedResponse):
        text = f"HTTP {e.status_code} {e.reason_phrase}".strip()
    elif isinstance(e, ResponseHandlingException):
        text = f"{type(e.source).__name__}: {e.source}"
    else:
        text = f"{type(e).__name__}: {e}"
    text = " ".join(text.split())
    return text if len(text) <= 160 else text[:157] + "..."
