"""Does coverage search use the HNSW index once `coverage_alias` is large, and what does it cost?

Run from the project root (about 4 minutes for 50 000 names on 2 cores):

    python bench/search_index_plan.py [--rows 50000] [--server-url postgresql://postgres@/postgres?host=/sock]

On a SCRATCH database (created on the embedded server of INCA_DATA_DIR, or on --server-url, and
dropped at the end; the project's own database is never touched):
  1. the audited load of the bundled dataset (360 names: the planner scans them sequentially);
  2. `--rows` synthetic coverage names (subject × benefit × generation × qualifier, deterministic)
     embedded with core.search_vectors.embed and COPYed in one audited transaction
     (`SELECT inca_open_audited_load()` opens the lock for that transaction only), then, in that
     transaction as the load does, REFRESH of schema 007's distinct vectors (its HNSW index is built
     after the rows, in bulk), then ANALYZE;
  3. EXPLAIN ANALYZE of core.search's ranking query through the reading connection: the plan must
     read `coverage_alias_vector` through `coverage_alias_vector_embedding_idx` (above
     core.search.EXACT_SCAN_UP_TO vectors find_coverages lets the planner use it);
  4. recall: the top-5 codes of every workbook raw name and colloquial query, by the index alone,
     and as find_coverages ranks them (the index, rechecked by an exact scan when the best score is
     below core.search.EXACT_RECHECK_BELOW), against an exact scan (`enable_indexscan = off`):
     same first code, overlap, how much lower the best score is; then the latency of each.
     The synthetic names contain no 후유장해/사망 names, so the real ones are a small island in
     the graph: a harder case than real data, on purpose.
"""

from __future__ import annotations

import argparse
import itertools
import os
import random
import re
import statistics
import sys
import time
import uuid
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
for path in (PROJECT_ROOT, PROJECT_ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import psycopg  # noqa: E402
import sqlalchemy as sa  # noqa: E402
from search_quality import COLLOQUIAL_QUERIES  # noqa: E402
from sqlalchemy.engine import URL  # noqa: E402

from core import config, db, embedded, lock, search  # noqa: E402
from core.ops import loader  # noqa: E402
from core.ops.dataset import COLUMNS, read_bundle  # noqa: E402
from core.search_vectors import (  # noqa: E402
    CONCEPTS,
    FEATURE_VERSION,
    embed,
    vector_literal,
)

_BENEFIT_WORDS = {"진단", "수술", "입원", "통원", "치료", "직접치료", "사망", "후유장해", "재진단"}
SUBJECTS = sorted(word for word in CONCEPTS if word not in _BENEFIT_WORDS)
BENEFITS = ("진단비", "수술비", "입원일당", "치료비", "통원비", "진단금", "수술자금", "사망보험금")
GENERATIONS = ("", "Ⅱ", "Ⅲ", "(기본)", "2")
QUALIFIERS = ("", "(1회한)", "(최초1회한)", "(1년50%)", "(갱신형_10년)", "(1-180일)", "(유사암제외)", "(요양병원제외)",
              "【갱신계약】", "(연간1회한)", "(3%~100%)", "(5년갱신)")
PREFIXES = ("", "[갱신형] ", "무배당 ", "신")
SAMPLE_QUERY = "뇌졸증 진단금"


def synthetic_names(count: int, seed: int = 7) -> list[str]:
    """`count` distinct, realistic-looking coverage names (at most about 115 000)."""
    combos = list(itertools.product(PREFIXES, SUBJECTS, BENEFITS, GENERATIONS, QUALIFIERS))
    if count > len(combos):
        raise SystemExit(f"--rows at most {len(combos)}")
    random.Random(seed).shuffle(combos)
    return ["".join(parts) for parts in combos[:count]]


def _alias_rows(names: Sequence[str], codes: Sequence[str]) -> Iterator[tuple[object, ...]]:
    rng = random.Random(1)
    for name in names:
        # Marked as bench rows in the text so they can never be mistaken for data.
        yield (uuid.uuid4(), rng.choice(codes), f"{name} #bench", "canonical", None, FEATURE_VERSION,
               vector_literal(embed(name)))


def _params(text: str, candidates: int = 40, k: int = 5) -> dict[str, object]:
    return {"query": vector_literal(embed(text)), "feature_version": FEATURE_VERSION,
            "candidates": candidates, "k": k}


def explain(conn: sa.Connection, text: str, analyze: bool = True) -> str:
    conn.execute(sa.text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(search.MIN_EF_SEARCH)})
    options = "ANALYZE, BUFFERS OFF" if analyze else "COSTS"
    lines = conn.execute(sa.text(f"EXPLAIN ({options}) " + search._NEAREST_SQL.text), _params(text)).scalars()
    # The 1024 numbers of the query vector say nothing; show the parameter's name instead.
    return "\n".join(re.sub(r"'\[[^\]]*\]'::vector", ":query", line) for line in lines)


