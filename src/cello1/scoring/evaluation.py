"""``evaluate``: the paper's metrics over prediction records, with bootstrap intervals.

Inputs are records carrying the gold (``answer``, or ``assistant_msg`` as in the
official/original per-puzzle files) and the raw model output (``prediction``): a list
of dicts, a ``.jsonl``/``.json``/``.parquet`` file, a folder of such files, or a list of
paths (pooled, e.g. shards). ``compare`` evaluates several inputs side by side and adds a
paired bootstrap of each one against the first.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from cello1.errors import InputError
from cello1.grammar import parse_gold
from cello1.io import iter_numbered_records
from cello1.scoring.analysis import ErrorAnalysis, analyse
from cello1.scoring.bootstrap import DEFAULT_RESAMPLES, LEVEL, bootstrap_cis, paired_bootstrap
from cello1.scoring.metrics import LENIENT_COLUMNS, METRIC_COLUMNS, Scored, score_record, word_count
from cello1.scoring.readable import Readable

GROUP_FIELDS = ("n", "tissue", "disease", "source")
PAIRED_METRICS = ("cell_accuracy", "batch_accuracy", "format_rate")

PathLike = str | os.PathLike
Predictions = Sequence[Mapping[str, Any]] | PathLike | Sequence[PathLike]


# ---- result types ----------------------------------------------------------------------


@dataclass(eq=False)
class LenientMetrics(Readable):
    """Lenient cell and batch accuracy (never mixed into the strict numbers)."""

    cell_accuracy: float
    batch_accuracy: float
    ci: dict[str, list[float]] | None = None


@dataclass(eq=False)
class Metrics(Readable):
    """The paper's metrics over a set of predictions, with 95% bootstrap intervals in ``ci``."""

    n_puzzles: int
    n_cells: int
    cell_accuracy: float
    batch_accuracy: float
    format_rate: float
    uniqueness: float
    mean_length: float
    mean_reward: float
    ci: dict[str, list[float]] | None = None
    lenient: LenientMetrics | None = None


@dataclass(eq=False)
class EvalResult(Metrics):
    """What :func:`evaluate` returns: the metrics, where they came from, breakdowns by N,
    tissue, disease and source (``by``) and, from :func:`compare`, a paired bootstrap
    against the first input (``paired_vs_first``).
    """

    file: str | None = None
    length_unit: str = "words"
    bootstrap: dict[str, Any] = field(default_factory=dict)
    by: dict[str, dict[str, Metrics]] | None = None
    paired_vs_first: dict[str, Any] | None = None
    errors: ErrorAnalysis | None = None

    @property
    def name(self) -> str:
        """The display name: the file, or ``predictions``."""
        return self.file or "predictions"


# ---- loading ---------------------------------------------------------------------------


def load_predictions(predictions: Predictions) -> tuple[list[Mapping[str, Any]], str | None]:
    """Records and a display name (the file name, or None for in-memory records)."""
    located, name = _load_located(predictions)
    return [record for _, record in located], name


def _load_located(predictions: Predictions) -> tuple[Iterable[tuple[str, Mapping[str, Any]]], str | None]:
    """``(where, record)`` pairs (``file:line`` or ``record i``) and a display name; files
    are streamed (a record is scored and dropped, not all held in memory).
    """
    if isinstance(predictions, (str, os.PathLike)):
        return iter_numbered_records(predictions), Path(predictions).name
    items = list(predictions)
    if items and all(isinstance(p, (str, os.PathLike)) for p in items):
        located = (pair for p in items for pair in iter_numbered_records(p))
        return located, "+".join(Path(p).name for p in items)
    if not all(isinstance(r, Mapping) for r in items):
        raise InputError("evaluate() takes prediction records (dicts), a path, or a list of paths")
    return [(f"record {i}", r) for i, r in enumerate(items)], None


