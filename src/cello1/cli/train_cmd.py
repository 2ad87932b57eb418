"""``cello1 train sft|grpo`` (placeholder)."""
import typer
app = typer.Typer(help="Train Cell-o1 models (SFT, GRPO).", no_args_is_help=True)
