"""Fault injection for the write journal: SIGKILL library writes at seeded moments, then
judge what the next open finds (``tests/test_crash_safety.py``, ``scripts/kill_writes.py``).

A trial copies a prepared libraries folder (library ``base``: 11 examples labelled
``base``; for ``delete`` also ``n`` labelled ``doomed``), starts one write, kills it with
SIGKILL after a seeded delay, then opens the folder again (which recovers an interrupted
batch, see :mod:`sam_detect.store.journal`) and checks the write's examples, by id:

* ``add``: ``journal.add`` of ``n`` vectors into ``base`` (what ``sam-detect add`` and the
  UI's accept call after embedding): ``base`` holds its 11 ids, or those and ``n`` more;
* ``import``: ``import_library(FILE, name="new")`` (``library import FILE --as new``):
  ``new`` is absent, or holds exactly the file's ids;
* ``merge``: ``import_library(FILE, name="base", merge=True)`` (``library import --merge``):
  ``base`` holds its 11 ids, or those and every id of the file;
* ``delete``: ``journal.delete(label="doomed")`` (``library delete base --label doomed``,
  and the UI's delete by id through the same function): ``base`` holds its 11 ids and every
  ``doomed`` one, or only its 11;

and that the library is usable afterwards (labels, a search, a further add, no journal).

Two ways to start the write. :class:`ForkDriver` (the tests): one helper process imports
the store code once, then forks a child per trial that runs the write function above and
is killed; no interpreter start-up per kill, so the kills land in the write itself.
``driver="cli"`` (the script): a fresh ``python -m sam_detect library import ...`` or
``library delete --label`` (``python -c`` running the write function for add) per trial,
start-up included.
"""

from __future__ import annotations

import json
import logging
import os
import random
import select
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

DIM = 32
BASE = 11
SCENARIOS = ("add", "import", "merge", "delete")
#: what a kill may leave: the whole change (``all``), none of it (``none``: the kill came
#: before the journal), or a batch the next open recovered (``rolled_back`` for an add,
#: ``finished`` for a delete). Anything else (``partial:...``, ``broken:...``) is a bug.
GOOD_OUTCOMES = frozenset({"all", "none", "rolled_back", "finished"})


@dataclass
class Setup:
    """A prepared trial: the template folder to copy, the export file, the ids to expect."""

    store: str
    scenario: str
    n: int
    template: Path
    archive: Path
    base_ids: list[str]
    change_ids: list[str]  # the file's ids (import, merge), the doomed ids (delete)


def _open(store: str, folder: Path) -> Any:
    from sam_detect.store import create_store

    return create_store(store, path=str(folder))


def prepare(workdir: Path, store: str, scenario: str, n: int) -> Setup:
    """A template libraries folder and an export file of ``n`` examples for one scenario."""
    from sam_detect.store.base import LibraryMeta
    from sam_detect.store.exchange import export_library
    from sam_detect.store.memory import MemoryStore

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {', '.join(SCENARIOS)}")
    workdir.mkdir(parents=True, exist_ok=True)
    template = workdir / f"template-{store}-{scenario}"
    shutil.rmtree(template, ignore_errors=True)
    rng = np.random.default_rng(0)
    s = _open(store, template)
    try:
        s.create_library(LibraryMeta(name="base", embedder_id="kill-test", dim=DIM))
        base_ids = s.add("base", rng.normal(size=(BASE, DIM)), ["base"] * BASE)
        doomed: list[str] = []
        if scenario == "delete":
            doomed = s.add("base", rng.normal(size=(n, DIM)), ["doomed"] * n)
    finally:
        s.close()
    archive = workdir / f"export-{n}.samlib.zip"
    src = MemoryStore()
    src.create_library(LibraryMeta(name="exported", embedder_id="kill-test", dim=DIM))
    file_ids = src.add("exported", rng.normal(size=(n, DIM)), [f"c{i % 3}" for i in range(n)])
    export_library(src, "exported", archive, overwrite=True)
    change = doomed if scenario == "delete" else file_ids if scenario != "add" else []
    return Setup(store, scenario, n, template, archive, sorted(base_ids), sorted(change))


def write(scenario: str, store: str, folder: str, archive: str, n: int, journaled: bool = True) -> None:
    """The write a trial kills: the journaled code of ``add``, ``import``, ``import --merge``
    and deleting examples, on precomputed vectors (no embedder). ``journaled=False`` (``add``
    and ``delete`` only) calls the store directly: the control that shows what a kill does
    without the journal."""
    from sam_detect.store import journal
    from sam_detect.store.exchange import import_library

    s = _open(store, Path(folder))
    try:
        if scenario == "add":
            v = np.random.default_rng(7).normal(size=(n, DIM)).astype(np.float32)
            labels, payloads = ["added"] * n, [{"source": "kill-test"}] * n
            if journaled:
                journal.add(s, "base", v, labels, payloads)
            else:
                s.add("base", v, labels, payloads)
        elif scenario == "import":
            import_library(s, archive, name="new")
        elif scenario == "merge":
            import_library(s, archive, name="base", merge=True)
        elif scenario == "delete":
            if journaled:
                journal.delete(s, "base", label="doomed")
            else:
                s.delete("base", label="doomed")
        else:
            raise ValueError(f"unknown scenario {scenario!r}")
    finally:
        s.close()