def record_gold(record: Mapping[str, Any]) -> list[str] | None:
    """The gold labels of a prediction record (``answer``, else ``assistant_msg``)."""
    gold = record.get("answer")
    if gold is None:
        gold = record.get("assistant_msg")
    if not (isinstance(gold, str) or gold is None) and not (
        isinstance(gold, (list, tuple)) and all(isinstance(label, str) for label in gold)
    ):
        raise InputError(f"the gold answer must be a string such as 'A | B | C', not {type(gold).__name__}")
    labels = parse_gold(gold)
    return labels or None


def _check(record: Any, where: str) -> tuple[list[str], str]:
    if not isinstance(record, Mapping):
        raise InputError(f"{where}: not a JSON object")
    try:
        gold = record_gold(record)
    except InputError as exc:
        raise InputError(f"{where}: {exc}") from None
    if gold is None:
        raise InputError(
            f"{where}: no gold answer ('answer' or 'assistant_msg'); "
            "evaluate predictions made on puzzles that have answers"
        )
    if "prediction" not in record:
        raise InputError(
            f"{where}: no 'prediction' field; pass the output of `cello1 solve` "
            "or records with the model output in 'prediction'"
        )
    prediction = record["prediction"]
    if prediction is not None and not isinstance(prediction, str):
        raise InputError(f"{where}: 'prediction' must be the model's text (or null), not {type(prediction).__name__}")
    sample = record.get("sample")
    if sample is not None and (isinstance(sample, bool) or not isinstance(sample, int)):
        raise InputError(f"{where}: 'sample' must be an integer, not {type(sample).__name__}")
    # A failed call (prediction null, error set) scores as an empty, invalid output.
    return gold, prediction or ""


def _duplicate_error(where: str, first: str, key: tuple[str, int]) -> InputError:
    return InputError(
        f"{where}: a second prediction for puzzle {key[0]!r} (sample {key[1]}; the first is at {first}); "
        "a prediction file must hold one record per puzzle and sample, or the metrics count it twice — "
        "re-run `cello1 solve` with the same options to compact it, or remove the extra record"
    )


def _length_fn(tokenizer: Any) -> tuple[Callable[[str], float], str]:
    if tokenizer is None:
        return word_count, "words"
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(str(tokenizer))
    if callable(getattr(tokenizer, "encode", None)):

        def count(text: str) -> float:
            return len(tokenizer.encode(text, add_special_tokens=False))

        return count, "tokens"
    if callable(tokenizer):
        return tokenizer, "tokens"
    raise InputError("tokenizer must be a name/path, a tokenizer with .encode, or a callable")


def load_tokenizer(name: str) -> Any:
    """A Hugging Face tokenizer (hub id, local folder, or ``.gguf`` file), loaded only
    when lengths in tokens are asked for.
    """
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise InputError("{tokenizer} needs transformers: pip install 'cello1[llm]'", params=["tokenizer"]) from None
    try:
        if name.endswith(".gguf"):  # a local GGUF model file carries its tokenizer
            path = Path(name)
            return AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        return AutoTokenizer.from_pretrained(name)
    except Exception as exc:
        raise InputError(f"cannot load tokenizer {name!r}: {str(exc).splitlines()[0] if str(exc) else exc}") from None


def score_records(
    records: Iterable[Mapping[str, Any]] | Iterable[tuple[str, Mapping[str, Any]]],
    where: str = "predictions",
    tokenizer: Any = None,
    lenient: bool = False,
    progress: bool = False,
    unique: bool = False,
) -> tuple[list[Scored], str]:
    """Score every record (or ``(location, record)`` pair); returns the scores and the length
    unit. With ``unique`` (files: what ``cello1 eval`` reads), two records for one
    ``(id, sample)`` are an error, as they would be counted twice.
    """
    length_fn, unit = _length_fn(tokenizer)
    if lenient:
        from cello1.scoring.lenient import lenient_score
    if progress:
        from tqdm.auto import tqdm

        # disable=None: no bar when stderr is not a terminal (logs, CI)
        records = tqdm(records, desc=f"scoring {where}", unit="pred", disable=None, leave=False)
    scored = []
    first_seen: dict[tuple[str, int], str] = {}
    for i, item in enumerate(records):
        location, record = item if isinstance(item, tuple) else (f"{where}: record {i}", item)
        gold, prediction = _check(record, location)
        s = score_record(record, gold, prediction, length_fn, GROUP_FIELDS[1:], index=i)
        if unique and record.get("id") is not None:
            if s.key in first_seen:
                raise _duplicate_error(location, first_seen[s.key], s.key)
            first_seen[s.key] = location
        if lenient:
            s.lenient_correct, s.lenient_exact = lenient_score(prediction, gold)
        scored.append(s)
    if not scored:
        raise InputError(f"{where}: no prediction records found (the file is empty)")
    return scored, unit


