"""The streamed load (issue 16): a bundle read batch by batch loads exactly what the held bundle loads,
a bad row anywhere in a stream is refused with nothing loaded, and the load holds one batch at a time.
The condition slots' load path (sources without hits left out, supporting pairs tried up front, the
literal checks of find_phrases) writes exactly the plain extractor's rows: proved here on the real
dataset, the tiny market and generated texts."""

from __future__ import annotations

import gc
import weakref
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench import market
from core import db, lock
from core.conditions import SLOTS, SourceText, extract_conditions
from core.conditions.rules import CHECKED, PATTERNS, find_phrases, may_match
from core.errors import AuditFailed
from core.ops import conditions_load, dataset, loader
from core.ops.dataset import TABLE_ORDER, Batch, LoadBundle
from core.status import collect
from tests import dataset_facts
from tests.conftest import Database
from tests.test_store import DATASET, admin_conn, assert_empty


class _Batch(list):  # a list that a weak reference can watch
    pass


def _streamed(held: LoadBundle, size: int, watch: list[weakref.ref[Any]] | None = None) -> LoadBundle:
    """The held bundle's rows as a stream of small batches, the three big tables interleaved (as the
    market streams them): many COPY statements per table, facts arriving before all snippets are in."""
    def batches() -> Iterator[Batch]:
        big = ("coverage_instance", "evidence_ref", "amount_fact")
        for table in TABLE_ORDER:
            if table not in big:
                yield from _chunks(table, held.rows[table], size, watch)
        turns = [_chunks(table, held.rows[table], size, watch) for table in big]  # lazily, one batch each in turn
        while turns:
            for chunks in list(turns):
                for batch in chunks:
                    yield batch
                    break
                else:
                    turns.remove(chunks)

    return LoadBundle(mapping=held.mapping, lineage=held.lineage, expected_counts=held.expected_counts,
                      dataset_sha256=held.dataset_sha256, stream=batches)


def _chunks(table: str, rows: list[Any], size: int, watch: list[weakref.ref[Any]] | None) -> Iterator[Batch]:
    for start in range(0, len(rows), size):
        yield table, _watched(_Batch(rows[start:start + size]), watch)  # no local keeps a batch alive here


def _watched(batch: _Batch, watch: list[weakref.ref[Any]] | None) -> _Batch:
    if watch is not None:
        watch.append(weakref.ref(batch))
    return batch


def _content(database: Database) -> dict[str, Any]:
    """What a load wrote, without its random ids: fingerprint, counts, condition rows by natural key."""
    with admin_conn(database) as conn:
        run = conn.execute("SELECT fingerprint, counts FROM audit_runs WHERE kind = 'load'").fetchone()
        slots = conn.execute(
            "SELECT i.insurer_key, ci.coverage_name_raw, cs.slot, cs.status FROM condition_slot cs "
            "JOIN coverage_instance ci USING (instance_id) JOIN insurer i USING (insurer_id) ORDER BY 1, 2, 3").fetchall()
        phrases = conn.execute(
            "SELECT i.insurer_key, ci.coverage_name_raw, cp.slot, cp.ordinal, cp.source_kind, cp.doc_type, cp.page, "
            "cp.start_pos, cp.end_pos, cp.phrase, e.snippet FROM condition_phrase cp "
            "JOIN coverage_instance ci USING (instance_id) JOIN insurer i USING (insurer_id) "
            "LEFT JOIN evidence_ref e ON e.evidence_id = cp.evidence_id ORDER BY 1, 2, 3, 4").fetchall()
        findings = conn.execute("SELECT ci.coverage_name_raw, f.kind, f.value_text, f.context FROM evidence_finding f "
                                "JOIN coverage_instance ci USING (instance_id) ORDER BY 1, 2").fetchall()
        relations = conn.execute("SELECT relname, row_count FROM lock_record ORDER BY 1").fetchall()
    return {"fingerprint": run[0], "counts": run[1], "slots": slots, "phrases": phrases, "findings": findings,
            "relations": relations}


def test_a_streamed_real_dataset_loads_what_the_held_one_loads(loaded_db_session: Database, fresh_db: Database) -> None:
    result = loader.load_bundle(_streamed(dataset.read_bundle(DATASET), 7), db.admin_engine())
    assert result.changed and "audit PASS" in result.message
    streamed, held = _content(fresh_db), _content(loaded_db_session)
    assert streamed == held
    cards = dataset_facts.cards()
    assert result.counts["amount_fact"] == len(cards)
    assert result.counts["amount_fact_confirmed"] == sum(1 for card in cards if card.status == "CONFIRMED")
    report = collect(fresh=True, include_backups=False)
    assert report.ok and report.lock_state == lock.INTACT
    assert set(result.phases) >= {"copy (generate/read, pre-audit per row)", "fingerprint", "lock record"}


