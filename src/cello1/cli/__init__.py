"""The ``cello1`` command line: a thin layer over the library API.

Each command lives in its own module and imports heavy libraries only when it runs,
so ``cello1 --help`` stays instant.
"""

from __future__ import annotations

import signal
import sys

import typer

from cello1.cli import (
    annotate_cmd,
    audit_cmd,
    build_cmd,
    demo_cmd,
    distill_cmd,
    eval_cmd,
    export_cmd,
    solve_cmd,
    train_cmd,
)
from cello1.cli._common import click_exceptions

app = typer.Typer(
    name="cello1",
    help="Build, solve, score, train and annotate CellPuzzles (Cell-o1).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _options(debug: bool = typer.Option(False, "--debug", help="Show the full traceback of any error.")) -> None:
    """Build, solve, score, train and annotate CellPuzzles (Cell-o1)."""


app.command("build")(build_cmd.build)
app.command("solve")(solve_cmd.solve)
app.command("eval")(eval_cmd.eval_)
app.command("distill")(distill_cmd.distill)
app.command("annotate")(annotate_cmd.annotate)
app.command("audit")(audit_cmd.audit)
app.command("demo")(demo_cmd.demo)
app.add_typer(train_cmd.app, name="train")
app.add_typer(export_cmd.app, name="export")


def _terminated(signum: int, frame: object) -> None:
    # SIGTERM (a scheduler ending the job) unwinds like Ctrl-C: files closed, locks released
    raise SystemExit(128 + signum)


def main() -> None:
    """The ``cello1`` console script: usage errors too end as one ``error:`` line."""
    signal.signal(signal.SIGTERM, _terminated)
    try:
        code = app(standalone_mode=False)
    except click_exceptions.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx is not None else "cello1"
        typer.echo(f"error: {exc.format_message()} (see `{command} --help`)", err=True)
        sys.exit(2)
    except typer.Abort:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except click_exceptions.ClickException as exc:
        typer.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["app", "main"]
