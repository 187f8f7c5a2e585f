"""core.search against the real database: the alias table the load writes, the ranking SQL, the lock,
bad input, and what a database loaded before schema 004 says."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

import core
import core.ops
from bench import market, search_filters
from core import catalog, db, search
from core.errors import IncaError, SchemaMissing, SelectionError
from core.ops import loader, migrate
from core.ops.dataset import COLUMNS, read_bundle
from core.search_vectors import FEATURE_VERSION, MAX_QUERY_CHARS, embed, vector_literal
from tests.conftest import PROJECT, Database, PgServer, point_env_at
from tests.test_search_vectors import HELD_OUT

DATASET = PROJECT / "data" / "dataset"
EXPECTED_ALIASES = json.loads((DATASET / "manifest.json").read_text(encoding="utf-8"))["expected_counts"]["coverage_alias"]


def admin_conn(database: Database) -> psycopg.Connection:
    return psycopg.connect(db.psycopg_conninfo(database.admin), autocommit=True)


def reader_conn(database: Database) -> psycopg.Connection:
    return psycopg.connect(db.psycopg_conninfo(database.reader), autocommit=True)


# --- finding codes --------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "code"), HELD_OUT)
def test_held_out_name_finds_its_code_in_top_3(loaded_db: Database, name: str, code: str) -> None:
    assert code in [match.code for match in core.search.find_coverages(name, k=3)]


@pytest.mark.parametrize(("name", "code"), HELD_OUT)
def test_held_out_name_finds_its_code_with_its_own_text_left_out(loaded_db: Database, name: str, code: str) -> None:
    """Some held-out names are card names the load indexed; leave every alias with that exact text out."""
    with db.read() as conn:
        rows = search_filters.rank(conn, embed(name), 3, exclude_text=name)
    assert name not in [row.alias_text for row in rows]
    assert code in [row.coverage_code for row in rows]


def test_matches_are_well_formed(loaded_db: Database) -> None:
    matches = core.search.find_coverages("뇌졸증 진단금", k=5)
    assert [m.code for m in matches][:1] == ["A4103"]
    assert len(matches) == 5 and len({m.code for m in matches}) == 5
    known = {c.code: c for c in catalog.coverages()}
    for match in matches:
        assert match.name == known[match.code].name
        assert match.category == catalog.category_of(match.code)
        assert match.source in ("canonical", "workbook", "card")
        assert (match.source == "canonical") == (match.matched_insurer is None) == (match.matched_insurer_name is None)
        assert 0 < match.score <= 1 and match.score == round(match.score, 4)
        assert match.query == "뇌졸증 진단금"
    assert [m.score for m in matches] == sorted((m.score for m in matches), reverse=True)
    frame = core.search.matches_frame(matches)
    assert list(frame["code"]) == [m.code for m in matches]


def test_an_insurer_name_is_matched_with_its_insurer(loaded_db: Database) -> None:
    best = core.search.find_coverages("[갱신형] 표적항암약물허가 치료비(1년50%)", k=1)[0]
    assert best.code == "A9619_1"
    assert best.matched_insurer is not None and best.matched_insurer_name


@pytest.mark.parametrize(("k", "expected"), [(0, 1), (-3, 1), (1, 1), (3, 3), (20, 20), (100, 20)])
def test_k_is_clamped_to_1_20(loaded_db: Database, k: int, expected: int) -> None:
    assert len(core.search.find_coverages("암 진단비", k=k)) == expected


@pytest.mark.parametrize("k", ["5", 2.5, None])
def test_k_must_be_a_whole_number(loaded_db: Database, k: object) -> None:
    with pytest.raises(SelectionError, match="k"):
        core.search.find_coverages("암 진단비", k=k)  # type: ignore[arg-type]


# --- bad input ------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["", "   ", "\t\n", None])
def test_empty_text_is_a_selection_error(loaded_db: Database, value: str | None) -> None:
    with pytest.raises(SelectionError, match="검색어가 비어 있습니다") as caught:
        core.search.find_coverages(value)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, IncaError)
    assert "empty" in str(caught.value)


@pytest.mark.parametrize("value", ["!!!", "()[]【】", " · , - ~ ", "\u200b"])
def test_text_without_letters_or_digits_is_a_selection_error(loaded_db: Database, value: str) -> None:
    with pytest.raises(SelectionError, match="한글·영문·숫자가 없습니다"):
        core.search.find_coverages(value)


def test_non_text_is_a_type_error(loaded_db: Database) -> None:
    with pytest.raises(TypeError):
        core.search.find_coverages(42)  # type: ignore[arg-type]


def test_very_long_text_is_capped(loaded_db: Database) -> None:
    long = "  암진단비(유사암제외)" + "가나다" * 5000
    matches = core.search.find_coverages(long)
    capped = long.strip()[:MAX_QUERY_CHARS]
    assert matches and all(m.query == capped for m in matches)
    assert [m.code for m in matches] == [m.code for m in core.search.find_coverages(capped)]


@pytest.mark.parametrize("value", ["'; DELETE FROM coverage_alias; --", "암' OR '1'='1", "암%_\\", "a" * MAX_QUERY_CHARS])
def test_hostile_text_is_only_a_query(loaded_db: Database, value: str) -> None:
    before = _mapping_state(loaded_db)
    assert core.search.find_coverages(value)
    assert _mapping_state(loaded_db) == before


# --- search only suggests -------------------------------------------------------------------------

def _mapping_state(database: Database) -> tuple[object, ...]:
    with admin_conn(database) as conn:
        return tuple(conn.execute(
            "SELECT (SELECT count(*) FROM coverage_instance WHERE coverage_code IS NOT NULL),"
            " (SELECT count(*) FROM coverage_instance WHERE coverage_code IS NULL),"
            " (SELECT string_agg(coverage_code || ':' || coverage_name_raw, '|' ORDER BY instance_id)"
            "  FROM coverage_instance),"
            " (SELECT count(*) FROM coverage_alias), inca_amount_fact_fingerprint()").fetchone() or ())


def test_searching_changes_no_mapping(loaded_db: Database) -> None:
    before = _mapping_state(loaded_db)
    for name, _ in HELD_OUT:
        core.search.find_coverages(name, k=20)
    assert _mapping_state(loaded_db) == before


def test_bench_filters_only_narrow_the_public_ranking(loaded_db: Database) -> None:
    for name, _ in HELD_OUT[:5]:
        public = [(m.code, m.matched_alias, m.score) for m in core.search.find_coverages(name, k=5)]
        with db.read() as conn:
            plain = [(r.coverage_code, r.alias_text, round(float(r.similarity), 4))
                     for r in search._search(conn, embed(name), 5)]
            every_source = search_filters.search_narrowed(conn, embed(name), 5,
                                                          sources=["canonical", "workbook", "card"])
        assert public == plain
        assert [r.coverage_code for r in every_source] == [code for code, _, _ in plain]


# --- the alias table the load writes ----------------------------------------------------------------

def test_aliases_cover_canonical_workbook_and_card_names(loaded_db: Database) -> None:
    bundle = read_bundle(DATASET)
    with reader_conn(loaded_db) as conn:
        stored = conn.execute("SELECT coverage_code, alias_text, insurer_key, source, feature_version"
                              " FROM coverage_alias").fetchall()
    assert len(stored) == EXPECTED_ALIASES == len({(c, t, i) for c, t, i, _, _ in stored})
    assert {row[4] for row in stored} == {FEATURE_VERSION}
    by_source: dict[str, set[tuple[str, str, str | None]]] = {}
    for code, alias_text, insurer_key, source, _ in stored:
        by_source.setdefault(source, set()).add((code, alias_text, insurer_key))
    canonical = {(code, name, None) for code, first, others in bundle.rows["coverage_canonical"]
                 for name in (first, *others)}
    assert by_source["canonical"] == canonical
    assert len([c for c in canonical if c[0] == "A9620_1"]) == 2  # the workbook spells it two ways
    workbook = {(m.coverage_code, m.raw_name, m.insurer_key) for m in bundle.mapping}
    assert by_source["workbook"] == workbook and len(workbook) == 285
    keys = {row[0]: row[1] for row in bundle.rows["insurer"]}
    cards = {(row[4], row[5], keys[row[1]]) for row in bundle.rows["coverage_instance"] if row[4] is not None}
    assert by_source["card"] == cards - workbook  # texts compared as printed (spaces, line breaks)


def test_stored_vectors_are_embed_of_the_stored_text(loaded_db: Database) -> None:
    with reader_conn(loaded_db) as conn:
        rows = conn.execute("SELECT alias_text, embedding::text FROM coverage_alias ORDER BY alias_text LIMIT 25").fetchall()
    for alias_text, stored in rows:
        vector = json.loads(stored)
        assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(vector, embed(alias_text), strict=True))


def test_alias_table_has_the_lock_and_read_grant_and_its_vectors_the_hnsw_index(loaded_db: Database) -> None:
    with admin_conn(loaded_db) as conn:
        indexdef = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'coverage_alias_vector_embedding_idx'"
                                ).fetchone()
        on_names = conn.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'coverage_alias'"
                                " AND indexdef LIKE '%hnsw%'").fetchall()
        trigger = conn.execute(
            "SELECT tgtype & 1 = 0, p.proname FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid"
            " WHERE t.tgrelid = 'coverage_alias'::regclass AND NOT t.tgisinternal").fetchall()
        grants = conn.execute("SELECT privilege_type FROM information_schema.role_table_grants"
                              " WHERE table_name = 'coverage_alias' AND grantee = 'inca_read'").fetchall()
    assert indexdef and "ON public.coverage_alias_vector USING hnsw (embedding vector_cosine_ops)" in indexdef[0]
    assert on_names == []  # schema 007: search ranks distinct vectors, the names need no graph
    assert trigger == [(True, "inca_refuse_unaudited_write")]  # FOR EACH STATEMENT
    assert grants == [("SELECT",)]


OWNER_WRITES = [
    "INSERT INTO coverage_alias (coverage_code, alias_text, source, feature_version, embedding)"
    " SELECT coverage_code, alias_text || '!', 'canonical', feature_version, embedding FROM coverage_alias LIMIT 1",
    "UPDATE coverage_alias SET coverage_code = 'A1100'",
    "DELETE FROM coverage_alias",
    "TRUNCATE coverage_alias",
]


@pytest.mark.parametrize("statement", OWNER_WRITES)
def test_alias_table_refuses_owner_writes_outside_the_audited_load(loaded_db: Database, statement: str) -> None:
    with admin_conn(loaded_db) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege, match="inca lock"):
        conn.execute(statement)


@pytest.mark.parametrize("statement", OWNER_WRITES)
def test_reading_role_cannot_write_the_alias_table(loaded_db: Database, statement: str) -> None:
    with reader_conn(loaded_db) as conn:
        assert conn.execute("SELECT count(*) FROM coverage_alias").fetchone() == (EXPECTED_ALIASES,)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(statement)
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_second_load_changes_nothing_and_keeps_the_aliases(loaded_db: Database) -> None:
    before = _mapping_state(loaded_db)
    result = loader.load()
    assert not result.changed and "nothing changed" in result.message
    assert result.counts["coverage_alias"] == EXPECTED_ALIASES
    assert _mapping_state(loaded_db) == before


def test_status_counts_include_the_aliases(loaded_db: Database) -> None:
    report = core.status.collect(include_backups=False)
    counts = {row.table: row for row in report.counts}
    assert counts["coverage_alias"].to_dict() == {"table": "coverage_alias", "live": EXPECTED_ALIASES,
                                                  "expected": EXPECTED_ALIASES, "matches": True}
    assert report.ok and report.database.reader_select_only


def test_ensure_loaded_leaves_a_configured_database_alone(loaded_db: Database) -> None:
    before = _mapping_state(loaded_db)
    assert core.ops.ensure_loaded() is None
    assert _mapping_state(loaded_db) == before


# --- databases without a usable index -------------------------------------------------------------

def test_database_loaded_before_schema_004_says_to_reload(fresh_loaded_db: Database) -> None:
    """Rebuild the state of a database loaded with schema 003, then upgrade it as an operator would."""
    with admin_conn(fresh_loaded_db) as conn:
        conn.execute("DROP TABLE coverage_alias CASCADE")  # and schema 007's view of it
        conn.execute("DELETE FROM schema_migrations WHERE version IN (4, 7)")
        conn.execute("SET session_replication_role = replica")  # superuser bypass of the lock, test setup only
        conn.execute("UPDATE audit_runs SET counts = counts - 'coverage_alias' - 'lock_seal'")
        # a load of schema 003 recorded no full lock (schema 008) either: only the amount fingerprint
        conn.execute("DELETE FROM lock_record")
        conn.execute("DELETE FROM lock_seal")
    # Schema 003: the reader cannot migrate; search names the problem, status says to migrate (one line).
    with pytest.raises(SchemaMissing, match="검색 색인이 없습니다"):
        core.search.find_coverages("암 진단비")
    report = core.status.collect(include_backups=False)
    latest = migrate.latest_version()
    assert report.reachable and not report.ok
    assert report.problems == [f"schema v3, this version needs v{latest}: run `python -m core migrate` then "
                               "`python -m core upgrade` with the owner connection"]
    assert report.lock.reason == report.problems[0]
    assert report.counts == []  # nothing counted on a schema the counts were not written for
    # `python -m core migrate` (or load) adds the table, empty, and the lock keeps it empty.
    with db.admin_engine().begin() as conn:
        assert [m.version for m in migrate.apply(conn)] == [4, 7]
    assert not loader.load().changed
    with pytest.raises(SchemaMissing, match="검색 색인이 비어 있습니다: 데이터베이스를 새로 적재하세요") as caught:
        core.search.find_coverages("암 진단비")
    assert "python -m core load" in str(caught.value)
    assert core.status.collect(include_backups=False).ok


def test_index_of_another_feature_version_is_refused(fresh_loaded_db: Database) -> None:
    with admin_conn(fresh_loaded_db) as conn:
        conn.execute("SET session_replication_role = replica")
        conn.execute("UPDATE coverage_alias SET feature_version = 'v0'")
        conn.execute("REFRESH MATERIALIZED VIEW coverage_alias_vector")  # as that load would have built it
    with pytest.raises(SchemaMissing, match="v0"):
        core.search.find_coverages("암 진단비")


def test_unloaded_database_says_load(fresh_db: Database) -> None:
    with db.admin_engine().begin() as conn:
        migrate.apply(conn)
    with pytest.raises(SchemaMissing, match="python -m core load"):
        core.search.find_coverages("암 진단비")


# --- the HNSW index on a large alias table ---------------------------------------------------------

SUBJECTS = ("암", "유사암", "뇌출혈", "뇌졸중", "급성심근경색", "골절", "화상", "갑상선암", "질병", "상해", "백혈병", "림프종")
BENEFITS = ("진단비", "수술비", "입원일당", "치료비", "통원비")
QUALIFIERS = ("", "(1회한)", "(갱신형)", "(1년50%)", "Ⅱ", "(요양병원제외)", "(최초1회한)", "【갱신계약】")


def _add_synthetic_aliases(database: Database, count: int) -> None:
    """Extra names, written the only way the lock allows: in an audited transaction."""
    names = [f"{p}{s}{b}{q} #{i}" for i in range(count // (len(SUBJECTS) * len(BENEFITS) * len(QUALIFIERS)) + 1)
             for p in ("", "무배당 ") for s in SUBJECTS for b in BENEFITS for q in QUALIFIERS][:count]
    with psycopg.connect(db.psycopg_conninfo(database.admin)) as conn:
        codes = [row[0] for row in conn.execute("SELECT coverage_code FROM coverage_canonical ORDER BY 1")]
        conn.execute("SELECT inca_open_audited_load()")
        with conn.cursor().copy(f"COPY coverage_alias ({', '.join(COLUMNS['coverage_alias'])}) FROM STDIN") as copy:
            for i, name in enumerate(names):
                copy.write_row((uuid.uuid4(), codes[i % len(codes)], name, "canonical", None, FEATURE_VERSION,
                                vector_literal(embed(name))))
        conn.execute("REFRESH MATERIALIZED VIEW coverage_alias_vector")  # as the load does
        conn.commit()
        conn.execute("ANALYZE coverage_alias, coverage_alias_vector")
        conn.commit()


def _plan(query: str, *, seqscan: bool) -> str:
    with db.read() as conn:
        conn.execute(text("SELECT set_config('enable_seqscan', :on, true)"), {"on": "on" if seqscan else "off"})
        return "\n".join(conn.execute(
            text("EXPLAIN " + search._NEAREST_SQL.text),
            {"query": vector_literal(embed(query)), "feature_version": FEATURE_VERSION, "candidates": 40,
             "k": 5}).scalars())


def test_hnsw_index_answers_the_ranking_query(fresh_loaded_db: Database) -> None:
    _add_synthetic_aliases(fresh_loaded_db, 1200)
    assert ("Index Scan using coverage_alias_vector_embedding_idx on coverage_alias_vector"
            in _plan("뇌졸증 진단금", seqscan=False))
    # The approximate index and an exact scan suggest the same codes for real names.
    for name, _ in HELD_OUT[:8]:
        with db.read() as conn:
            by_index = search._rank(conn, embed(name), 3, exact=False)[0].coverage_code
            exact = search._rank(conn, embed(name), 3, exact=True)[0].coverage_code
        assert by_index == exact, name
    assert core.search.find_coverages("뇌졸증 진단금", k=20)



def _spy_on_scans(monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool | None, bool]]:
    """(exact asked, scan was exact) of every ranking query find_coverages runs."""
    calls: list[tuple[bool | None, bool]] = []
    ranked = search._ranked

    def spy(conn: Any, vector: list[float], k: int, *, exact: bool | None = None, **filters: Any) -> Any:
        result = ranked(conn, vector, k, exact=exact, **filters)
        calls.append((exact, result.exact))
        return result

    monkeypatch.setattr(search, "_ranked", spy)
    return calls


def test_a_weak_best_score_is_rechecked_by_an_exact_scan(loaded_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """An HNSW graph can leave names with rare words unreachable; a weak best through it triggers an exact scan."""
    monkeypatch.setattr(search, "EXACT_SCAN_UP_TO", -1)  # as if the table were large: the index may answer
    calls = _spy_on_scans(monkeypatch)
    strong = core.search.find_coverages("뇌졸증 진단금")
    weak = core.search.find_coverages("가나다라")
    assert strong[0].score >= search.EXACT_RECHECK_BELOW > weak[0].score
    assert calls == [(None, False), (None, False), (True, True)]


def test_a_small_index_is_always_scanned_exactly(loaded_db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Up to EXACT_SCAN_UP_TO distinct vectors the first scan is exact: a weak best needs no second one."""
    calls = _spy_on_scans(monkeypatch)
    weak = core.search.find_coverages("가나다라")
    assert weak[0].score < search.EXACT_RECHECK_BELOW
    assert calls == [(None, True)]
    with db.read() as conn:
        plan = "\n".join(conn.execute(text("EXPLAIN " + search._NEAREST_SQL.text), {
            "query": vector_literal(embed("가나다라")), "feature_version": FEATURE_VERSION, "candidates": 40,
            "k": 5}).scalars())
    assert "Seq Scan on coverage_alias_vector" in plan


