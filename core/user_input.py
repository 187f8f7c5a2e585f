"""Input hygiene for every public read call that takes typed text: one rule, one SelectionError.

Below the catalog, the search and the resolver in the import layers, so each of them checks a value
before any query: PostgreSQL text cannot hold NUL (the driver would raise), and no control character
(C0, DEL, C1) is ever part of a name, code or search text.
"""

from __future__ import annotations

import re
import unicodedata

from core.errors import SelectionError

#: SelectionError.kind of a value that cannot be a name at all (core.selection re-exports it)
INVALID = "invalid"
#: longer than any key, name or code: refused and echoed cut, never looked up
MAX_VALUE_LENGTH = 200
ECHO_LENGTH = 40
# Full-width ASCII (U+FF01-U+FF5E) and the ideographic space: NFKC folds them to ASCII. NFKC is not
# applied to the whole value, since it would also rewrite compatibility characters inside names.
_FULL_WIDTH = re.compile("[\uff01-\uff5e\u3000]+")


def echo(value: str) -> str:
    """A value as an error line may repeat it: cut when long."""
    return value if len(value) <= ECHO_LENGTH else value[:ECHO_LENGTH] + "…"


def refuse_control_characters(value: str, where: str = "value") -> str:
    """`value` unchanged, or SelectionError (kind INVALID) naming its first control character."""
    for index, char in enumerate(value, start=1):
        if unicodedata.category(char) == "Cc":  # C0 (NUL, tab, newline...), DEL and C1: never part of a name
            shown = echo(value.encode("unicode_escape").decode("ascii"))
            raise SelectionError(f"{where} holds a control character (U+{ord(char):04X}) at character {index}: "
                                 f"{shown!r}", bad_value=shown, kind=INVALID)
    return value


def clean(value: object, what: str = "value", position: int | None = None) -> str:
    """One typed value, checked and normalised; SelectionError (kind INVALID) when it cannot be a name."""
    where = f"{what} #{position}" if position is not None else what
    if not isinstance(value, str):
        raise SelectionError(f"{where} must be text, not {type(value).__name__}", bad_value=repr(value)[:ECHO_LENGTH],
                             kind=INVALID)
    if len(value) > MAX_VALUE_LENGTH:
        raise SelectionError(f"{where} is {len(value)} characters long (at most {MAX_VALUE_LENGTH}): "
                             f"{echo(value)!r}", bad_value=echo(value), kind=INVALID)
    value = unicodedata.normalize("NFC", refuse_control_characters(value, where))
    return _FULL_WIDTH.sub(lambda found: unicodedata.normalize("NFKC", found.group()), value).strip()
