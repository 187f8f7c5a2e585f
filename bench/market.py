"""Synthetic insurance market for load and query benchmarks (issue 8).

    python bench/market.py --size 1m|5m|tiny [--seed N] [--database NAME] [--replace] [--generate-only]

Streams a `core.ops.dataset.LoadBundle` shaped like the real dataset, only bigger (generated batch by
batch while it is loaded: nothing is held, so memory does not grow with the size), into
`core.ops.loader.load_bundle` (the same audited path as the real load: constraints, pre-audit, post-audit,
fingerprint, lock) in a SEPARATE database: `inca_bench_<size>` on a bench-only embedded server in
`.inca-bench/` (or on INCA_BENCH_SERVER_URL). The project's own database is never touched: see
`bench_database`, which refuses every name that does not start with `inca_bench`.

Shape (per size, see SHAPES): insurers x products x variants; every variant carries its own coverage
instances (like a 1종/2종 product whose amounts differ), ~27 % of them without a canonical code, the
rest spread over the canonical codes with 1-3 raw coverages per code. Everything is drawn from the real
dataset: raw names (with insurer-style variations), value_text spellings in their real proportions,
supporting snippets (3 per instance: 약관, 사업방법서, 상품요약서) and the proposal snippet that contains
the printed amount (so the audit passes). CONFIRMED/UNCONFIRMED follow the real split per mapping
status (88 % of matched and 38 % of unmatched instances are CONFIRMED: ~75 % overall).

Deterministic for a given (size, seed): ids included, so a dropped bench database can be recreated.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
import uuid
import warnings
from bisect import bisect
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import date
from itertools import accumulate
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # run as a script: make `core` importable
    sys.path.insert(0, str(PROJECT_ROOT))

from sqlalchemy.engine import URL, make_url  # noqa: E402

from core.ops import dataset  # noqa: E402
from core.ops.dataset import PROPOSAL, TABLE_ORDER, Batch, LoadBundle, coalesce, read_bundle  # noqa: E402

BENCH_DATA_DIR = PROJECT_ROOT / ".inca-bench"
BENCH_PREFIX = "inca_bench"
#: `--size real`: the bundled dataset itself, loaded into its own bench database
REAL = "real"
READER = "inca_reader"
GENERATOR_VERSION = "market-v1"
SUPPORTING_TYPES = ("약관", "사업방법서", "상품요약서")
DOC_SLUGS = {"약관": "policy", "사업방법서": "business", "상품요약서": "summary", PROPOSAL: "proposal"}
#: share of instances without a canonical code (real data: 79 of 297)
UNMATCHED_SHARE = 0.27
#: P(CONFIRMED | matched) and P(CONFIRMED | unmatched) in the real data: 192/218 and 30/79
CONFIRMED_IF_MATCHED = 0.88
CONFIRMED_IF_UNMATCHED = 0.38
#: raw coverages per (product, code): 1, 2 or 3 with these weights (mean 1.25)
RAW_COUNT_WEIGHTS = (0.80, 0.15, 0.05)
#: how a product's code family qualifies the canonical name and the insurers' raw names
QUALIFIERS = ("(갱신형)", "Ⅱ", "(1년50%)", "(최초1회한)", "(연간1회한)", "(90일면책)", "(요양병원제외)", "(20년갱신)",
              "(간편가입)")
#: the 2nd and 3rd raw coverage of one product under one code (as in 유사암 진단비(갑상선암) ...)
SPLITS = ("", "(기본형)", "(추가형)")
VARIANT_NAMES = ("1종(기본형)", "2종(해약환급금미지급형)", "3종(간편심사형)")
SYNTHETIC_INSURERS = ("한빛", "미래", "푸른", "새솔", "누리", "다온", "하늘", "바른", "온누리", "가온", "한결", "두레", "별빛",
                      "솔빛", "이음")
FIXED_GENERATED_AT = "2025-12-29T00:00:00+09:00"  # lineage time is fixed so the bundle is deterministic


@dataclass(frozen=True)
class Shape:
    insurers: int
    products_per_insurer: int
    variants_per_product: int
    codes: int
    #: mean coverage instances (= amount facts) per variant, matched and unmatched together
    instances_per_variant: int

    @property
    def target_facts(self) -> int:
        return self.insurers * self.products_per_insurer * self.variants_per_product * self.instances_per_variant


SHAPES: dict[str, Shape] = {
    # tiny: enough codes that every ratio holds (a product carries ~half of them), ~3k facts
    "tiny": Shape(insurers=4, products_per_insurer=3, variants_per_product=2, codes=120, instances_per_variant=120),
    "1m": Shape(insurers=50, products_per_insurer=40, variants_per_product=2, codes=300, instances_per_variant=250),
    "5m": Shape(insurers=100, products_per_insurer=100, variants_per_product=2, codes=300, instances_per_variant=250),
}


# --- what the real dataset contributes ---------------------------------------------------------

@dataclass(frozen=True)
class RealPools:
    codes: list[tuple[str, str]]  # (code, canonical name), code order
    raw_names: dict[str, list[str]]  # code -> every raw spelling (cards + workbook)
    unmatched: list[str]
    values: list[str]  # distinct value_text spellings
    value_cum_weights: list[float]
    snippets: dict[str, list[tuple[int | None, str]]]  # doc type -> (page, snippet)
    insurers: list[tuple[Any, ...]]  # real insurer rows
    product_names: dict[str, str]  # insurer key -> real product name


def real_pools(dataset_root: Path | None = None) -> RealPools:
    from core import config

    bundle = read_bundle(dataset_root or config.dataset_dir())
    rows = bundle.rows
    raw: dict[str, list[str]] = defaultdict(list)
    unmatched: list[str] = []
    for row in rows["coverage_instance"]:
        if row[4] is None:
            unmatched.append(row[5])
        elif row[5] not in raw[row[4]]:
            raw[row[4]].append(row[5])
    for mapping in bundle.mapping:
        if mapping.raw_name not in raw[mapping.coverage_code]:
            raw[mapping.coverage_code].append(mapping.raw_name)
    counts: dict[str, int] = defaultdict(int)
    for fact in rows["amount_fact"]:
        if fact[3] is not None:
            counts[fact[3]] += 1
    values = sorted(counts)
    snippets: dict[str, list[tuple[int | None, str]]] = {doc_type: [] for doc_type in SUPPORTING_TYPES}
    for evidence in rows["evidence_ref"]:
        if evidence[3] in snippets:
            snippets[evidence[3]].append((evidence[4], evidence[5]))
    products = {product[1]: product[3] for product in rows["product"]}
    return RealPools(
        codes=sorted((row[0], row[1]) for row in rows["coverage_canonical"]),
        raw_names={code: raw.get(code) or [canonical] for code, canonical, *_ in rows["coverage_canonical"]},
        unmatched=sorted(set(unmatched)),
        values=values,
        value_cum_weights=list(accumulate(counts[v] for v in values)),
        snippets=snippets,
        insurers=sorted(rows["insurer"], key=lambda row: row[1]),
        product_names={insurer[1]: products[insurer[0]] for insurer in rows["insurer"]},
    )


# --- the generator -----------------------------------------------------------------------------

def _id_factory(rng: random.Random) -> Callable[[], uuid.UUID]:
    """Random (seeded) uuid.UUID objects, 5x cheaper than uuid4(): built without UUID.__init__'s checks.

    UUID objects, as core.dataset makes them, so the loader takes its binary COPY path. Random rather
    than sequential on purpose: the real load writes uuid4 keys, and the key indexes are built from
    the same scattered values here.
    """
    getrandbits = rng.getrandbits
    new_object, set_slot, unknown, uuid_type = object.__new__, object.__setattr__, uuid.SafeUUID.unknown, uuid.UUID

    def new_id() -> uuid.UUID:
        value = new_object(uuid_type)
        set_slot(value, "int", getrandbits(128))
        set_slot(value, "is_safe", unknown)
        return value

    return new_id


def _styles() -> list[Callable[[str, int], str]]:
    """How insurers print one coverage name (seen in the real proposals)."""
    return [
        lambda name, _: name,
        lambda name, _: name.replace(" ", ""),
        lambda name, position: f"{position}. {name}",
        lambda name, _: f"{name}담보",
        lambda name, _: f"[갱신형] {name}",
        lambda name, _: f"{name}[기본계약]" if len(name) < 12 else f"{name} 특약",
    ]


def synthetic_codes(pools: RealPools, count: int) -> list[tuple[str, str, str, str]]:
    """(code, canonical name, real base code, qualifier): the real codes first, then qualified ones."""
    codes = [(code, name, code, "") for code, name in pools.codes][:count]
    taken = {code for code, *_ in codes}
    serial: dict[str, int] = defaultdict(lambda: 10)
    position = 0
    while len(codes) < count:
        base, name = pools.codes[position % len(pools.codes)]
        qualifier = QUALIFIERS[(position // len(pools.codes)) % len(QUALIFIERS)]
        stem = base[:5]
        serial[stem] += 1
        code = f"{stem}_{serial[stem]}"
        if code not in taken:
            taken.add(code)
            codes.append((code, f"{name}{qualifier}", base, qualifier))
        position += 1
    return sorted(codes)


def _insurers(pools: RealPools, count: int) -> list[tuple[str, str, str, str | None, str]]:
    """(key, mapping code, Korean name, English name, type): the 8 real insurers, then synthetic ones."""
    found = [(row[1], row[2], row[3], row[4], row[5]) for row in pools.insurers][:count]
    number = 0
    while len(found) < count:
        number += 1
        stem = SYNTHETIC_INSURERS[(number - 1) % len(SYNTHETIC_INSURERS)]
        life = number % 5 == 0
        suffix = "생명" if life else ("화재" if number % 2 else "손해보험")
        name = f"{stem}{suffix}" if number <= len(SYNTHETIC_INSURERS) else f"{stem}{suffix}{number}"
        found.append((f"syn{number:03d}", f"S{number:03d}", name, None, "생명" if life else "손해"))
    return found


def _manifest_keys() -> list[str]:
    from core import config

    manifest = json.loads((config.dataset_dir() / "manifest.json").read_text(encoding="utf-8"))
    return list(manifest["expected_counts"])


def expected_counts(tallies: dict[str, int]) -> dict[str, int]:
    """The manifest's keys (whatever the real dataset checks today), from what the generator produced."""
    return {key: tallies[key] for key in _manifest_keys() if key in tallies}


