"""The FastAPI application: `uvicorn api.server:app --host 127.0.0.1 --port 8000`.

Endpoints (docs/api.md): GET /health, POST /compare, GET /status, plus /docs and /openapi.json.
Every query goes through core's reading connection (`core.db.read()` behind core's API: a read-only transaction
on DATABASE_URL, the SELECT-only role in production). Handlers are plain `def`, so FastAPI runs
them in its thread pool and the blocking database calls never stall the event loop.
"""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI
from fastapi.responses import JSONResponse

import core
from api import comparing, errors
from api.middleware import MAX_BODY_BYTES, BodyLimit, FailFast
from api.schemas import (
    EXAMPLE_REQUEST,
    CompareRequest,
    CompareResponse,
    DatabaseHealth,
    ErrorResponse,
    HealthResponse,
    UnhealthyResponse,
)
from core import BROKEN, INTACT, UNPROVEN, config
from core.comparison import MAX_CODES, MAX_PRODUCTS
from core.errors import ConfigError, IncaError
from core.status import collect, quick

# The embedded server warns on every start when XDG_RUNTIME_DIR is unset; it is harmless noise.
warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
log = logging.getLogger("uvicorn.error")


def startup_check() -> None:
    """Refuse to start on unsafe settings (core.config raises the one-line ConfigError)."""
    current = config.settings()
    urls = config.configured_urls()  # parses both URLs; production also rejects weak passwords
    if current.env == "production" and current.database_url is None:
        # Without DATABASE_URL the API would read with the owner URL or start an embedded server.
        raise ConfigError("INCA_ENV=production needs DATABASE_URL (the SELECT-only role, see docs/deployment.md)")
    where = config.mask(urls[0]) if urls else "the embedded PostgreSQL (development)"
    log.info("inca api: INCA_ENV=%s, reading from %s", current.env, where)


_EXAMPLES = {"guide": {"summary": "The guide's example", "value": EXAMPLE_REQUEST}}
_ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "Unknown insurer, product or coverage code."},
    413: {"model": ErrorResponse, "description": f"Request body over {MAX_BODY_BYTES} bytes."},
    422: {"model": ErrorResponse, "description": "Malformed body, empty or oversized lists, duplicate product."},
    503: {"model": ErrorResponse, "description": "Database unreachable or not loaded, or the lock is not INTACT."},
}

def _served_by_uvicorn() -> bool:
    """True in a uvicorn process (`uvicorn api.server:app` or `python -m uvicorn`), not when the app
    is embedded in another process (tests' TestClient), whose embedded server must stay up."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    return Path(sys.argv[0]).name == "uvicorn" or (spec is not None and spec.name.startswith("uvicorn"))


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    yield
    # Graceful shutdown (SIGTERM from systemd or Docker, or Ctrl-C): release the embedded server
    # now, because uvicorn ends by re-raising the signal, which skips atexit.
    if _served_by_uvicorn():
        core.shutdown()


app = FastAPI(
    lifespan=lifespan,
    title="inca-rag-scope API",
    version="0.1.0",
    description=(
        "Korean insurance coverage amounts side by side, exactly as printed in each proposal (가입설계서), "
        "with evidence and audit lineage. Read-only. Amounts (`value_text`) are opaque strings: never "
        f"parsed, sorted, ranked or summed. Limits: {MAX_PRODUCTS} products and {MAX_CODES} coverage codes per "
        f"request, {MAX_BODY_BYTES} bytes of body."
    ),
)
errors.install(app)
app.add_middleware(BodyLimit)
app.add_middleware(FailFast, check=startup_check)


def _unhealthy(error: str, detail: str, lock: dict[str, Any] | None = None) -> JSONResponse:
    body = UnhealthyResponse(status="unhealthy", error=error, detail=detail, lock=lock)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=503)


# HEAD too: some load balancers probe with it (uvicorn sends the headers without the body).
@app.head("/health", operation_id="health_head", response_model=HealthResponse,
          responses={503: {"model": UnhealthyResponse}}, summary="As GET /health, headers only")
@app.get("/health", response_model=HealthResponse, responses={503: {"model": UnhealthyResponse}},
         summary="Database reachable and lock INTACT (200), otherwise 503")
def health() -> HealthResponse | JSONResponse:
    """Cheap enough for a container healthcheck: one query plus the fingerprint, which is reused
    while the witness (checked on every call) shows nothing written since."""
    try:
        checked = quick()
        lock = checked.lock
    except IncaError as error:
        failure = errors.from_inca_error(error)
        return _unhealthy(failure.body["error"], failure.body["detail"])
    if lock.state == BROKEN:
        return _unhealthy("lock broken", lock.reason, lock.to_dict())
    if lock.state == UNPROVEN:  # a standby between two proofs (docs/scaling.md)
        return _unhealthy("lock not proven yet", lock.reason, lock.to_dict())
    if lock.state != INTACT:
        return _unhealthy("database not loaded", lock.reason, lock.to_dict())
    return HealthResponse(status="healthy",
                          database=DatabaseHealth(reachable=True, server_version=checked.server_version,
                                                   read_only=checked.read_only),
                          lock=lock.to_dict())


@app.post("/compare", response_model=CompareResponse, responses=_ERRORS,
          summary="Amounts side by side, exactly as printed, with evidence")
def compare_endpoint(request: Annotated[CompareRequest, Body(openapi_examples=_EXAMPLES)]) -> CompareResponse:
    """Per requested coverage and per requested product (both in request order): the cell status,
    each raw coverage with its status, `value_text` as stored, proposal evidence, supporting
    snippets and the template sentence; plus the audit lineage of the load."""
    return comparing.shape(comparing.run(request))


@app.get("/status", responses={503: {"description": "Same body; the report is not ok (unreachable or lock not "
                                                    "INTACT)."}},
         summary="The report of `python -m core status --json`")
def status() -> JSONResponse:
    """StatusReport.to_dict(): lock, row counts against expected, database and backup health.
    The proof is reused only while the witness (checked on every call) is unchanged (the CLI always recomputes it)."""
    report = collect(fresh=False)
    # Serialised exactly as the CLI does (to_json), so both print the same content.
    return JSONResponse(json.loads(report.to_json()), status_code=200 if report.ok else 503)
