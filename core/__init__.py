"""inca-rag-scope core: read-only queries over the locked coverage amounts.

The public API (a contract for the dashboard, the HTTP API and notebooks):

    import core
    core.catalog.products()                      # what can be compared
    cmp = core.compare(["samsung", "kb_health_v1"], ["A4200_1", "A4101"])
    cmp.to_frame(); cmp.to_long_frame(); cmp.explanations(); cmp.audit
    core.unmatched_coverages(["samsung"])        # coverages without a canonical code (no evidence)
    core.status.collect()                        # lock, counts, database (and backup) health
    core.search.find_coverages("암 진단금")          # suggest codes for an insurer's or analyst's name

Loading is the operations side's job: `from core.ops import ensure_loaded` (first start, notebooks).

Amounts are `value_text` exactly as printed: never parsed, sorted, ranked or summed.
"""

from __future__ import annotations

from core import catalog, config, explain, forbidden_language, search, status
from core.comparison import (
    CONFIRMED,
    NOT_AVAILABLE,
    UNCONFIRMED,
    AuditLineage,
    Cell,
    Comparison,
    Evidence,
    Explanation,
    Instance,
    compare,
    unmatched_coverages,
)
from core.db import shutdown
from core.errors import (
    AuditFailed,
    ConfigError,
    DatabaseUnavailable,
    DatasetError,
    IncaError,
    SchemaMissing,
    SelectionError,
)
from core.forbidden_language import ForbiddenLanguageError, find_violations, validate_text
from core.lock import BROKEN, INTACT, UNLOADED, LockState
from core.status import StatusReport

__all__ = [
    "BROKEN",
    "CONFIRMED",
    "INTACT",
    "NOT_AVAILABLE",
    "UNCONFIRMED",
    "UNLOADED",
    "AuditFailed",
    "AuditLineage",
    "Cell",
    "Comparison",
    "ConfigError",
    "DatabaseUnavailable",
    "DatasetError",
    "Evidence",
    "Explanation",
    "ForbiddenLanguageError",
    "IncaError",
    "Instance",
    "LockState",
    "SchemaMissing",
    "SelectionError",
    "StatusReport",
    "catalog",
    "compare",
    "config",
    "explain",
    "find_violations",
    "forbidden_language",
    "search",
    "shutdown",
    "status",
    "unmatched_coverages",
    "validate_text",
]
