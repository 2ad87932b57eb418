"""Structure the codebase keeps: no import cycle, one answer grammar, one label vocabulary,
no global side effects, nothing read from outside the repository."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "cello1"


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8")) for p in SRC.rglob("*.py")}


def _imports(tree: ast.Module, modules: set[str]) -> set[str]:
    """cello1 modules imported anywhere in a module (function-level imports too)."""
    found = set()
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        found |= {n for n in names if n in modules}
    return found


def import_graph() -> dict[str, set[str]]:
    sources = _sources()
    modules = set(sources)
    # a package's own __init__ importing its submodules is not a dependency cycle
    return {m: {d for d in _imports(t, modules) if not m.startswith(d + ".") and d != m} for m, t in sources.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return stack[stack.index(dep) :] + [dep]
            if dep not in state and (cycle := visit(dep)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert len(graph) > 40
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def _string_constants(tree: ast.Module) -> list[str]:
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_answer_tags_are_written_only_by_the_grammar():
    for name, tree in _sources().items():
        if name == "cello1.grammar":
            continue
        literals = [s for s in _string_constants(tree) if any(t in s for t in ("<answer>", "</think>", "</answer>"))]
        # prose (docstrings, prompts, messages) may mention the tags; code must not build answers from them
        code = [
            s for s in literals if s.strip() in {"<answer>", "</think>", "</answer>", "<think>", "</think>\n<answer>"}
        ]
        assert not code, (name, code)


def test_one_assignment_solver_and_one_label_similarity():
    for name, tree in _sources().items():
        text = ast.unparse(tree)
        if name != "cello1.assignment":
            assert "linear_sum_assignment" not in text, name
        if name not in {"cello1.vocabulary", "cello1.knowledge.base"}:
            assert "SequenceMatcher" not in text and "casefold()" not in text, name


def test_no_global_side_effects_and_nothing_outside_the_repository():
    for name, tree in _sources().items():
        text = ast.unparse(tree)
        assert "matplotlib.use(" not in text and "plt.switch_backend" not in text, name
        assert "shared/" not in text and "spec §" not in text, name
