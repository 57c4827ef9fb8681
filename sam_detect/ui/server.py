"""The web layer of the annotation UI: a FastAPI app over :class:`AnnotationSession`.

    >>> from sam_detect.pipeline import SAMDetect, DetectorConfig
    >>> det = SAMDetect(DetectorConfig(segmenter="classical", embedder="effnet"))  # doctest: +SKIP
    >>> AnnotationUI(det, "images/").run(port=8000)      # serves http://127.0.0.1:8000

The page (``static/``: plain HTML, JavaScript and CSS, no build step) talks to the JSON API
under ``/api``. Errors come back as ``{"error": "..."}`` with a 4xx/5xx status and are shown
in the page. Safety: only image files under the served folder are read; requests that
change anything must carry the ``X-SAM-Detect`` header (a page on another site cannot
send it without a CORS preflight, which is never granted); when bound to a loopback
address, requests for any other ``Host`` are refused (DNS rebinding).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Body, FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from sam_detect._version import __version__
from sam_detect.calibrate import DEFAULT_THRESHOLD
from sam_detect.config import PARAMS, default
from sam_detect.errors import (
    AnnotationError,
    EmbedderMismatchError,
    ImageLoadError,
    LibraryLockedError,
    LibraryNotFoundError,
    ModelNotAvailableError,
    SamDetectError,
)
from sam_detect.instances import NEGATIVE
from sam_detect.ui.images import (
    LimitError,
    NotFoundError,
    PathNotAllowedError,
    UILimits,
    View,
    encode_png,
)
from sam_detect.ui.session import UI_MAX_TOP_K, AnnotationSession

log = logging.getLogger("sam_detect.ui")

CSRF_HEADER = "X-SAM-Detect"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

# most specific first
_STATUS: list[tuple[type[BaseException], int]] = [
    (PathNotAllowedError, 403),
    (NotFoundError, 404),
    (LibraryNotFoundError, 404),
    (LimitError, 413),
    (EmbedderMismatchError, 409),
    (LibraryLockedError, 423),
    (ModelNotAvailableError, 503),
    (ImageLoadError, 422),
    (AnnotationError, 422),
    (SamDetectError, 400),
]


def status_for(exc: BaseException) -> int:
    """The HTTP status for a sam-detect error (4xx: the request; 5xx: the server)."""
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return 500


def _parse_channel(value: Any) -> int | tuple[int, ...] | None:
    """``None``/``""``/``"all"`` → all channels; ``2`` or ``"2"`` → one; ``"0,2"``/``[0, 2]`` → several."""
    if value is None or value == "" or value == "all":
        return None
    bad = AnnotationError(f"channel must be an int, a list of ints or 'all', got {value!r}")
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            items = [int(v) for v in value.split(",") if v.strip()]
        except ValueError as e:
            raise bad from e
    elif isinstance(value, (list, tuple)) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        items = list(value)
    else:
        raise bad
    if not items:
        return None
    return items[0] if len(items) == 1 else tuple(items)


def attachment(name: str) -> str:
    """A ``Content-Disposition`` header for a download named ``name`` (an image's name and
    the format's ending): the name in UTF-8 (RFC 6266's ``filename*``), and in ASCII for
    clients that read only ``filename``. The name went into the header as it was: a name in
    another script (细胞.png, as uploads keep it) was a 500 (headers are Latin-1), a quote
    cut it short and a line break in it dropped the connection."""
    from urllib.parse import quote

    name = "".join("_" if ord(c) < 32 or ord(c) == 127 else c for c in name)
    plain = "".join(c if ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{plain}\"; filename*=UTF-8''{quote(name, safe='')}"


# ---------------------------------------------------------------------------------------
# request bodies
# ---------------------------------------------------------------------------------------
class ViewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str = Field(min_length=1, max_length=1024)
    frame: int = Field(0, ge=0)
    channel: int | list[int] | None = None
    merge: str = "max"

    def view(self) -> View:
        return View(frame=self.frame, channel=_parse_channel(self.channel), merge=self.merge)


class PromptIn(ViewIn):
    point: list[float] | None = Field(None, min_length=2, max_length=2)
    box: list[float] | None = Field(None, min_length=4, max_length=4)
    # the label the object is meant as: a click then follows that class's examples
    label: str | None = Field(None, max_length=100)


class DetectIn(ViewIn):
    # ranges: sam_detect.config.PARAMS; the UI's top_k stops at UI_MAX_TOP_K
    threshold: float | None = Field(None, ge=PARAMS["threshold"].low, le=PARAMS["threshold"].high)
    top_k: int | None = Field(None, ge=PARAMS["top_k"].low, le=UI_MAX_TOP_K)
    # null: as the library's examples say (SAMDetect.detect's drop_border); false keeps the
    # objects the image border cuts, true leaves them out
    drop_border: bool | None = None


class AcceptIn(ViewIn):
    label: str = Field(min_length=1, max_length=100)
    candidates: list[str] = Field(default_factory=list, max_length=1000)
    mask: dict[str, Any] | None = None


class SwitchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str


def create_app(session: AnnotationSession, *, allowed_hosts: list[str] | None = None) -> Any:
    """The FastAPI application serving ``session``.

    ``allowed_hosts``: host names accepted in the ``Host`` header (``None``: any).
    """

    static_dir = Path(str(resources.files("sam_detect.ui") / "static"))
    app = FastAPI(
        title="sam-detect UI", version=__version__, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.session = session

    # -- errors -------------------------------------------------------------------------
    def _relative(text: str) -> str:
        # the browser speaks paths relative to the served folder: its own place stays on the server
        root = str(session.root)
        return text.replace(root + os.sep, "").replace(root, ".")

    @app.exception_handler(SamDetectError)
    async def _sam_error(request: Request, exc: SamDetectError) -> JSONResponse:
        return JSONResponse(
            {"error": _relative(str(exc)), "type": type(exc).__name__}, status_code=status_for(exc)
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for err in exc.errors()[:5]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            parts.append(f"{where or 'request'}: {err.get('msg', 'invalid')}")
        return JSONResponse(
            {"error": "bad request: " + "; ".join(parts), "type": "ValidationError"},
            status_code=422,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            {"error": str(exc.detail), "type": "HTTPError"}, status_code=exc.status_code
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("UI request %s %s failed", request.method, request.url.path)
        return JSONResponse(
            {
                "error": _relative(f"internal error ({type(exc).__name__}: {exc}); see the server log"),
                "type": "InternalError",
            },
            status_code=500,
        )

    # -- request guards -----------------------------------------------------------------
    hosts = None if allowed_hosts is None else {h.lower().strip("[]") for h in allowed_hosts}

    def _release_libraries() -> None:
        # hold a library only while a request works on it: `detect`, `add` and `library
        # show` from the command line then run beside the UI (Edge store)
        sess = app.state.session
        store = getattr(getattr(sess, "detector", None), "store", None)
        release = getattr(store, "release", None)
        if release is not None:
            with sess.lock:
                release()

    _release_libraries()  # what opening the session took

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Any:
        if hosts is not None:
            host = (request.headers.get("host") or "").lower()
            name = host.rsplit(":", 1)[0] if not host.startswith("[") else host[1 : host.find("]")]
            if name.strip("[]") not in hosts:
                return JSONResponse(
                    {"error": f"host {host!r} is not served here", "type": "HostError"},
                    status_code=421,
                )
        if (
            request.method not in ("GET", "HEAD", "OPTIONS")
            and request.headers.get(CSRF_HEADER) != "1"
        ):
            return JSONResponse(
                {
                    "error": f"requests that change data need the header {CSRF_HEADER}: 1 "
                    "(cross-site requests are refused)",
                    "type": "CSRFError",
                },
                status_code=403,
            )
        try:
            response = await call_next(request)
        finally:  # a request that failed unexpectedly (a 500) lets go too: else `add` beside it waits
            await run_in_threadpool(_release_libraries)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        return response

    def view_q(frame: int, channel: str | None, merge: str) -> View:
        if frame < 0:
            raise AnnotationError(f"frame must be >= 0, got {frame}")
        return View(frame=frame, channel=_parse_channel(channel), merge=merge)

    png_headers = {"Cache-Control": "no-store"}

    # -- page ---------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(static_dir / "index.html", headers={"Cache-Control": "no-store"})

    app.mount("/static", StaticFiles(directory=static_dir), name="static")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:  # the browser asks for one on every load: no icon, and no 404 in its console
        return Response(status_code=204)

    # -- api ----------------------------------------------------------------------------
    @app.get("/api/config")
    def config() -> dict[str, Any]:
        s = app.state.session
        det = s.detector
        return {
            "version": __version__,
            "root": s.root.name,
            "library": s.library,
            "negative_label": NEGATIVE,
            "allow_upload": s.images.allow_upload,
            "limits": {
                "max_upload_bytes": s.limits.max_upload_bytes,
                "max_image_pixels": s.limits.max_image_pixels,
            },
            "threshold": det.config.threshold,
            "top_k": det.config.top_k,
            "drop_border": det.config.drop_border,  # null: as the library's examples say
            # what an unset setting means, from the one home of the defaults (sam_detect.config)
            "defaults": {"threshold": DEFAULT_THRESHOLD, "top_k": default("top_k"),
                         "occupancy": default("occupancy")},
            "segmenter": det.config.segmenter,
            "embedder": det.config.embedder,
        }

    @app.get("/api/status")
    def status() -> dict[str, Any]:
        return app.state.session.status()

    @app.get("/api/images")
    def images() -> dict[str, Any]:
        return app.state.session.images.list_images()

    @app.get("/api/image/info")
    def image_info(
        path: str, frame: int = 0, channel: str | None = None, merge: str = "max"
    ) -> dict[str, Any]:
        return app.state.session.info(path, view_q(frame, channel, merge))

    @app.get("/api/image/render")
    def image_render(
        path: str,
        frame: int = 0,
        channel: str | None = None,
        merge: str = "max",
        lo: float = Query(1.0, ge=0, le=100),
        hi: float = Query(99.8, ge=0, le=100),
    ) -> Response:
        rgb = app.state.session.images.render(path, view_q(frame, channel, merge), (lo, hi))
        return Response(encode_png(rgb), media_type="image/png", headers=png_headers)

    @app.get("/api/image/thumb")
    def image_thumb(path: str) -> Response:
        return Response(
            app.state.session.images.thumbnail(path),
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=300"},
        )

    @app.post("/api/prompt")
    def prompt(body: PromptIn) -> dict[str, Any]:
        return app.state.session.prompt(body.path, body.view(), point=body.point, box=body.box,
                                        label=body.label or None)

    @app.post("/api/detect")
    def detect(body: DetectIn) -> dict[str, Any]:
        return app.state.session.detect(
            body.path, body.view(), threshold=body.threshold, top_k=body.top_k, drop_border=body.drop_border
        )

    @app.post("/api/examples")
    def accept(body: AcceptIn) -> dict[str, Any]:
        return app.state.session.accept(
            body.path, body.view(), label=body.label, candidates=body.candidates, mask=body.mask
        )

    @app.delete("/api/examples/{example_id}")
    def delete_example(example_id: str) -> dict[str, Any]:
        return app.state.session.delete_example(example_id)

    @app.get("/api/examples/{example_id}/thumb")
    def example_thumb(example_id: str) -> Response:
        return Response(
            app.state.session.example_thumbnail(example_id),
            media_type="image/png",
            headers={"Cache-Control": "private, max-age=3600"},
        )

    @app.post("/api/undo")
    def undo() -> dict[str, Any]:
        return app.state.session.undo()

    @app.get("/api/annotations")
    def annotations(path: str, frame: int = 0) -> dict[str, Any]:
        return app.state.session.annotations(path, view_q(frame, None, "max"))

    @app.get("/api/library")
    def library() -> dict[str, Any]:
        return app.state.session.library_info()

    @app.post("/api/library/switch")
    def switch(body: SwitchIn = Body(...)) -> dict[str, Any]:
        return app.state.session.switch_library(body.name)

    @app.get("/api/export")
    def export(
        path: str,
        format: str = "coco",  # noqa: A002 - the query parameter's name
        frame: int = 0,
        channel: str | None = None,
        merge: str = "max",
    ) -> Response:
        data, media, name = app.state.session.export(path, view_q(frame, channel, merge), format)
        return Response(data, media_type=media, headers={"Content-Disposition": attachment(name)})

    @app.post("/api/upload")
    async def upload(
        request: Request, name: str = Query(..., min_length=1, max_length=255)
    ) -> dict[str, Any]:
        s = app.state.session.images
        if not s.allow_upload:
            raise PathNotAllowedError("uploads are turned off for this session")
        limit = s.limits.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise LimitError(
                f"upload of {int(declared):,} bytes exceeds the limit of {limit:,} bytes"
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise LimitError(f"upload exceeds the limit of {limit:,} bytes")
            chunks.append(chunk)
        return await run_in_threadpool(s.save_upload, name, b"".join(chunks))

    return app


def _stopping_server(base: type, session: AnnotationSession) -> type:
    """``base`` (``uvicorn.Server``) saying what Ctrl+C waits for: a request at work (an accept
    writing hundreds of examples, a detect on a mosaic) is finished before the process ends, so
    that the library is written whole, and that took tens of seconds with nothing said; a
    second Ctrl+C printed uvicorn's tracebacks of the cancelled request, and still waited."""

    def busy() -> bool:
        if not session.lock.acquire(blocking=False):  # a request's thread holds it
            return True
        session.lock.release()
        return False

    class StoppingServer(base):  # type: ignore[misc, valid-type]
        def handle_exit(self, sig: int, frame: Any) -> None:
            again = self.should_exit
            super().handle_exit(sig, frame)
            if not busy():
                return
            if again:  # the cancelled request's tracebacks say nothing to the user
                logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
                msg = "still finishing the request at work; the UI stops when its library is written"
            else:
                msg = "stopping once the request at work is done, so that what it writes to the library is written whole"
            print(f"sam-detect: {msg}", file=sys.stderr, flush=True)

    return StoppingServer


