"""Market-scale benchmarks (issue 8): the real dataset and synthetic markets in one table.

    python bench/run.py --sizes real,1m          # ~6 min on two cores, the 1m load included
    python bench/run.py --sizes real,1m,5m       # add the 5m load (~10 min) and ~15 GB of disk

Per size, on the bench server (.inca-bench/, or INCA_BENCH_SERVER_URL), never the project database:
1. the database inca_bench_<size>: loaded by bench/market.py through the audited load when missing
   (or with --reload); its load report (rows/s) is kept in bench/results/load_<size>.json;
2. in a fresh process: core.compare on 10 products x 50 codes against the floor (ONE hand-written query
   fetching the same instances, statuses, value_texts, raw names and evidence into tuples), with and
   without the unmatched coverages; the catalog; coverage search; status with a full fingerprint
   check (fresh=True) and as page views see it (fresh=False: every call
   checks the witness);
3. right after a restart of the bench server (its shared buffers empty; the OS page cache is not
   dropped), in a fresh process: a cold pass of seeded random 10 x 50 selections, each asked once,
   then a warm pass asking the same selections again, for compare cells only and with every snippet
   and for both floors (issue 16: one selection repeated 30 times never sees a cold one);
4. in another fresh process: the dashboard's comparison page (streamlit AppTest) rerun after a
   selection change, and that process's peak RSS;
5. in another fresh process (bench/pages.py): the catalog and status pages' AppTest reruns, and per
   page the websocket bytes a real browser receives per rerun against the real `streamlit run`;
6. after a load run by this run (or with --load-floor; --no-load-floor skips it): the load's floor,
   bench/restore_floor.py (pg_restore of the loaded database into an empty one, then the lock digests).
The cells-only comparison is timed against two floors: the cells alone (issue 16's target) and the
cells with the lock statement and the findings in one snapshot (what rule 6 makes every comparison read).
Warm-up runs are not timed; compare and its floor alternate run by run so they share the machine's
noise, which the table reports as the spread of a fixed CPU workload.

Numbers go to stdout (markdown) and bench/results/run-<time>.json. --drop drops the synthetic bench
databases afterwards (bench/market.py --seed recreates them identically).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # run as a script: make `core` and `bench` importable
    sys.path.insert(0, str(PROJECT_ROOT))

from bench import restore_floor  # noqa: E402
from bench.market import REAL, bench_database, bench_server  # noqa: E402

RESULTS = PROJECT_ROOT / "bench" / "results"
APP = PROJECT_ROOT / "dashboard" / "app.py"
PRODUCTS_IN_COMPARISON = 10
CODES_IN_COMPARISON = 50
SEARCH_QUERIES = ("암 진단비", "뇌졸중 진단금", "상해 입원일당", "유사암 수술비", "질병 사망")

# The floor: the least SQL that returns what a comparison shows (each instance's raw name, status,
# value_text and every evidence snippet, proposal or supporting), flat, fetched into tuples.
FLOOR_SQL = """
    SELECT p.product_key, ci.coverage_code, ci.coverage_name_raw, af.status, af.value_text,
           e.evidence_id = af.evidence_id, e.doc_type, e.page, e.snippet, e.source_file
    FROM product p
    JOIN coverage_instance ci ON ci.product_id = p.product_id
    JOIN amount_fact af ON af.instance_id = ci.instance_id
    LEFT JOIN evidence_ref e ON e.instance_id = ci.instance_id
    WHERE p.product_key = ANY(%(products)s)
      AND (ci.coverage_code = ANY(%(codes)s) OR (%(unmatched)s AND ci.coverage_code IS NULL))
"""


# The cells-only floor: what compare(include_evidence=False) returns (raw name, status, value_text, the
# proposal snippet's document type and page, how many snippets) and, since the comparison page shows them
# with every table, each instance's condition slots (issue 16: compare reads them in its cells
# statement): the slots' statuses and the phrases with their kind, document type, page and span in
# stored order, without the text of the snippets they cite (read with a coverage's 원문), in the same
# two text columns compare reads (it decodes them only for the cells it shows), flat, into tuples.
# The least SQL that returns them is a read of schema 012's comparison_cell, where the audited load
# materialized exactly those columns per instance (compare reads the same view).
CELLS_FLOOR_SQL = """
    SELECT product_key, coverage_code, coverage_name_raw, status, value_text, proposal_doc_type, proposal_page,
           snippet_count, slot_statuses, slot_phrases
    FROM comparison_cell
    WHERE product_key = ANY(%(products)s) AND coverage_code = ANY(%(codes)s)
