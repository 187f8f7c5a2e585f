"""What can be compared: insurers, products (with variants), canonical coverages and raw names.

Read-only and catalog-sized (never one row per amount fact: the raw names and per-insurer counts come
from schema 006's summaries); the dashboard caches these, notebooks call them directly.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

import pandas as pd
from sqlalchemy import Connection, text

from core import db
from core.user_input import clean

# Code family -> category, longest prefix first. The families follow the 신정원 unified codes.
CATEGORIES: tuple[tuple[str, str], ...] = (
    ("A41", "뇌·심장 진단"),
    ("A42", "암 진단"),
    ("A43", "골절·화상 진단"),
    ("A1", "사망"),
    ("A3", "후유장해"),
    ("A5", "수술"),
    ("A6", "입원"),
    ("A9", "치료"),
)
OTHER_CATEGORY = "기타"
CATEGORY_ORDER: tuple[str, ...] = ("사망", "후유장해", "뇌·심장 진단", "암 진단", "골절·화상 진단", "수술", "입원", "치료",
                                   OTHER_CATEGORY)


def category_of(code: str) -> str:
    for prefix, category in CATEGORIES:
        if code.startswith(prefix):
            return category
    return OTHER_CATEGORY


@dataclass(frozen=True)
class Insurer:
    key: str
    name: str
    name_en: str | None
    insurer_type: str
    mapping_code: str | None


@dataclass(frozen=True)
class Variant:
    key: str
    name: str


@dataclass(frozen=True)
class Product:
    key: str
    name: str
    insurer_key: str
    insurer_name: str
    product_code: str | None
    version: str | None
    effective_date: date | None
    variants: tuple[Variant, ...]
    #: column heading: the insurer's name, or insurer + product when the insurer has several
    label: str


@dataclass(frozen=True)
class Coverage:
    code: str
    name: str
    category: str
    other_names: tuple[str, ...]


@dataclass(frozen=True)
class RawName:
    """One insurer's own name for a code, with one stored status (a name may appear once per status)."""

    coverage_code: str
    insurer_key: str
    insurer_name: str
    raw_name: str
    status: str
    #: how many of the insurer's products carry this name with this status
    products: int


def insurers() -> list[Insurer]:
    with db.read() as conn:
        rows = conn.execute(
            text("SELECT insurer_key, name_ko, name_en, insurer_type, mapping_code FROM insurer ORDER BY insurer_key")
        ).all()
    return [Insurer(row.insurer_key, row.name_ko, row.name_en, row.insurer_type, row.mapping_code) for row in rows]


