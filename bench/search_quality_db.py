"""Quality of coverage search through PostgreSQL: the same leave-one-out as bench/search_quality.py,
ranked by core.search's own SQL (pgvector `<=>` over `coverage_alias`) instead of numpy.

Run from the project root against a loaded database (the embedded one unless DATABASE_URL is set):

    python -m core load                     # once; a loaded database is left as it is
    python bench/search_quality_db.py [--check]

For each of the workbook's (insurer, raw name) rows the query is the raw name, and that row's own
name is left out of the ranking by a bench-only filter in the query (`NOT (insurer_key = :insurer
AND alias_text = :raw)`, see bench/search_filters.py): nothing is written, the reading
connection is read-only. Two indexes are measured:

* "canonical + workbook": canonical names and workbook names only, the index of the in-memory
  bench, so its numbers must agree with it (the SQL ranking is the numpy ranking);
* "full index": also the card names the workbook lacks, i.e. what find_coverages searches.

Colloquial queries (search_quality.COLLOQUIAL_QUERIES) run against both, nothing left out.
`--check` exits 1 when the full index misses the targets of the in-memory bench.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
for path in (PROJECT_ROOT, PROJECT_ROOT / "bench"):  # run as a script: `core` and the sibling bench
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import sqlalchemy as sa  # noqa: E402
from search_quality import (  # noqa: E402
    COLLOQUIAL_QUERIES,
    TARGET_TOP1,
    TARGET_TOP3,
    Result,
    describe_misses,
    percent,
)

from bench.search_filters import search_narrowed  # noqa: E402
from core import config, db, search  # noqa: E402
from core.errors import IncaError  # noqa: E402
from core.ops.dataset import read_bundle  # noqa: E402
from core.search_vectors import (  # noqa: E402
    FEATURE_VERSION,
    embed,
    vector_literal,
)

INDEXES: dict[str, tuple[str, ...]] = {
    "canonical + workbook": ("canonical", "workbook"),
    "full index": ("canonical", "workbook", "card"),
}


def _ranked(rows: Sequence[sa.Row]) -> tuple[tuple[str, float, str], ...]:
    return tuple((row.coverage_code, float(row.similarity), row.alias_text) for row in rows)


def plan_of(conn: sa.Connection, text: str) -> str:
    """The scan the planner chose for the ranking query (Seq Scan on small tables, the HNSW index on large)."""
    conn.execute(sa.text("SELECT set_config('hnsw.ef_search', :ef, true)"), {"ef": str(search.MIN_EF_SEARCH)})
    lines = conn.execute(
        sa.text("EXPLAIN " + search._NEAREST_SQL.text),
        {"query": vector_literal(embed(text)), "feature_version": FEATURE_VERSION, "candidates": 40, "k": 3},
    ).scalars()
    return next((line.strip().split("  (")[0].lstrip("-> ") for line in lines if "on coverage_alias" in line), "?")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the full index misses the targets")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")

    mapping = read_bundle(config.dataset_dir()).mapping
    codes: dict[str, set[str]] = {}
    for row in mapping:
        codes.setdefault(row.coverage_code, set()).add(row.canonical_name)
    vectors = {text: embed(text) for text in {row.raw_name for row in mapping} | {q for q, _ in COLLOQUIAL_QUERIES}}

    try:
        with db.read() as conn:
            stored = dict(conn.execute(sa.text("SELECT source, count(*) FROM coverage_alias GROUP BY source")).all())
            if not stored:
                raise SystemExit(search.INDEX_EMPTY_MESSAGE)
            plan = plan_of(conn, mapping[0].raw_name)
            results: dict[str, tuple[list[Result], list[Result]]] = {}
            seconds: list[float] = []
            for label, sources in INDEXES.items():
                loo = []
                for row in mapping:
                    started = time.perf_counter()
                    rows = search_narrowed(conn, vectors[row.raw_name], 3, exclude_insurer=row.insurer_key,
                                          exclude_text=row.raw_name, sources=list(sources))
                    seconds.append(time.perf_counter() - started)
                    loo.append(Result(row.raw_name, row.coverage_code, _ranked(rows)))
                colloquial = [Result(q, code, _ranked(search_narrowed(conn, vectors[q], 3, sources=list(sources))))
                              for q, code in COLLOQUIAL_QUERIES]
                results[label] = (loo, colloquial)
    except IncaError as error:
        raise SystemExit(f"{error}\n(load the database first: python -m core load)") from None

    print(f"database: {config.mask(db.connections().reader)}")
    print(f"coverage_alias: {sum(stored.values())} names ({', '.join(f'{k} {v}' for k, v in sorted(stored.items()))}); "
          f"ranking scan: {plan}")
    print(f"workbook: {len(mapping)} rows left out one at a time; colloquial: {len(COLLOQUIAL_QUERIES)} queries")
    print(f"query time: median {statistics.median(seconds) * 1000:.1f} ms, max {max(seconds) * 1000:.1f} ms "
          "(settings + ranking statement, vector computed beforehand)\n")
    header = f"{'index':<22} {'LOO top-1':>9} {'LOO top-3':>9} {'coll top-1':>10} {'coll top-3':>10}"
    print(header)
    print("-" * len(header))
    for label, (loo, colloquial) in results.items():
        print(f"{label:<22} {percent(loo, 'top1'):>8.1f}% {percent(loo, 'top3'):>8.1f}% "
              f"{percent(colloquial, 'top1'):>9.1f}% {percent(colloquial, 'top3'):>9.1f}%")
    for label, (loo, colloquial) in results.items():
        print(f"\n{label}: leave-one-out misses (not top-1)")
        print("\n".join(describe_misses(loo, codes) or ["  none"]))
        print(f"{label}: colloquial misses (not top-1)")
        print("\n".join(describe_misses(colloquial, codes) or ["  none"]))

    loo = results["full index"][0]
    met = percent(loo, "top1") >= TARGET_TOP1 and percent(loo, "top3") >= TARGET_TOP3
    print(f"\ntarget (full index, leave-one-out): top-1 >= {TARGET_TOP1}%, top-3 >= {TARGET_TOP3}%: "
          f"{'met' if met else 'NOT met'}")
    return 0 if met or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
