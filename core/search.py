"""Coverage search: which canonical codes could an insurer's (or an analyst's) coverage name mean?

    core.search.find_coverages("뇌졸증 진단금")          # -> [CoverageMatch(code="A4103", ...), ...]

The query is embedded in Python (`core.search_vectors.embed`, the same function the load used for
the stored names) and ranked in PostgreSQL by pgvector's cosine distance over the distinct vectors of
`coverage_alias` (schema/004, schema/007: many names share one vector): the nearest vectors first,
then the best name per code. Up to EXACT_SCAN_UP_TO vectors the scan is exact; above, the planner may
answer from the HNSW index, which is approximate, and a weak best score is rechecked by an exact
scan. Search only suggests: it reads through the reading connection and never changes a mapping.
Rules (docs/search.md):

- empty or whitespace text, and text without a letter or digit ("!!!"), raise SelectionError;
- text is stripped and capped at MAX_QUERY_CHARS characters (`CoverageMatch.query` is what was
  searched); `k` is clamped to MIN_K..MAX_K;
- a database loaded before schema 004 has an empty, locked alias table: SchemaMissing says so.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import Connection, TextClause

from core import catalog, db
from core.errors import SchemaMissing, SelectionError
from core.search_vectors import FEATURE_VERSION, MAX_QUERY_CHARS, embed, normalise_name, vector_literal
from core.user_input import refuse_control_characters

__all__ = [
    "DEFAULT_K",
    "EMPTY_QUERY_MESSAGE",
    "EXACT_RECHECK_BELOW",
    "EXACT_SCAN_UP_TO",
    "INDEX_EMPTY_MESSAGE",
    "MAX_K",
    "MAX_QUERY_CHARS",
    "MIN_K",
    "NOTHING_SEARCHABLE_MESSAGE",
    "CoverageMatch",
    "find_coverages",
    "matches_frame",
]

DEFAULT_K = 5
MIN_K, MAX_K = 1, 20
#: Aliases fetched per requested code before keeping the best per code: several spellings of one
#: code usually crowd the top, so k codes need more than k names.
CANDIDATES_PER_CODE = 8
MIN_CANDIDATES = 40
#: HNSW search breadth (pgvector's default is 40): at 50 000 names 100 agreed a little more often
#: with an exact scan on the first code, for about the same time; more did not help (docs/search.md).
MIN_EF_SEARCH = 100
#: The HNSW graph can leave names whose words are rare in the table unreachable (at 50 000 names, a
#: query equal to a stored 후유장해 name came back with 0.26 through the index and 1.0 exactly); a
#: best score below this repeats the query as an exact scan, which only costs time on a large table.
#: 0.8 since schema 007 (an exact scan of 34,000 inline vectors: ~80 ms, was ~300 ms for the names):
#: at 50 000 synthetic names 5 % of real queries are rechecked and 99.6 % agree with an exact scan on
#: the first code (0.5: 97.6 %; docs/search.md).
EXACT_RECHECK_BELOW = 0.8
#: Up to this many distinct vectors (schema 007) every search is an exact scan: ~4 ms for the 1,871 of a
#: million facts, so exact costs about what the index does, and no weak match needs a second scan.
EXACT_SCAN_UP_TO = 10_000

EMPTY_QUERY_MESSAGE = "검색어가 비어 있습니다 (the search text is empty: type a coverage name, e.g. 암 진단비)"
NOTHING_SEARCHABLE_MESSAGE = (
    "검색어에 한글·영문·숫자가 없습니다 (the search text has no letter or digit to match: type a coverage name, "
    "e.g. 뇌졸중 진단금)"
)
INDEX_EMPTY_MESSAGE = (
    "검색 색인이 비어 있습니다: 데이터베이스를 새로 적재하세요 (the coverage search index is empty: this database "
    "was loaded before schema 004 and its locked tables cannot be extended; load the dataset into a new database "
    "with `python -m core load`, see docs/search.md)"
)
_NO_TABLE_MESSAGE = (
    "검색 색인이 없습니다: 데이터베이스를 새로 적재하세요 (this database's schema predates coverage search "
    "(schema 004): load the dataset into a new database with `python -m core load`, see docs/search.md)"
)
_NOT_LOADED_MESSAGE = "데이터베이스가 아직 적재되지 않았습니다 (nothing loaded yet: run `python -m core load`)"


@dataclass(frozen=True)
class CoverageMatch:
    """One suggested canonical coverage and the stored name that brought it up."""

    code: str
    name: str  # canonical name
    category: str
    matched_alias: str  # the stored spelling nearest to the query, exactly as printed
    matched_insurer: str | None  # insurer key whose own name matched; None for a canonical name
    matched_insurer_name: str | None
    source: str  # where the matched name comes from: canonical | workbook | card
    score: float  # 1 - cosine distance, rounded to 4 places: how alike the names are, nothing more
    query: str  # the text actually searched (stripped, at most MAX_QUERY_CHARS characters)


def _query_text(value: object) -> str:
    if value is None:
        raise SelectionError(EMPTY_QUERY_MESSAGE, bad_value="")
    if not isinstance(value, str):
        raise TypeError(f"search text must be str, not {type(value).__name__}")
    stripped = value.strip()
    if not stripped:
        raise SelectionError(EMPTY_QUERY_MESSAGE, bad_value=value)
    query = refuse_control_characters(stripped[:MAX_QUERY_CHARS], "search text")
    if not normalise_name(query):
        raise SelectionError(NOTHING_SEARCHABLE_MESSAGE, bad_value=value[:MAX_QUERY_CHARS])
    return query


def _clamp(k: object) -> int:
    try:
        whole = operator.index(k)  # type: ignore[arg-type]
    except TypeError:
        raise SelectionError(f"k는 정수여야 합니다 ({MIN_K}~{MAX_K}로 맞춥니다; k must be a whole number, got {k!r})",
                             bad_value=repr(k)) from None
    return max(MIN_K, min(MAX_K, whole))


#: Both rankings end alike: the best name per code among the candidates, then the k nearest codes.
_BEST_PER_CODE = """
    ), best AS (
        SELECT DISTINCT ON (coverage_code) coverage_code, alias_text, insurer_key, source, distance
        FROM {candidates}
        ORDER BY coverage_code, distance, source, alias_text, insurer_key NULLS FIRST
    )
    SELECT b.coverage_code, c.canonical_name, b.alias_text, b.insurer_key, i.name_ko, b.source,
           1 - b.distance AS similarity
    FROM best b
    JOIN coverage_canonical c ON c.coverage_code = b.coverage_code
    LEFT JOIN insurer i ON i.insurer_key = b.insurer_key
    ORDER BY b.distance, b.coverage_code
    LIMIT :k