# ---- aggregation -----------------------------------------------------------------------


def _arrays(scored: Sequence[Scored]) -> dict[str, np.ndarray]:
    cols = {
        "correct": [s.correct for s in scored],
        "n": [s.n for s in scored],
        "exact": [s.exact for s in scored],
        "valid": [s.valid for s in scored],
        "uniqueness": [s.uniqueness for s in scored],
        "length": [s.length for s in scored],
        "reward": [s.reward for s in scored],
    }
    if scored and scored[0].lenient_correct is not None:
        cols["lenient_correct"] = [s.lenient_correct for s in scored]
        cols["lenient_exact"] = [s.lenient_exact for s in scored]
    return {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}


def _point(arrays: dict[str, np.ndarray], num: str, den: str | None) -> float:
    top = arrays[num].sum()
    bottom = arrays[den].sum() if den else len(arrays[num])
    return float(top / bottom) if bottom else float("nan")


def summarise(
    scored: Sequence[Scored], resamples: int = DEFAULT_RESAMPLES, seed: int = 0, with_ci: bool = True
) -> Metrics:
    """Metrics, their bootstrap intervals and, when scored, lenient ones (all intervals
    from the same resamples).
    """
    arrays = _arrays(scored)
    specs = {name: (arrays[num], arrays[den] if den else None) for name, (num, den) in METRIC_COLUMNS.items()}
    lenient_specs = {}
    if "lenient_correct" in arrays:
        lenient_specs = {
            f"lenient_{name}": (arrays[num], arrays[den] if den else None)
            for name, (num, den) in LENIENT_COLUMNS.items()
        }
    cis = bootstrap_cis({**specs, **lenient_specs}, resamples, seed) if with_ci and resamples > 0 else {}
    lenient = None
    if lenient_specs:
        lenient = LenientMetrics(
            **{name: _point(arrays, num, den) for name, (num, den) in LENIENT_COLUMNS.items()},
            ci={name: list(cis[f"lenient_{name}"]) for name in LENIENT_COLUMNS} if cis else None,
        )
    return Metrics(
        n_puzzles=len(scored),
        n_cells=int(arrays["n"].sum()),
        **{name: _point(arrays, num, den) for name, (num, den) in METRIC_COLUMNS.items()},
        ci={name: list(cis[name]) for name in METRIC_COLUMNS} if cis else None,
        lenient=lenient,
    )


def breakdowns(scored: Sequence[Scored], resamples: int, seed: int) -> dict[str, dict[str, Metrics]]:
    """Metrics per value of N, tissue, disease and source (when the records carry them)."""
    result: dict[str, dict[str, Metrics]] = {}
    for group_field in GROUP_FIELDS:
        groups: dict[str, list[Scored]] = defaultdict(list)
        for s in scored:
            if group_field in s.groups:
                groups[s.groups[group_field]].append(s)
        if not groups:
            continue
        keys = sorted(groups, key=lambda k: (int(k), k) if group_field == "n" else (0, k))
        result[group_field] = {key: summarise(groups[key], resamples, seed) for key in keys}
    return result