# Variants are aggregated per product first (one small hash aggregate) and joined once, rather than
# grouping the product x variant join (~12 ms in the server at 2,000 products: 50 insurers x 40); the
# dashboard asks for it on every page view (cached for INCA_CACHE_TTL).
_ALL_PRODUCTS_SQL = text(
    """
    SELECT p.product_key, p.product_name, i.insurer_key, i.name_ko, p.product_code, p.version, p.effective_date,
           coalesce(v.keys, '{}') AS variant_keys, coalesce(v.names, '{}') AS variant_names,
           count(*) OVER (PARTITION BY p.insurer_id) AS siblings
    FROM product p
    JOIN insurer i ON i.insurer_id = p.insurer_id
    LEFT JOIN (SELECT product_id, array_agg(variant_key ORDER BY variant_key) AS keys,
                      array_agg(variant_name ORDER BY variant_key) AS names
               FROM product_variant GROUP BY product_id) v ON v.product_id = p.product_id
    ORDER BY i.insurer_key, p.product_key
    """
)
# Only the products a selection names (by product key, product name, insurer key or insurer name), with every product
# of a named insurer (so "one product per insurer" is decided as with the full list) and the sibling
# count that makes the column label: compare() resolves its selection with this instead of the whole
# catalog. Each kind of name is its own lookup and the chosen ids their union, so a product key is one
# probe of its unique index (one filter of the four ORs over every product of every insurer took
# 0.73 ms against 0.47 ms for 10 keys among 2,000 products at a million facts).
# Written in the driver's parameter style: compare() sends it in its pipeline (core.comparison._fetch).
NAMED_PRODUCTS_QUERY = """
    WITH chosen AS (
        SELECT p.product_id FROM product p WHERE p.product_key IN (SELECT unnest(CAST(%(names)s AS text[])))
        UNION SELECT p.product_id FROM product p WHERE p.product_name IN (SELECT unnest(CAST(%(names)s AS text[])))
        UNION SELECT p.product_id FROM insurer i JOIN product p ON p.insurer_id = i.insurer_id
              WHERE i.insurer_key IN (SELECT unnest(CAST(%(names)s AS text[])))
                 OR i.name_ko IN (SELECT unnest(CAST(%(names)s AS text[])))
    )
    SELECT p.product_key, p.product_name, i.insurer_key, i.name_ko, p.product_code, p.version, p.effective_date,
           coalesce(v.keys, '{}') AS variant_keys, coalesce(v.names, '{}') AS variant_names,
           (SELECT count(*) FROM product s WHERE s.insurer_id = p.insurer_id) AS siblings
    FROM chosen JOIN product p ON p.product_id = chosen.product_id
    JOIN insurer i ON i.insurer_id = p.insurer_id
    LEFT JOIN LATERAL (SELECT array_agg(variant_key ORDER BY variant_key) AS keys,
                              array_agg(variant_name ORDER BY variant_key) AS names
                       FROM product_variant pv WHERE pv.product_id = p.product_id) v ON true
    ORDER BY i.insurer_key, p.product_key
"""
COVERAGES_QUERY = "SELECT coverage_code, canonical_name, other_names FROM coverage_canonical ORDER BY coverage_code"
# By code or canonical name (core.selection accepts an unambiguous name), every code of a name included.
# `x IN (SELECT unnest(names))` rather than `x = ANY(names)` in both: compare's statements run prepared
# (generic plans), where `= ANY($1)` compares every row with every name in turn (300 codes x 50 names:
# 0.45 ms) and IN probes one hashed set per row (0.17 ms); same rows (the columns are never NULL).
NAMED_COVERAGES_QUERY = ("SELECT coverage_code, canonical_name, other_names FROM coverage_canonical "
                         "WHERE coverage_code IN (SELECT unnest(CAST(%(codes)s AS text[]))) "
                         "OR canonical_name IN (SELECT unnest(CAST(%(codes)s AS text[]))) ORDER BY coverage_code")


def products_from_rows(rows: Iterable[Any]) -> list[Product]:
    """Products from rows of the product queries, read by column name (SQLAlchemy rows or the driver's
    named tuples), so the queries' column order is no contract."""
    found = []
    for row in rows:
        label = row.name_ko if row.siblings == 1 else f"{row.name_ko} {row.product_name}"
        variants = tuple(Variant(k, n) for k, n in zip(row.variant_keys, row.variant_names, strict=True))
        found.append(Product(row.product_key, row.product_name, row.insurer_key, row.name_ko, row.product_code,
                             row.version, row.effective_date, variants, label))
    return found


def _products(conn: Connection, names: list[str] | None = None) -> list[Product]:
    if names is None:
        return products_from_rows(conn.execute(_ALL_PRODUCTS_SQL).all())
    return products_from_rows(conn.exec_driver_sql(NAMED_PRODUCTS_QUERY, {"names": names}).all())


def products(names: Sequence[str] | None = None) -> list[Product]:
    """Every product with its variants, ordered by insurer key then product key; with `names`, only
    the products named by key, insurer key or Korean insurer name (every product of a named insurer).

    The named form is what a request should read at market scale: 2,000 products cost ~30 ms to
    read whole (10,000: ~300 ms), a handful of insurers well under a millisecond.
    """
    if isinstance(names, str):  # one name, not its characters
        names = [names]
    # checked before any query: a NUL would otherwise reach the driver (PostgreSQL text cannot hold it)
    asked = None if names is None else [clean(name, "product", position) for position, name in enumerate(names, 1)]
    with db.read() as conn:
        return _products(conn, asked)


