"""The package's exceptions.

Everything cello1 raises on purpose derives from :class:`CelloError`. The command line
shows these as one line (``error: …``) with exit status 2; any other exception is a bug
and is reported as such (the traceback is shown with ``cello1 --debug``).

Library messages name *parameters* (``n_min``), not command-line flags (``--n-min``):
a message may hold ``{name}`` fields listed in ``params``, which :meth:`InputError.render`
fills with the parameter names for library users and the CLI fills with its flags.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

_FIELD = re.compile(r"\{(\w+)\}")


class CelloError(Exception):
    """Base class of the errors cello1 raises on purpose (bad input, bad settings, I/O)."""


class InputError(CelloError, ValueError):
    """Bad user input or setting; the message names the problem and the fix.

    Parameters
    ----------
    message
        The text. With ``params``, ``{name}`` fields name parameters, e.g.
        ``"{n_min} must be at least 2 (got 1)"``.
    params
        The parameter names used as fields in ``message``.
    """

    def __init__(self, message: str, *, params: Iterable[str] = ()) -> None:
        self.template = message
        self.params = tuple(params)
        super().__init__(self.render())

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each parameter field spelled as ``names[param]`` (default: the parameter name)."""
        if not self.params:
            return self.template
        names = names or {}
        return _FIELD.sub(lambda m: names.get(m[1], m[1]) if m[1] in self.params else m[0], self.template)


class RecordFormatError(InputError):
    """A record does not follow the CellPuzzles record layout."""


class OutputError(CelloError):
    """An output cannot be written (permissions, a folder in the way, a full disk …)."""


__all__ = ["CelloError", "InputError", "OutputError", "RecordFormatError"]
