"""The ``cello1`` command line: a thin layer over the library API.

Each command lives in its own module and imports heavy libraries only when it runs,
so ``cello1 --help`` stays instant.
"""

from __future__ import annotations

import typer

from cello1.cli import (
    annotate_cmd,
    build_cmd,
    demo_cmd,
    distill_cmd,
    eval_cmd,
    export_cmd,
    solve_cmd,
    train_cmd,
)

app = typer.Typer(
    name="cello1",
    help="Build, solve, score, train and annotate CellPuzzles (Cell-o1).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

app.command("build")(build_cmd.build)
app.command("solve")(solve_cmd.solve)
app.command("eval")(eval_cmd.eval_)
app.command("distill")(distill_cmd.distill)
app.command("annotate")(annotate_cmd.annotate)
app.command("demo")(demo_cmd.demo)
app.add_typer(train_cmd.app, name="train")
app.add_typer(export_cmd.app, name="export")


def main() -> None:
    app()


__all__ = ["app", "main"]
