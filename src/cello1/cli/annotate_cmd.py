"""``cello1 annotate``: label the clusters of your own h5ad with a cello1 solver."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cello1.cli._common import cli_errors, given_options


@cli_errors
def annotate(
    data: Annotated[Path, typer.Argument(help="Input .h5ad with clusters in obs.", show_default=False)],
    groupby: Annotated[str, typer.Option("--groupby", "-g", help="obs column holding the cluster ids.")],
    candidates: Annotated[
        str | None,
        typer.Option(
            "--candidates",
            "-c",
            help="Cell types: a file (one per line) or a list 'A,B,C' (use ';' when names contain commas).",
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Output .h5ad (a new file; required unless --inplace).")
    ] = None,
    solver: Annotated[
        str, typer.Option("--solver", "-s", help="markers | reference | random | hf | openai | …")
    ] = "markers",
    tissue: Annotated[
        str | None, typer.Option(help="Propose candidates from the marker knowledge base for this tissue.")
    ] = None,
    split_by: Annotated[
        str | None, typer.Option("--split-by", help="obs column: one puzzle per donor/sample (default: pooled).")
    ] = None,
    genes: Annotated[
        str, typer.Option(help="Cluster description: 'markers' (rank_genes_groups) or 'mean'.")
    ] = "markers",
    top_k: Annotated[int, typer.Option("--top-k", help="Genes per cluster.")] = 50,
    allow_repeats: Annotated[
        bool, typer.Option("--allow-repeats", help="Several clusters may share a type (best type per cluster).")
    ] = False,
    layer: Annotated[str | None, typer.Option(help="Use this layer instead of .raw / .X.")] = None,
    use_raw: Annotated[
        bool | None, typer.Option("--use-raw/--no-raw", help="Use .raw (default: .raw when present, else .X).")
    ] = None,
    plot: Annotated[Path | None, typer.Option(help="Save an embedding plot (X_umap or first X_*) as PNG.")] = None,
    csv: Annotated[
        Path | None, typer.Option(help="Cluster → label → confidence CSV (default: next to the output).")
    ] = None,
    inplace: Annotated[bool, typer.Option("--inplace", help="Allow writing onto the input file.")] = False,
    key_added: Annotated[str, typer.Option("--key-added", help="obs column for the labels.")] = "cello1_cell_type",
    model: Annotated[str | None, typer.Option(help="Model name/path for LLM solvers.")] = None,
    train: Annotated[Path | None, typer.Option(help="Training puzzles for the reference solver.")] = None,
    seed: Annotated[int | None, typer.Option(help="Solver seed.")] = None,
    max_new_tokens: Annotated[int | None, typer.Option("--max-new-tokens", help="LLM generation budget.")] = None,
    base_url: Annotated[str | None, typer.Option("--base-url", help="OpenAI-compatible server URL.")] = None,
) -> None:
    """Annotate the clusters of your own AnnData: one puzzle per sample whose cells are
    the clusters, solved jointly (each type once unless --allow-repeats).
    """
    from cello1.errors import InputError

    out = _output_path(data, out, inplace)
    if not data.is_file():
        raise InputError(f"{data}: no such file; pass an existing .h5ad")
    csv_path = csv or out.with_name(out.stem + "_clusters.csv")
    _check_outputs(data, out, csv_path, plot)  # all of them, before the (possibly long) run
    adata = _read_h5ad(data)
    _check_data(adata, data, layer, use_raw)

    from cello1.annotation import annotate as run_annotate
    from cello1.annotation.writeback import save_h5ad

    options = given_options(model=model, train=train, seed=seed, max_new_tokens=max_new_tokens, base_url=base_url)
    result = run_annotate(
        adata,
        groupby,
        candidates,
        solver=solver,
        tissue=tissue,
        split_by=split_by,
        genes=genes,
        top_k=top_k,
        allow_repeats=allow_repeats,
        layer=layer,
        use_raw=use_raw,
        key_added=key_added,
        inplace=True,  # our own freshly read copy
        progress=True,
        **options,
    )
    if plot is not None:
        result.plot(plot)  # before the h5ad: a missing embedding fails early
    save_h5ad(result.adata, out, source=data, inplace=inplace)
    result.to_csv(csv_path)
    _report(result.table, out, csv_path, plot, result.unassigned)


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


def _check_outputs(data: Path, out: Path, csv_path: Path, plot: Path | None) -> None:
    """Each output a writable file that is not the input (except ``out`` with --inplace) and
    not another output, so nothing is written unless everything can be.
    """
    from cello1.errors import InputError
    from cello1.io import check_output_file, same_path

    if plot is not None and plot.suffix.lower() != ".png":
        raise InputError(f"--plot {plot}: give a .png file name")
    outputs = [("out", out, []), ("csv", csv_path, [data]), ("plot", plot, [data])]
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


def _report(table, out: Path, csv_path: Path, plot: Path | None, unassigned: list[str]) -> None:
    for row in table.itertuples():
        where = "" if row.split == "all" else f"{row.split}/"
        conf = "" if row.label == "unassigned" else f"  ({row.confidence:.2f})"
        typer.echo(f"  {where}{row.cluster} → {row.label}{conf}")
    if unassigned:
        typer.echo(f"unassigned clusters: {', '.join(unassigned)}")
    typer.echo(f"wrote {out}, {csv_path}" + (f", {plot}" if plot else ""))
