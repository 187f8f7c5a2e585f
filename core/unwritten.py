"""Read results kept while the locked tables stay unwritten, keyed by the lock's own witness.

compare() reads the lock in every snapshot (rule 6). The row it reads names the load, its latest
recording (seal) and the witness over every locked relation: file nodes and tuple counters (or, on a
standby, its system, timeline and the statement's snapshot; core/lock.py). Two reads with the same
witness saw the same locked rows, so what a statement over locked relations returned under one witness
is what it returns under the other. compare() keeps its catalog lookups (products and coverages by the
names given) and the findings here, sends them only when this witness has no result for them, and
checks the witness of the very snapshot the cells come from before using one.

What a changed witness cannot show, a kept result cannot either: a write whose statistics the server
has not flushed yet is seen as soon as the lock sees it (docs/operations.md, "What the lock covers").
Without a witness (track_counts off, no load recorded) nothing is kept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

#: most results kept per process (one per distinct request): a few rows each, small
MAX_KEPT = 1024

Witness = tuple[Any, ...]


def witness_of(lock_row: Any, where: object) -> Witness | None:
    """What a core.lock.LOCK_QUERY row says about the locked rows its snapshot saw, for the database at
    `where` (the engine's URL: two servers may share a database name and port); None when it cannot say."""
    if lock_row is None or lock_row.audit_run_id is None or lock_row.seal_run_id is None:
        return None
    if lock_row.counting and lock_row.tables and lock_row.stats:
        seen: tuple[Any, ...] = (lock_row.stats_reset, tuple(lock_row.tables),
                                 tuple(tuple(stats) for stats in lock_row.stats))
    elif lock_row.standby_witness is not None:  # a standby: its snapshot names what is visible
        seen = ("standby", lock_row.standby_witness)
    else:
        return None
    return (where, lock_row.identity, lock_row.audit_run_id, lock_row.seal_run_id, seen)


class Kept:
    """Results per request key, each with the witness it was read under (least recently used dropped)."""

    def __init__(self, size: int = MAX_KEPT) -> None:
        self._size = size
        self._results: OrderedDict[object, tuple[Witness, Any]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0  # what the tests and bench read

    def get(self, key: object) -> tuple[Witness, Any] | None:
        """The result kept for `key` and its witness (the caller compares it with its snapshot's)."""
        with self._lock:
            found = self._results.get(key)
            if found is not None:
                self._results.move_to_end(key)
            return found

    def put(self, key: object, witness: Witness | None, value: Any) -> None:
        if witness is None:
            return
        with self._lock:
            self._results[key] = (witness, value)
            self._results.move_to_end(key)
            while len(self._results) > self._size:
                self._results.popitem(last=False)

    def count(self, hit: bool) -> None:
        with self._lock:
            if hit:
                self.hits += 1
            else:
                self.misses += 1

    def clear(self) -> None:
        with self._lock:
            self._results.clear()
            self.hits = self.misses = 0
