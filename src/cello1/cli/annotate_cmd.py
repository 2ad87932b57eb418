"""``cello1 annotate``: label the clusters of your own h5ad."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from cello1.cli._common import cli_errors, flag_names, given_options

HELP = (
    "Label the clusters of your own AnnData with the cell types you expect.\n\n"
    "By default (--solver markers) every cluster gets the candidate whose marker genes stand out most in its "
    "cells; a type may label several clusters and some types none, because clusterings are usually finer than "
    "the type list. A cluster where no candidate's markers are clearly above random genes is called 'unknown' "
    "(--min-z; --min-confidence adds a confidence threshold). --one-per-cluster uses each type at most once "
    "(Cell-o1's rule): with more clusters than types the leftovers are 'unassigned'.\n\n"
    "Raw counts / TPM are normalised on a copy; a scaled .X is skipped for .raw. Warnings (gene ids, unmapped "
    "candidates, normalisation, weak clusters …) are printed and stored in uns[KEY]['warnings']; the candidate → "
    "Cell Ontology mapping is printed and stored. --report writes a self-contained HTML report."
)


@cli_errors
def annotate(
    data: Annotated[Path, typer.Argument(help="Input .h5ad with clusters in obs.", show_default=False)],
    groupby: Annotated[str, typer.Option("--groupby", "-g", help="obs column holding the cluster ids.")],
    candidates: Annotated[
        str | None,
        typer.Option(
            "--candidates",
            "-c",
            help="Cell types: a file (one name a line) or a list 'A;B;C' (',' also works; names containing "
            "commas need ';').",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output .h5ad (a new file; required unless --inplace).")
    ] = None,
    solver: Annotated[
        str,
        typer.Option(
            "--solver", "-s", help="markers (marker evidence, default) | hf | openai | vllm | gguf | reference | random"
        ),
    ] = "markers",
    tissue: Annotated[
        str | None,
        typer.Option(
            help="Propose candidates for this tissue (blood, lung, brain …) or panel (glioma, tumour, 'T cell states')."
        ),  # fmt: skip
    ] = None,
    markers: Annotated[
        Path | None,
        typer.Option(help="Your markers: CSV/TSV (type,gene[,weight] or a column per type), JSON or GMT."),
    ] = None,
    markers_mode: Annotated[
        str, typer.Option("--markers-mode", help="'merge' your markers with the knowledge base, or 'replace' it.")
    ] = "merge",
    allow_repeats: Annotated[
        bool,
        typer.Option(
            "--allow-repeats/--one-per-cluster",
            help="Default: a type may label several clusters. --one-per-cluster: each type at most once.",
        ),
    ] = True,
    per_cell: Annotated[
        bool,
        typer.Option("--per-cell", help="Also label every cell (obs KEY_cell); clusters by majority vote of cells."),
    ] = False,
    min_z: Annotated[
        float,
        typer.Option("--min-z", help="'unknown' below this marker z (SD above random genes; p=0.05 at 1.645)."),
    ] = 1.645,
    min_confidence: Annotated[
        float, typer.Option("--min-confidence", help="'unknown' below this confidence (0 = off).")
    ] = 0.0,
    gene_key: Annotated[
        str | None, typer.Option("--gene-key", help="var column with gene symbols (e.g. feature_name).")
    ] = None,
    split_by: Annotated[
        str | None, typer.Option("--split-by", help="obs column: decide per donor/sample (default: pooled).")
    ] = None,
    genes: Annotated[
        str | None,
        typer.Option(help="Cluster description for puzzle solvers: 'markers' (rank_genes_groups, default) or 'mean'."),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="Genes per cluster description.")] = 50,
    layer: Annotated[str | None, typer.Option(help="Use this layer instead of .raw / .X.")] = None,
    use_raw: Annotated[
        bool | None, typer.Option("--use-raw/--no-raw", help="Use .raw (default: .raw when present, else .X).")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option(help="Embedding plot coloured by label; format from the suffix (.png, .pdf, .svg).")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="Self-contained HTML report (plots, evidence, mapping, warnings).")
    ] = None,
    csv: Annotated[
        Path | None, typer.Option(help="Cluster → label → confidence CSV (default: next to the output).")
    ] = None,
    inplace: Annotated[bool, typer.Option("--inplace", help="Allow writing onto the input file.")] = False,
    key_added: Annotated[
        str, typer.Option("--key-added", help="obs column for the labels (and uns key of the record).")
    ] = "cello1_cell_type",
    model: Annotated[str | None, typer.Option(help="Model name/path for LLM solvers.")] = None,
    train: Annotated[Path | None, typer.Option(help="Training puzzles for the reference solver.")] = None,
    seed: Annotated[int | None, typer.Option(help="Solver seed.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", help="LLM generation budget.")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server URL.")] = None,
    constrained: Annotated[
        bool,
        typer.Option("--constrained", help="LLM (hf): decode only valid labellings; needs --one-per-cluster."),
    ] = False,
) -> None:
    from cello1.errors import InputError

    out = _output_path(data, out, inplace)
    if not data.is_file():
        raise InputError(f"{data}: no such file; pass an existing .h5ad")
    if constrained and allow_repeats:
        raise InputError("--constrained writes each cell type at most once; add --one-per-cluster")
    _check_figure_path(plot, "--plot")
    if report is not None and report.suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--report {report.name!r}: the report is HTML; end the file name in .html")
    csv_path = csv or out.with_name(out.stem + "_clusters.csv")
    _check_outputs(data, out, csv_path, plot, report)  # all of them, before the (possibly long) run
    adata = _read_h5ad(data)
    _check_data(adata, data, layer, use_raw)

    import warnings

    from cello1.annotation import annotate as run_annotate
    from cello1.annotation.api import AnnotationWarning
    from cello1.annotation.writeback import save_h5ad

    options = given_options(
        model=model, train=train, seed=seed, max_new_tokens=max_new_tokens, base_url=base_url,
        constrained=True if constrained else None,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)  # printed below, with this command's flags
        result = run_annotate(
            adata, groupby, candidates, solver=solver, tissue=tissue, split_by=split_by, markers=markers,
            markers_mode=markers_mode, allow_repeats=allow_repeats, per_cell=per_cell, min_z=min_z,
            min_confidence=min_confidence, gene_key=gene_key, genes=genes, top_k=top_k, layer=layer, use_raw=use_raw,
            key_added=key_added, inplace=True, progress=True, command=command_line(), **options,
        )  # fmt: skip
    _use_flags(result)
    if plot is not None:
        result.plot(plot)  # before the h5ad: a missing embedding fails early
    if report is not None:
        result.report(report)
    save_h5ad(result.adata, out, source=data, inplace=inplace)
    result.to_csv(csv_path)
    _print_summary(result, [p for p in (out, csv_path, plot, report) if p is not None])


annotate.__doc__ = HELP


def command_line() -> str:
    """The command as typed (when run as ``cello1``), else rebuilt from the parsed options."""
    if Path(sys.argv[0]).name == "cello1":
        return shlex.join(["cello1", *sys.argv[1:]])
    from cello1.cli._common import get_current_context

    ctx = get_current_context(silent=True)
    if ctx is None:
        return "cello1 annotate"
    parts = ["cello1", "annotate"]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.param_type_name == "argument":
            parts.append(str(value))
        elif value is not None and value != param.default:
            flag = max(param.opts, key=len)
            if isinstance(value, bool):
                parts.append(flag if value else (param.secondary_opts or [flag])[0])
            else:
                parts += [flag, str(value)]
    return shlex.join(parts)


def _use_flags(result) -> None:
    """Warnings name this command's flags (``--gene-key``), in the result and in ``uns``."""
    names = flag_names()
    rendered = [advice.render(names) for advice in result.advice]
    result.warnings = rendered
    result.adata.uns[result.key_added]["warnings"] = rendered


