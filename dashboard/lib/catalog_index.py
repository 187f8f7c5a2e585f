"""The catalog page's data, arranged once per cache period so a rerun touches only one page of it.

Built from `core.catalog.coverage_table()` (one row per code, insurer and distinct raw name with its
status): per code its canonical name, category and, per insurer, the lines of its own raw names; and
the squashed strings the text search looks through. A rerun then reads the page's codes (a few dozen)
and the chosen insurers' cells, never the whole table (66,000 rows at 1 M facts, more at 5 M).
Pure (no Streamlit): dashboard.lib.data caches it, tests build it from a frame.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from core import catalog
from dashboard.lib.table import status_label

_SPACE = re.compile(r"\s+")

# Plain tuples, unpacked by the template's loops (Jinja's attribute lookups cost a call per value).
Name = tuple[str, str, str]  # one insurer's own name for a code: status (styling), title (what it stands for), name
#: code, canonical name, how many insurers carry it ("n / N"), names per chosen insurer (empty: none)
CatalogRow = tuple[str, str, str, list[list[Name]]]


def squash(value: object) -> str:
    """What the search compares: spaces and case ignored."""
    return _SPACE.sub("", str(value)).lower()


def _title(status: str, products: object) -> str:
    # The summary lists each name once per status: say how many products it stands for (a count of
    # products, never an amount).
    label = status_label(status)
    count = 0 if pd.isna(products) else int(products)  # numpy or Python int from the frame
    return f"{label} · 상품 {count}개" if count > 1 else label


@dataclass(frozen=True)
class Found:
    """What a search matched: codes in page order, and per code the insurers whose own name matched."""

    codes: tuple[str, ...]
    by_raw_name: dict[str, frozenset[str]]


@dataclass(frozen=True)
class CatalogIndex:
    #: every code in page order: category (catalog.CATEGORY_ORDER), then code
    codes: tuple[str, ...]
    canonical: dict[str, str]
    category: dict[str, str]
    #: code -> insurer name -> that insurer's lines for the code (stored order: raw name, status)
    cells: dict[str, dict[str, list[Name]]]
    #: (squashed raw name, code, insurer name), each distinct triple once
    raw_names: tuple[tuple[str, str, str], ...]
    #: every insurer as (key, name), key order: the columns to choose from
    insurers: tuple[tuple[str, str], ...]

    @property
    def insurer_count(self) -> int:
        return len(self.insurers)

    def search(self, query: str, categories: Sequence[str] = ()) -> Found:
        """Codes whose code, canonical name or any insurer's raw name contains `query` (spaces and case
        ignored), limited to `categories` when some are chosen; every code when nothing was typed."""
        wanted = set(categories)
        codes = [code for code in self.codes if not wanted or self.category[code] in wanted]
        needle = squash(query)
        if not needle:
            return Found(tuple(codes), {})
        by_raw: dict[str, set[str]] = defaultdict(set)
        for raw, code, insurer in self.raw_names:
            if needle in raw:
                by_raw[code].add(insurer)
        matched = [code for code in codes
                   if code in by_raw or needle in squash(code) or needle in squash(self.canonical[code])]
        return Found(tuple(matched), {code: frozenset(by_raw[code]) for code in matched if code in by_raw})

    def rows(self, codes: Sequence[str], insurers: Sequence[str]) -> list[CatalogRow]:
        """The table rows of `codes` (given order), one cell per insurer (given order)."""
        found = []
        for code in codes:
            cells = self.cells.get(code, {})
            found.append((code, self.canonical[code], f"{len(cells)} / {self.insurer_count}",
                          [cells.get(insurer, []) for insurer in insurers]))
        return found


def build(frame: pd.DataFrame, insurers: Sequence[tuple[str, str]] | None = None) -> CatalogIndex:
    """The index of a coverage_table() frame; `insurers` ((key, name), key order) defaults to the names
    in the frame, each its own key."""
    canonical: dict[str, str] = {}
    cells: dict[str, dict[str, list[Name]]] = defaultdict(lambda: defaultdict(list))
    built: dict[tuple[object, ...], Name] = {}
    raw_names: dict[tuple[str, str, str], None] = {}
    squashed: dict[str, str] = {}
    # One pass over plain column lists (itertuples over Arrow-backed strings, or a mask per code and
    # insurer, cost seconds at market scale); names repeat once per status, so each line is built once.
    columns = [frame[name].tolist() for name in ("coverage_code", "canonical_name", "insurer", "coverage_name_raw",
                                                 "status", "products")]
    for code, name, insurer, raw_name, status, products in zip(*columns, strict=True):
        canonical.setdefault(code, name)
        if not isinstance(insurer, str):  # NA: a code no product carries
            continue
        key = (raw_name, status, products)
        line = built.get(key)
        if line is None:
            line = built[key] = (status, _title(status, products), raw_name)
        cells[code][insurer].append(line)
        squashed_name = squashed.get(raw_name)
        if squashed_name is None:
            squashed_name = squashed[raw_name] = squash(raw_name)
        raw_names[(squashed_name, code, insurer)] = None
    category = {code: catalog.category_of(code) for code in canonical}
    rank = {name: position for position, name in enumerate(catalog.CATEGORY_ORDER)}
    codes = tuple(sorted(canonical, key=lambda code: (rank.get(category[code], len(rank)), code)))
    if insurers is None:
        present = sorted({insurer for by_insurer in cells.values() for insurer in by_insurer})
        insurers = [(name, name) for name in present]
    return CatalogIndex(codes, canonical, category, {code: dict(by) for code, by in cells.items()},
                        tuple(raw_names), tuple(insurers))