def coverages_from_rows(rows: Iterable[Any]) -> list[Coverage]:
    """Coverages from rows of the coverage queries, read by column name."""
    return [Coverage(row.coverage_code, row.canonical_name, category_of(row.coverage_code), tuple(row.other_names))
            for row in rows]


def _coverages(conn: Connection, codes: list[str] | None = None) -> list[Coverage]:
    if codes is None:
        return coverages_from_rows(conn.exec_driver_sql(COVERAGES_QUERY).all())
    return coverages_from_rows(conn.exec_driver_sql(NAMED_COVERAGES_QUERY, {"codes": codes}).all())


def coverages() -> list[Coverage]:
    """Every canonical coverage, in code order."""
    with db.read() as conn:
        return _coverages(conn)


# Schema 006's summaries (materialized by the audited load). A database not yet migrated to 006 (the
# reader cannot migrate) is read with the same aggregation computed live from the locked tables: slower
# at market scale, same rows; tests/test_catalog_summary.py holds the two equal.
_SUMMARY_CHECK_SQL = text("SELECT to_regclass('public.catalog_raw_name') IS NOT NULL "
                          "AND to_regclass('public.insurer_status_count') IS NOT NULL")
_RAW_NAME_LIVE = """(
    SELECT ci.coverage_code, i.insurer_key, i.name_ko AS insurer_name, ci.coverage_name_raw, af.status,
           count(DISTINCT ci.product_id) AS products, count(*) AS instances
    FROM coverage_instance ci
    JOIN insurer i ON i.insurer_id = ci.insurer_id
    LEFT JOIN amount_fact af ON af.instance_id = ci.instance_id
    GROUP BY ci.coverage_code, i.insurer_key, i.name_ko, ci.coverage_name_raw, af.status)"""


def _raw_name_source(conn: Connection) -> str:
    """FROM-clause source of the raw-name summary: the view, or its query. Constant SQL, never input."""
    return "catalog_raw_name" if conn.execute(_SUMMARY_CHECK_SQL).scalar_one() else _RAW_NAME_LIVE


def _fetch_names(conn: Connection, columns: Sequence[str], code: str | None, with_status: bool) -> list[tuple[Any, ...]]:
    """Matched raw names in (code, insurer key, raw name, status) order: the view's key order, so the
    planner reads its index and never sorts (a sort of the ~66,000 names at a million facts spilled to
    disk: 320 ms). Plain tuples from the driver (SQLAlchemy rows cost ~110 ms more at that size), whose
    order is `columns` (the SELECT is built from them, so callers name what they read)."""
    where = "r.coverage_code IS NOT NULL" if code is None else "r.coverage_code = %(code)s"  # constant fragments
    sql = (f"SELECT {', '.join(f'r.{column}' for column in columns)} FROM {_raw_name_source(conn)} AS r WHERE {where}"
           + (" AND r.status IS NOT NULL" if with_status else "")
           + " ORDER BY r.coverage_code, r.insurer_key, r.coverage_name_raw, r.status")
    return list(conn.connection.driver_connection.execute(sql, {"code": code}).fetchall())


# RawName's fields and the summary's columns they come from (constant identifiers, never input)
_RAW_NAME_FIELDS = ("coverage_code", "insurer_key", "insurer_name", "raw_name", "status", "products")
_RAW_NAME_COLUMNS = ("coverage_code", "insurer_key", "insurer_name", "coverage_name_raw", "status", "products")