def _check_figure_path(path: Path | None, flag: str) -> None:
    if path is None:
        return
    from matplotlib.backend_bases import FigureCanvasBase

    from cello1.errors import InputError

    if path.suffix.lower().lstrip(".") not in FigureCanvasBase.get_supported_filetypes():
        raise InputError(f"{flag} {path.name!r}: unknown figure format; end the file name in .png, .pdf or .svg")


def _output_path(data: Path, out: Path | None, inplace: bool) -> Path:
    from cello1.annotation.writeback import same_file
    from cello1.errors import InputError

    if out is None:
        if not inplace:
            raise InputError("no output path; pass -o OUT.h5ad (or --inplace to overwrite the input)")
        return data
    if same_file(out, data) and not inplace:
        raise InputError(f"output {out} is the input file; choose another -o path or pass --inplace to overwrite it")
    return out


def _check_outputs(data: Path, out: Path, csv_path: Path, plot: Path | None, report: Path | None) -> None:
    """Each output a writable file that is not the input (except ``out`` with --inplace) and
    not another output, so nothing is written unless everything can be.
    """
    from cello1.errors import InputError
    from cello1.io import check_output_file, same_path

    outputs = [("out", out, []), ("csv", csv_path, [data]), ("plot", plot, [data]), ("report", report, [data])]
    given = [(param, path, inputs) for param, path, inputs in outputs if path is not None]
    for i, (param, path, inputs) in enumerate(given):
        check_output_file(path, param, inputs)
        for other, other_path, _ in given[:i]:
            if same_path(path, other_path):
                raise InputError(f"{{{param}}} and {{{other}}} name the same file {path}", params=[param, other])