class AnnotationUI:
    """Interactive annotation in the browser over a detector and a folder of images.

    Args:
        detector: a :class:`~sam_detect.pipeline.SAMDetect` (the UI does not close it).
        image_dir: the folder whose images are browsed (default: the current folder).
        thumbnail_dir, limits, allow_upload, prefetch: see :class:`AnnotationSession`.

    ``run()`` serves until interrupted; ``start()`` serves from a background thread and
    returns the URL (``stop()`` ends it) — for tests, benchmarks and notebooks.
    """

    def __init__(
        self,
        detector: Any,
        image_dir: str | os.PathLike = ".",
        *,
        thumbnail_dir: str | os.PathLike | None = None,
        limits: UILimits | None = None,
        allow_upload: bool = True,
        prefetch: bool = True,
    ) -> None:
        self.session = AnnotationSession(
            detector,
            image_dir,
            thumbnail_dir=thumbnail_dir,
            limits=limits,
            allow_upload=allow_upload,
            prefetch=prefetch,
        )
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def app(self, host: str = "127.0.0.1") -> Any:
        """The ASGI app; ``Host`` headers are checked when ``host`` is a loopback address."""
        allowed = None
        if host in LOOPBACK_HOSTS:
            allowed = list(LOOPBACK_HOSTS)
        return create_app(self.session, allowed_hosts=allowed)

    def _server_for(self, host: str, port: int) -> Any:
        try:
            import uvicorn
        except ImportError as e:  # pragma: no cover - a declared dependency
            raise ModelNotAvailableError(
                "the UI needs uvicorn; install it with `pip install uvicorn`"
            ) from e
        config = uvicorn.Config(
            self.app(host), host=host, port=port, log_level="warning", access_log=False
        )
        return _stopping_server(uvicorn.Server, self.session)(config)

    def run(self, host: str = "127.0.0.1", port: int = 8000, *, open_browser: bool = False) -> None:
        """Serve until Ctrl+C. ``open_browser`` opens the page in the default browser."""
        server = self._server_for(host, port)
        if open_browser:
            import webbrowser

            shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
            threading.Timer(1.0, webbrowser.open, args=(f"http://{shown}:{port}/",)).start()
        try:
            server.run()
        finally:
            self.session.close()

    def start(self, host: str = "127.0.0.1", port: int = 0, timeout: float = 20.0) -> str:
        """Serve from a daemon thread; returns the base URL (``port=0`` picks a free port)."""
        if self._server is not None:
            raise SamDetectError("the UI server is already running; call stop() first")
        server = self._server_for(host, port)
        server.install_signal_handlers = lambda: None  # not the main thread
        thread = threading.Thread(target=server.run, name="sam-detect-ui", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                raise SamDetectError(f"the UI server did not start on {host}:{port} (port in use?)")
            time.sleep(0.02)
        self._server, self._thread = server, thread
        sock = server.servers[0].sockets[0]
        real_port = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{real_port}"

    def stop(self) -> None:
        """Stop a server started with :meth:`start` and release the session's resources."""
        if self._server is not None:
            self._server.should_exit = True
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._server, self._thread = None, None
        self.session.close()

    def __enter__(self) -> AnnotationUI:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


__all__ = ["CSRF_HEADER", "AnnotationUI", "create_app", "status_for"]
