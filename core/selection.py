"""What a user typed -> the products and coverages it names: ONE resolver for the library, the API and
the dashboard, with one closest-match rule, so every shell refuses the same values the same way.

    sel = core.selection.resolve(["삼성화재", "kb_health_v1"], ["A4200_1", "a4101"])
    sel.products, sel.coverages          # catalog.Product / catalog.Coverage, in the given order
    core.compare(sel)                    # compares without resolving again

Accepted for a product: its key, its insurer's key (any case) or Korean name when the insurer has one
product, or its exact product name; `ProductRef(insurer, product)` names an insurer and one of its
products (the HTTP API's shape). For a coverage: its code (any case) or its canonical name when one
code has it. A bad value is ONE `SelectionError` naming it, with `suggestions` (closest first) and
`valid` (every accepted spelling of its kind, when the catalog was read whole).

This is the library's edge for typed text: values must be `str`; they are NFC-normalised with
full-width ASCII folded to half-width (Hangul stays as typed, in NFC); control characters (C0, DEL,
C1, NUL included) and values over MAX_VALUE_LENGTH are refused here, before any query.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy import Connection

from core import catalog, db
from core.errors import SelectionError

# re-exported under their old names: the shells and the tests read them here
from core.user_input import ECHO_LENGTH as ECHO_LENGTH
from core.user_input import INVALID as INVALID
from core.user_input import MAX_VALUE_LENGTH as MAX_VALUE_LENGTH
from core.user_input import clean as clean
from core.user_input import echo as echo

#: limits that keep one request bounded (the API and the dashboard refuse or cut beyond them)
MAX_PRODUCTS = 50
MAX_CODES = 500
_CODE_FORMAT = re.compile(r"^[A-Z]\d{4}(_\d+)?$")
# Error kinds (SelectionError.kind), so a shell can map them (the API: 404 for unknown, 422 otherwise).
EMPTY, TOO_MANY, UNKNOWN_PRODUCT, UNKNOWN_INSURER, UNKNOWN_COVERAGE, AMBIGUOUS, DUPLICATE, NOT_LOADED = (
    "empty", "too many", "unknown product", "unknown insurer", "unknown coverage", "ambiguous",
    "duplicate", "not loaded")


class ProductRef(NamedTuple):
    """An insurer (key or Korean name) and, when it has several products, one of them (name or key)."""

    insurer: str
    product: str | None = None


@dataclass(frozen=True)
class Selection:
    """A resolved selection: products in the given order; coverages in the given order, or None for
    "every code any of the products has" (decided by compare)."""

    products: tuple[catalog.Product, ...]
    coverages: tuple[catalog.Coverage, ...] | None = None

    @property
    def product_keys(self) -> list[str]:
        return [product.key for product in self.products]

    @property
    def codes(self) -> list[str] | None:
        return None if self.coverages is None else [coverage.code for coverage in self.coverages]


# --- input hygiene: core.user_input (shared with the catalog and the search, below this module) ---

def closest(value: str, choices: Sequence[str], limit: int = 3) -> list[str]:
    """The one closest-match rule: choices containing what was typed ("암진단비" -> "암진단비(유사암제외)",
    a fragment of a long product name), then similar spellings; case is ignored. Empty when none is close."""
    folded = value.casefold()
    containing = [choice for choice in choices if folded and folded in choice.casefold()]
    similar = difflib.get_close_matches(value, choices, n=limit, cutoff=0.4)
    return list(dict.fromkeys([*containing, *similar]))[:limit]


def _products_asked(requested: Sequence[str | ProductRef] | str | ProductRef) -> list[str | ProductRef]:
    asked = [requested] if isinstance(requested, str | ProductRef) else list(requested)
    if not asked:
        raise SelectionError("비교할 상품을 하나 이상 선택하세요 (choose at least one product; see core.catalog.products())",
                             kind=EMPTY)
    if len(asked) > MAX_PRODUCTS:
        raise SelectionError(f"한 번에 최대 {MAX_PRODUCTS}개 상품까지 비교할 수 있습니다 ({len(asked)}개 요청)",
                             kind=TOO_MANY)
    found: list[str | ProductRef] = []
    for position, item in enumerate(asked, start=1):
        if isinstance(item, ProductRef):
            product = None if item.product is None else clean(item.product, "product", position) or None
            found.append(ProductRef(clean(item.insurer, "insurer", position), product))
        else:
            found.append(clean(item, "product", position))
    return found


def _codes_asked(requested: Sequence[str] | str | None) -> list[str] | None:
    if requested is None:
        return None
    asked = [requested] if isinstance(requested, str) else list(requested)
    if not asked:
        raise SelectionError("비교할 담보 코드를 하나 이상 지정하세요, or pass coverage_codes=None for every code",
                             kind=EMPTY)
    if len(asked) > MAX_CODES:
        raise SelectionError(f"한 번에 최대 {MAX_CODES}개 담보까지 비교할 수 있습니다 ({len(asked)}개 요청)",
                             kind=TOO_MANY)
    return [clean(code, "coverage code", position) for position, code in enumerate(asked, start=1)]


@dataclass(frozen=True)
class Request:
    """Cleaned values, before lookup; `lookup_names`/`lookup_codes` are the parameters of the catalog's
    named queries (the candidates a decision needs, so it decides as the whole catalog would)."""

    products: list[str | ProductRef]
    codes: list[str] | None

    @property
    def lookup_names(self) -> list[str]:
        names = [part for item in self.products
                 for part in ((item.insurer, item.product) if isinstance(item, ProductRef) else (item,)) if part]
        return list(dict.fromkeys([*names, *(name.lower() for name in names)]))

    @property
    def lookup_codes(self) -> list[str]:
        return list(dict.fromkeys([*(self.codes or ()), *(code.upper() for code in self.codes or ())]))


def request(products: Sequence[str | ProductRef] | str | ProductRef,
            coverage_codes: Sequence[str] | str | None = None) -> Request:
    """Check and normalise what was typed; refused before any query when empty, too many or malformed."""
    return Request(_products_asked(products), _codes_asked(coverage_codes))


# --- deciding against a catalog -----------------------------------------------------------------

def _by(known: Sequence[catalog.Product]) -> dict[str, dict[str, list[catalog.Product]]]:
    index: dict[str, dict[str, list[catalog.Product]]] = {"key": {}, "insurer": {}, "name": {}}
    for product in known:
        index["key"].setdefault(product.key, []).append(product)
        for name in dict.fromkeys((product.insurer_key, product.insurer_name)):
            index["insurer"].setdefault(name, []).append(product)
        index["name"].setdefault(product.name, []).append(product)
    return index


def _one_product(value: str, index: dict[str, dict[str, list[catalog.Product]]],
                 known: Sequence[catalog.Product]) -> catalog.Product:
    for kind in ("key", "insurer", "name"):
        found = index[kind].get(value) or index[kind].get(value.lower())
        if found and len(found) == 1:
            return found[0]
        if found:
            options = [product.key for product in found]
            raise SelectionError(f"{value!r} has {len(options)} products; name one of: {', '.join(options)}",
                                 bad_value=value, suggestions=options, valid=options, kind=AMBIGUOUS)
    valid = list(dict.fromkeys([*(p.key for p in known), *sorted({p.insurer_key for p in known}),
                                *sorted({p.insurer_name for p in known}), *(p.name for p in known)]))
    suggestions = closest(value, valid)
    raise SelectionError(f"unknown product or insurer {value!r}; closest: {', '.join(suggestions) or '—'}",
                         bad_value=value, suggestions=suggestions, valid=valid, kind=UNKNOWN_PRODUCT)


def _referenced_product(ref: ProductRef, index: dict[str, dict[str, list[catalog.Product]]],
                        known: Sequence[catalog.Product]) -> catalog.Product:
    candidates = index["insurer"].get(ref.insurer) or index["insurer"].get(ref.insurer.lower())
    if not candidates:
        valid = [*dict.fromkeys(p.insurer_name for p in known), *dict.fromkeys(p.insurer_key for p in known)]
        raise SelectionError(f"no insurer {ref.insurer!r}; use a Korean name (e.g. {known[0].insurer_name}) or a key "
                             f"(e.g. {known[0].insurer_key})", bad_value=ref.insurer,
                             suggestions=closest(ref.insurer, valid), valid=valid, kind=UNKNOWN_INSURER)
    names = [product.name for product in candidates]
    if ref.product:
        matches = [p for p in candidates if ref.product in (p.name, p.key)]
        if not matches:
            raise SelectionError(f"{candidates[0].insurer_name} has no product named {ref.product!r}; give its exact "
                                 "name or product key, or leave the product out when the insurer has one product",
                                 bad_value=ref.product, suggestions=closest(ref.product, names),
                                 valid=names + [p.key for p in candidates], kind=UNKNOWN_PRODUCT)
        return matches[0]
    if len(candidates) > 1:
        raise SelectionError(f"{candidates[0].insurer_name} has {len(candidates)} products; name one of them",
                             bad_value=ref.insurer, suggestions=names, valid=names, kind=AMBIGUOUS)
    return candidates[0]


def pick_products(requested: Sequence[str | ProductRef] | str | ProductRef,
                  known: Sequence[catalog.Product]) -> tuple[catalog.Product, ...]:
    """The products `requested` names among `known`, in the given order; each at most once."""
    asked = requested.products if isinstance(requested, Request) else _products_asked(requested)
    if not known:
        raise SelectionError("the database holds no products: run `python -m core load` (see core.status.collect())",
                             kind=NOT_LOADED)
    index = _by(known)
    chosen: list[catalog.Product] = []
    for item in asked:
        product = (_referenced_product(item, index, known) if isinstance(item, ProductRef)
                   else _one_product(item, index, known))
        if product in chosen:
            value = item.insurer if isinstance(item, ProductRef) else item
            raise SelectionError(f"{product.label} ({product.key}) is listed twice; list each product once",
                                 bad_value=value, kind=DUPLICATE)
        chosen.append(product)
    return tuple(chosen)


def pick_coverages(requested: Sequence[str] | str, known: Sequence[catalog.Coverage]) -> tuple[catalog.Coverage, ...]:
    """The coverages `requested` names (codes in any case, or unambiguous canonical names), in the given
    order; a coverage named twice is shown once."""
    asked = requested.codes if isinstance(requested, Request) else _codes_asked(requested)
    by_code = {coverage.code: coverage for coverage in known}
    by_name: dict[str, list[catalog.Coverage]] = {}
    for coverage in known:
        by_name.setdefault(coverage.name, []).append(coverage)
    chosen: dict[str, catalog.Coverage] = {}
    for value in asked or ():
        code = value.upper()
        named = by_name.get(value, [])
        if code in by_code:
            coverage = by_code[code]
        elif len(named) == 1:
            coverage = named[0]
        elif named:
            options = [coverage.code for coverage in named]
            raise SelectionError(f"{value!r} is the name of {len(named)} codes; give one of: {', '.join(options)}",
                                 bad_value=value, suggestions=options, valid=options, kind=AMBIGUOUS)
        else:
            if _CODE_FORMAT.match(code):
                suggestions, shape = closest(code, list(by_code)) or list(by_code)[:3], ""
            else:  # a name: suggest the codes of the closest names
                codes_of = {coverage.name: coverage.code for coverage in known}
                suggestions = [codes_of[name] for name in closest(value, list(codes_of))] or list(by_code)[:3]
                shape = " (codes look like A4200_1)"
            raise SelectionError(f"unknown coverage code {value!r}{shape}; closest: {', '.join(suggestions)}",
                                 bad_value=value, suggestions=suggestions, valid=list(by_code), kind=UNKNOWN_COVERAGE)
        chosen.setdefault(coverage.code, coverage)
    return tuple(chosen.values())


def decide(asked: Request, products: Sequence[catalog.Product],
           coverages: Sequence[catalog.Coverage] | None) -> Selection:
    """Pure: `asked` against catalog rows (coverages may be None when every code is asked for)."""
    chosen = pick_products(asked, products)
    return Selection(chosen, None if asked.codes is None else pick_coverages(asked, coverages or ()))


def decide_rows(conn: Connection, asked: Request, product_rows: Sequence[Sequence[Any]],
                coverage_rows: Sequence[Sequence[Any]] | None) -> Selection:
    """Decide on the candidate rows the named queries returned; on an error decide again on the whole
    catalog, in the same transaction, so the error (and its suggestions) is the whole catalog's."""
    return decide_in(conn, asked, catalog.products_from_rows(product_rows),
                     None if coverage_rows is None else catalog.coverages_from_rows(coverage_rows))