# -- starting and killing a write ------------------------------------------------------------


def _env() -> dict[str, str]:
    repo = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": repo + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _wait(pid: int, timeout: float | None) -> int | None:
    """Wait up to ``timeout`` s for child ``pid``; its exit status, or None if still running."""
    deadline = None if timeout is None else time.monotonic() + timeout
    fd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    try:
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            if fd is not None:
                select.select([fd], [], [], left)
            else:  # pragma: no cover - kernels before 5.3
                time.sleep(min(0.002, left if left is not None else 0.002))
    finally:
        if fd is not None:
            os.close(fd)


def _serve() -> None:
    """The fork driver's helper process: one JSON request per stdin line, one reply each."""
    # import everything a write touches once, before any fork (the children inherit it)
    import qdrant_client.local.qdrant_local  # noqa: F401
    from qdrant_client import models  # noqa: F401

    import sam_detect.store.edge
    import sam_detect.store.exchange
    import sam_detect.store.memory
    import sam_detect.store.qdrant  # noqa: F401

    sam_detect.store.edge._edge()
    out = sys.stdout
    devnull = os.open(os.devnull, os.O_WRONLY)
    for line in sys.stdin:
        req = json.loads(line)
        t = time.perf_counter()
        pid = os.fork()
        if pid == 0:  # the child: run the write, never return into the loop
            code = 1
            try:
                os.dup2(devnull, 1)
                write(req["scenario"], req["store"], req["folder"], req["archive"], req["n"],
                      req.get("journaled", True))
                code = 0
            except BaseException as e:  # reported through the exit status
                print(f"kill-test write failed: {type(e).__name__}: {e}", file=sys.stderr)
            finally:
                os._exit(code)
        rc = _wait(pid, req.get("delay"))
        killed = rc is None
        if killed:
            os.kill(pid, signal.SIGKILL)
            rc = _wait(pid, None)  # reaped: a zombie would count as a live writer
        out.write(json.dumps({"killed": killed, "rc": rc, "elapsed": time.perf_counter() - t}) + "\n")
        out.flush()


class ForkDriver:
    """A helper process that forks one child per write and SIGKILLs it after ``delay``
    seconds (it has imported the store code already, so a child starts writing at once)."""

    def __init__(self, log: Path | None = None) -> None:
        self._log = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from sam_detect.store.killtest import _serve; _serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            env=_env(),
        )

    def run(self, setup: Setup, folder: Path, delay: float | None,
            journaled: bool = True) -> dict[str, Any]:
        req = {"scenario": setup.scenario, "store": setup.store, "folder": str(folder),
               "archive": str(setup.archive), "n": setup.n, "delay": delay,
               "journaled": journaled}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the kill-test helper process died (exit {self.proc.wait()})")
        return json.loads(line)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._log is not subprocess.DEVNULL:
            self._log.close()

    def __enter__(self) -> ForkDriver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cli_command(setup: Setup, folder: Path) -> list[str]:
    """A fresh process per write: the real CLI for import, merge and delete, ``python -c``
    running :func:`write` for add (the CLI's add embeds first)."""
    py = sys.executable
    where = ["--store", setup.store, "--library-path", str(folder)]
    if setup.scenario == "delete":
        return [py, "-m", "sam_detect", "library", "delete", "base", "--label", "doomed", "--yes",
                *where]
    if setup.scenario in ("import", "merge"):
        cmd = [py, "-m", "sam_detect", "library", "import", str(setup.archive), *where]
        return cmd + (["--as", "new"] if setup.scenario == "import" else ["--as", "base", "--merge"])
    code = "import sys; from sam_detect.store.killtest import write; write(*sys.argv[1:5], int(sys.argv[5]))"
    return [py, "-c", code, setup.scenario, setup.store, str(folder), str(setup.archive), str(setup.n)]


