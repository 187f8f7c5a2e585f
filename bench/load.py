"""The HTTP API under load and under a database outage (issue 14), with Locust as a library.

    python bench/load.py                          # real data: the load table, then the outage (~3 min)
    python bench/market.py --size 1m && python bench/load.py --size 1m --no-outage

On the bench server (.inca-bench/, bench/market.py loads inca_bench_<size>), never the project's
database: a real uvicorn on 127.0.0.1 reads it with the SELECT-only role, and Locust's closed-loop
clients (no think time) POST /compare, each answer checked byte for byte against a reference
answer taken before the load (only `fingerprint_verified_at` may differ).

1. Load: the guide example (docs/api.md) and a 10 products x 50 codes selection (bench/run.py's,
   all 8 x 48 on the real data) at 1, 8 and 32 clients; each run is bounded by --seconds and
   --max-requests. Table: clients, requests/s, p50, p95, errors (anything but the reference).
2. Outage (embedded bench server only): 8 clients on the guide example; after --outage-at s the
   bench server is stopped (`pg_ctl stop -m fast`, bundled binaries, as the server's user) for
   --outage-seconds, then started again with its own options (postmaster.opts). Every answer must
   be the reference or a 503 with an error body; none wrong; the API process is never restarted.
   Recovery: from the server accepting connections again to the first correct answer.
   Nothing else may use the bench server meanwhile (e.g. a bench/market.py load): it is stopped.

Results: stdout (markdown) and bench/results/load-<time>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # run as a script: make `core` and `bench` importable
    sys.path.insert(0, str(PROJECT_ROOT))

# Locust patches the standard library for gevent on import: import it before anything networked.
import gevent  # noqa: E402
import psutil  # noqa: E402
from locust import FastHttpUser, constant, task  # noqa: E402
from locust.env import Environment  # noqa: E402

from bench.market import BENCH_DATA_DIR, READER, REAL, bench_database, bench_server  # noqa: E402
from bench.run import _selection  # noqa: E402
from core import config  # noqa: E402

RESULTS = PROJECT_ROOT / "bench" / "results"
GUIDE_EXAMPLE: dict[str, Any] = {"products": [{"insurer": "삼성화재"}, {"insurer": "메리츠화재"}],
                                 "target_coverages": [{"coverage_code": "A4200_1"}]}
# The only part of an answer that changes between two identical requests.
_VOLATILE = re.compile(rb'"fingerprint_verified_at":(null|"[^"]*")')


def normalised(body: bytes) -> bytes:
    return _VOLATILE.sub(b"", body)


# --- the API process ---------------------------------------------------------------------------

@dataclass
class Api:
    process: subprocess.Popen[bytes]
    base: str


def http(url: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
    """urllib, not httpx: httpx pulls in trio, which does not import under gevent's patches."""
    data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=120) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_api(database_url: str, log: Path) -> Api:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "INCA_ADMIN_URL", "INCA_ENV")}
    env["DATABASE_URL"] = database_url
    with log.open("wb") as sink:
        process = subprocess.Popen([sys.executable, "-m", "uvicorn", "api.server:app", "--host", "127.0.0.1",
                                    "--port", str(port), "--log-level", "warning"],
                                   cwd=PROJECT_ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
    api = Api(process, f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the API exited with {process.returncode}: see {log}")
        try:
            if http(api.base + "/health")[0] == 200:
                return api
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"the API was not healthy within 60 s: see {log}")


def stop_api(api: Api) -> None:
    api.process.terminate()
    try:
        api.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        api.process.kill()


# --- one Locust run ----------------------------------------------------------------------------

@dataclass
class Outcome:
    """Every answer of one run: (seconds since start, kind, latency ms)."""

    answers: list[tuple[float, str, float]] = field(default_factory=list)

    def kinds(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for _, kind, _ in self.answers:
            counts[kind] = counts.get(kind, 0) + 1
        return counts


def classify(status: int, body: bytes, reference: bytes) -> str:
    if status == 200:
        return "correct" if normalised(body) == reference else "WRONG"
    if status == 503:
        try:
            answer = json.loads(body)
        except ValueError:
            return "WRONG"
        return "503" if isinstance(answer, dict) and answer.get("error") and answer.get("detail") else "WRONG"
    return f"WRONG {status}"


def run_clients(base: str, body: dict[str, Any], reference: bytes, clients: int, seconds: float,
                max_requests: int, during: Callable[[float], None] | None = None) -> tuple[Outcome, float]:
    """`clients` closed-loop users for at most `seconds` and `max_requests` answers; returns the
    outcome and the wall time the clients ran. `during(t0)` runs alongside (the outage)."""
    outcome = Outcome()
    payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
    started = time.monotonic()

    class Client(FastHttpUser):
        host = base
        wait_time = constant(0)
        network_timeout = 60.0
        connection_timeout = 10.0

        @task
        def compare(self) -> None:
            sent = time.monotonic()
            with self.client.post("/compare", data=payload, headers={"content-type": "application/json"},
                                  catch_response=True) as answer:
                status = answer.status_code or 0
                kind = classify(status, answer.content or b"", reference) if status else "WRONG no answer"
                outcome.answers.append((sent - started, kind, (time.monotonic() - sent) * 1000))
                if kind == "correct":
                    answer.success()
                else:
                    answer.failure(kind)

    env = Environment(user_classes=[Client])
    runner = env.create_local_runner()
    runner.start(clients, spawn_rate=clients)
    helper = gevent.spawn(during, started) if during else None
    deadline = started + seconds
    while time.monotonic() < deadline and len(outcome.answers) < max_requests:
        gevent.sleep(0.05)
    if helper is not None:
        helper.join()
    runner.quit()
    return outcome, time.monotonic() - started


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def load_row(scenario: str, clients: int, outcome: Outcome, wall: float) -> dict[str, Any]:
    latencies = [ms for _, _, ms in outcome.answers]
    errors = sum(1 for _, kind, _ in outcome.answers if kind != "correct")
    return {"scenario": scenario, "clients": clients, "requests": len(latencies),
            "rps": len(latencies) / wall if wall else 0.0, "p50_ms": percentile(latencies, 0.50),
            "p95_ms": percentile(latencies, 0.95), "errors": errors, "kinds": outcome.kinds()}


# --- the outage --------------------------------------------------------------------------------

def _as_server_user(command: list[str], pgdata: Path) -> list[str]:
    """The server runs as the data folder's owner (pgserver when started by root)."""
    if os.geteuid() != 0:
        return command
    import pwd

    owner = pwd.getpwuid(pgdata.stat().st_uid).pw_name
    return ["runuser", "-u", owner, "--", *command]


def server_options(pgdata: Path) -> str:
    """postmaster.opts minus the binary and -D: what `pg_ctl start -o` needs to start it the same way."""
    words = shlex.split((pgdata / "postmaster.opts").read_text())[1:]
    kept: list[str] = []
    skip = False
    for word in words:
        if skip:
            skip = False
        elif word == "-D":
            skip = True
        else:
            kept.append(word)
    return shlex.join(kept)


@dataclass
class OutageClock:
    stop_sent: float = 0.0
    stopped: float = 0.0
    start_sent: float = 0.0
    started: float = 0.0
    failure: str = ""


def outage(pgdata: Path, at: float, seconds: float, clock: OutageClock) -> Callable[[float], None]:
    from core import embedded

    pg_ctl = str(embedded.bin_dir() / "pg_ctl")
    options = server_options(pgdata)

    def run(t0: float) -> None:
        gevent.sleep(max(0.0, t0 + at - time.monotonic()))
        clock.stop_sent = time.monotonic() - t0
        stopped = subprocess.run(_as_server_user([pg_ctl, "stop", "-D", str(pgdata), "-m", "fast", "-w"], pgdata),
                                 capture_output=True, text=True)
        if stopped.returncode != 0:
            clock.failure = f"pg_ctl stop failed: {stopped.stdout} {stopped.stderr}".strip()
            return
        clock.stopped = time.monotonic() - t0
        gevent.sleep(seconds)
        clock.start_sent = time.monotonic() - t0
        # -l: the server's own log file (the package's), which its user may write.
        started = subprocess.run(_as_server_user([pg_ctl, "start", "-D", str(pgdata), "-w", "-l", str(pgdata / "log"),
                                                  "-o", options], pgdata), capture_output=True, text=True)
        if started.returncode != 0:
            clock.failure = f"pg_ctl start failed: {started.stdout} {started.stderr}".strip()
            return
        clock.started = time.monotonic() - t0

    return run


def stop_restarted_server(pgdata: Path) -> None:
    """The package stops only the server process it started; the one pg_ctl restarted would outlive
    this bench, so stop it when no other process has registered a handle on the folder."""
    from core import embedded

    try:
        others = [pid for pid in json.loads((pgdata / ".handle_pids.json").read_text() or "[]") if pid != os.getpid()]
    except (OSError, ValueError):
        others = []
    if not any(psutil.pid_exists(pid) for pid in others):
        subprocess.run(_as_server_user([str(embedded.bin_dir() / "pg_ctl"), "stop", "-D", str(pgdata), "-m", "fast",
                                        "-w"], pgdata), capture_output=True)


def outage_report(outcome: Outcome, clock: OutageClock, api: Api, pid_before: int) -> dict[str, Any]:
    if clock.failure or not clock.started:
        raise SystemExit(f"the outage did not run as planned: {clock.failure or 'the server was not started again'}")
    # By when a request was sent and answered: "down" holds only requests sent after the server
    # had stopped and answered before it was being started, so none of them can be correct.
    def phase(sent: float, answered: float) -> str:
        if sent < clock.stop_sent:
            return "before"
        if sent < clock.stopped:
            return "stopping"
        if answered < clock.start_sent:
            return "down"
        return "starting" if sent < clock.started else "after"

    counts: dict[str, dict[str, int]] = {name: {} for name in ("before", "stopping", "down", "starting", "after")}
    for sent, kind, ms in outcome.answers:
        bucket = counts[phase(sent, sent + ms / 1000)]
        bucket[kind] = bucket.get(kind, 0) + 1
    # An answer counts as recovered when it was sent after the server was back.
    first_correct = min((sent + ms / 1000 for sent, kind, ms in outcome.answers
                         if kind == "correct" and sent >= clock.started), default=None)
    wrong = sum(1 for _, kind, _ in outcome.answers if kind not in ("correct", "503"))
    return {"clock": clock.__dict__, "counts": counts, "wrong": wrong,
            "recovery_s": None if first_correct is None else first_correct - clock.started,
            "api_restarted": api.process.poll() is not None or api.process.pid != pid_before}


# --- main --------------------------------------------------------------------------------------

def selection_body(size: str, seed: int) -> dict[str, Any]:
    from core import catalog

    products, codes = _selection(seed)
    by_key = {product.key: product for product in catalog.products()}
    return {"products": [{"insurer": by_key[key].insurer_key, "product_name": key} for key in products],
            "target_coverages": [{"coverage_code": code} for code in codes]}


def guide_body() -> dict[str, Any]:
    """The guide example; in a synthetic market its insurers have many products, so name the first."""
    from core import catalog

    body: dict[str, Any] = json.loads(json.dumps(GUIDE_EXAMPLE))
    for ref in body["products"]:
        theirs = sorted(p.key for p in catalog.products() if ref["insurer"] in (p.insurer_name, p.insurer_key))
        if len(theirs) > 1:
            ref["product_name"] = theirs[0]
    return body


def reference(base: str, body: dict[str, Any]) -> bytes:
    status, content = http(base + "/compare", body)
    if status != 200:
        raise SystemExit(f"reference request failed: {status} {content[:300]!r}")
    return normalised(content)


def render(rows: list[dict[str, Any]], outage_result: dict[str, Any] | None, size: str) -> str:
    lines = [f"### POST /compare under load ({size})", "",
             "| request | clients | requests | requests/s | p50 ms | p95 ms | errors |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"] if rows else []
    for row in rows:
        lines.append(f"| {row['scenario']} | {row['clients']} | {row['requests']} | {row['rps']:.1f} | "
                     f"{row['p50_ms']:.0f} | {row['p95_ms']:.0f} | {row['errors']} |")
    if outage_result:
        c = outage_result["clock"]
        lines += [*([""] if lines else []),
                  f"### Database stopped for {c['start_sent'] - c['stopped']:.0f} s during a run ({size})",
                  "",
                  f"stop sent at {c['stop_sent']:.1f} s, server down at {c['stopped']:.1f} s, start sent at "
                  f"{c['start_sent']:.1f} s, accepting connections at {c['started']:.1f} s; phases by when a request "
                  "was sent (down: sent after the stop and answered before the start)",
                  "", "| phase | answers |", "| --- | --- |"]
        for phase, kinds in outage_result["counts"].items():
            lines.append(f"| {phase} | {', '.join(f'{k}: {v}' for k, v in sorted(kinds.items())) or '-'} |")
        recovery = outage_result["recovery_s"]
        lines += ["", f"wrong answers: {outage_result['wrong']}; API restarted: "
                      f"{'yes' if outage_result['api_restarted'] else 'no'}; recovery (server back -> first "
                      f"correct answer): {'never' if recovery is None else f'{recovery:.2f} s'}"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default=REAL, help="bench database: real (default), 1m, 5m, tiny")
    parser.add_argument("--clients", default="1,8,32", help="comma list of concurrent clients")
    parser.add_argument("--seconds", type=float, default=12.0, help="time bound of each load run")
    parser.add_argument("--max-requests", type=int, default=3000, help="answer bound of each load run")
    parser.add_argument("--seed", type=int, default=8, help="the 10 x 50 selection (as bench/run.py)")
    parser.add_argument("--no-outage", action="store_true", help="skip the database outage")
    parser.add_argument("--no-load", action="store_true", help="only the outage")
    parser.add_argument("--outage-at", type=float, default=8.0)
    parser.add_argument("--outage-seconds", type=float, default=10.0)
    parser.add_argument("--outage-clients", type=int, default=8)
    args = parser.parse_args(argv)

    server = bench_server()  # keeps the embedded bench server up while this process runs
    database = bench_database(args.size)
    if not server.exists(database):
        raise SystemExit(f"{database} is missing: run `python bench/market.py --size {args.size}` first")
    server.point_env_at(database)
    RESULTS.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    api = start_api(server.url(database, READER).render_as_string(hide_password=False), RESULTS / f"load-{stamp}.log")
    restarted = False
    try:
        scenarios = {"guide example (2 x 1)": guide_body()}
        big = selection_body(args.size, args.seed)
        scenarios[f"selection ({len(big['products'])} x {len(big['target_coverages'])})"] = big
        references = {name: reference(api.base, body) for name, body in scenarios.items()}
        rows = []
        for name, body in ({} if args.no_load else scenarios).items():
            for clients in (int(n) for n in args.clients.split(",")):
                outcome, wall = run_clients(api.base, body, references[name], clients, args.seconds, args.max_requests)
                rows.append(load_row(name, clients, outcome, wall))
                print(f"  {name}, {clients} clients: {rows[-1]['rps']:.1f} req/s, {rows[-1]['errors']} errors",
                      file=sys.stderr)
        outage_result = None
        if not args.no_outage:
            if config.settings().bench_server_url is not None:
                print("outage skipped: INCA_BENCH_SERVER_URL is an external server", file=sys.stderr)
            else:
                clock = OutageClock()
                pid = api.process.pid
                name = "guide example (2 x 1)"
                total = args.outage_at + args.outage_seconds + 20
                outcome, _ = run_clients(api.base, scenarios[name], references[name], args.outage_clients, total,
                                         10**9, during=outage(BENCH_DATA_DIR / "pgdata", args.outage_at,
                                                              args.outage_seconds, clock))
                outage_result = outage_report(outcome, clock, api, pid)
                restarted = True
        text = render(rows, outage_result, args.size)
        print(text)
        (RESULTS / f"load-{stamp}.json").write_text(json.dumps(
            {"size": args.size, "rows": rows, "outage": outage_result, "cpus": os.cpu_count()}, indent=2))
        failed = outage_result is not None and (outage_result["wrong"] or outage_result["api_restarted"]
                                                or outage_result["recovery_s"] is None)
        return 1 if failed else 0
    finally:
        stop_api(api)
        if restarted:
            stop_restarted_server(BENCH_DATA_DIR / "pgdata")


if __name__ == "__main__":
    raise SystemExit(main())
