"""``cello1 eval PRED [PRED ...]``: the paper's metrics with bootstrap CIs, side by side.

A thin layer over :func:`cello1.scoring.evaluate` / :func:`cello1.scoring.compare`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from cello1.cli._common import cli_errors, command_line

_PLOT_SUFFIXES = {".png", ".pdf", ".svg"}


@cli_errors
def eval_(
    ctx: typer.Context,
    predictions: list[Path] = typer.Argument(
        ...,
        help="Prediction files (cello1 solve JSONL, or JSON/JSONL records with 'answer'/'assistant_msg' and "
        "'prediction'), or folders of .json files. Several = side by side with a paired bootstrap vs the first.",
    ),
    json_out: Path | None = typer.Option(
        None, "--json", help="Write metrics as JSON (a list of objects for several inputs)."
    ),
    markdown: Path | None = typer.Option(None, "--markdown", help="Write the tables as Markdown."),
    plot: Path | None = typer.Option(None, "--plot", help="Plot accuracy vs N per input (.png, .pdf or .svg)."),
    report: Path | None = typer.Option(
        None, "--report", help="One self-contained HTML page: tables, accuracy by N and by tissue, confusions."
    ),
    tokenizer: str | None = typer.Option(
        None, "--tokenizer", help="Hugging Face tokenizer name/path: prediction length in tokens (default: words)."
    ),
    bootstrap: int = typer.Option(1000, "--bootstrap", min=0, help="Bootstrap resamples for 95% CIs (0 = none)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed."),
    lenient: bool = typer.Option(
        False, "--lenient", help="Also report lenient accuracy (normalised labels, repaired by optimal assignment)."
    ),
    errors: bool = typer.Option(
        True,
        "--errors/--no-errors",
        help="Ontology-aware error analysis and top confusions (beside the strict metrics).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the tables."),
) -> None:
    """Evaluate prediction files: cell/batch accuracy, format rate, uniqueness, length; CIs;
    by N/tissue/disease/source.
    """
    from cello1.errors import InputError
    from cello1.io import atomic_path
    from cello1.scoring.evaluation import compare, evaluate
    from cello1.scoring.report import plot_accuracy_by_n, print_report, to_markdown, write_html_report

    for path in predictions:
        if not path.exists():
            raise InputError(f"{path}: no such file or folder; check the path")
    _check_outputs(predictions, {"json_out": json_out, "markdown": markdown, "plot": plot, "report": report})

    options = {
        "tokenizer": tokenizer,
        "bootstrap": bootstrap,
        "seed": seed,
        "lenient": lenient,
        "errors": errors,
        "progress": not quiet,
    }
    if len(predictions) == 1:
        results = [evaluate(predictions[0], **options)]
        payload: object = results[0].to_dict()
    else:
        results = compare(predictions, names=_display_names(predictions), **options)
        payload = [r.to_dict() for r in results]

    if not quiet:
        print_report(results)
    if json_out is not None:
        with atomic_path(json_out) as tmp:
            tmp.write_text(json.dumps(_json_safe(payload), indent=2) + "\n", encoding="utf-8")
    if markdown is not None:
        with atomic_path(markdown) as tmp:
            tmp.write_text(to_markdown(results), encoding="utf-8")
    if plot is not None:
        plot_accuracy_by_n(results, plot)
    if report is not None:
        write_html_report(results, report, command_line(ctx))


def _check_outputs(inputs: list[Path], outputs: dict[str, Path | None]) -> None:
    """Every output is checked before the (possibly long) scoring: a writable file name,
    not an input, not another output, a plot or report with a known suffix.
    """
    from cello1.errors import InputError
    from cello1.io import check_output_file, same_path

    plot = outputs.get("plot")
    if plot is not None and plot.suffix.lower() not in _PLOT_SUFFIXES:
        raise InputError(f"--plot {plot}: use a .png, .pdf or .svg file name")
    report = outputs.get("report")
    if report is not None and report.suffix.lower() not in {".html", ".htm"}:
        raise InputError(f"--report {report}: use a .html file name")
    given = [(param, path) for param, path in outputs.items() if path is not None]
    for i, (param, path) in enumerate(given):
        check_output_file(path, param, inputs)
        for other_param, other in given[:i]:
            if same_path(path, other):
                raise InputError(
                    f"{{{param}}} and {{{other_param}}} name the same file {path}", params=[param, other_param]
                )


def _json_safe(value: object) -> object:
    """NaN (e.g. an empty breakdown) becomes null: strict JSON for other tools."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _display_names(paths: list[Path]) -> list[str]:
    """File names, made unique with their parent folder when two inputs share a name."""
    names = [p.name for p in paths]
    if len(set(names)) == len(names):
        return names
    return [str(Path(p.parent.name) / p.name) if names.count(p.name) > 1 else p.name for p in paths]