def generate(size: str, seed: int = 8, progress: bool = True, pools: RealPools | None = None) -> LoadBundle:
    """The synthetic market of `size` (a key of SHAPES) as a streamed LoadBundle, deterministic for `seed`.

    Nothing is held: every pass over `bundle.batches()` generates the market again from the seed (the
    same rows, ids included), in batches of one table. A pass fills `expected_counts` and the lineage's
    `rows_audited` once it has produced every row (the load reads them after COPY).
    """
    shape = SHAPES[size]
    pools = pools or real_pools()
    bundle = LoadBundle(dataset_sha256=hashlib.sha256(f"{GENERATOR_VERSION}:{size}:{seed}:{shape}".encode()).hexdigest())
    bundle.lineage = {
        "audit_name": f"synthetic_market_{size}", "status": "PASS", "freeze_tag": f"synthetic/{size}-seed{seed}",
        "git_commit": GENERATOR_VERSION, "generated_at": FIXED_GENERATED_AT, "rows_audited": 0,
        "value_mismatches": 0, "type_mismatches": 0, "insurers": [key for key, *_ in _insurers(pools, shape.insurers)],
    }

    def stream() -> Iterator[Batch]:
        tallies: dict[str, int] = defaultdict(int)
        for table, rows in coalesce(_market_rows(size, seed, pools, progress, tallies)):
            tallies[table] += len(rows)
            yield table, rows
        tallies["audit_runs"] = 2
        bundle.expected_counts = expected_counts(tallies)
        bundle.lineage["rows_audited"] = tallies["amount_fact"]

    bundle.stream = stream
    return bundle


