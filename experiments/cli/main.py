"""Entry point: a click group whose subcommands are imported only when used.

Every user error is a :class:`ShufflenasError`: it is printed as one line on stderr with exit code
2 (usage) or its own ``exit_code``; a traceback means a bug.
"""

from __future__ import annotations

import importlib
import sys

import click

from search_space.errors import ShufflenasError

#: subcommand name -> "module:attribute". A new command is one module plus one line here.
COMMANDS: dict[str, str] = {
    "arch": "experiments.cli.arch:arch",
    "export": "experiments.cli.export:export",
    "latency": "experiments.cli.latency:latency",
    "search": "experiments.cli.search:search",
    "report": "experiments.cli.report:report",
    "study": "experiments.cli.study:study",
    "cache": "experiments.cli.cache:cache",
    "train": "experiments.cli.train:train",
    "evaluate": "experiments.cli.evaluate:evaluate",
    "supernet": "experiments.cli.supernet:supernet",
    "finalists": "experiments.cli.finalists:finalists",
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module on first use."""

    def __init__(self, *args, lazy: dict[str, str] | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module_name, attr = self.lazy[name].split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name and exc.name.startswith("experiments.cli"):
                    return None  # the command is not part of this build
                raise
            return getattr(module, attr)
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="shufflenas")
def cli() -> None:
    """Latency-aware neural architecture search over ShuffleNetV2.

    Architectures (ARCH) are a preset name (0.5x, 1.0x, 1.5x, 2.0x, 2.0x-se, 1.0x*, ...), a compact
    string such as stem24_w116-232-464_d4-8-4_r0.5-0.5-0.5_k3-3-3_c1024, or a JSON file.
    """


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and a non-zero exit code."""
    try:
        cli.main(args=argv, prog_name="shufflenas", standalone_mode=False)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.UsageError as exc:
        hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        click.echo(f"error: {_one_line(exc.format_message())}{hint}", err=True)
        return exc.exit_code
    except click.ClickException as exc:
        click.echo(f"error: {_one_line(exc.format_message())}", err=True)
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted: trials in flight stay unfinished and are re-run when the same command resumes", err=True)
        return 130
    except ShufflenasError as exc:
        click.echo(f"error: {_one_line(str(exc))}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted: trials in flight stay unfinished and are re-run when the same command resumes",
                   err=True)
        return 130
    return 0


def _one_line(text: str) -> str:
    return " ".join(text.split()) or "unknown error"


def entry() -> None:
    sys.exit(main())