def _run_cli(setup: Setup, folder: Path, delay: float | None) -> dict[str, Any]:
    t = time.perf_counter()
    proc = subprocess.Popen(cli_command(setup, folder), env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        rc = proc.wait(timeout=delay)
        killed = False
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        rc = proc.wait()
        killed = True
    return {"killed": killed, "rc": rc, "elapsed": time.perf_counter() - t}


def copy_sparse(src: Path, dst: Path) -> None:
    """Copy a libraries folder keeping holes: Edge preallocates ~145 MB of sparse files per
    library, which ``shutil.copytree`` would write out in full on every trial."""
    cp = shutil.which("cp")
    if cp and sys.platform.startswith("linux"):
        subprocess.run([cp, "-r", "--sparse=always", str(src), str(dst)], check=True)
    else:  # pragma: no cover - no GNU cp
        shutil.copytree(src, dst)


# -- judging what a kill left ------------------------------------------------------------------


class _Recoveries(logging.Handler):
    """Counts the journal's recoveries: a kill that landed inside a batch."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.seen = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "interrupted" in record.getMessage():
            self.seen += 1


def judge(setup: Setup, folder: Path) -> str:
    """What the folder holds after a kill: ``all``, ``none``, ``rolled_back``, ``finished``
    (see :data:`GOOD_OUTCOMES`), ``partial:<count>`` or ``broken:<why>``."""
    handler = _Recoveries()
    logger = logging.getLogger("sam_detect")
    logger.addHandler(handler)
    try:
        out = _judge(setup, folder)
    finally:
        logger.removeHandler(handler)
    if handler.seen and out == "none" and setup.scenario != "delete":
        return "rolled_back"
    if handler.seen and out == "all" and setup.scenario == "delete":
        return "finished"
    return out


def _judge(setup: Setup, folder: Path) -> str:
    from sam_detect.store.exchange import read_examples
    from sam_detect.store.journal import pending_of

    try:
        s = _open(setup.store, folder)
    except Exception as e:
        return f"broken:open:{type(e).__name__}: {e}"
    try:
        base, change, sc = set(setup.base_ids), set(setup.change_ids), setup.scenario
        if sc == "import":
            if not s.has_library("new"):
                outcome = "none"
            else:
                ids = set(read_examples(s, "new")[0])
                outcome = "all" if ids == change else f"partial:{len(ids)}"
        else:
            ids = set(read_examples(s, "base")[0])
            if sc == "add":
                outcome = ("none" if ids == base else "all"
                           if base <= ids and len(ids) == len(base) + setup.n else f"partial:{len(ids)}")
            elif sc == "merge":
                outcome = "none" if ids == base else "all" if ids == base | change else f"partial:{len(ids)}"
            else:  # delete
                outcome = "none" if ids == base | change else "all" if ids == base else f"partial:{len(ids)}"
        for name in s.list_libraries():
            if pending_of(s.get_meta(name)) is not None:
                return f"broken:journal left in {name}"
        stray = [d.name for d in folder.iterdir() if d.name.endswith(".tmp") or (
            d.name.startswith(".") and ("creating-" in d.name or "deleting-" in d.name))]
        if stray:
            return f"broken:left behind {stray[0]}"
        # still usable: read, search, write
        s.labels("base")
        s.search("base", np.ones((1, DIM), np.float32), 3)
        s.add("base", np.ones((1, DIM), np.float32), ["after"])
        return outcome
    except Exception as e:
        return f"broken:{type(e).__name__}: {' '.join(str(e).split())[:160]}"
    finally:
        s.close()


def run_trials(setup: Setup, workdir: Path, kills: int, seed: int, driver: Any = "fork",
               spread: float = 1.1, journaled: bool = True) -> dict[str, Any]:
    """Kill ``kills`` writes of ``setup`` at seeded moments, uniform in [0, spread x the time
    an uninterrupted write takes]; returns the outcome counts (``outcomes``), the
    uninterrupted time (``full_s``) and how many writes were killed before they ended
    (``killed``).

    ``driver``: a :class:`ForkDriver` (shared between calls), ``"fork"`` (one is started and
    stopped here) or ``"cli"`` (a fresh process per write, :func:`cli_command`).
    ``journaled=False``: the control, writing past the journal (fork driver only).
    """
    own = driver == "fork"
    drv = ForkDriver(workdir / "kill-test.log") if own else driver
    if drv == "cli":
        if not journaled:
            raise ValueError("the unjournaled control runs with the fork driver only")

        def run(f: Path, d: float | None) -> dict[str, Any]:
            return _run_cli(setup, f, d)
    else:

        def run(f: Path, d: float | None) -> dict[str, Any]:
            return drv.run(setup, f, d, journaled)
    folder = workdir / f"trial-{setup.store}-{setup.scenario}"

    def fresh() -> Path:
        shutil.rmtree(folder, ignore_errors=True)
        copy_sparse(setup.template, folder)
        return folder

    try:
        # two uninterrupted writes: each must leave all of the change; the shorter time
        # sets the range of the kill moments (on a loaded machine one run can take twice
        # as long, and an overestimate would put most kills after the write has ended)
        times = []
        for _ in range(2):
            r = run(fresh(), None)
            if r["rc"] != 0:
                raise RuntimeError(f"an uninterrupted {setup.scenario} on {setup.store} failed "
                                   f"(exit {r['rc']}); see {workdir / 'kill-test.log'}")
            got = judge(setup, folder)
            if got != "all":
                raise RuntimeError(f"an uninterrupted {setup.scenario} on {setup.store} left {got}")
            times.append(r["elapsed"])
        full = min(times)
        rng = random.Random(seed)
        outcomes: Counter = Counter()
        killed = 0
        for _ in range(kills):
            r = run(fresh(), rng.uniform(0.0, spread * full))
            killed += bool(r["killed"])
            outcomes[judge(setup, folder)] += 1
    finally:
        if own:
            drv.close()
        shutil.rmtree(folder, ignore_errors=True)
    return {"outcomes": dict(outcomes), "full_s": round(full, 3), "killed": killed}