def _corrupt(bundle: LoadBundle) -> None:
    """Bad rows early, in the middle and in the last batch, of every kind the pre-audit refuses."""
    facts, evidence = bundle.rows["amount_fact"], bundle.rows["evidence_ref"]
    confirmed = [i for i, row in enumerate(facts) if row[2] == "CONFIRMED"]
    unconfirmed = [i for i, row in enumerate(facts) if row[2] == "UNCONFIRMED"]
    by_id = {row[0]: i for i, row in enumerate(evidence)}

    def change(rows: list[Any], index: int, **values: Any) -> None:
        table = "amount_fact" if rows is facts else "evidence_ref"
        row = list(rows[index])
        for name, value in values.items():
            row[dataset.COLUMNS[table].index(name)] = value
        rows[index] = tuple(row)

    change(facts, confirmed[0], value_text="7,777만원")  # written, refused by the SQL pass (not in its snippet)
    change(facts, confirmed[len(confirmed) // 2], source_doc_type="약관")  # held back, its snippet looked up
    change(facts, confirmed[3], evidence_id=facts[confirmed[4]][6])  # another coverage's snippet
    change(facts, confirmed[5], value_text="확인 불가")  # a placeholder
    change(evidence, by_id[facts[confirmed[6]][6]], page=0)  # a held-back snippet, its fact still checked
    change(facts, unconfirmed[-1], value_text="1천만원")  # the last batch
    change(facts, confirmed[-1], status="MAYBE")


def test_a_bad_row_anywhere_in_a_stream_is_refused_with_nothing_loaded(fresh_db: Database) -> None:
    held = dataset.read_bundle(DATASET)
    _corrupt(held)
    expected = loader.pre_audit(held)  # the same rules over the held rows, without a database
    for reason in ("not found in its proposal snippet", "belongs to another coverage", "sourced from '약관'",
                   "is a placeholder", "page 0 is not positive", "UNCONFIRMED but carries", "unknown status 'MAYBE'"):
        assert sum(reason in failure for failure in expected) == 1, reason
    with pytest.raises(AuditFailed) as refused:
        loader.load_bundle(_streamed(held, 11), db.admin_engine())
    assert refused.value.failures == expected  # the same failures, in the same order
    assert str(refused.value).startswith(f"audit failed for {len(expected)} row(s); nothing was loaded: ")
    assert_empty(fresh_db)


def test_the_load_holds_one_batch_at_a_time(server: Any, fresh_db: Database) -> None:
    watch: list[weakref.ref[Any]] = []
    alive: list[int] = []
    tiny = market.generate("tiny", seed=8, progress=False).in_memory()
    stream = _streamed(tiny, 200, watch)
    source = stream.stream
    assert source is not None

    def counted() -> Iterator[Batch]:
        for batch in source():
            gc.collect()
            alive.append(sum(1 for ref in watch if ref() is not None))
            yield batch

    stream.stream = counted
    result = loader.load_bundle(stream, db.admin_engine())
    assert result.counts["amount_fact"] == len(tiny.rows["amount_fact"]) > 2_000
    # the batch being handed over and the one the loader is done with: never the ones before
    assert len(alive) > 50 and max(alive) <= 2, alive
    with psycopg.connect(db.psycopg_conninfo(fresh_db.admin)) as conn:
        sizes = [len(slots) for slots, _phrases in conditions_load.derive_batches(conn, batch_rows=100)]
    assert sum(sizes) == 5 * len(tiny.rows["coverage_instance"]) and max(sizes) < 100 + len(SLOTS)


# --- the condition-slot prefilter ------------------------------------------------------------------

def _instances(bundle: LoadBundle) -> Iterator[tuple[str, list[conditions_load._Snippet]]]:
    """Each instance's raw name and snippets in the load's order (doc type, ordinal, text: code points)."""
    snippets: dict[Any, list[Any]] = defaultdict(list)
    for row in bundle.table("evidence_ref"):
        snippets[row[1]].append(row)
    for row in bundle.table("coverage_instance"):
        ordered = sorted(snippets[row[0]], key=lambda e: (e[3], e[8], e[5]))
        yield row[5], [conditions_load._Snippet(e[0], e[3], e[4], e[5], e[8]) for e in ordered]


def _rows(results: dict[str, Any], evidence_ids: list[Any]) -> list[tuple[Any, ...]]:
    return [(slot, results[slot].status, [(evidence_ids[p.source_index], p.source_kind, p.doc_type, p.page,
                                           p.start, p.end, p.text) for p in results[slot].phrases]) for slot in SLOTS]


def _shape_rows(shape: Any, kept: list[Any]) -> list[tuple[Any, ...]]:
    """The load's rows for one instance (conditions_load.conditions_of), in the shape of _rows."""
    phrases: dict[str, list[Any]] = defaultdict(list)
    for slot, ordinal, index, a, b, phrase in shape.phrases:
        assert ordinal == len(phrases[slot])
        source = kept[index]
        phrases[slot].append((None, "raw_name", None, None, a, b, phrase) if source is None else
                             (source.evidence_id, "evidence", source.doc_type, source.page, a, b, phrase))
    return [(slot, status, phrases[slot]) for slot, status in shape.slots]


def _plain_find_phrases(slot: str, text: str) -> list[tuple[int, int]]:
    """find_phrases without the literal checks: every pattern run over the whole text."""
    taken: list[tuple[int, int]] = []
    for pattern in PATTERNS[slot]:
        for match in pattern.finditer(text):
            if match.end() > match.start() and not any(s < match.end() and match.start() < e for s, e in taken):
                taken.append((match.start(), match.end()))
    return sorted(taken)


@pytest.mark.parametrize("source", ["real", "tiny"])
def test_the_load_path_writes_what_the_plain_extractor_finds(source: str) -> None:
    """conditions_of (sources without hits left out, supporting pairs tried up front or on the way, the
    verdict shared between instances) gives every instance exactly extract_conditions' rows."""
    bundle = dataset.read_bundle(DATASET) if source == "real" else market.generate("tiny", seed=8, progress=False)
    instances = list(_instances(bundle))
    supporting = conditions_load.supporting_pairs(
        sorted({raw_name for raw_name, _snippets in instances}),
        sorted({s.snippet for _raw, snippets in instances for s in snippets if s.doc_type != "가입설계서"}))
    skipped = 0
    for raw_name, snippets in instances:
        everything = extract_conditions(raw_name, [SourceText("evidence", s.doc_type, s.page, s.ordinal, s.snippet)
                                                   for s in snippets])
        expected = _rows(everything, [None, *(s.evidence_id for s in snippets)])
        for pairs in (None, supporting):
            shape, kept = conditions_load.conditions_of(raw_name, snippets, pairs)
            assert _shape_rows(shape, kept) == expected, raw_name
        skipped += len(snippets) + 1 - len(kept)
    assert skipped > 0 and supporting  # texts were left out, and some supporting pairs do yield hits


@pytest.mark.parametrize("source", ["real", "tiny"])
def test_the_literal_checks_never_skip_a_match(source: str) -> None:
    bundle = dataset.read_bundle(DATASET) if source == "real" else market.generate("tiny", seed=8, progress=False)
    texts = {row[5] for row in bundle.table("coverage_instance")} | {row[5] for row in bundle.table("evidence_ref")}
    skipped = 0
    for slot, checked in CHECKED.items():
        assert all(checks for _pattern, checks in checked)  # every pattern has a literal to check
        for text in texts:
            assert find_phrases(slot, text) == _plain_find_phrases(slot, text), (slot, text)
            skipped += sum(1 for pattern, checks in checked if not may_match(checks, text))
    assert skipped > 0


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="질병사망암진단비갱신형비최초연간매회1회한당90일년50%감액없음지급만세~부터"
                        "가입후간이지난날의다음대기형면책()[]/-_·\n\t ,.", max_size=60))
