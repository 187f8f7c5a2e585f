"""Cached access to `core`: small results only, keyed by the database the environment points at.

Caches are process-wide (shared by every browser session), so every cached call takes `db_key()`:
a different DATABASE_URL (another deployment, or another test database) never sees results of the
previous one. Only small results are cached: catalogs, one comparison, per-insurer counts. The
status report is not cached: operators must see the live state (the lock's fingerprint has its own
witness-keyed cache in core.lock).
"""

from __future__ import annotations

import hashlib

import pandas as pd
import streamlit as st

from core import LockState, catalog, comparison, condition_slots, config, status
from core.config import Connections
from core.errors import ConfigError
from dashboard.lib import catalog_index


def _ttl() -> int:
    # A malformed value must not crash the import; guard.ensure_ready() reports it on every page.
    try:
        return config.settings().cache_ttl
    except ConfigError:
        return 60


TTL = _ttl()
#: bound on cached comparisons (each one is a few hundred cells at most)
MAX_CACHED_COMPARISONS = 64


def db_key() -> str:
    """Identity of the configured database, without connecting (hashed: it holds passwords)."""
    identity = config.database_identity()
    if not identity.strip():
        return f"embedded:{config.data_dir()}"
    return "url:" + hashlib.sha256(identity.encode()).hexdigest()[:16]


@st.cache_resource(show_spinner=False)
def connections(key: str) -> Connections:
    """The resolved URLs; in embedded mode this starts (or joins) the server once per process.

    core.db pools one engine per URL (pinging idle or hung-up connections), so the engines need no second cache.
    """
    return status.connections()


def is_loaded() -> bool:
    """Whether the schema exists and the audited load was recorded (uncached: decides the first start)."""
    return status.is_loaded()


# cache_resource, not cache_data: the lists are frozen dataclasses nobody mutates, and cache_data
# would unpickle thousands of products on every rerun at market scale (446 ms at 10,000 products).
@st.cache_resource(ttl=TTL, show_spinner=False)
def products(key: str) -> list[catalog.Product]:
    return catalog.products()


@st.cache_resource(ttl=TTL, show_spinner=False)
def products_by_insurer(key: str) -> dict[str, list[catalog.Product]]:
    """Products per insurer key (key order): the compare page's picker at market scale (issue 16)."""
    found: dict[str, list[catalog.Product]] = {}
    for product in products(key):
        found.setdefault(product.insurer_key, []).append(product)
    return found


@st.cache_resource(ttl=TTL, show_spinner=False)
def coverages(key: str) -> list[catalog.Coverage]:
    return catalog.coverages()


def lock_token(lock: LockState) -> str:
    """The lock as of this rerun (core checks its witness every time, < 1 ms; a full proof only when it
    moved): part of the comparison's cache key, so a cached comparison never outlives the lock it showed."""
    return f"{lock.state}|{lock.verified_at}|{lock.recorded_lock_digest}"


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=MAX_CACHED_COMPARISONS)
def compare(key: str, product_keys: tuple[str, ...], codes: tuple[str, ...], lock: str = "") -> comparison.Comparison:
    # The grid and the uncoded coverages listed under it (without their evidence), from one snapshot;
    # `lock` (data.lock_token()) keys the cache so a cached comparison never outlives the lock it showed.
    # Cells only (issue 16): a coverage's snippets are read by evidence() when the analyst opens them.
    return comparison.compare(list(product_keys), list(codes), with_unmatched=comparison.UNMATCHED_LIST,
                              include_evidence=False)


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=MAX_CACHED_COMPARISONS)
def evidence(key: str, product_keys: tuple[str, ...], code: str, lock: str = "",
             ) -> dict[str, tuple[comparison.Instance, ...]]:
    # One coverage's snippets, verbatim (only for a coverage whose evidence is open); keyed like compare().
    return comparison.evidence(list(product_keys), code)


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=MAX_CACHED_COMPARISONS)
def condition_sources(key: str, product_keys: tuple[str, ...], code: str, lock: str,
                      _shown: comparison.Comparison) -> list[condition_slots.CellConditions]:
    # One coverage's conditions with the texts their phrases cite (its 원문), read when opened; keyed like
    # evidence() (the comparison shown is not hashed: key, products and lock token identify it).
    return _shown.conditions_for(code)


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=4)
def coverage_table(key: str) -> pd.DataFrame:
    # One row per distinct (code, insurer, raw name, status), read from schema 006's summary: catalog-sized,
    # not fact-sized (65,861 rows at a million facts instead of 730,484); the page filters it in memory.
    return catalog.coverage_table()


# cache_resource: one shared, never-mutated index (cache_data would unpickle the whole table on every
# rerun); a rerun of the catalog page reads one page of it (issue 16).
@st.cache_resource(ttl=TTL, show_spinner=False, max_entries=4)
def coverage_index(key: str) -> catalog_index.CatalogIndex:
    return catalog_index.build(catalog.coverage_table(), [(i.key, i.name) for i in catalog.insurers()])


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=256)
def catalog_search(key: str, query: str, categories: tuple[str, ...]) -> catalog_index.Found:
    # a search's result is a few hundred codes: cached per text, so typing back and forth is free
    return coverage_index(key).search(query, categories)


@st.cache_data(ttl=TTL, show_spinner=False, max_entries=4)
def status_counts(key: str) -> pd.DataFrame:
    # One row per insurer from schema 006's summary (no longer an aggregate over every instance per TTL).
    return catalog.status_counts()


def clear_caches() -> None:
    """After an error (database restarted, password changed) nothing stale may be served again."""
    for cached in (products, products_by_insurer, coverages, compare, evidence, condition_sources, coverage_table,
                   coverage_index, catalog_search, status_counts):
        cached.clear()
    connections.clear()
