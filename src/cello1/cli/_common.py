"""Shared CLI plumbing: one-line errors with a non-zero exit, never a traceback.

* cello1's own errors (:class:`cello1.errors.CelloError`) are bad input or settings:
  ``error: …`` on one line, parameter names spelled as this command's flags, exit 2;
* anything else is a bug: one line saying so, exit 1, the traceback only with
  ``cello1 --debug …`` (or ``CELLO1_DEBUG=1``).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from cello1.errors import CelloError, InputError

try:  # typer >= 0.22 ships its own copy of click: its contexts and exceptions are those
    from typer._click import exceptions as click_exceptions
    from typer._click.globals import get_current_context
except ImportError:  # pragma: no cover - older typer uses click itself
    from click import exceptions as click_exceptions
    from click.globals import get_current_context

F = TypeVar("F", bound=Callable[..., Any])

BUG_EXIT = 1
USER_EXIT = 2


PROMPT_LAYOUT_HELP = (
    "Prompt layout of the released Cell-o1 code: sft (instructions as the system message; the default, "
    "used by every stage), rl (instructions appended to the user turn, no system message), test (user "
    "message, newline, instructions). Use the layout the model was trained with."
)


def prompt_layout_option(**kwargs: Any) -> Any:
    """The ``--prompt-layout`` option every LLM-facing command shares (unset = the default)."""
    return typer.Option(None, "--prompt-layout", help=PROMPT_LAYOUT_HELP, **kwargs)


def debug_enabled() -> bool:
    """Whether tracebacks should be shown (``cello1 --debug`` or ``CELLO1_DEBUG=1``)."""
    ctx = get_current_context(silent=True)
    return bool(os.environ.get("CELLO1_DEBUG")) or bool(ctx is not None and ctx.find_root().params.get("debug"))


def given_options(**options: Any) -> dict[str, Any]:
    """The solver options the user actually set (``None`` = not given); paths as strings.

    Solver constructors reject options they do not support, so only these may reach them.
    """
    return {name: str(v) if isinstance(v, os.PathLike) else v for name, v in options.items() if v is not None}


def fail(message: str, code: int = USER_EXIT) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def flag_names() -> dict[str, str]:
    """Parameter name → the flag that sets it, for the command being run."""
    ctx = get_current_context(silent=True)
    names: dict[str, str] = {}
    while ctx is not None:
        for param in ctx.command.params:
            if param.name and param.param_type_name == "option":
                names.setdefault(param.name, max(param.opts, key=len))
        ctx = ctx.parent
    return names


def error_line(exc: BaseException) -> str:
    """The first line of an error's message, parameters spelled as flags."""
    message = exc.render(flag_names()) if isinstance(exc, InputError) else str(exc)
    return message.splitlines()[0] if message else type(exc).__name__


def cli_errors(func: F) -> F:
    """Decorator for command bodies: cello1 errors become one line on stderr + exit 2,
    other exceptions one line saying it is a bug + exit 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort, click_exceptions.ClickException):
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            sys.exit(130)
        except CelloError as exc:
            if debug_enabled():
                raise
            raise fail(error_line(exc)) from None
        except Exception as exc:
            if debug_enabled():
                raise
            typer.echo(
                f"error: internal error ({type(exc).__name__}: {error_line(exc)}); this is a bug in cello1 — "
                "run the same command with `cello1 --debug …` and report the traceback",
                err=True,
            )
            raise typer.Exit(BUG_EXIT) from None

    return wrapper  # type: ignore[return-value]


def config_option(config: type, name: str, *flags: str, **kwargs: Any) -> Any:
    """A typer option whose default and help come from a config dataclass field
    (``metadata={"help": …}``), so a setting's default is written once."""
    f = next(f for f in dataclasses.fields(config) if f.name == name)
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    return typer.Option(default, *flags, help=f.metadata.get("help"), **kwargs)


def was_set(ctx: typer.Context, name: str) -> bool:
    """Whether the user gave option ``name`` (not its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in {"DEFAULT", "DEFAULT_MAP"}


def command_line(ctx: typer.Context) -> str:
    """The command as typed, rebuilt from the arguments and the options the user set."""
    names = []
    node = ctx
    while node.parent is not None:
        names.append(node.info_name)
        node = node.parent
    words = ["cello1", *reversed(names)]
    for param in ctx.command.params:
        if not was_set(ctx, param.name):
            continue
        value = ctx.params[param.name]
        if param.param_type_name == "argument":
            words += [str(v) for v in (value if isinstance(value, (list, tuple)) else [value])]
        elif getattr(param, "is_flag", False):
            if param.secondary_opts and not value:
                words.append(max(param.secondary_opts, key=len))
            elif value:
                words.append(max(param.opts, key=len))
        else:
            words += [max(param.opts, key=len), str(value)]
    return shlex.join(words)
