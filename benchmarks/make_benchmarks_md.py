"""Assemble BENCHMARKS.md from the per-area result pages in benchmarks/results/.

Run by hand after a benchmark: ``python benchmarks/make_benchmarks_md.py``.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ORDER = [
    "build",
    "scoring",
    "llm_solvers",
    "engines",
    "nonllm_solvers",
    "training",
    "rl_curve",
    "annotate",
    "audit",
    "reliability",
]


def demote(markdown: str) -> str:
    """Shift every heading one level down so each page nests under BENCHMARKS.md."""
    lines = []
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        lines.append("#" + line if line.startswith("#") and not in_code else line)
    return "\n".join(lines)


def main() -> None:
    head = (ROOT / "benchmarks" / "summary.md").read_text(encoding="utf-8").rstrip()
    parts = [head]
    for name in ORDER:
        page = ROOT / "benchmarks" / "results" / f"{name}.md"
        parts.append(f"<!-- from benchmarks/results/{name}.md -->\n" + demote(page.read_text(encoding="utf-8")).strip())
    (ROOT / "BENCHMARKS.md").write_text("\n\n".join(parts) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
