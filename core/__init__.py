"""inca-rag-scope core: read-only queries over the locked coverage amounts.

The public API (a contract for the dashboard, the HTTP API and notebooks):

    import core
    core.catalog.products()                      # what can be compared
    sel = core.resolve(["삼성화재", "kb_health_v1"], ["A4200_1"])  # typed names -> a Selection (or SelectionError)
    core.compare(sel)                            # a resolved selection is not resolved again
    cmp = core.compare(["samsung", "kb_health_v1"], ["A4200_1", "A4101"])
    cmp.to_frame(); cmp.to_long_frame(); cmp.explanations(); cmp.audit
    core.unmatched_coverages(["samsung"])        # coverages without a canonical code (no evidence)
    cmp.conditions(); cmp.conditions_frame()      # condition slots (대기기간·감액·지급한도·갱신·가입나이)
    core.conditions_of("samsung")                # one product's stored condition phrases
    core.status.collect()                        # lock, counts, database (and backup) health
    core.search.find_coverages("암 진단금")          # suggest codes for an insurer's or analyst's name
    core.findings()                              # values that disagree with their own snippet (data quality)
    cmp.finding_for("A4103", "hanwha_health_v1", "뇌졸중 진단비")

Loading is the operations side's job: `from core.ops import ensure_loaded` (first start, notebooks).

Amounts are `value_text` exactly as printed: never parsed, sorted, ranked or summed.
"""

from __future__ import annotations

from core import catalog, condition_slots, config, explain, forbidden_language, search, selection, status
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
from core.condition_slots import conditions_of
from core.data_quality import findings
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
from core.lock import BROKEN, INTACT, UNLOADED, UNPROVEN, LockState
from core.selection import ProductRef, Selection, resolve
from core.status import StatusReport

__all__ = [
    "BROKEN",
    "CONFIRMED",
    "INTACT",
    "NOT_AVAILABLE",
    "UNCONFIRMED",
    "UNLOADED",
    "UNPROVEN",
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
    "ProductRef",
    "SchemaMissing",
    "Selection",
    "SelectionError",
    "StatusReport",
    "catalog",
    "compare",
    "condition_slots",
    "conditions_of",
    "config",
    "explain",
    "find_violations",
    "findings",
    "forbidden_language",
    "resolve",
    "search",
    "selection",
    "shutdown",
    "status",
    "unmatched_coverages",
    "validate_text",
]
