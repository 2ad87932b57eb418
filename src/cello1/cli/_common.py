"""Shared CLI plumbing: one-line errors with a non-zero exit, never a traceback."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer

from cello1.io import InputError
from cello1.puzzle import RecordFormatError

F = TypeVar("F", bound=Callable[..., Any])

# Errors that mean "the user's input or setting is wrong": shown as one line.
USER_ERRORS: tuple[type[BaseException], ...] = (InputError, RecordFormatError, FileNotFoundError, ValueError)


def given_options(**options: Any) -> dict[str, Any]:
    """The solver options the user actually set (``None`` = not given); paths as strings.

    Solver constructors reject options they do not support, so only these may reach them.
    """
    return {name: str(v) if isinstance(v, os.PathLike) else v for name, v in options.items() if v is not None}


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def cli_errors(func: F) -> F:
    """Decorator for command bodies: user errors become one line on stderr + exit 2.

    Set ``CELLO1_DEBUG=1`` to see the traceback instead.
    """

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except USER_ERRORS as exc:
            if os.environ.get("CELLO1_DEBUG"):
                raise
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise fail(message) from None
        except KeyboardInterrupt:
            typer.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper  # type: ignore[return-value]
