"""``cello1 annotate`` (placeholder)."""
import typer
def annotate() -> None:
    """Annotate clusters of your own AnnData."""
    raise typer.Exit(1)
