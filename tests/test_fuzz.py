"""The API fuzzed from its own OpenAPI schema (Schemathesis), in process, on the loaded database.

Every operation in /openapi.json gets generated requests, valid and invalid (unicode, NUL bytes,
huge or empty lists, wrong types, missing fields): no answer may be a server error, and every
answer must match the status codes, content types and bodies the schema documents. Bounded by
MAX_EXAMPLES per operation; Hypothesis' deadline is off (a database round trip is not a bug).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from starlette.testclient import TestClient

from api.server import app
from tests.conftest import Database

MAX_EXAMPLES = 100

warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
schema = schemathesis.openapi.from_asgi("/openapi.json", app)


@pytest.fixture(autouse=True)
def _reads_the_loaded_database(loaded_db: Database) -> None:
    """Every request goes to the shared loaded database (the fixture points DATABASE_URL at it)."""


@schema.parametrize()
# derandomize: the same examples on every CI run (a failure reproduces); vary the code, not the dice
@settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_no_server_error_and_every_answer_matches_the_schema(case: schemathesis.Case) -> None:
    case.call_and_validate()


# --- what the fuzzing found, kept as plain regressions -----------------------------------------

@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as http:
        yield http


def _post(client: TestClient, body: bytes) -> tuple[int, dict[str, Any]]:
    answer = client.post("/compare", content=body, headers={"content-type": "application/json"})
    return answer.status_code, answer.json()


@pytest.mark.parametrize(("field", "body"), [
    ("products.0.insurer", {"products": [{"insurer": "삼성\x00화재"}], "target_coverages": [{"coverage_code": "A4200_1"}]}),
    ("products.0.product_name", {"products": [{"insurer": "삼성화재", "product_name": "x\x1b"}],
                                 "target_coverages": [{"coverage_code": "A4200_1"}]}),
    ("target_coverages.0.coverage_code", {"products": [{"insurer": "삼성화재"}],
                                          "target_coverages": [{"coverage_code": "A4200_1\x00"}]}),
])
def test_control_characters_are_a_clear_422(client: TestClient, field: str, body: dict[str, Any]) -> None:
    status, answer = _post(client, json.dumps(body).encode())
    assert status == 422  # was a 500: PostgreSQL refuses NUL in text
    assert answer["error"] == "invalid request"
    assert answer["errors"][0]["field"] == field
    assert "control character U+00" in answer["detail"]


@pytest.mark.parametrize("body", [b'{"products": "\xff\xfe"}', b"[" * 5000 + b"]" * 5000],
                         ids=["not-utf8", "nested-too-deeply"])
def test_unreadable_bodies_are_the_malformed_json_422(client: TestClient, body: bytes) -> None:
    status, answer = _post(client, body)
    assert status == 422  # FastAPI alone answers a bare 400 for these
    assert answer["error"] == "malformed JSON"
    assert answer["errors"] == [{"field": "body", "message": answer["detail"]}]


def test_head_health_answers_like_get(client: TestClient) -> None:
    head, get = client.head("/health"), client.get("/health")
    assert head.status_code == get.status_code == 200
    assert head.content == b""