# --- schema 007: distinct vectors ------------------------------------------------------------------

def test_vectors_are_the_distinct_vectors_of_the_names(loaded_db: Database) -> None:
    """One row per distinct vector; every name exactly once; per code the name the ranking prefers."""
    with admin_conn(loaded_db) as conn:
        names = conn.execute("SELECT embedding::text, coverage_code, alias_text, insurer_key, source"
                             " FROM coverage_alias").fetchall()
        best = conn.execute(
            "SELECT DISTINCT ON (embedding::text, coverage_code) embedding::text, coverage_code, alias_text,"
            " insurer_key, source FROM coverage_alias"
            " ORDER BY embedding::text, coverage_code, source, alias_text, insurer_key NULLS FIRST").fetchall()
        vectors = conn.execute(
            "SELECT embedding::text, feature_version, coverage_codes, alias_texts, insurer_keys, sources,"
            " best_coverage_codes, best_alias_texts, best_insurer_keys, best_sources FROM coverage_alias_vector"
        ).fetchall()
        storage = conn.execute("SELECT attstorage FROM pg_attribute WHERE attrelid = 'coverage_alias_vector'::regclass"
                               " AND attname = 'embedding'").fetchone()
    assert len(vectors) == len({row[0] for row in names}) < len(names)  # shared spellings: fewer vectors
    assert {row[1] for row in vectors} == {FEATURE_VERSION}
    every = [(vector, *name) for vector, _, *arrays in vectors for name in zip(*arrays[:4], strict=True)]
    assert sorted(every, key=repr) == sorted(names, key=repr)
    firsts = [(vector, *name) for vector, _, *arrays in vectors for name in zip(*arrays[4:], strict=True)]
    assert sorted(firsts, key=repr) == sorted(best, key=repr)
    assert storage == ("p",)  # inline: an exact scan reads pages, not TOAST chunks


