"""The load's floor (issue 16): the least work on this machine that leaves the same locked database.

    python bench/market.py --size 1m && python bench/restore_floor.py --size 1m   # ~2.5 min, ~2x its disk

The audited load (core/ops/loader.py) reads or generates every row, checks it on its way into COPY,
builds every key and index, derives the condition slots, the findings, the comparison cells and the
catalog views, fingerprints the amounts and digests every locked relation, in one transaction. Its floor
keeps only what any load of the same rows must do, with the field's own tools and in parallel:

1. untimed: `pg_dump -Fd -Z0 -j<cpus>` of inca_bench_<size> (the bundled client programs) into a
   temporary folder;
2. timed, "restore": `pg_restore -j<cpus> --disable-triggers` into an empty inca_bench_floor_<size>: the
   same rows by COPY, the same keys, indexes and materialized views (REFRESH: the one derivation left in),
   no Python per row, no audit, no condition slots or findings derived;
3. timed, "digests": `core.lock.relation_digests` over every locked relation of the restored database,
   what the load's lock record computes (without it nothing is locked); they must equal the digests the
   load recorded, so the floor is proven to hold the very content the load locked.

The floor database and the dump are dropped afterwards, also on failure. bench/run.py measures the
floor after every load it runs and reports the load against it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # run as a script: make `core` and `bench` importable
    sys.path.insert(0, str(PROJECT_ROOT))

from bench.market import BENCH_DATA_DIR, BenchServer, bench_database, bench_server  # noqa: E402


def floor_database(size: str) -> str:
    return bench_database(f"floor_{size}")


def _run(program: Path, args: list[str], server: BenchServer, database: str) -> None:
    """The backup module's own runner (conninfo without the password, PGPASSWORD in the child's env)."""
    from core.ops.backup.client import BackupError, _run_client

    try:
        _run_client(program, args, server.url(database), program.name)
    except BackupError as error:
        raise SystemExit(str(error)) from None


def _digests(server: BenchServer, database: str) -> dict[str, tuple[int, str]]:
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    from core import lock

    engine = create_engine(server.url(database), poolclass=NullPool)
    try:
        with engine.begin() as conn:
            relations = [str(name) for name in conn.execute(
                text('SELECT relname FROM inca_locked_relation ORDER BY relname COLLATE "C"')).scalars()]
            return lock.relation_digests(conn, relations)
    finally:
        engine.dispose()


_RECORDED_DIGESTS = """
    SELECT r.relname, r.row_count, r.digest FROM lock_record r
    WHERE r.digest IS NOT NULL AND r.audit_run_id = (SELECT audit_run_id FROM lock_seal ORDER BY recorded_at DESC LIMIT 1)
"""


def _recorded(server: BenchServer, database: str) -> dict[str, tuple[int, str]]:
    """The digests the load recorded (its latest seal): what the floor's restore must reproduce."""
    import psycopg

    with psycopg.connect(server.conninfo(database), autocommit=True) as conn:
        return {str(name): (int(count), str(digest)) for name, count, digest in conn.execute(_RECORDED_DIGESTS)}


def measure(size: str, server: BenchServer | None = None, source: str | None = None,
            work_dir: Path | None = None) -> dict[str, Any]:
    """Dump the size's loaded bench database (or `source`), then time its restore into an empty one and
    the digests; SystemExit unless the restored relations have exactly the digests the load recorded."""
    server = server or bench_server()
    source, target = source or bench_database(size), floor_database(size)
    if not server.exists(source):
        raise SystemExit(f"{source} does not exist: run `python bench/market.py --size {size}` first")
    recorded = _recorded(server, source)
    jobs = os.cpu_count() or 1
    from core.ops.backup.client import _server_major, client_program

    major = _server_major(server.url(source))[0]
    pg_dump, pg_restore = client_program("pg_dump", major), client_program("pg_restore", major)
    work_dir = work_dir or BENCH_DATA_DIR  # the bench's disk, not /tmp's
    work_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="floor-", dir=work_dir))
    dump = folder / "dump"
    try:
        started = time.perf_counter()
        _run(pg_dump, ["--format=directory", "--compress=0", f"--jobs={jobs}", "--file", str(dump)], server, source)
        dump_seconds = time.perf_counter() - started
        dump_bytes = sum(path.stat().st_size for path in dump.iterdir())
        server.drop(target)
        server.create(target)
        started = time.perf_counter()
        _run(pg_restore, [f"--jobs={jobs}", "--disable-triggers", "--no-owner", "--exit-on-error", str(dump)],
             server, target)
        restore_seconds = time.perf_counter() - started
        started = time.perf_counter()
        digests = _digests(server, target)
        digest_seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        server.drop(target)
    if digests != recorded:  # the floor must leave the very content the load locked, or it floors nothing
        differing = sorted(name for name in set(digests) | set(recorded) if digests.get(name) != recorded.get(name))
        raise SystemExit(f"the restored database does not have the digests {source} recorded: {', '.join(differing)}")
    return {"size": size, "jobs": jobs, "dump_seconds": round(dump_seconds, 3), "dump_bytes": dump_bytes,
            "restore_seconds": round(restore_seconds, 3), "digest_seconds": round(digest_seconds, 3),
            "floor_seconds": round(restore_seconds + digest_seconds, 3),
            "digested_rows": sum(count for count, _ in digests.values()), "relations": len(digests)}


def note(floor: dict[str, Any], load_seconds: float | None = None) -> str:
    """The floor's row note in bench/run.py's table."""
    text = (f"pg_restore -j{floor['jobs']} {floor['restore_seconds']:.1f} s + lock digests "
            f"{floor['digest_seconds']:.1f} s ({floor['digested_rows']:,} rows, {floor['relations']} relations); "
            f"dump {floor['dump_bytes'] / 2**20:,.0f} MiB, untimed")
    if load_seconds:
        text += f"; load / floor {load_seconds / floor['floor_seconds']:.2f}"
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="1m", help="the bench database inca_bench_<size> to restore (default 1m)")
    parser.add_argument("--json", help="also write the result to this file")
    args = parser.parse_args(argv)
    result = measure(args.size)
    print(json.dumps(result, indent=2))
    print(note(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
