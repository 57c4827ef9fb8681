"""``sam-detect``: the command-line entry point.

Subcommands live in their own modules and are imported only when invoked, so
``sam-detect --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys

import click

from sam_detect._version import __version__

# command name -> (module, attribute, one-line help shown by `sam-detect --help`)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "detect": ("sam_detect.cli.detect", "detect", "Find and label objects in images, folders or globs."),
    "add": ("sam_detect.cli.add", "add", "Add labelled examples to a library."),
    "library": ("sam_detect.cli.library", "library", "List, show, delete, export and import libraries."),
    "eval": ("sam_detect.cli.eval", "eval_cmd", "Measure accuracy with the few-shot protocol."),
    "video": ("sam_detect.cli.video", "video", "Detect and track objects in video, cameras and stacks."),
    "ui": ("sam_detect.cli.ui", "ui", "Annotate and detect interactively in the browser."),
    "models": ("sam_detect.cli.models", "models", "List and download SAM2 and CLIP weights."),
    "refine": ("sam_detect.cli.refine", "refine", "Refine rough annotations into SAM2 masks."),
}

#: Set to 1 to see the traceback of an unexpected error instead of its one-line summary.
DEBUG_ENV = "SAM_DETECT_DEBUG"

#: Inherited by every command: ``-h``, the width of ``--help``, and every option's default
#: shown there (an option whose default is None, False or empty shows none).
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100, "show_default": True}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name in COMMANDS if _available(name)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS or not _available(name):
            return None
        module, attr, _ = COMMANDS[name]
        return getattr(importlib.import_module(module), attr)

    def invoke(self, ctx: click.Context):
        from sam_detect.errors import SamDetectError

        try:
            return super().invoke(ctx)
        except SamDetectError as e:
            # A user's mistake or a missing resource: one line, exit 1, no traceback.
            raise click.ClickException(one_line(str(e))) from e
        except click.exceptions.ClickException as e:
            e.message = one_line(e.message)  # a value with a newline must not break the one line
            raise
        except (click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:
            raise  # the reader went away: main() ends quietly
        except OSError as e:
            raise click.ClickException(one_line(_os_error(e))) from e
        except (KeyboardInterrupt, SystemExit, GeneratorExit):
            raise
        except Exception as e:
            if _debugging():
                raise
            # Not a user's mistake but a bug: still one line, with the way to see the details.
            raise click.ClickException(
                one_line(
                    f"internal error ({type(e).__name__}: {e}); please report it, and rerun with "
                    f"{DEBUG_ENV}=1 for the traceback"
                )
            ) from e

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _available(name: str) -> bool:
    return importlib.util.find_spec(COMMANDS[name][0]) is not None


@click.group(cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "-V", "--version", prog_name="sam-detect")
def cli() -> None:
    """Few-shot instance detection: show a few labelled examples, find and label every
    similar object in images, folders, microscopy stacks and video.

    \b
    Quick start:
      sam-detect add frame0.tif --label nucleus --labels frame0_labels.tif
      sam-detect detect frame5.tif --json
    Run `sam-detect COMMAND -h` for each command's options.
    """


def one_line(message: str, limit: int = 600) -> str:
    """``message`` on one line (an error is one ``Error:`` line, whatever it quotes)."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _os_error(e: OSError) -> str:
    what = e.strerror or str(e) or type(e).__name__
    if e.filename is not None:
        return f"{e.filename}: {what}"
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"cannot write the output: {what} (free some space or write elsewhere)"
    return what


def _silence_stdout() -> None:
    """Point stdout at /dev/null so Python's own flush at exit cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _debugging() -> bool:
    """Whether ``SAM_DETECT_DEBUG`` is on: any word but an empty one or an off word."""
    from sam_detect.config import ENV_OFF

    return os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", *ENV_OFF)


def _quiet_readers() -> None:
    """tifffile logs what it finds wrong in a file (``<tifffile.TiffPages @8> invalid offset to
    first page``) before it raises, and Python prints that above the one ``Error:`` line that
    says the same in words; its log is shown with ``SAM_DETECT_DEBUG`` only."""
    import logging

    if not _debugging():
        logging.getLogger("tifffile").setLevel(logging.CRITICAL)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: results on stdout, one ``Error:`` line on stderr."""
    if argv is None:  # the process's own command line, not a call from a program or a test
        try:
            os.getcwd()
        except FileNotFoundError:  # torch's libraries then fail to load, with oneMKL's FATAL ERROR
            click.echo("Error: the current folder no longer exists (deleted or moved?); cd to another "
                       "folder and run the command again", err=True)
            sys.exit(2)
        from sam_detect.models.torch_utils import freeze_gc_after_torch_import

        freeze_gc_after_torch_import()
        _quiet_readers()
    code = 0
    try:
        rv = cli.main(args=argv, prog_name="sam-detect", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0  # click returns ctx.exit()'s code here
    except click.exceptions.Abort as e:
        if isinstance(e.__context__, KeyboardInterrupt):  # Ctrl-C before a command's own handling (start-up)
            click.echo("sam-detect: interrupted", err=True)
            code = 130
        else:  # a question answered no
            click.echo("Aborted!", err=True)
            code = 1
    except click.exceptions.ClickException as e:
        e.show()
        code = e.exit_code
    except click.exceptions.Exit as e:
        code = e.exit_code
    except BrokenPipeError:  # `sam-detect ... | head`: the reader closed the pipe
        _silence_stdout()
        sys.exit(1)
    except OSError as e:  # raised outside a command (e.g. writing --help to a full disk)
        _silence_stdout()
        click.echo(f"Error: {one_line(_os_error(e))}", err=True)
        sys.exit(1)
    # Results are buffered: flush them now, so a full disk or a closed pipe is reported here
    # as one line instead of an "Exception ignored" report when Python exits.
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        code = code or 1
    except OSError as e:
        _silence_stdout()
        click.echo(f"Error: cannot write the output: {e.strerror or e}", err=True)
        code = code or 1
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