VECTOR_WRITES = {
    "REFRESH MATERIALIZED VIEW coverage_alias_vector": psycopg.errors.InsufficientPrivilege,
    "INSERT INTO coverage_alias_vector SELECT * FROM coverage_alias_vector LIMIT 1": psycopg.errors.InsufficientPrivilege,
    "UPDATE coverage_alias_vector SET alias_texts = coverage_codes": psycopg.errors.InsufficientPrivilege,
    "DELETE FROM coverage_alias_vector": psycopg.errors.InsufficientPrivilege,
    "TRUNCATE coverage_alias_vector": psycopg.errors.WrongObjectType,
}


@pytest.mark.parametrize("statement", VECTOR_WRITES)
def test_reading_role_cannot_write_or_refresh_the_vectors(loaded_db: Database, statement: str) -> None:
    with reader_conn(loaded_db) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute(statement)
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(VECTOR_WRITES[statement]):
            conn.execute(statement)
        assert conn.execute("SELECT count(*) > 0 FROM coverage_alias_vector").fetchone() == (True,)
    with admin_conn(loaded_db) as conn:
        grants = conn.execute("SELECT array_agg(a.privilege_type) FROM pg_class c, aclexplode(c.relacl) a"
                              " WHERE c.relname = 'coverage_alias_vector' AND a.grantee = 'inca_read'::regrole"
                              ).fetchone()
    assert grants == (["SELECT"],)


