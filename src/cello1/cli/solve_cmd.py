"""``cello1 solve`` (placeholder)."""
import typer
def solve() -> None:
    """Solve puzzles with a solver."""
    raise typer.Exit(1)
