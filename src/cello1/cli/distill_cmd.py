"""``cello1 distill`` (placeholder)."""
import typer
def distill() -> None:
    """Distil teacher traces with rejection sampling."""
    raise typer.Exit(1)