"""
#: random selections per pass (cold, then warm)
PASS_SELECTIONS = 40


def cells_snapshot_floor(conn: Any, params: dict[str, Any]) -> tuple[list[Any], ...]:
    """Everything compare(include_evidence=False) returns, by the least SQL: the cells floor plus the lock
    statement (rule 6: every comparison says whether the lock is intact; core.lock.LOCK_QUERY, what compare
    reads) and the products' evidence findings, in one REPEATABLE READ snapshot and one round trip, as
    compare reads them, into tuples. The target is against CELLS_FLOOR_SQL alone; this floor says how
    much of the gap is the lock and the snapshot, which no comparison may skip."""
    from core import data_quality
    from core.lock import LOCK_PARAMS, LOCK_QUERY

    with conn.transaction(), conn.pipeline():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        lock = conn.cursor(binary=True).execute(LOCK_QUERY, dict(LOCK_PARAMS))
        cells = conn.cursor(binary=True).execute(CELLS_FLOOR_SQL, params)
        findings = conn.cursor(binary=True).execute(data_quality.FINDINGS_QUERY,
                                                    {"every": False, "names": params["products"]})
    return lock.fetchall(), cells.fetchall(), findings.fetchall()


# --- statistics ---------------------------------------------------------------------------------

def summary(seconds: list[float]) -> dict[str, float]:
    """min / median / p95 (nearest rank) / max, in milliseconds."""
    ordered = sorted(seconds)
    if not ordered:
        return {}
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"n": len(ordered), "min": ordered[0] * 1000, "median": statistics.median(ordered) * 1000,
            "p95": p95 * 1000, "max": ordered[-1] * 1000}


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def repeat(action: Callable[[], object], runs: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        action()
    return [timed(action) for _ in range(runs)]


def noise_probe(runs: int = 30) -> dict[str, float]:
    """Spread of a fixed pure-Python workload: what this machine's noise does to any number below."""
    samples = [timed(lambda: sum(i * i for i in range(200_000))) for _ in range(runs)]
    result = summary(samples)
    result["cv_percent"] = statistics.pstdev(samples) / statistics.mean(samples) * 100
    return result