def decide_in(conn: Connection, asked: Request, products: Sequence[catalog.Product],
              coverages: Sequence[catalog.Coverage] | None) -> Selection:
    """decide_rows on candidates already built (compare keeps them while the locked tables are unwritten)."""
    try:
        return decide(asked, products, coverages)
    except SelectionError:
        return decide(asked, catalog._products(conn), None if asked.codes is None else catalog._coverages(conn))


def resolve_in(conn: Connection, asked: Request) -> Selection:
    """Resolve on an open reading connection (its transaction is the snapshot)."""
    product_rows = conn.exec_driver_sql(catalog.NAMED_PRODUCTS_QUERY, {"names": asked.lookup_names}).all()
    coverage_rows = (None if asked.codes is None else
                     conn.exec_driver_sql(catalog.NAMED_COVERAGES_QUERY, {"codes": asked.lookup_codes}).all())
    return decide_rows(conn, asked, product_rows, coverage_rows)


@contextmanager
def _reading(conn: Connection | None) -> Iterator[Connection]:
    if conn is not None:
        yield conn
        return
    with db.read() as opened:
        yield opened


def resolve(products: Sequence[str | ProductRef] | str | ProductRef,
            coverage_codes: Sequence[str] | str | None = None, *, conn: Connection | None = None) -> Selection:
    """What a user typed -> a Selection, or one SelectionError naming the bad value (see the module doc).

    `coverage_codes=None` means every code; `conn` reuses an open reading connection (its snapshot).
    """
    asked = request(products, coverage_codes)  # malformed, none or too many: refused before any query
    with _reading(conn) as reading:
        return resolve_in(reading, asked)
