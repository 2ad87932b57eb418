"""``cello1 demo`` (placeholder)."""
import typer
def demo() -> None:
    """Build from the embedded data, solve with non-LLM solvers, evaluate."""
    raise typer.Exit(1)
