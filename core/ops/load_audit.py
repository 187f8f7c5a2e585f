"""The load's pre-audit, streamed: every fact against its status rule, every snippet against its own.

The rules and their messages are those the load has always applied (tests/test_load_guards.py,
tests/test_store.py). What changed is where the rows are: a market of millions of facts is never
held in memory, so the load checks each row as it passes on its way to COPY (`StreamAudit.admit`),
and the rules that need two tables (a fact's proposal snippet: does it exist, belong to the same
coverage, hold the printed value?) run once the rows are in the load's transaction, as one SQL pass
(`StreamAudit.finish`). A row that fails a rule is held back from COPY (the database would refuse most
of them, which would end the COPY before every failure was found); the load then fails with every
failure and nothing commits. `pre_audit(bundle)` applies the same rules to a bundle without a database.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import psycopg

from core.amounts import is_placeholder_amount
from core.ops.dataset import PROPOSAL, LoadBundle, Row, fields

_WHITESPACE = re.compile(r"\s+")
#: stands for "the proposal snippet is checked once the rows are written" in a fact's failure list
DEFERRED = "<evidence checked after COPY>"
#: (owner instance id, snippet text) of an evidence row, None for a missing one
Evidence = tuple[Any, str] | None

_FACT = fields("amount_fact", "amount_id", "instance_id", "status", "value_text", "source_doc_type",
               "source_priority", "evidence_id")
_EVIDENCE = fields("evidence_ref", "evidence_id", "instance_id", "snippet", "page")
_INSURER_KEY = fields("insurer", "insurer_key")


def _squash(value: str) -> str:
    return _WHITESPACE.sub("", value)


#: value_text spellings repeat (20 in the real dataset): the placeholder rule runs once per spelling
_placeholder = lru_cache(maxsize=65_536)(is_placeholder_amount)


def evidence_failure(instance_id: Any, value_text: str, evidence: Evidence) -> str | None:
    """The proposal-snippet rule of a CONFIRMED fact with a value (None: it holds)."""
    if evidence is None:
        return "CONFIRMED without proposal evidence"
    owner, snippet = evidence
    # The amount's evidence is a snippet of this coverage: compare() reads it with the instance's own
    # snippets (one index probe), and an amount proven by another coverage's text proves nothing.
    if owner != instance_id:
        return "its proposal evidence belongs to another coverage"
    # The plain substring test first: when it holds, the whitespace-free one holds too.
    if value_text not in snippet and _squash(value_text) not in _squash(snippet):
        return f"value_text {value_text!r} not found in its proposal snippet"
    return None


def fact_failures(instance_id: Any, status: Any, value_text: Any, source_doc_type: Any, source_priority: Any,
                  evidence_id: Any, find: Callable[[Any], Evidence | str]) -> list[str]:
    """One fact's failures in the order the load reports them. `find(evidence_id)` returns the fact's
    proposal snippet, or DEFERRED when it is checked later (DEFERRED then stands in the list at its place)."""
    failures: list[str] = []
    if status == "CONFIRMED":
        if not value_text or not value_text.strip():
            failures.append("CONFIRMED without value_text")
        elif _placeholder(value_text):
            failures.append(f"CONFIRMED value_text {value_text!r} is a placeholder, not an amount")
        else:
            found = None if evidence_id is None else find(evidence_id)
            failure = DEFERRED if found == DEFERRED else evidence_failure(instance_id, value_text, found)  # type: ignore[arg-type]
            if failure is not None:
                failures.append(failure)
        if source_doc_type != PROPOSAL:
            failures.append(f"CONFIRMED amount sourced from {source_doc_type!r}, not {PROPOSAL}")
    elif status == "UNCONFIRMED":
        if value_text is not None or evidence_id is not None:
            failures.append("UNCONFIRMED but carries an amount or evidence")
    else:
        failures.append(f"unknown status {status!r} (stored statuses: CONFIRMED, UNCONFIRMED)")
    if source_priority == "PRIMARY" and source_doc_type != PROPOSAL:
        failures.append(f"PRIMARY source must be {PROPOSAL}")
    return failures


def evidence_row_failures(evidence_id: Any, snippet: Any, page: Any) -> list[str]:
    failures = []
    text = snippet if isinstance(snippet, str) else str(snippet)
    if not text or text.isspace():  # == not text.strip(), without copying every snippet
        failures.append(f"evidence {evidence_id}: empty snippet")
    if page is not None and page <= 0:
        failures.append(f"evidence {evidence_id}: page {page} is not positive")
    return failures


@dataclass
class _HeldFact:
    """A fact held back from COPY: its place among the facts, and its failures (DEFERRED included)."""

    position: int
    instance_id: Any
    value_text: Any
    evidence_id: Any
    failures: list[str]


@dataclass
class StreamAudit:
    """The pre-audit of one streamed load. `admit` checks a batch on its way to COPY; `finish` runs the
    two-table rules in the load's transaction and returns every failure (none: the audit passed).

    Memory: only failing rows are remembered (and the insurer keys), never an index of the rows.
    """

    facts_seen: int = 0
    held: list[_HeldFact] = field(default_factory=list)
    held_evidence: dict[Any, tuple[Any, str]] = field(default_factory=dict)
    evidence_failures: list[str] = field(default_factory=list)
    insurer_keys: list[str] = field(default_factory=list)

    def admit(self, table: str, rows: list[Row]) -> list[Row]:
        """The rows of a batch that may be written (all of them unless one fails a rule)."""
        if table == "amount_fact":
            return self._facts(rows)
        if table == "evidence_ref":
            return self._evidence(rows)
        if table == "insurer":
            self.insurer_keys.extend(map(_INSURER_KEY, rows))
        return rows

    def _facts(self, rows: list[Row]) -> list[Row]:
        kept: list[Row] | None = None
        defer = _defer
        for index, row in enumerate(rows):
            _amount_id, instance_id, status, value_text, doc_type, priority, evidence_id = _FACT(row)
            failures = fact_failures(instance_id, status, value_text, doc_type, priority, evidence_id, defer)
            if failures and failures != [DEFERRED]:
                if kept is None:
                    kept = rows[:index]
                self.held.append(_HeldFact(self.facts_seen + index, instance_id, value_text, evidence_id, failures))
            elif kept is not None:
                kept.append(row)
        self.facts_seen += len(rows)
        return rows if kept is None else kept

    def _evidence(self, rows: list[Row]) -> list[Row]:
        kept: list[Row] | None = None
        for index, row in enumerate(rows):
            evidence_id, owner, snippet, page = _EVIDENCE(row)
            text = snippet if isinstance(snippet, str) else str(snippet)
            if text and not text.isspace() and (page is None or page > 0):
                if kept is not None:
                    kept.append(row)
                continue
            if kept is None:
                kept = rows[:index]
            self.evidence_failures.extend(evidence_row_failures(evidence_id, snippet, page))
            self.held_evidence[evidence_id] = (owner, text)
        return rows if kept is None else kept

    def finish(self, raw: psycopg.Connection) -> tuple[list[str], list[str]]:
        """(pre-audit failures, post-audit mismatches) over the rows written in this transaction."""
        failing_written, mismatches = written_evidence_failures(raw, self.held_evidence)
        pending = [fact for fact in self.held if DEFERRED in fact.failures]
        looked_up = _evidence_rows(raw, [fact.evidence_id for fact in pending if fact.evidence_id not in self.held_evidence])
        found = {**looked_up, **self.held_evidence}
        lines: list[tuple[int, Any, str]] = []  # (position among the facts, instance, failure)
        for fact in self.held:
            for failure in fact.failures:
                if failure == DEFERRED:
                    resolved = evidence_failure(fact.instance_id, fact.value_text, found.get(fact.evidence_id))
                    if resolved is None:
                        continue
                    failure = resolved
                lines.append((fact.position, fact.instance_id, failure))
        if failing_written:
            held_positions = sorted(fact.position for fact in self.held)
            for rank, (_amount_id, instance_id, failure) in zip(_written_ranks(raw, [a for a, _, _ in failing_written]),
                                                                  failing_written, strict=True):
                lines.append((_position(rank, held_positions), instance_id, failure))
        lines.sort(key=lambda line: line[0])  # stable: a fact's own failures keep their order
        labels = _labels(raw, {instance_id for _position_, instance_id, _failure in lines})
        return [f"{labels.get(instance_id, '? (unmatched)')}: {failure}" for _p, instance_id, failure in lines] + \
            self.evidence_failures, mismatches


def written_evidence_failures(raw: psycopg.Connection, held_evidence: dict[Any, tuple[Any, str]] | None = None
                              ) -> tuple[list[tuple[Any, Any, str]], list[str]]:
    """The proposal-snippet rule over every CONFIRMED fact written in this transaction: (amount_id,
    instance_id, failure) per failing fact, and the post-audit's mismatches (its whitespace-free test in
    SQL, which reads whitespace as the database does)."""
    failing: list[tuple[Any, Any, str]] = []
    mismatches: list[str] = []
    for amount_id, instance_id, value_text, evidence_id, owner, snippet, found_squashed, name, _code in raw.execute(
            _EVIDENCE_SQL):
        evidence = (owner, snippet) if owner is not None else (held_evidence or {}).get(evidence_id)
        failure = evidence_failure(instance_id, value_text, evidence)
        if failure is not None:
            failing.append((amount_id, instance_id, failure))
        elif not found_squashed:
            mismatches.append(f"{name}: {value_text!r} not in its proposal snippet")
    return failing, mismatches


def _defer(_evidence_id: Any) -> str:
    return DEFERRED


def _position(rank: int, held_positions: list[int]) -> int:
    """The place among all facts of the `rank`-th written fact, the held-back ones counted in."""
    position = rank
    for held in held_positions:  # sorted
        if held > position:
            break
        position += 1
    return position


def _label(raw_name: str, code: str | None) -> str:
    return f"{raw_name} ({code or 'unmatched'})"


# Every written CONFIRMED fact whose proposal snippet is missing, belongs to another coverage, or does not
# hold the value as a plain substring: Python decides each of these few rows (whitespace-free rule,
# messages); the whitespace-free test of the database (the post-audit's) rides along.
_EVIDENCE_SQL = """
    SELECT af.amount_id, af.instance_id, af.value_text, af.evidence_id, e.instance_id, e.snippet,
           e.snippet IS NOT NULL AND strpos(regexp_replace(e.snippet, '\\s', '', 'g'),
                                            regexp_replace(af.value_text, '\\s', '', 'g')) > 0,
           ci.coverage_name_raw, ci.coverage_code
    FROM amount_fact af
    LEFT JOIN coverage_instance ci ON ci.instance_id = af.instance_id
    LEFT JOIN evidence_ref e ON e.evidence_id = af.evidence_id
    WHERE af.status = 'CONFIRMED'
      AND (e.snippet IS NULL OR e.instance_id <> af.instance_id OR strpos(e.snippet, af.value_text) = 0)