def _market_rows(size: str, seed: int, pools: RealPools, progress: bool, tallies: dict[str, int]) -> Iterator[Batch]:
    """The market's rows in generation order, a few rows of one table at a time (per variant), drawn from
    one seeded generator in exactly the order the in-memory generator of earlier rounds drew them (so
    the same seed gives the same rows, ids included, and the same fingerprint)."""
    shape = SHAPES[size]
    rng = random.Random(f"{GENERATOR_VERSION}:{size}:{seed}")
    new_id = _id_factory(rng)
    rand = rng.random
    styles = _styles()

    codes = synthetic_codes(pools, shape.codes)
    canonical_rows: list[tuple[Any, ...]] = [(code, name, []) for code, name, _base, _qualifier in codes]
    yield "coverage_canonical", canonical_rows
    raw_cum = list(accumulate(RAW_COUNT_WEIGHTS))
    # Chance that a product carries a code, so that a variant holds `instances_per_variant` on average.
    carry = min(1.0, shape.instances_per_variant * (1 - UNMATCHED_SHARE)
                / (shape.codes * sum((i + 1) * w for i, w in enumerate(RAW_COUNT_WEIGHTS))))
    unmatched_mean = shape.instances_per_variant * UNMATCHED_SHARE
    values, value_cum = pools.values, pools.value_cum_weights
    value_total = value_cum[-1]
    snippet_pools = [pools.snippets[doc_type] for doc_type in SUPPORTING_TYPES]
    proposal_forms = ("{raw}\n{value}", "{position}. {raw}\n{value}", "{raw} / {value}")
    # distinct (code, raw name, insurer key) of the coded instances, in order: the search index's card names
    cards: dict[tuple[str, str, str], None] = {}

    # One spelling per code for the whole market (a real raw name of the code's family + its qualifier):
    # insurers differ by style. Distinct names are what the search index embeds (~5 k at every size).
    market_spellings = [f"{pools.raw_names[base][int(rand() * len(pools.raw_names[base]))]}{qualifier}"
                        for _code, _name, base, qualifier in codes]
    insurers = _insurers(pools, shape.insurers)
    total_variants = shape.insurers * shape.products_per_insurer * shape.variants_per_product
    bar = _bar(total_variants, "generate", progress)
    for insurer_number, (insurer_key, mapping_code, name_ko, name_en, insurer_type) in enumerate(insurers):
        insurer_id = new_id()
        yield "insurer", [(insurer_id, insurer_key, mapping_code, name_ko, name_en, insurer_type)]
        style = styles[insurer_number % len(styles)]
        # The insurer's own names: the code's market spelling in the insurer's style, reused by all its
        # products, plus the split names used when a product has 2-3 raw coverages.
        names = [tuple(f"{style(spelling, position)}{split}" for split in SPLITS)
                 for position, spelling in enumerate(market_spellings, start=1)]
        unmatched_names = sorted({style(raw, position) for position, raw in enumerate(pools.unmatched, start=1)}
                                 | {f"{style(raw, 0)}Ⅱ" for raw in pools.unmatched})
        base_name = pools.product_names.get(insurer_key) or f"무배당 {name_ko} 건강보험"
        for product_number in range(1, shape.products_per_insurer + 1):
            product_id = new_id()
            product_key = f"{insurer_key}_p{product_number:03d}"
            yield "product", [(product_id, insurer_id, product_key, f"{base_name} {product_number}형",
                               f"HP{product_number:04d}", f"25{product_number % 12 + 1:02d}",
                               date(2025, product_number % 12 + 1, 1))]
            documents = {}
            document_rows = []
            for doc_type, slug in DOC_SLUGS.items():
                document_id = new_id()
                file_name = f"{product_key}_{slug}.pdf"
                documents[doc_type] = (document_id, file_name)
                document_rows.append((document_id, product_id, None, f"{product_key}_{slug}", doc_type,
                                      f"{name_ko} {doc_type}", file_name))
            yield "document", document_rows
            supporting_docs = [documents[doc_type] for doc_type in SUPPORTING_TYPES]
            proposal_id = documents[PROPOSAL][0]
            # Which codes the product carries and with how many raw coverages: shared by its variants.
            carried = [(index, bisect(raw_cum, rand() * raw_cum[-1]) + 1)
                       for index in range(len(codes)) if rand() < carry]
            for variant_number in range(shape.variants_per_product):
                variant_id = new_id()
                variant_name = VARIANT_NAMES[variant_number % len(VARIANT_NAMES)]
                yield "product_variant", [(variant_id, product_id, f"{product_key}_v{variant_number + 1}",
                                           variant_name, json.dumps({"종": variant_number + 1}, ensure_ascii=False))]
                unmatched_count = min(len(unmatched_names), round(unmatched_mean * (0.7 + 0.6 * rand())))
                planned = [(codes[index][0], names[index][split]) for index, raw_count in carried
                           for split in range(raw_count)]
                planned += [(None, raw) for raw in rng.sample(unmatched_names, unmatched_count)]
                instance_rows, evidence_rows, fact_rows = [], [], []
                confirmed = 0
                for position, (code, raw) in enumerate(planned, start=1):
                    instance_id = new_id()
                    matched = code is not None
                    instance_rows.append((instance_id, insurer_id, product_id, variant_id, code, raw,
                                          "matched" if matched else "unmatched"))
                    if matched:
                        cards.setdefault((code, raw, insurer_key))
                    for ordinal, ((document_id, file_name), doc_type, pool) in enumerate(
                            zip(supporting_docs, SUPPORTING_TYPES, snippet_pools, strict=True)):
                        page, snippet = pool[int(rand() * len(pool))]
                        evidence_rows.append((new_id(), instance_id, document_id, doc_type, page, snippet, raw,
                                              file_name, ordinal))
                    if rand() < (CONFIRMED_IF_MATCHED if matched else CONFIRMED_IF_UNMATCHED):
                        value = values[bisect(value_cum, rand() * value_total)]
                        form = proposal_forms[int(rand() * len(proposal_forms))]
                        evidence_id = new_id()
                        evidence_rows.append((evidence_id, instance_id, proposal_id, PROPOSAL, 1 + int(rand() * 12),
                                              form.format(raw=raw, value=value, position=position), None, None, 0))
                        fact_rows.append((new_id(), instance_id, "CONFIRMED", value, PROPOSAL,
                                          "PRIMARY" if rand() < 0.78 else "proposal_table", evidence_id, "[]"))
                        confirmed += 1
                    else:
                        fact_rows.append((new_id(), instance_id, "UNCONFIRMED", None, None, None, None, "[]"))
                tallies["coverage_instance_unmatched"] += unmatched_count
                tallies["amount_fact_confirmed"] += confirmed
                tallies["amount_fact_unconfirmed"] += len(fact_rows) - confirmed
                yield "coverage_instance", instance_rows
                yield "evidence_ref", evidence_rows
                yield "amount_fact", fact_rows
                bar.update(1)
    bar.close()
    # The search index rows, by the real dataset's own function, from the distinct card names.
    yield "coverage_alias", dataset.alias_rows(canonical_rows, [], cards)


