"""``cello1 build`` (placeholder until the builder lands)."""
import typer
def build() -> None:
    """Build CellPuzzles from annotated AnnData files."""
    raise typer.Exit(1)
