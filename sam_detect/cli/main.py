"""``sam-detect``: the command-line entry point.

Subcommands live in their own modules and are imported only when invoked, so
``sam-detect --help`` stays fast and never imports torch.
"""

from __future__ import annotations

import importlib

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

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


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
            raise click.ClickException(str(e)) from e

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


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    cli.main(args=argv, prog_name="sam-detect")


if __name__ == "__main__":  # pragma: no cover
    main()