def top(conn: sa.Connection, text: str, mode: str) -> list[sa.Row]:
    """Top 5 codes by the planner's choice (the index), by an exact scan, or as find_coverages ranks them."""
    if mode == "public":
        return search._search(conn, embed(text), 5)
    return search._rank(conn, embed(text), 5, exact=mode == "exact")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000, help="synthetic names to add (default 50000)")
    parser.add_argument("--server-url", help="superuser URL of a server to create the scratch database on "
                                             "(default: the embedded server in INCA_DATA_DIR)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database (its name is printed)")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

    if args.server_url:
        admin = config.parse_database_url(args.server_url, "--server-url")
        reader_user = admin.username
    else:
        server = embedded.start(config.data_dir() / "pgdata")
        admin, reader_user = server.url(embedded.ADMIN_ROLE, "postgres"), embedded.READER_ROLE
    name = f"inca_bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db.psycopg_conninfo(admin), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # generated name, not input
    scratch: URL = admin.set(database=name)
    os.environ["INCA_ADMIN_URL"] = scratch.render_as_string(hide_password=False)
    os.environ["DATABASE_URL"] = scratch.set(username=reader_user).render_as_string(hide_password=False)
    db.dispose_all()
    lock.forget_cached_fingerprints()
    print(f"scratch database {name} on {config.mask(admin)}")
    try:
        run(args.rows, scratch)
    finally:
        db.dispose_all()
        if not args.keep:
            with psycopg.connect(db.psycopg_conninfo(admin), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return 0


def run(rows: int, scratch: URL) -> None:
    started = time.perf_counter()
    result = loader.load()
    print(f"1. audited load: {result.counts['coverage_alias']} names in {time.perf_counter() - started:.1f} s")
    with db.read() as conn:
        print(f"   plan with {result.counts['coverage_alias']} names:\n{_indent(explain(conn, SAMPLE_QUERY, False))}")

    names = synthetic_names(rows)
    with psycopg.connect(db.psycopg_conninfo(scratch)) as conn:
        codes = [row[0] for row in conn.execute("SELECT coverage_code FROM coverage_canonical ORDER BY 1")]
        started = time.perf_counter()
        rows_to_copy = list(_alias_rows(names, codes))
        embedded_in = time.perf_counter() - started
        started = time.perf_counter()
        conn.execute("SELECT inca_open_audited_load()")  # this transaction only; committed below
        columns = ", ".join(COLUMNS["coverage_alias"])
        with conn.cursor().copy(f"COPY coverage_alias ({columns}) FROM STDIN") as copy:
            for row in rows_to_copy:
                copy.write_row(row)
        copied_in = time.perf_counter() - started
        conn.execute("SET LOCAL maintenance_work_mem = '512MB'")  # as the load's transaction
        conn.execute("SET LOCAL work_mem = '128MB'")
        conn.execute("REFRESH MATERIALIZED VIEW coverage_alias_vector")
        conn.commit()
        refreshed_in = time.perf_counter() - started - copied_in
        conn.execute("ANALYZE coverage_alias, coverage_alias_vector")
        conn.commit()
        total = conn.execute("SELECT (SELECT count(*) FROM coverage_alias), (SELECT count(*) FROM coverage_alias_vector)"
                             ).fetchone()
        definition = conn.execute("SELECT pg_get_indexdef('coverage_alias_vector_embedding_idx'::regclass)").fetchone()
    print(f"2. {rows} synthetic names: embedded in {embedded_in:.1f} s, COPY in {copied_in:.1f} s, distinct vectors "
          f"+ HNSW index refreshed in {refreshed_in:.1f} s; coverage_alias now {total[0] if total else '?'} names, "
          f"{total[1] if total else '?'} distinct vectors")
    if definition:
        print(f"   {definition[0]}")

    with db.read() as conn:
        plan = explain(conn, SAMPLE_QUERY)
    used = "Index Scan using coverage_alias_vector_embedding_idx on coverage_alias_vector" in plan
    print(f"3. EXPLAIN ANALYZE of the ranking query for {SAMPLE_QUERY!r} (reading connection):\n{_indent(plan)}")
    print(f"   HNSW index used: {'yes' if used else 'NO'}")

    queries = sorted({m.raw_name for m in read_bundle(config.dataset_dir()).mapping} | {q for q, _ in COLLOQUIAL_QUERIES})
    with db.read() as conn:
        exact = {query: top(conn, query, "exact") for query in queries}
        print(f"4. recall over {len(queries)} queries (top-5 codes against an exact scan):")
        for mode, label in (("index", "HNSW index alone"), ("public", "find_coverages (index + exact recheck)")):
            same_first = overlap = 0
            misses: list[tuple[float, str, str, str, str]] = []
            for query in queries:
                found, truth = top(conn, query, mode), exact[query]
                same_first += found[0][0] == truth[0][0]
                overlap += len({row[0] for row in found} & {row[0] for row in truth})
                loss = float(truth[0][6]) - float(found[0][6])
                if loss > 0.01:
                    misses.append((loss, query, truth[0][0], found[0][0], found[0][2]))
            print(f"   {label}: same first code {100 * same_first / len(queries):.1f}%, "
                  f"overlap {100 * overlap / (5 * len(queries)):.1f}%, best score lower by > 0.01 for {len(misses)}")
            for loss, query, want, got, via in sorted(misses, reverse=True)[:5]:
                print(f"     -{loss:.3f}  «{query}»: exact {want}, got {got} via «{via}»")
        for mode, label in (("index", "HNSW index alone"), ("public", "find_coverages ranking"),
                            ("exact", "exact scan")):
            seconds = []
            for query in queries[:100]:
                tick = time.perf_counter()
                top(conn, query, mode)
                seconds.append(time.perf_counter() - tick)
            print(f"   {label}: median {statistics.median(seconds) * 1000:.1f} ms, "
                  f"p95 {sorted(seconds)[int(0.95 * len(seconds)) - 1] * 1000:.1f} ms per query (embed + SQL)")
    started = time.perf_counter()
    found = search.find_coverages(SAMPLE_QUERY)
    print(f"   find_coverages({SAMPLE_QUERY!r}) -> {found[0].code} {found[0].name} "
          f"in {(time.perf_counter() - started) * 1000:.1f} ms (public API, new connection)")
    if not used:
        raise SystemExit("the HNSW index was not used")


def _indent(text: str) -> str:
    return "\n".join("     " + line for line in text.splitlines())


if __name__ == "__main__":
    sys.exit(main())
