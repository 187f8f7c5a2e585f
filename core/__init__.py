"""inca-rag-scope core: read-only queries over the locked coverage amounts.

The public API (a contract for the dashboard, the HTTP API and notebooks):

    import core
    core.catalog.products()                      # what can be compared
    cmp = core.compare(["samsung", "kb_health_v1"], ["A4200_1", "A4101"])
    cmp.to_frame(); cmp.to_long_frame(); cmp.explanations(); cmp.audit
    core.unmatched_coverages(["samsung"])        # coverages without a canonical code (no evidence)
    core.status()                                # lock, counts, database (and backup) health
    core.search.find_coverages("암 진단금")          # suggest codes for an insurer's or analyst's name

Amounts are `value_text` exactly as printed: never parsed, sorted, ranked or summed.
"""

from __future__ import annotations

from core import catalog, explain, forbidden_language, search
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
from core.loader import ensure_loaded
from core.status import StatusReport

# `core.status()` is the function; inside the project import from the module itself
# (`from core.status import collect`), since `from core import status` yields this function.
from core.status import collect as status

__all__ = [
    "CONFIRMED",
    "NOT_AVAILABLE",
    "UNCONFIRMED",
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
    "SchemaMissing",
    "SelectionError",
    "StatusReport",
    "catalog",
    "compare",
    "ensure_loaded",
    "explain",
    "find_violations",
    "forbidden_language",
    "search",
    "status",
    "unmatched_coverages",
    "validate_text",
]