def _check_data(adata, path: Path, layer: str | None, use_raw: bool | None) -> None:
    """An AnnData with cells and an expression matrix to describe them with."""
    from cello1.errors import InputError

    if adata.n_obs == 0:
        raise InputError(f"{path}: has no cells (0 rows in obs); pass a file that holds cells")
    if adata.n_vars == 0 and adata.raw is None:
        raise InputError(f"{path}: has no genes (0 columns in var); pass a file that holds genes")
    if adata.X is None and layer is None and (adata.raw is None or use_raw is False):
        raise InputError(f"{path}: has no expression matrix X; pass --layer NAME or --use-raw, or store X in the file")


def _read_h5ad(path: Path):
    import anndata as ad

    from cello1.errors import InputError

    try:
        return ad.read_h5ad(path)
    except (OSError, KeyError, ValueError) as exc:
        raise InputError(f"{path}: cannot read as .h5ad ({type(exc).__name__}); pass an AnnData .h5ad file") from None


def _print_summary(result, written: list[Path]) -> None:
    typer.echo("candidate → Cell Ontology term (how matched; markers in the data):")
    for row in result.mapping.itertuples():
        term = f"{row.term_name} [{row.term_id}]" if row.term_id else (row.term_name or "no term")
        how = f"{row.how} {row.score:.2f}" if row.how == "fuzzy" else row.how
        typer.echo(f"  {row.candidate} → {term} ({how}; {row.n_in_data}/{row.n_markers} markers, {row.source})")
    typer.echo("clusters:")
    for row in result.table.itertuples():
        where = "" if row.split == "all" else f"{row.split}/"
        conf = "" if row.label == "unassigned" else f"  ({row.confidence:.2f})"
        typer.echo(f"  {where}{row.cluster} → {row.label}{conf}")
    if result.unknown:
        typer.echo(f"unknown clusters: {', '.join(result.unknown)}")
    if result.unassigned:
        typer.echo(f"unassigned clusters: {', '.join(result.unassigned)}")
    for note in result.notes:
        typer.echo(f"note: {note}")
    for warning in result.warnings:
        typer.echo(f"warning: {warning}", err=True)
    typer.echo("wrote " + ", ".join(map(str, written)))