@pytest.mark.parametrize("statement", list(VECTOR_WRITES)[1:])
def test_not_even_the_owner_can_write_rows_into_the_vectors(loaded_db: Database, statement: str) -> None:
    with admin_conn(loaded_db) as conn, pytest.raises(psycopg.errors.WrongObjectType):
        conn.execute(statement)


def test_a_database_at_schema_006_searches_its_names_then_migrates(fresh_loaded_db: Database) -> None:
    queries = ["뇌졸증 진단금", "암 진단비", "가나다라", HELD_OUT[0][0]]
    expected = [core.search.find_coverages(query) for query in queries]
    with admin_conn(fresh_loaded_db) as conn:  # the state of a database loaded with schema 006
        conn.execute("DROP MATERIALIZED VIEW coverage_alias_vector")
        conn.execute("DELETE FROM schema_migrations WHERE version = 7")
    assert [core.search.find_coverages(query) for query in queries] == expected  # the reader cannot migrate
    with db.admin_engine().begin() as conn:  # `python -m core migrate`: the vectors of the loaded names
        assert [m.version for m in migrate.apply(conn)] == [7]
    assert [core.search.find_coverages(query) for query in queries] == expected


# --- a market: the same spellings under many insurers ----------------------------------------------

@pytest.fixture
def tiny_market(server: PgServer) -> Iterator[str]:
    name = server.create("inca_bench_search")
    point_env_at(server, name)
    assert loader.load_bundle(market.generate("tiny", seed=8, progress=False), db.admin_engine()).changed
    yield name
    db.dispose_all()
    server.drop(name)