class _NoBar:
    def update(self, _: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _bar(total: int, label: str, enabled: bool) -> Any:
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="variant", file=sys.stderr, mininterval=0.5)


# --- the bench database ------------------------------------------------------------------------

@dataclass(frozen=True)
class BenchServer:
    """A server the bench may create databases on: never the project's own database."""

    admin: URL  # superuser on the maintenance database

    def url(self, database: str, user: str | None = None) -> URL:
        return self.admin.set(database=database, username=user or self.admin.username)

    def conninfo(self, database: str = "postgres") -> str:
        return self.url(database).set(drivername="postgresql").render_as_string(hide_password=False)

    def exists(self, database: str) -> bool:
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone() is not None

    def create(self, database: str) -> None:
        import psycopg

        _check_bench_name(database)
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{database}"')  # name checked above: inca_bench_[a-z0-9_]+

    def drop(self, database: str) -> None:
        import psycopg

        _check_bench_name(database)
        with psycopg.connect(self.conninfo(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    def point_env_at(self, database: str) -> None:
        """Point `core` (DATABASE_URL / INCA_ADMIN_URL) at `database`, dropping cached engines and fingerprints."""
        from core import db, lock

        _check_bench_name(database)
        os.environ["DATABASE_URL"] = self.url(database, READER).render_as_string(hide_password=False)
        os.environ["INCA_ADMIN_URL"] = self.url(database).render_as_string(hide_password=False)
        db.dispose_all()
        lock.forget_cached_fingerprints()


def _check_bench_name(database: str) -> None:
    if not database.startswith(BENCH_PREFIX) or not database.replace("_", "").isalnum() or database != database.lower():
        raise SystemExit(f"refusing database {database!r}: the bench only writes databases named {BENCH_PREFIX}_*")


def bench_server() -> BenchServer:
    """INCA_BENCH_SERVER_URL (a superuser URL), else an embedded server in .inca-bench/ (never .inca/)."""
    from core import config

    bench_url = config.settings().bench_server_url
    external = bench_url.get_secret_value() if bench_url else ""
    if external:
        admin = make_url(external).set(drivername="postgresql+psycopg")
    else:
        from core import embedded

        if BENCH_DATA_DIR.resolve() == config.data_dir():
            raise SystemExit("INCA_DATA_DIR points at the bench folder; the bench needs its own server")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            started = embedded.start(BENCH_DATA_DIR / "pgdata")
        admin = started.url(embedded.ADMIN_ROLE, "postgres")
    import psycopg

    server = BenchServer(admin)
    with psycopg.connect(server.conninfo(), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER,)).fetchone() is None:
            conn.execute(f"CREATE ROLE {READER} LOGIN")  # constant name
        conn.execute(f"ALTER ROLE {READER} SET default_transaction_read_only = on")
    return server


def bench_database(size: str) -> str:
    return f"{BENCH_PREFIX}_{size}"


@dataclass(frozen=True)
class LoadReport:
    database: str
    facts: int
    rows: int
    #: reading the dataset / drawing the real pools, plus the time spent producing the streamed rows
    #: (which runs inside the load, interleaved with COPY: it is part of load_seconds for a market)
    generate_seconds: float
    #: the audited load, from the first batch to the commit and ANALYZE
    load_seconds: float
    message: str
    fingerprint: str
    #: seconds per phase of the load (core.ops.loader.LoadResult.phases)
    phases: dict[str, float]
    #: peak resident memory of the loading process (ru_maxrss), generation included
    peak_rss_mb: float

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.load_seconds if self.load_seconds else 0.0

    @property
    def facts_per_second(self) -> float:
        return self.facts / self.load_seconds if self.load_seconds else 0.0


def _load_progress(enabled: bool) -> tuple[Callable[[str, int, int], None], Callable[[], None]]:
    if not enabled:
        return (lambda *_: None), (lambda: None)
    from tqdm import tqdm

    bars: dict[str, Any] = {}

    def progress(table: str, written: int, total: int) -> None:
        bar = bars.get(table)
        if bar is None:
            bar = bars[table] = tqdm(total=total, desc=f"COPY {table}", unit="row", file=sys.stderr, mininterval=0.5)
        bar.update(written - bar.n)
        if written == total:
            bar.close()

    def close() -> None:
        for bar in bars.values():
            bar.close()

    return progress, close


def load_market(server: BenchServer, size: str, seed: int = 8, database: str | None = None, replace: bool = False,
                progress: bool = True) -> LoadReport:
    """Generate the market and load it into its own bench database through the audited load."""
    from core import db
    from core.ops.loader import load_bundle

    database = database or bench_database(size)
    _check_bench_name(database)
    if server.exists(database):
        if not replace:
            raise SystemExit(f"{database} exists; pass --replace to drop and reload it")
        server.drop(database)
    started = time.perf_counter()
    if size == REAL:  # the project's dataset, read as `python -m core load` reads it, into a bench database
        from core import config

        bundle = read_bundle(config.dataset_dir())
    else:
        bundle = generate(size, seed, progress=progress)
    prepared = time.perf_counter() - started
    producing = _timed_stream(bundle)
    server.create(database)
    server.point_env_at(database)
    on_progress, close = _load_progress(progress)
    started = time.perf_counter()
    try:
        result = load_bundle(bundle, db.admin_engine(), on_progress)
    finally:
        close()
    loaded = time.perf_counter() - started
    return LoadReport(database, result.counts["amount_fact"], sum(result.counts[table] for table in TABLE_ORDER),
                      round(prepared + producing[0], 3), round(loaded, 3), result.message, result.fingerprint,
                      result.phases, round(peak_rss_mb(), 1))


def _timed_stream(bundle: LoadBundle) -> list[float]:
    """Make a streamed bundle count the seconds spent producing its batches (returned list, filled as it runs)."""
    spent = [0.0]
    source = bundle.stream
    if source is None:
        return spent

    def timed() -> Iterator[Batch]:
        batches = source()
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            spent[0] += time.perf_counter() - started
            if batch is None:
                return
            yield batch

    bundle.stream = timed
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=[*sorted(SHAPES), REAL], required=True,
                        help="synthetic size, or `real` for the bundled dataset (into inca_bench_real)")
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument("--database", help="bench database name (default inca_bench_<size>)")
    parser.add_argument("--replace", action="store_true", help="drop the bench database first if it exists")
    parser.add_argument("--generate-only", action="store_true", help="build the bundle, print counts, load nothing")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--json", type=Path, help="also write the load report as JSON to this file")
    args = parser.parse_args(argv)
    if args.generate_only and args.size != REAL:
        started = time.perf_counter()
        bundle = generate(args.size, args.seed, progress=not args.quiet)
        counts = bundle.counts()  # one streamed pass: nothing is held
        seconds = time.perf_counter() - started
        rows = sum(counts.values())
        for table in TABLE_ORDER:
            print(f"  {table:<20} {counts[table]:>10}")
        print(f"generated {rows} rows ({counts['amount_fact']} amount facts) in {seconds:.1f} s "
              f"({rows / seconds:,.0f} rows/s); expected {bundle.expected_counts}; peak RSS {peak_rss_mb():.0f} MB")
        return 0
    report = load_market(bench_server(), args.size, args.seed, args.database, args.replace, progress=not args.quiet)
    print(f"{report.database}: {report.message}")
    print(f"generate {report.generate_seconds:.1f} s; load {report.load_seconds:.1f} s for {report.rows:,} rows "
          f"({report.rows_per_second:,.0f} rows/s, {report.facts_per_second:,.0f} amount facts/s)")
    print(f"fingerprint {report.fingerprint}")
    print(f"peak RSS {report.peak_rss_mb:,.0f} MB; phases: "
          + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in report.phases.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({**asdict(report), "size": args.size, "seed": args.seed,
                                         "rows_per_second": report.rows_per_second,
                                         "facts_per_second": report.facts_per_second}, indent=2, ensure_ascii=False),
                             encoding="utf-8")
    return 0


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    raise SystemExit(main())