"""
# Nearest distinct vectors first (schema 007: each carries its names: every code's best one, and all of
# them for measuring: bench/search_filters.py), then the best name per code, then codes by distance. Ranking distinct vectors
# instead of names: at a million facts 39,495 names share 1,871 vectors, so an exact scan reads 1,871
# inline vectors instead of detoasting 39,495 (docs/search.md, "Market scale"). Served with `{names}`
# "best_" and an empty `{where}`; the quality bench formats the templates with its own constant filters.
_NEAREST_TEMPLATE = """
    WITH nearest AS (
        SELECT v.{names}coverage_codes AS codes, v.{names}alias_texts AS texts, v.{names}insurer_keys AS insurers,
               v.{names}sources AS sources, v.embedding <=> CAST(:query AS vector) AS distance
        FROM coverage_alias_vector v
        WHERE v.feature_version = :feature_version
        ORDER BY v.embedding <=> CAST(:query AS vector)
        LIMIT :candidates
    ), named AS (
        SELECT a.coverage_code, a.alias_text, a.insurer_key, a.source, n.distance
        FROM nearest n
        CROSS JOIN LATERAL unnest(n.codes, n.texts, n.insurers, n.sources)
            AS a (coverage_code, alias_text, insurer_key, source)
        WHERE TRUE{where}
""" + _BEST_PER_CODE.replace("{candidates}", "named")
#: A database at schema 004-006 that the reading role cannot migrate: rank the names themselves.
_NEAREST_BY_NAME_TEMPLATE = """
    WITH nearest AS (
        SELECT a.coverage_code, a.alias_text, a.insurer_key, a.source,
               a.embedding <=> CAST(:query AS vector) AS distance
        FROM coverage_alias a
        WHERE a.feature_version = :feature_version{where}
        ORDER BY a.embedding <=> CAST(:query AS vector)
        LIMIT :candidates
""" + _BEST_PER_CODE.replace("{candidates}", "nearest")
_NEAREST_SQL = sa.text(_NEAREST_TEMPLATE.format(names="best_", where=""))
_NEAREST_BY_NAME_SQL = sa.text(_NEAREST_BY_NAME_TEMPLATE.format(where=""))

# Settings for this transaction only, and what the database holds, in one round trip. An HNSW scan
# yields at most hnsw.ef_search rows: at least the candidate count. Up to EXACT_SCAN_UP_TO distinct
# vectors (by the load's ANALYZE) the scan is exact whatever the planner would prefer.
_SETTINGS_SQL = sa.text(
    """
    WITH held AS (
        SELECT to_regclass('public.coverage_alias') IS NOT NULL AS has_alias,
               to_regclass('public.coverage_alias_vector') IS NOT NULL AS has_vectors,
               (SELECT c.reltuples FROM pg_class c WHERE c.oid = to_regclass('public.coverage_alias_vector'))
                   AS vectors
    )
    SELECT set_config('hnsw.ef_search', :ef, true) AS ef_search,
           set_config('enable_indexscan',
                      CASE WHEN :exact THEN 'off'
                           WHEN :automatic AND has_vectors AND vectors BETWEEN 0 AND :exact_up_to THEN 'off'
                           ELSE 'on' END,
                      true) = 'off' AS scanned_exactly,
           has_alias, has_vectors
    FROM held
    """
)


#: by_name -> the ranking statement: the vector table's (schema 007) or, before it, the names' own
Ranking = Callable[[bool], TextClause]


def _nearest_sql(by_name: bool) -> TextClause:
    return _NEAREST_BY_NAME_SQL if by_name else _NEAREST_SQL


@dataclass(frozen=True)
class _Ranked:
    rows: list[Any]
    exact: bool  # the scan could not use the index: the ranking is exact


def _ranked(conn: Connection, vector: Sequence[float], k: int, *, exact: bool | None = None,
            ranking: Ranking = _nearest_sql, params: Mapping[str, Any] | None = None) -> _Ranked:
    candidates = max(k * CANDIDATES_PER_CODE, MIN_CANDIDATES)
    settings = conn.execute(_SETTINGS_SQL, {"ef": str(max(candidates, MIN_EF_SEARCH)), "exact": exact is True,
                                            "automatic": exact is None, "exact_up_to": EXACT_SCAN_UP_TO}).one()
    if not settings.has_alias:
        has_schema = conn.execute(sa.text("SELECT to_regclass('public.audit_runs') IS NOT NULL")).scalar_one()
        raise SchemaMissing(_NO_TABLE_MESSAGE if has_schema else
                            "the database has no inca schema yet: run `python -m core load` with the owner connection")
    # The vector travels as a bound parameter in pgvector's text form, never inside the statement.
    bound = {"query": vector_literal(vector), "feature_version": FEATURE_VERSION, "candidates": candidates, "k": k,
             **(params or {})}
    rows = list(conn.execute(ranking(not settings.has_vectors), bound).all())
    return _Ranked(rows, bool(settings.scanned_exactly))


def _rank(conn: Connection, vector: Sequence[float], k: int, *, exact: bool | None = None,
          ranking: Ranking = _nearest_sql, params: Mapping[str, Any] | None = None) -> list[Any]:
    """The ranking query on an open reading connection, rows named as its SELECT (coverage_code,
    canonical_name, alias_text, insurer_key, name_ko, source, similarity). `exact`: True never uses the
    index, False leaves the choice to the planner, None (find_coverages) is exact up to EXACT_SCAN_UP_TO
    vectors, else False. `ranking`/`params` let the quality bench (bench/search_filters.py) narrow it."""
    return _ranked(conn, vector, k, exact=exact, ranking=ranking, params=params).rows


def _search(conn: Connection, vector: Sequence[float], k: int, *, ranking: Ranking = _nearest_sql,
            params: Mapping[str, Any] | None = None) -> list[Any]:
    """What find_coverages ranks: the planner's choice, rechecked exactly when the best is weak
    (unless the first scan was already exact)."""
    ranked = _ranked(conn, vector, k, ranking=ranking, params=params)
    if ranked.rows and not ranked.exact and float(ranked.rows[0].similarity) < EXACT_RECHECK_BELOW:
        return _rank(conn, vector, k, exact=True, ranking=ranking, params=params)
    return ranked.rows


def _explain_empty(conn: Connection) -> SchemaMissing:
    """Why the index answered nothing: never loaded, built with other features, or empty."""
    loaded = conn.execute(sa.text("SELECT EXISTS (SELECT 1 FROM audit_runs WHERE kind = 'load')")).scalar_one()
    if not loaded:
        return SchemaMissing(_NOT_LOADED_MESSAGE)
    stored = conn.execute(sa.text("SELECT feature_version FROM coverage_alias LIMIT 1")).scalar()
    if stored is not None and stored != FEATURE_VERSION:
        return SchemaMissing(
            f"검색 색인의 특징 버전({stored})이 현재 버전({FEATURE_VERSION})과 다릅니다: 데이터베이스를 새로 적재하세요 "
            f"(the search index was built with embedding features {stored}, this code uses {FEATURE_VERSION})"
        )
    return SchemaMissing(INDEX_EMPTY_MESSAGE)


def find_coverages(text: str, k: int = DEFAULT_K) -> list[CoverageMatch]:
    """Up to `k` canonical coverages whose stored names are nearest to `text`, nearest first.

    A suggestion for a person to check, never a mapping: nothing is written. `k` is clamped to
    1..20; fewer codes come back when the nearest names cover fewer codes.
    """
    query = _query_text(text)
    k = _clamp(k)
    vector = embed(query)
    with db.read() as conn:
        rows = _search(conn, vector, k)
        if not rows:
            raise _explain_empty(conn)
    return [
        CoverageMatch(code=row.coverage_code, name=row.canonical_name, category=catalog.category_of(row.coverage_code),
                      matched_alias=row.alias_text, matched_insurer=row.insurer_key, matched_insurer_name=row.name_ko,
                      source=row.source, score=round(float(row.similarity), 4), query=query)
        for row in rows
    ]


def matches_frame(matches: Sequence[CoverageMatch]) -> pd.DataFrame:
    """The matches as a DataFrame (one row each, in the order found) for notebooks and exports."""
    columns = list(CoverageMatch.__dataclass_fields__)
    return pd.DataFrame([asdict(match) for match in matches], columns=columns)
