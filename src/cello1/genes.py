"""Gene symbols: the one place that decides when two gene names are the same gene.

CELLxGENE files can carry a symbol with its Ensembl id appended
(``CSF2RA_ENSG00000198223``); cello1 strips such suffixes when it builds puzzles and
compares genes by their upper-cased symbol.
"""

from __future__ import annotations

import re

# ``CSF2RA_ENSG00000198223`` -> ``CSF2RA`` (also mouse ENSMUSG…, version suffixes ``.12``)
_ENSEMBL_SUFFIX = re.compile(r"^(?P<symbol>.+?)_ENS[A-Z]*G\d{6,}(?:\.\d+)?$")


def strip_ensembl_suffix(name: str) -> str:
    """``"CSF2RA_ENSG00000198223"`` → ``"CSF2RA"``; other names are returned unchanged."""
    m = _ENSEMBL_SUFFIX.match(name)
    return m["symbol"] if m else name


def normalise_gene(symbol: str) -> str:
    """The comparison key of a gene: upper-case symbol without an Ensembl suffix."""
    return strip_ensembl_suffix(symbol.strip()).upper()


__all__ = ["normalise_gene", "strip_ensembl_suffix"]
