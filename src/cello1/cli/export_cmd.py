"""``cello1 export verl`` (placeholder)."""
import typer
app = typer.Typer(help="Export puzzles to other frameworks.", no_args_is_help=True)
