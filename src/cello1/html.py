"""Self-contained HTML pages (one file, figures inlined): the building blocks of cello1's reports."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

STYLE = """
body { font-family: system-ui, -apple-system, Segoe UI, sans-serif; margin: 2rem auto; max-width: 1100px;
       color: #222; line-height: 1.45; padding: 0 1rem; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.2rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: right; vertical-align: top; }
th:first-child, td:first-child { text-align: left; }
th { background: #f4f4f4; }
img { max-width: 100%; height: auto; }
code, pre { background: #f6f6f6; padding: 0.1rem 0.3rem; font-size: 0.85rem; }
pre { padding: 0.6rem; overflow-x: auto; white-space: pre-wrap; }
.note { color: #666; font-size: 0.9rem; }
.warn { color: #8a4b00; }
"""


def escape(text: object) -> str:
    """HTML-escaped text."""
    return html.escape(str(text))


def table(header: Sequence[str], rows: Sequence[Sequence[Any]], caption: str | None = None) -> str:
    """An HTML table (cells escaped)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    cap = f"<caption>{escape(caption)}</caption>" if caption else ""
    return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def figure(fig: Any, alt: str, dpi: int = 110) -> str:
    """A matplotlib figure inlined as a PNG ``<img>`` (a data URI, so the page stays one file)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="{escape(alt)}" src="data:image/png;base64,{data}">'


def page(title: str, sections: Sequence[str], command: str | None = None) -> str:
    """A whole HTML document from pre-rendered sections."""
    cmd = f"<h2>Command</h2><pre>{escape(command)}</pre>" if command else ""
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        f"<h1>{escape(title)}</h1>{''.join(sections)}{cmd}</body></html>\n"
    )


__all__ = ["escape", "figure", "page", "table"]
