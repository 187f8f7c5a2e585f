"""Filters for measuring search quality only (bench/search_quality_db.py, tests/test_search.py): leave
names out of core.search's ranking without writing to the locked table. The served search has none.

    rows = search_filters.search_narrowed(conn, vector, 3, exclude_insurer="samsung", exclude_text=raw, sources=[...])

Each filter is a constant SQL fragment (values travel as bound parameters) appended to the WHERE of
core.search's ranking templates; leaving single names out needs every name of a vector, not only each
code's best one, so the templates are formatted with `names=""`.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, TextClause

from core import search

FILTERS = {
    "exclude_row": "\n          AND NOT (a.insurer_key IS NOT DISTINCT FROM :exclude_insurer AND a.alias_text = :exclude_text)",
    "exclude_text": "\n          AND a.alias_text <> :exclude_text",
    "sources": "\n          AND a.source = ANY(:sources)",
}


@cache
def _statement(filters: tuple[str, ...], by_name: bool) -> TextClause:
    where = "".join(FILTERS[name] for name in filters)
    if by_name:
        return sa.text(search._NEAREST_BY_NAME_TEMPLATE.format(where=where))
    return sa.text(search._NEAREST_TEMPLATE.format(names="", where=where))


def _narrowed(exclude_insurer: str | None, exclude_text: str | None,
              sources: Sequence[str] | None) -> tuple[search.Ranking, dict[str, Any]]:
    filters: list[str] = []
    params: dict[str, Any] = {}
    if exclude_text is not None:
        filters.append("exclude_row" if exclude_insurer is not None else "exclude_text")
        params.update(exclude_text=exclude_text, exclude_insurer=exclude_insurer)
    if sources is not None:
        filters.append("sources")
        params["sources"] = list(sources)
    if not filters:
        return search._nearest_sql, params
    chosen = tuple(filters)
    return (lambda by_name: _statement(chosen, by_name)), params


def rank(conn: Connection, vector: Sequence[float], k: int, *, exact: bool | None = None,
         exclude_insurer: str | None = None, exclude_text: str | None = None,
         sources: Sequence[str] | None = None) -> list[Any]:
    """core.search._rank narrowed by the filters."""
    ranking, params = _narrowed(exclude_insurer, exclude_text, sources)
    return search._rank(conn, vector, k, exact=exact, ranking=ranking, params=params)


def search_narrowed(conn: Connection, vector: Sequence[float], k: int, *, exclude_insurer: str | None = None,
                    exclude_text: str | None = None, sources: Sequence[str] | None = None) -> list[Any]:
    """core.search._search (with its exact recheck) narrowed by the filters."""
    ranking, params = _narrowed(exclude_insurer, exclude_text, sources)
    return search._search(conn, vector, k, ranking=ranking, params=params)