def test_find_phrases_equals_the_plain_patterns_on_any_text(text: str) -> None:
    for slot in SLOTS:
        assert find_phrases(slot, text) == _plain_find_phrases(slot, text)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet="질병사망암진단비갱신형최초1회한90일면책()[] \n", max_size=16),
       st.lists(st.tuples(st.sampled_from(["가입설계서", "약관", "사업방법서", "상품요약서"]),
                          st.text(alphabet="▪-·질병사망암진단비갱신형비최초1회한90일년50%감액없음만세부터()[]/\n .특별약관의경우",
                                  max_size=60)), max_size=4))
def test_the_load_path_equals_the_plain_extractor_on_any_texts(raw_name: str, texts: list[tuple[str, str]]) -> None:
    snippets = [conditions_load._Snippet(f"e{i}", doc_type, i + 1, text, i) for i, (doc_type, text) in enumerate(texts)]
    everything = extract_conditions(raw_name, [SourceText("evidence", s.doc_type, s.page, s.ordinal, s.snippet)
                                               for s in snippets])
    expected = _rows(everything, [None, *(s.evidence_id for s in snippets)])
    supporting = conditions_load.supporting_pairs([raw_name], [s.snippet for s in snippets if s.doc_type != "가입설계서"])
    for pairs in (None, supporting):
        shape, kept = conditions_load.conditions_of(raw_name, snippets, pairs)
        assert _shape_rows(shape, kept) == expected


@pytest.mark.parametrize("limit", ["MAX_PAIRS", "MAX_TEXTS"])
def test_a_market_with_too_many_pairs_streams_every_snippet(fresh_db: Database, monkeypatch: pytest.MonkeyPatch,
                                                            limit: str) -> None:
    tiny = market.generate("tiny", seed=8, progress=False).in_memory()
    loader.load_bundle(tiny, db.admin_engine())
    with psycopg.connect(db.psycopg_conninfo(fresh_db.admin)) as conn:
        assert conditions_load._supporting_hits(conn)  # the pairs are tried up front ...
        tried = conditions_load.derive_rows(conn)
        monkeypatch.setattr(conditions_load, limit, 0)
        assert conditions_load._supporting_hits(conn) is None  # ... unless there are too many to hold
        streamed = conditions_load.derive_rows(conn)
    assert tried == streamed and len(tried[0]) == 5 * len(tiny.rows["coverage_instance"])