"""


def _evidence_rows(raw: psycopg.Connection, evidence_ids: list[Any]) -> dict[Any, tuple[Any, str]]:
    if not evidence_ids:
        return {}
    rows = raw.execute("SELECT evidence_id, instance_id, snippet FROM evidence_ref WHERE evidence_id = ANY(%s)",
                       (evidence_ids,)).fetchall()
    return {evidence_id: (owner, snippet) for evidence_id, owner, snippet in rows}


def _written_ranks(raw: psycopg.Connection, amount_ids: list[Any]) -> list[int]:
    """Each fact's place among the written facts: COPY appends to the (truncated) table in stream order."""
    rows = raw.execute("SELECT amount_id, rank FROM (SELECT amount_id, row_number() OVER (ORDER BY ctid) - 1 AS rank "
                       "FROM amount_fact) AS written WHERE amount_id = ANY(%s)", (amount_ids,)).fetchall()
    ranks = dict(rows)
    return [int(ranks[amount_id]) for amount_id in amount_ids]


def _labels(raw: psycopg.Connection, instance_ids: set[Any]) -> dict[Any, str]:
    if not instance_ids:
        return {}
    rows = raw.execute("SELECT instance_id, coverage_name_raw, coverage_code FROM coverage_instance "
                       "WHERE instance_id = ANY(%s)", (list(instance_ids),)).fetchall()
    return {instance_id: _label(name, code) for instance_id, name, code in rows}


def pre_audit(bundle: LoadBundle) -> list[str]:
    """The same rules over a bundle, without a database (a bundle small enough to index: tests, tools)."""
    instance = fields("coverage_instance", "instance_id", "coverage_name_raw", "coverage_code")
    labels = {instance_id: _label(raw_name, code) for instance_id, raw_name, code in map(instance, bundle.table(
        "coverage_instance"))}
    evidence: dict[Any, tuple[Any, str]] = {}
    evidence_failures: list[str] = []
    for evidence_id, owner, snippet, page in map(_EVIDENCE, bundle.table("evidence_ref")):
        evidence[evidence_id] = (owner, snippet)
        evidence_failures += evidence_row_failures(evidence_id, snippet, page)
    failures = []
    for _amount_id, instance_id, status, value_text, doc_type, priority, evidence_id in map(_FACT, bundle.table(
            "amount_fact")):
        where = labels.get(instance_id, "? (unmatched)")
        failures += [f"{where}: {failure}" for failure in
                     fact_failures(instance_id, status, value_text, doc_type, priority, evidence_id, evidence.get)]
    return failures + evidence_failures