def raw_names(code: str | None = None) -> list[RawName]:
    """Each insurer's own names and stored status for `code` (every code when None): one entry per
    distinct (code, insurer, raw name, status), with how many of the insurer's products carry it.

    Distinct names, not one row per product: the amounts of a name differ between products, so they
    are not here; `compare()` gives them per product with their evidence.
    """
    code = None if code is None else clean(code, "coverage code")
    with db.read() as conn:
        rows = _fetch_names(conn, _RAW_NAME_COLUMNS, code, with_status=True)
    return [RawName(**dict(zip(_RAW_NAME_FIELDS, row, strict=True))) for row in rows]


COVERAGE_TABLE_COLUMNS = ("coverage_code", "canonical_name", "category", "insurer", "coverage_name_raw", "status",
                          "products")


_TABLE_COLUMNS = ("coverage_code", "insurer_name", "coverage_name_raw", "status", "products")


def coverage_table() -> pd.DataFrame:
    """One row per canonical coverage and distinct insurer raw name with its stored status: the catalog
    page and notebooks use it. `products` counts the insurer's products carrying that name with that
    status; a code no product carries has one row with NA name, status and count.

    No `value_text`: one name stands for many products whose amounts differ (use `compare()`).
    """
    with db.read() as conn:
        codes = conn.exec_driver_sql(COVERAGES_QUERY).all()
        names = _fetch_names(conn, _TABLE_COLUMNS, None, with_status=False)
    canonical = pd.DataFrame([(row.coverage_code, row.canonical_name) for row in codes],
                             columns=["coverage_code", "canonical_name"])
    # The 300 canonical rows joined here rather than in SQL, where the join's order would need a sort of
    # every name: a left merge keeps the code order and, within a code, the names' order.
    frame = canonical.merge(pd.DataFrame(names, columns=["coverage_code", "insurer", "coverage_name_raw", "status",
                                                         "products"]),  # _TABLE_COLUMNS, insurer_name as insurer
                            on="coverage_code", how="left", sort=False)
    frame["products"] = frame["products"].astype("Int64")  # NA for a code without names, never a float
    frame.insert(2, "category", frame["coverage_code"].map({row.coverage_code: category_of(row.coverage_code)
                                                            for row in codes}))
    return frame


_STATUS_COUNTS_LIVE_SQL = text(
    """
    SELECT i.insurer_key, i.name_ko AS insurer,
           count(*) FILTER (WHERE ci.coverage_code IS NOT NULL AND af.status = 'CONFIRMED') AS confirmed,
           count(*) FILTER (WHERE ci.coverage_code IS NOT NULL AND af.status = 'UNCONFIRMED') AS unconfirmed,
           count(*) FILTER (WHERE ci.coverage_code IS NULL AND ci.instance_id IS NOT NULL) AS unmatched
    FROM insurer i
    LEFT JOIN coverage_instance ci ON ci.insurer_id = i.insurer_id
    LEFT JOIN amount_fact af ON af.instance_id = ci.instance_id
    GROUP BY i.insurer_id, i.insurer_key, i.name_ko
    ORDER BY i.insurer_key
    """
)
_STATUS_COUNTS_SQL = text(
    "SELECT insurer_key, insurer_name AS insurer, confirmed, unconfirmed, unmatched FROM insurer_status_count "
    "ORDER BY insurer_key"
)


def status_counts() -> pd.DataFrame:
    """Per insurer (in key order): coverages by stored status, and coverages without a canonical code.

    A data-completeness view (the status page charts it): it counts rows, never amounts, and the
    three columns partition each insurer's coverage instances.
    """
    with db.read() as conn:
        summarised = conn.execute(_SUMMARY_CHECK_SQL).scalar_one()
        rows = conn.execute(_STATUS_COUNTS_SQL if summarised else _STATUS_COUNTS_LIVE_SQL).mappings().all()
    columns = ["insurer_key", "insurer", "confirmed", "unconfirmed", "unmatched"]
    return pd.DataFrame([{column: row[column] for column in columns} for row in rows], columns=columns)