def evaluate(
    predictions: Predictions,
    *,
    tokenizer: Any = None,
    bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    lenient: bool = False,
    by: bool = True,
    errors: bool = True,
    progress: bool = False,
) -> EvalResult:
    """The paper's metrics for one set of predictions.

    Returns an :class:`EvalResult`: ``cell_accuracy``, ``batch_accuracy``,
    ``format_rate``, ``uniqueness``, ``mean_length``, ``mean_reward``, ``n_puzzles``,
    ``n_cells``, 95% bootstrap intervals in ``ci``, breakdowns in ``by``
    (``{"n": {"8": Metrics}, "tissue": …}``), lenient metrics in ``lenient`` and, with
    ``errors``, the ontology-aware error analysis in ``errors``
    (:mod:`cello1.scoring.analysis`). It also
    reads like its JSON form (``result["by"]["n"]["8"]["cell_accuracy"]``).
    ``tokenizer``: a Hugging Face name/path or tokenizer object → lengths in tokens.
    """
    result, _ = _evaluate_scored(
        predictions,
        tokenizer=tokenizer,
        bootstrap=bootstrap,
        seed=seed,
        lenient=lenient,
        by=by,
        errors=errors,
        progress=progress,
    )
    return result


def _evaluate_scored(
    predictions: Predictions,
    *,
    tokenizer: Any,
    bootstrap: int,
    seed: int,
    lenient: bool,
    by: bool,
    errors: bool = True,
    progress: bool = False,
) -> tuple[EvalResult, list[Scored]]:
    located, name = _load_located(predictions)
    from_files = name is not None  # in-memory records may repeat on purpose (e.g. a resampled set)
    scored, unit = score_records(
        located, where=name or "predictions", tokenizer=tokenizer, lenient=lenient, progress=progress, unique=from_files
    )
    metrics = summarise(scored, bootstrap, seed)
    result = EvalResult(
        **{f.name: getattr(metrics, f.name) for f in fields(Metrics)},
        file=name,
        length_unit=unit,
        bootstrap={"resamples": bootstrap, "seed": seed, "level": LEVEL},
        by=breakdowns(scored, bootstrap, seed) if by else None,
        errors=analyse(scored) if errors else None,
    )
    return result, scored


def compare(
    inputs: Sequence[Predictions],
    *,
    names: Sequence[str] | None = None,
    tokenizer: Any = None,
    bootstrap: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    lenient: bool = False,
    by: bool = True,
    errors: bool = True,
    progress: bool = False,
) -> list[EvalResult]:
    """:func:`evaluate` for each input, plus ``paired_vs_first`` on inputs 2…k: the
    difference to the first input on the puzzles both share (paired by ``id`` and
    ``sample``), with a paired bootstrap interval and p-value.
    """
    if isinstance(tokenizer, (str, os.PathLike)):
        tokenizer = load_tokenizer(str(tokenizer))
    results, all_scored = [], []
    for i, item in enumerate(inputs):
        result, scored = _evaluate_scored(
            item,
            tokenizer=tokenizer,
            bootstrap=bootstrap,
            seed=seed,
            lenient=lenient,
            by=by,
            errors=errors,
            progress=progress,
        )
        if names is not None:
            result.file = names[i]
        result.file = result.file or f"input{i + 1}"
        results.append(result)
        all_scored.append(scored)
    for result, scored in zip(results[1:], all_scored[1:], strict=True):
        result.paired_vs_first = paired(all_scored[0], scored, bootstrap, seed, base_name=results[0].name)
    return results


def paired(
    base: Sequence[Scored], other: Sequence[Scored], resamples: int, seed: int, base_name: str = ""
) -> dict[str, Any]:
    """Paired bootstrap of ``other − base`` over the predictions both have (by id, sample)."""
    base_by_key = {s.key: s for s in base}
    pairs = [(base_by_key[s.key], s) for s in other if s.key in base_by_key]
    out: dict[str, Any] = {"baseline": base_name, "n_pairs": len(pairs)}
    if not pairs:
        return out
    a, b = _arrays([p[0] for p in pairs]), _arrays([p[1] for p in pairs])
    for name in PAIRED_METRICS:
        num, den = METRIC_COLUMNS[name]
        # cell accuracy: both sides share the gold, so the same denominator
        out[name] = paired_bootstrap(a[num], b[num], a[den] if den else None, max(resamples, 1), seed)
    return out