def _brute_force(names: list[tuple[Any, ...]], query: str, k: int) -> list[tuple[str, str, float]]:
    """Every name's cosine similarity to the query, best name per code, best codes first (no index)."""
    vector = embed(query)
    best: dict[str, tuple[float, str]] = {}
    for code, alias_text, stored in names:
        similarity = sum(a * b for a, b in zip(vector, stored, strict=True)) / math.sqrt(
            sum(b * b for b in stored))  # the query vector has length 1
        if code not in best or similarity > best[code][0]:
            best[code] = (similarity, alias_text)
    ranked = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))[:k]
    return [(code, alias_text, similarity) for code, (similarity, alias_text) in ranked]


@pytest.mark.parametrize("query", ["암 진단비", "뇌졸증 진단금", "유사암 수술비", "상해 입원일당", "질병 사망"])
def test_shared_spellings_do_not_crowd_out_codes(tiny_market: str, server: PgServer, query: str) -> None:
    """A market repeats each spelling under every insurer; k codes still come back, ranked as exactly as a
    brute-force comparison with every stored name."""
    with psycopg.connect(server.conninfo(tiny_market)) as conn:
        stored = conn.execute("SELECT coverage_code, alias_text, embedding::text FROM coverage_alias").fetchall()
    names = [(code, alias_text, json.loads(vector)) for code, alias_text, vector in stored]
    assert len(names) > 2 * len({vector for _, _, vector in stored})
    found = core.search.find_coverages(query, k=5)
    expected = _brute_force(names, query, 5)
    assert len(found) == 5
    assert [m.score for m in found] == pytest.approx([score for _, _, score in expected], abs=1e-4)
    assert [m.code for m in found][:1] == [expected[0][0]]
    assert {m.code for m in found if m.score > found[-1].score + 1e-4} == {
        code for code, _, score in expected if score > expected[-1][2] + 1e-4}
