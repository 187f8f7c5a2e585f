"""The comparison's selection <-> the URL: `?p=samsung_health_v1,kb_health_v1&c=A4200_1,A4101`.

Order matters (columns and rows follow it). Unknown or malformed values are dropped and reported
with core.selection's suggestions, never fatal; resolution IS core.selection (value by value), so
the URL accepts what the library accepts (product keys, insurer keys or names, product names,
lower-case codes, coverage names, full-width letters) and is rewritten in canonical form.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from core import catalog, selection
from core.errors import SelectionError
from core.selection import MAX_CODES, MAX_PRODUCTS

PRODUCTS, CODES = "p", "c"
#: the default comparison: cancer, cerebrovascular and heart diagnosis codes
DEFAULT_CODES: tuple[str, ...] = ("A4200_1", "A4210", "A4101", "A4102", "A4103", "A4104_1", "A4105")


@dataclass(frozen=True)
class Selection:
    products: tuple[str, ...]
    codes: tuple[str, ...]

    def to_params(self) -> dict[str, str]:
        """The URL form; an empty part is left out (opening it again falls back to the defaults)."""
        found = {PRODUCTS: ",".join(self.products), CODES: ",".join(self.codes)}
        return {name: value for name, value in found.items() if value}


@dataclass(frozen=True)
class Rejected:
    value: str
    suggestions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Parsed:
    """What the URL asked for: None when a parameter is absent; rejected values kept for the warning."""

    products: tuple[str, ...] | None
    codes: tuple[str, ...] | None
    rejected_products: list[Rejected] = field(default_factory=list)
    rejected_codes: list[Rejected] = field(default_factory=list)
    truncated: bool = False


def split(values: Sequence[str]) -> list[str]:
    """Comma lists and repeated parameters alike, blanks dropped."""
    # a full-width comma (typed with a Korean IME) separates like a comma
    return [part.strip() for value in values for part in str(value).replace("，", ",").split(",") if part.strip()]


def _resolve(values: list[str], limit: int, resolve: Callable[[str], str]) -> tuple[tuple[str, ...], list[Rejected], bool]:
    chosen: list[str] = []
    rejected: list[Rejected] = []
    for value in values[:limit]:
        try:
            key = resolve(value)
        except SelectionError as error:  # the value as the error echoes it (cut, control characters escaped)
            rejected.append(Rejected(error.bad_value or selection.echo(value), tuple(error.suggestions)))
            continue
        if key not in chosen:
            chosen.append(key)
    return tuple(chosen), rejected, len(values) > limit


def parse(get_all: Callable[[str], list[str]], products: Sequence[catalog.Product],
          coverages: Sequence[catalog.Coverage]) -> Parsed:
    """`get_all` is st.query_params.get_all (any callable giving a parameter's values)."""
    raw_products, raw_codes = split(get_all(PRODUCTS)), split(get_all(CODES))
    chosen_products, bad_products, cut_products = _resolve(
        raw_products, MAX_PRODUCTS, lambda value: selection.pick_products([value], products)[0].key)
    chosen_codes, bad_codes, cut_codes = _resolve(
        raw_codes, MAX_CODES, lambda value: selection.pick_coverages([value], coverages)[0].code)
    return Parsed(chosen_products if raw_products else None, chosen_codes if raw_codes else None,
                  bad_products, bad_codes, cut_products or cut_codes)


DEFAULT_PRODUCT_LIMIT = 10


def initial(parsed: Parsed, stored: Selection | None, products: Sequence[catalog.Product],
            coverages: Sequence[catalog.Coverage]) -> Selection:
    """URL first, then the selection kept from earlier in this session, then the defaults."""
    known_products = [product.key for product in products]
    known_codes = {coverage.code for coverage in coverages}
    # Every product of today's market (8), but never more than a screen holds at market scale.
    default = Selection(tuple(known_products[:DEFAULT_PRODUCT_LIMIT]),
                        tuple(code for code in DEFAULT_CODES if code in known_codes))
    if stored is not None:  # kept from another database (settings changed): only what still exists
        stored = Selection(tuple(key for key in stored.products if key in known_products),
                           tuple(code for code in stored.codes if code in known_codes))
    chosen_products = parsed.products or (stored.products if stored and stored.products else default.products)
    chosen_codes = parsed.codes or (stored.codes if stored and stored.codes else default.codes)
    return Selection(tuple(chosen_products), tuple(chosen_codes))


def describe_rejected(kind: str, rejected: list[Rejected]) -> str:
    parts = []
    for item in rejected:
        hint = f" (비슷한 값: {', '.join(item.suggestions)})" if item.suggestions else ""
        parts.append(f"'{item.value}'{hint}")
    return f"URL에서 알 수 없는 {kind} 값을 제외했습니다: " + "; ".join(parts)


def same(params: Any, selection: Selection) -> bool:
    """Whether the URL already says `selection` (avoids rewriting it on every rerun)."""
    current = {name: ",".join(params.get_all(name)) for name in (PRODUCTS, CODES) if params.get_all(name)}
    return current == selection.to_params()
