"""``cello1 eval`` (placeholder)."""
import typer
def eval_() -> None:
    """Evaluate prediction files."""
    raise typer.Exit(1)