def machine() -> dict[str, Any]:
    import platform

    import psutil

    return {"cpus": os.cpu_count(), "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "load_average": [round(value, 2) for value in os.getloadavg()], "python": platform.python_version()}


# --- child: queries -------------------------------------------------------------------------------

def _selection(seed: int) -> tuple[list[str], list[str]]:
    from core import catalog

    products = [product.key for product in catalog.products()]
    codes = [coverage.code for coverage in catalog.coverages()]
    rng = random.Random(seed)
    return (rng.sample(products, min(PRODUCTS_IN_COMPARISON, len(products))),
            rng.sample(codes, min(CODES_IN_COMPARISON, len(codes))))


def _shown(comparison: Any) -> tuple[set[tuple[Any, ...]], int]:
    """What a comparison shows, for checking the floor returns the same: instances and evidence count."""
    instances = set()
    evidence = 0
    cells = [(product, cell.instances) for (_code, product), cell in comparison.cells.items()]
    cells += list(comparison.unmatched.items())
    for product, found in cells:
        for instance in found:
            instances.add((product, instance.raw_name, instance.status, instance.value_text))
            evidence += len(instance.supporting_evidence) + (instance.proposal_evidence is not None)
    return instances, evidence


def measure_queries(runs: int, warmup: int, seed: int) -> dict[str, Any]:
    import psycopg

    import core
    from core import catalog, config, db
    from core import comparison as comparing
    from core.status import collect

    results: dict[str, Any] = {"notes": []}
    products, codes = _selection(seed)
    results["selection"] = {"products": len(products), "codes": len(codes)}
    floor_conn = psycopg.connect(db.psycopg_conninfo(config.configured_urls()[0]), autocommit=True)  # type: ignore[index]
    for unmatched in (False, True):  # the 10 x 50 grid first (the goal), then with the uncoded coverages
        label = "with unmatched" if unmatched else "without unmatched"
        params = {"products": products, "codes": codes, "unmatched": unmatched}

        def run_compare(unmatched: bool = unmatched) -> Any:
            return core.compare(products, codes, with_unmatched=unmatched)

        def run_floor(params: dict[str, Any] = params) -> list[tuple[Any, ...]]:
            return floor_conn.execute(FLOOR_SQL, params).fetchall()

        comparison, floor_rows = run_compare(), run_floor()
        shown, evidence = _shown(comparison)
        floor_instances = {(row[0], row[2], row[3], row[4]) for row in floor_rows}
        floor_evidence = sum(1 for row in floor_rows if row[8] is not None)
        if shown != floor_instances or evidence != floor_evidence:
            raise SystemExit(f"the floor query does not return what compare() shows ({label}): "
                             f"{len(shown)} vs {len(floor_instances)} instances, {evidence} vs {floor_evidence} snippets")
        results[f"shape {label}"] = {"instances": len(shown), "evidence": evidence}
        for _ in range(warmup):
            run_compare()
            run_floor()
        compare_times, floor_times = [], []
        for index in range(runs):  # alternate the order so both see the same noise
            first, second = (run_compare, run_floor) if index % 2 == 0 else (run_floor, run_compare)
            a, b = timed(first), timed(second)
            compare_times.append(a if first is run_compare else b)
            floor_times.append(b if first is run_compare else a)
        results[f"compare 10x50 {label}"] = summary(compare_times)
        results[f"floor SQL 10x50 {label}"] = summary(floor_times)
        # Each compare run against the floor run next to it: drift in the machine's speed (other work,
        # frequency) cancels out of the pair, so this ratio moves less between runs than the medians do.
        results[f"pairwise ratio {label}"] = statistics.median(a / b for a, b in zip(compare_times, floor_times,
                                                                                       strict=True))
    # Cells only (issue 16) against its own floor, and the evidence of one coverage against its floor.
    cells_params = {"products": products, "codes": codes, "unmatched": False}
    one_code = {"products": products, "codes": codes[:1], "unmatched": False}
    cells_shown, _ = _shown(core.compare(products, codes, with_unmatched=False, include_evidence=False))
    cells_floor = {(row[0], row[2], row[3], row[4]) for row in floor_conn.execute(CELLS_FLOOR_SQL, cells_params)}
    if cells_shown != cells_floor:
        raise SystemExit(f"the cells-only floor does not return what compare() shows: {len(cells_shown)} vs "
                         f"{len(cells_floor)} instances")
    for label, ours, floor in (
            ("cells only", lambda: core.compare(products, codes, with_unmatched=False, include_evidence=False),
             lambda: floor_conn.execute(CELLS_FLOOR_SQL, cells_params).fetchall()),
            ("cells only, snapshot floor", lambda: core.compare(products, codes, with_unmatched=False,
                                                                include_evidence=False),
             lambda: cells_snapshot_floor(floor_conn, cells_params)),
            ("evidence of 1 coverage", lambda: comparing.evidence(products, codes[0]),
             lambda: floor_conn.execute(FLOOR_SQL, one_code).fetchall())):
        ours_times, floor_times = _paired(ours, floor, runs, warmup)
        results[f"compare 10x50 {label}"] = summary(ours_times)
        results[f"floor SQL 10x50 {label}"] = summary(floor_times)
        results[f"pairwise ratio {label}"] = statistics.median(a / b for a, b in zip(ours_times, floor_times,
                                                                                       strict=True))
    floor_conn.close()

    results["unmatched_coverages() of 10 products"] = summary(
        repeat(lambda: core.unmatched_coverages(products), runs, warmup))
    results["catalog products()+coverages()"] = summary(
        repeat(lambda: (catalog.products(), catalog.coverages()), runs, warmup))
    results["catalog coverage_table()"] = summary(repeat(catalog.coverage_table, runs, warmup))
    results["catalog status_counts()"] = summary(repeat(catalog.status_counts, runs, warmup))
    try:
        from core import search
    except ImportError:
        search = None  # type: ignore[assignment]
    if search is not None and hasattr(search, "find_coverages"):
        queries = iter(SEARCH_QUERIES * (runs + warmup))
        results["search find_coverages()"] = summary(repeat(lambda: search.find_coverages(next(queries)), runs, warmup))
    else:
        results["notes"].append("coverage search skipped: core/search.py has no find_coverages()")
    fresh_runs = 3 if runs > 3 else runs
    results["status collect(fresh=True)"] = summary(
        [timed(lambda: collect(fresh=True, include_backups=False)) for _ in range(fresh_runs)])
    report = collect(fresh=False, include_backups=False)
    if not report.ok:
        raise SystemExit(f"status is not ok on the bench database: {report.problems}")
    results["lock verified_at"] = report.lock.verified_at
    results["status collect(fresh=False)"] = summary(
        repeat(lambda: collect(fresh=False, include_backups=False), runs, warmup))
    return results


def _paired(ours: Callable[[], object], floor: Callable[[], object], runs: int, warmup: int,
            ) -> tuple[list[float], list[float]]:
    """Alternating timed runs of two actions (so both see the same noise), after untimed warm-ups."""
    for _ in range(warmup):
        ours()
        floor()
    ours_times, floor_times = [], []
    for index in range(runs):
        if index % 2 == 0:
            ours_times.append(timed(ours))
            floor_times.append(timed(floor))
        else:
            floor_times.append(timed(floor))
            ours_times.append(timed(ours))
    return ours_times, floor_times


# --- child: cold and warm passes of random selections ------------------------------------------------

def measure_passes(count: int, seed: int) -> dict[str, Any]:
    """Seeded random 10 x 50 selections, each asked once (cold: the parent restarted the server just
    before this process started), then the same ones again (warm). compare and the floors get disjoint
    selections, so neither warms the other's; on a compare selection, cells only runs first and the
    full comparison after it (its cells then cached, its snippets not)."""
    import psycopg

    import core
    from core import catalog, config, db

    products = [product.key for product in catalog.products()]
    codes = [coverage.code for coverage in catalog.coverages()]
    rng = random.Random(seed * 1_000 + 16)

    def draw() -> tuple[list[str], list[str]]:
        return (rng.sample(products, min(PRODUCTS_IN_COMPARISON, len(products))),
                rng.sample(codes, min(CODES_IN_COMPARISON, len(codes))))

    ours, floors = [draw() for _ in range(count)], [draw() for _ in range(count)]
    floor_conn = psycopg.connect(db.psycopg_conninfo(config.configured_urls()[0]), autocommit=True)  # type: ignore[index]
    # connections and plans, on one product and one code (a few pages), before anything is timed
    core.compare(products[:1], codes[:1], with_unmatched=False, include_evidence=False)
    floor_conn.execute(FLOOR_SQL, {"products": products[:1], "codes": codes[:1], "unmatched": False}).fetchall()
    results: dict[str, Any] = {"selections": count, "notes": []}
    for name in ("cold", "warm"):
        cells, full, cells_floor, full_floor = [], [], [], []
        for chosen, wanted in ours:
            cells.append(timed(lambda c=chosen, w=wanted: core.compare(c, w, with_unmatched=False,
                                                                       include_evidence=False)))
            full.append(timed(lambda c=chosen, w=wanted: core.compare(c, w, with_unmatched=False)))
        for chosen, wanted in floors:
            params = {"products": chosen, "codes": wanted, "unmatched": False}
            cells_floor.append(timed(lambda p=params: floor_conn.execute(CELLS_FLOOR_SQL, p).fetchall()))
            full_floor.append(timed(lambda p=params: floor_conn.execute(FLOOR_SQL, p).fetchall()))
        results[f"{name} compare cells only"] = summary(cells)
        results[f"{name} compare with evidence"] = summary(full)
        results[f"{name} floor SQL cells only"] = summary(cells_floor)
        results[f"{name} floor SQL with evidence"] = summary(full_floor)
    floor_conn.close()
    return results


def restart_bench_server() -> str:
    """Restart the embedded bench server (empties shared buffers) so the next pass starts cold."""
    from core import config, embedded

    if config.settings().bench_server_url:
        return "INCA_BENCH_SERVER_URL: the server was not restarted, the cold pass may be warm"
    from bench.market import BENCH_DATA_DIR

    pgdata = BENCH_DATA_DIR / "pgdata"
    command = [str(embedded.bin_dir() / "pg_ctl"), "restart", "-D", str(pgdata), "-m", "fast", "-w",
               "-l", str(pgdata / "bench_restart.log")]
    if os.geteuid() == 0:  # the embedded server runs as the pgserver system user (stack notes)
        command = ["runuser", "-u", "pgserver", "--", *command]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return "server restarted before the cold pass (shared buffers empty; the OS page cache was not dropped)"


# --- child: dashboard -------------------------------------------------------------------------------

def pick_insurers_of(at: Any, product_keys: list[str]) -> None:
    """Choose the insurers of `product_keys` in the compare page's insurer filter when it has one (more
    products than INCA_PICKER_MAX_OPTIONS: the product picker then lists only those insurers' products)."""
    from core import catalog

    try:
        widget = at.multiselect(key="sel_insurers")
    except KeyError:
        return
    by_key = {product.key: product.insurer_key for product in catalog.products(product_keys)}
    widget.set_value(list(dict.fromkeys(by_key[key] for key in product_keys)))


def measure_dashboard(reruns: int, seed: int) -> dict[str, Any]:
    """AppTest of the comparison page: time of `at.run()` after the product selection changed.

    Mirrors bench/dashboard_bench.apptest_timings (same page, widget and 3-product selections, each one
    a miss of the comparison cache), but draws the selections lazily: that function materialises every
    rotation of the product list (n^2 keys: 1.6 GB at 10,000 products), which would swamp the RSS this
    measures.
    """
    import resource

    from streamlit.testing.v1 import AppTest

    from core import catalog

    if not APP.exists():
        return {"notes": ["dashboard rerun skipped: dashboard/app.py does not exist yet"]}
    keys = [product.key for product in catalog.products()]
    rng = random.Random(seed)
    at = AppTest.from_file(str(APP), default_timeout=180)
    at.query_params["p"] = ",".join(keys[:3])  # the page's default is every product (see the notes)
    first = timed(at.run)
    if at.exception:
        raise SystemExit(f"dashboard raised: {[exception.value for exception in at.exception]}")
    rss_after_first = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    changed: list[float] = []
    for _ in range(reruns):
        chosen = rng.sample(keys, 3)
        pick_insurers_of(at, chosen)  # at market scale the picker lists the chosen insurers' products
        at.multiselect(key="sel_products").set_value(chosen)
        changed.append(timed(at.run))
    if at.exception:
        raise SystemExit(f"dashboard raised: {[exception.value for exception in at.exception]}")
    return {"dashboard first run (AppTest)": summary([first]),
            "dashboard rerun after selection change": summary(changed),
            "dashboard peak RSS MB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "dashboard RSS after first run MB": rss_after_first, "notes": []}


# --- child: pages (issue 16) ---------------------------------------------------------------------------

def measure_pages(reruns: int, seed: int) -> dict[str, Any]:
    """bench/pages.py: the catalog and status pages' AppTest reruns, and what every page sends in a browser."""
    from bench import pages

    return pages.measure(reruns, seed)


def child_main(args: argparse.Namespace) -> int:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
    server = bench_server()
    server.point_env_at(args.database)
    if args.child == "queries":
        result = measure_queries(args.runs, args.warmup, args.seed)
    elif args.child == "passes":
        result = measure_passes(args.selections, args.seed)
    elif args.child == "pages":
        result = measure_pages(args.reruns, args.seed)
    else:
        result = measure_dashboard(args.reruns, args.seed)
    Path(args.out).write_text(json.dumps(result, ensure_ascii=False, default=str), encoding="utf-8")
    return 0


# --- parent ------------------------------------------------------------------------------------------

def _child(mode: str, database: str, args: argparse.Namespace) -> dict[str, Any]:
    out = RESULTS / f".child-{mode}-{database}.json"
    command = [sys.executable, __file__, "--child", mode, "--database", database, "--out", str(out),
               "--runs", str(args.runs), "--warmup", str(args.warmup), "--reruns", str(args.reruns),
               "--seed", str(args.seed), "--selections", str(args.selections)]
    subprocess.run(command, check=True, cwd=PROJECT_ROOT)
    result = json.loads(out.read_text(encoding="utf-8"))
    out.unlink()
    return dict(result)


def ensure_loaded(size: str, args: argparse.Namespace) -> dict[str, Any]:
    """The size's bench database, loaded if missing (or --reload); returns its load report."""
    server = bench_server()
    database = bench_database(size)
    report_path = RESULTS / f"load_{size}.json"
    if args.reload or not server.exists(database) or not _loaded(server, database):
        command = [sys.executable, str(PROJECT_ROOT / "bench" / "market.py"), "--size", size, "--seed", str(args.seed),
                   "--replace", "--json", str(report_path)]
        print(f"loading {database} ...", file=sys.stderr, flush=True)
        subprocess.run(command, check=True, cwd=PROJECT_ROOT)
        report = json.loads(report_path.read_text(encoding="utf-8"))
        report["reused"] = False
        return dict(report)
    if report_path.exists():
        report = json.loads(report_path.read_text(encoding="utf-8"))
        report["reused"] = True
        return dict(report)
    return {"reused": True, "note": "loaded earlier; no load report kept"}


def _loaded(server: Any, database: str) -> bool:
    import psycopg

    with psycopg.connect(server.conninfo(database), autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('public.audit_runs')").fetchone()[0] is None:
            return False
        return conn.execute("SELECT count(*) FROM audit_runs WHERE kind = 'load'").fetchone()[0] > 0


def _row(name: str, size: str, stats: dict[str, float] | None, note: str = "") -> str:
    if not stats:
        return f"| {name} | {size} | — | — | — | — | — | {note} |"
    return (f"| {name} | {size} | {int(stats['n'])} | {stats['min']:.1f} | {stats['median']:.1f} | {stats['p95']:.1f} "
            f"| {stats['max']:.1f} | {note} |")


def render(results: dict[str, Any]) -> str:
    lines = [f"machine: {results['machine']}",
             f"noise probe (fixed CPU workload): median {results['noise']['median']:.1f} ms, "
             f"min {results['noise']['min']:.1f}, max {results['noise']['max']:.1f}, "
             f"CV {results['noise']['cv_percent']:.1f} %", "",
             "| measurement | size | n | min ms | median ms | p95 ms | max ms | note |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for size, found in results["sizes"].items():
        load = found["load"]
        if "load_seconds" in load:
            # a streamed market is generated inside the load (interleaved with COPY): its seconds are part of it
            note = (f"{load['rows']:,} rows, {load['facts']:,} facts: {load['rows_per_second']:,.0f} rows/s; "
                    f"generate {load['generate_seconds']:.1f} s"
                    + (f"; peak RSS {load['peak_rss_mb']:,.0f} MB" if load.get("peak_rss_mb") is not None else "")
                    + (" (earlier run)" if load.get("reused") else ""))
            lines.append(_row("load (audited, bulk path)", size, {"n": 1, "min": load["load_seconds"] * 1000,
                                                                   "median": load["load_seconds"] * 1000,
                                                                   "p95": load["load_seconds"] * 1000,
                                                                   "max": load["load_seconds"] * 1000}, note))
        floor = found.get("load_floor")
        if floor:
            seconds = floor["floor_seconds"] * 1000
            lines.append(_row("load floor (restore + lock digests)", size,
                              {"n": 1, "min": seconds, "median": seconds, "p95": seconds, "max": seconds},
                              restore_floor.note(floor, load.get("load_seconds"))))
        queries = found["queries"]
        for variant in ("without unmatched", "with unmatched"):
            compare_stats, floor_stats = queries[f"compare 10x50 {variant}"], queries[f"floor SQL 10x50 {variant}"]
            shape = queries[f"shape {variant}"]
            pairwise = queries.get(f"pairwise ratio {variant}")
            ratio = (f"ratio median {compare_stats['median'] / floor_stats['median']:.2f}, "
                     f"p95 {compare_stats['p95'] / floor_stats['p95']:.2f}"
                     + (f", pairwise {pairwise:.2f}" if pairwise else ""))
            lines.append(_row(f"compare {variant}", size, compare_stats,
                              f"{shape['instances']} instances, {shape['evidence']} snippets; {ratio}"))
            lines.append(_row(f"floor SQL {variant}", size, floor_stats))
        for variant in ("cells only", "cells only, snapshot floor", "evidence of 1 coverage"):
            ours, floor = queries.get(f"compare 10x50 {variant}"), queries.get(f"floor SQL 10x50 {variant}")
            if ours and floor:
                lines.append(_row(f"compare {variant}", size, ours,
                                  f"ratio median {ours['median'] / floor['median']:.2f}, "
                                  f"pairwise {queries[f'pairwise ratio {variant}']:.2f}"))
                lines.append(_row(f"floor SQL {variant}", size, floor,
                                  "cells floor + lock statement + findings, one snapshot, one round trip"
                                  if variant.endswith("snapshot floor") else ""))
        passes = found.get("passes", {})
        for name in ("compare cells only", "floor SQL cells only", "compare with evidence", "floor SQL with evidence"):
            for temperature in ("cold", "warm"):
                stats = passes.get(f"{temperature} {name}")
                if stats:
                    lines.append(_row(f"{temperature} pass: {name}", size, stats,
                                      f"{passes['selections']} random 10x50 selections, each once"))
        for name in ("unmatched_coverages() of 10 products", "catalog products()+coverages()",
                     "catalog coverage_table()", "catalog status_counts()", "search find_coverages()",
                     "status collect(fresh=True)", "status collect(fresh=False)"):
            note = f"verified_at {queries.get('lock verified_at')}" if name.endswith("(fresh=False)") else ""
            lines.append(_row(name, size, queries.get(name), note))
        dashboard = found["dashboard"]
        for name in ("dashboard first run (AppTest)", "dashboard rerun after selection change"):
            note = f"peak RSS {dashboard['dashboard peak RSS MB']:.0f} MB" if name.startswith("dashboard rerun") \
                and "dashboard peak RSS MB" in dashboard else ""
            lines.append(_row(name, size, dashboard.get(name), note))
        for note in queries.get("notes", []) + passes.get("notes", []) + dashboard.get("notes", []):
            lines.append(f"| note | {size} | | | | | | {note} |")
        lines += render_page_reruns(size, found.get("pages", {}))
    lines += render_page_bytes(results)
    return "\n".join(lines)


def render_page_reruns(size: str, pages: dict[str, Any]) -> list[str]:
    """AppTest rerun rows of the catalog and status pages (bench/pages.py), in the main table."""
    return [_row(name, size, stats) for name, stats in pages.get("apptest", {}).items()]


def render_page_bytes(results: dict[str, Any]) -> list[str]:
    """A second table: what each page sent per rerun in the browser, against the 500 KB budget."""
    from bench import pages

    rows = [row for size, found in results["sizes"].items() for row in pages.render_rows(size, found.get("pages", {}))]
    return ["", *pages.TABLE_HEAD, *rows] if rows else []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default=f"{REAL},1m", help="comma list of real, tiny, 1m, 5m (default real,1m)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--runs", type=int, default=30, help="timed runs per measurement")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs before each measurement")
    parser.add_argument("--reruns", type=int, default=20, help="timed dashboard reruns")
    parser.add_argument("--reload", action="store_true", help="reload the bench databases even if they exist")
    parser.add_argument("--drop", action="store_true", help="drop the synthetic bench databases at the end")
    parser.add_argument("--load-floor", action="store_true",
                        help="measure the load's floor (bench/restore_floor.py) even when no load ran")
    parser.add_argument("--no-load-floor", action="store_true",
                        help="skip the load's floor after a load (it restores the whole database: ~2.5 min at 1m)")
    parser.add_argument("--selections", type=int, default=PASS_SELECTIONS,
                        help="random selections per cold / warm pass")
    parser.add_argument("--child", choices=["queries", "passes", "dashboard", "pages"], help=argparse.SUPPRESS)
    parser.add_argument("--database", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)
    RESULTS.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds"), "machine": machine(),
                               "noise": noise_probe(), "sizes": {}}
    for size in [part.strip() for part in args.sizes.split(",") if part.strip()]:
        load = ensure_loaded(size, args)
        database = bench_database(size)
        print(f"measuring {database} ...", file=sys.stderr, flush=True)
        queries = _child("queries", database, args)
        restarted = restart_bench_server()
        passes = _child("passes", database, args)
        passes["notes"].append(restarted)
        results["sizes"][size] = {"load": load, "queries": queries, "passes": passes,
                                  "dashboard": _child("dashboard", database, args)}
        results["sizes"][size]["pages"] = _child("pages", database, args)
        # after the size's measurements, which a restore of the whole database would disturb
        if args.load_floor or (not load.get("reused", True) and not args.no_load_floor):
            print(f"load floor: restoring {database} into an empty database ...", file=sys.stderr, flush=True)
            results["sizes"][size]["load_floor"] = restore_floor.measure(size)
        if args.drop and size != REAL:
            bench_server().drop(database)
    results["machine_after"] = machine()
    table = render(results)
    print(table)
    print(f"load average after: {results['machine_after']['load_average']}")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (RESULTS / f"run-{stamp}.json").write_text(json.dumps(results, ensure_ascii=False, indent=2, default=str),
                                               encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
