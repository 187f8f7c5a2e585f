"""The dataset's facts, read straight from data/dataset without core: the expected answer for pages.

Dashboard tests that compared a page with core.compare for the same selection could not see a bug
in core (both sides would carry it). These helpers read the card files, insurers.csv, products.yml
and the mapping workbook themselves and state what a page must show, by the rules in
docs/dashboard.md: a CONFIRMED amount as its `value_text`, an UNCONFIRMED one as "금액 미기재", a
product without the code as "해당 담보 없음", several raw coverages of one product under one code
as one line each, "raw name: text", in code-point order of the raw name.
"""

from __future__ import annotations

import csv
import functools
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml

DATASET = Path(__file__).resolve().parent.parent / "data" / "dataset"
# Written out here on purpose (not imported from core): the test states the words it expects.
UNCONFIRMED_TEXT = "금액 미기재"
NOT_AVAILABLE_TEXT = "해당 담보 없음"
HEAD = ["코드", "담보명"]


@dataclass(frozen=True)
class Card:
    insurer: str
    raw_name: str
    code: str | None  # None: unmatched (no canonical code)
    status: str  # CONFIRMED | UNCONFIRMED
    value_text: str | None
    proposal_snippet: str | None

    @property
    def shown(self) -> str:
        return self.value_text if self.status == "CONFIRMED" and self.value_text is not None else UNCONFIRMED_TEXT


@functools.cache
def cards() -> tuple[Card, ...]:
    found = []
    for path in sorted((DATASET / "cards").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            card = json.loads(line)
            amount = card["amount"]
            found.append(Card(card["insurer"], card["coverage_name_raw"], card["coverage_code"], amount["status"],
                              amount["value_text"], (amount.get("evidence_ref") or {}).get("snippet")))
    return tuple(found)


@functools.cache
def _by_code() -> dict[tuple[str, str], list[Card]]:
    grouped: dict[tuple[str, str], list[Card]] = defaultdict(list)
    for card in cards():
        if card.code is not None:
            grouped[(card.insurer, card.code)].append(card)
    return {key: sorted(found, key=lambda card: card.raw_name) for key, found in grouped.items()}


@functools.cache
def product_insurer() -> dict[str, str]:
    """product key -> insurer key (metadata/products.yml)."""
    products = yaml.safe_load((DATASET / "metadata" / "products.yml").read_text(encoding="utf-8"))["products"]
    return {product["product_key"]: product["insurer_key"] for product in products}


@functools.cache
def insurer_names() -> dict[str, str]:
    """insurer key -> the corrected Korean name (insurers.csv), the column heading of its one product."""
    with (DATASET / "insurers.csv").open(encoding="utf-8", newline="") as handle:
        return {row["insurer_key"]: row["insurer_name_ko"] for row in csv.DictReader(handle)}


@functools.cache
def canonical_names() -> dict[str, frozenset[str]]:
    """code -> the canonical names the mapping workbook gives it (one code has two)."""
    mapping = pd.read_excel(DATASET / "mapping" / "coverage_mapping.xlsx", dtype=str)
    return {code: frozenset(rows["신정원코드명"]) for code, rows in mapping.groupby("cre_cvr_cd")}


def label(product_key: str) -> str:
    return insurer_names()[product_insurer()[product_key]]


def cards_for(product_key: str, code: str) -> list[Card]:
    """The product's cards under `code`, in display order (raw name, code point)."""
    return _by_code().get((product_insurer()[product_key], code), [])


def cell_lines(product_key: str, code: str) -> list[str]:
    found = cards_for(product_key, code)
    if not found:
        return [NOT_AVAILABLE_TEXT]
    if len(found) == 1:
        return [found[0].shown]
    return [f"{card.raw_name}: {card.shown}" for card in found]


def cell_text(product_key: str, code: str) -> str:
    return "\n".join(cell_lines(product_key, code))


def expected_rows(product_keys: list[str], codes: list[str]) -> list[list[str]]:
    """Product cells per code row, in the chosen orders (code and name columns left out)."""
    return [[cell_text(key, code) for key in product_keys] for code in codes]


def assert_page_table(shown: pd.DataFrame, product_keys: list[str], codes: list[str]) -> None:
    """`shown` (a parsed comparison table) holds exactly the dataset's facts for this selection."""
    assert list(shown.columns) == [*HEAD, *(label(key) for key in product_keys)]
    assert shown["코드"].tolist() == codes
    for code, name in zip(codes, shown["담보명"], strict=True):
        assert name in canonical_names()[code], (code, name)
    assert shown.iloc[:, 2:].astype(str).values.tolist() == expected_rows(product_keys, codes)


def unmatched(product_key: str) -> list[Card]:
    """The product's cards without a canonical code, in display order."""
    insurer = product_insurer()[product_key]
    return sorted((card for card in cards() if card.insurer == insurer and card.code is None),
                  key=lambda card: card.raw_name)


@functools.cache
def snippets_of(insurer: str, raw_name: str) -> tuple[str, ...]:
    """Every snippet text the dataset files hold for one instance: its card's proposal snippet and the
    evidence pack's snippets for it (read from the files, not the database)."""
    found = [card.proposal_snippet for card in cards()
             if card.insurer == insurer and card.raw_name == raw_name and card.proposal_snippet]
    for path in sorted((DATASET / "evidence_pack").glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line) if line.strip() else None
            if record and record["insurer"] == insurer and record["coverage_name_raw"] == raw_name:
                found += [snippet["snippet"] for snippet in record["evidences"]]
    return tuple(found)
