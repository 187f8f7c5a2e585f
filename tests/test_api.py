"""The HTTP API, served by a real uvicorn process against the real loaded database."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.comparing import resolve_products, shape
from api.errors import ApiError
from api.schemas import ProductRef
from core import catalog, comparison, db
from tests.conftest import PROJECT, Database

GUIDE_EXAMPLE = {"products": [{"insurer": "삼성화재"}, {"insurer": "메리츠화재"}],
                 "target_coverages": [{"coverage_code": "A4200_1"}]}
SECRET = "pw-that-must-never-appear-0123456789"
_DB_ENV = ("DATABASE_URL", "INCA_ADMIN_URL", "INCA_ENV")


# --- a uvicorn process -------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ApiProcess:
    process: subprocess.Popen[bytes]
    base: str
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def _env(extra: dict[str, str]) -> dict[str, str]:
    # Only what the test passes decides where the server reads (conftest exports its own URLs).
    return {**{k: v for k, v in os.environ.items() if k not in _DB_ENV}, **extra}


def launch(env: dict[str, str], log: Path) -> ApiProcess:
    port = free_port()
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "api.server:app", "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT, env=_env(env), stdout=sink, stderr=subprocess.STDOUT,
        )
    return ApiProcess(process, f"http://127.0.0.1:{port}", log)


def stop(api: ApiProcess) -> None:
    if api.process.poll() is None:
        api.process.send_signal(signal.SIGTERM)
        try:
            api.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            api.process.kill()
            api.process.wait(timeout=5)


@contextlib.contextmanager
def running_api(env: dict[str, str], log: Path, timeout: float = 45.0) -> Iterator[ApiProcess]:
    """Start uvicorn, wait (bounded) until /health answers anything, always stop it."""
    api = launch(env, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if api.process.poll() is not None:
                raise AssertionError(f"the API exited with {api.process.returncode}:\n{api.output()}")
            try:
                httpx.get(f"{api.base}/health", timeout=10)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the API did not answer within {timeout} s:\n{api.output()}") from None
                time.sleep(0.2)
        yield api
    finally:
        stop(api)


@pytest.fixture(scope="module")
def api(loaded_db_session: Database, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    with running_api(loaded_db_session.env(), tmp_path_factory.mktemp("api") / "uvicorn.log") as started:
        yield started


@pytest.fixture(scope="module")
def client(api: ApiProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.base, timeout=30) as http:
        yield http


def post(client: httpx.Client, body: Any) -> httpx.Response:
    return client.post("/compare", json=body)


def cells_by_product(answer: dict[str, Any], code: str) -> dict[str, dict[str, Any]]:
    coverage = next(c for c in answer["coverages"] if c["coverage_code"] == code)
    return {cell["product_key"]: cell for cell in coverage["cells"]}


# --- /health -----------------------------------------------------------------------------------

def test_health_is_healthy_on_the_loaded_database(client: httpx.Client) -> None:
    response = client.get("/health")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "healthy"
    assert body["database"]["reachable"] is True
    assert body["database"]["server_version"]
    assert body["database"]["read_only"] is True
    assert body["lock"]["state"] == "INTACT"
    assert body["lock"]["audit_status"] == "PASS"
    assert body["lock"]["recorded_fingerprint"] == body["lock"]["live_fingerprint"]


# --- /compare ----------------------------------------------------------------------------------

def test_guide_example_equals_core_compare(client: httpx.Client, loaded_db: Database) -> None:
    response = post(client, GUIDE_EXAMPLE)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected = comparison.compare(["삼성화재", "메리츠화재"], ["A4200_1"])
    assert [p["product_key"] for p in answer["products"]] == [p.key for p in expected.products]
    assert [c["coverage_code"] for c in answer["coverages"]] == ["A4200_1"]
    sentences = [e.sentence for e in expected.explanations()]
    got_sentences = []
    for product, cell in zip(expected.products, answer["coverages"][0]["cells"], strict=True):
        core_cell = expected.cell("A4200_1", product.key)
        (instance,) = core_cell.instances
        assert cell["product_key"] == product.key
        assert cell["status"] == instance.status == "CONFIRMED"
        assert cell["status_label"] == "확인"
        assert cell["value_text"] == instance.value_text  # byte for byte, as stored
        (got,) = cell["instances"]
        assert got["value_text"] == instance.value_text
        assert got["coverage_name_raw"] == instance.raw_name
        assert got["evidence"]["doc_type"] == "가입설계서"
        assert got["evidence"]["page"] == instance.proposal_evidence.page
        assert got["evidence"]["snippet"] == instance.proposal_evidence.snippet
        assert len(got["supporting_evidence"]) == len(instance.supporting_evidence)
        got_sentences += cell["explanations"]
        assert cell["explanations"] == [got["explanation"]]
    assert got_sentences == sentences
    assert [cell["value_text"] for cell in answer["coverages"][0]["cells"]] == ["3,000만원", "3천만원"]
    with psycopg.connect(db.psycopg_conninfo(loaded_db.reader)) as conn:
        run_id, tag, commit = conn.execute("SELECT audit_run_id::text, freeze_tag, git_commit FROM audit_runs "
                                           "WHERE kind = 'load'").fetchone()
        locked = conn.execute("SELECT count(*) FROM inca_locked_relation").fetchone()[0]
    assert locked >= 15  # the 13 of schema 008 and the condition slots' two tables
    assert answer["audit"] | {"fingerprint_verified_at": None} == {
        "audit_run_id": run_id, "audit_status": "PASS", "freeze_tag": tag, "git_commit": commit,
        "lock_state": "INTACT", "lock_intact": True, "fingerprint_verified_at": None,
        "reason": f"all {locked} locked relations match the digests and row counts the audited load recorded"}


def test_values_equal_the_database_for_every_cell(client: httpx.Client, loaded_db: Database) -> None:
    products = ["kb", "samsung", "lotte", "meritz", "db", "hanwha", "heungkuk", "hyundai"]
    codes = ["A4104_1", "A4200_1", "A9619_1", "A1100", "A5100"]
    response = post(client, {"products": [{"insurer": p} for p in products],
                             "target_coverages": [{"coverage_code": c} for c in codes]})
    assert response.status_code == 200, response.text
    with psycopg.connect(db.psycopg_conninfo(loaded_db.reader)) as conn:
        stored = conn.execute(
            "SELECT i.insurer_key, ci.coverage_code, ci.coverage_name_raw, af.status, af.value_text "
            "FROM amount_fact af JOIN coverage_instance ci USING (instance_id) JOIN insurer i USING (insurer_id) "
            "WHERE ci.coverage_code = ANY(%s)", (codes,)).fetchall()
    key_of = {p["product_key"]: p["insurer_key"] for p in response.json()["products"]}
    served = {(key_of[cell["product_key"]], coverage["coverage_code"], i["coverage_name_raw"], i["status"],
               i["value_text"])
              for coverage in response.json()["coverages"] for cell in coverage["cells"] for i in cell["instances"]}
    assert served == set(stored)


def test_order_is_the_requested_order(client: httpx.Client) -> None:
    body = {"products": [{"insurer": "메리츠화재"}, {"insurer": "KB손해보험"}, {"insurer": "samsung"},
                         {"insurer": "DB손해보험"}],
            "target_coverages": [{"coverage_code": "A4200_1"}, {"coverage_code": "A1100"},
                                 {"coverage_code": "A4104_1"}]}
    response = post(client, body)
    assert response.status_code == 200, response.text
    answer = response.json()
    expected_products = ["meritz_health_v1", "kb_health_v1", "samsung_health_v1", "db_health_v1"]
    assert [p["product_key"] for p in answer["products"]] == expected_products
    assert [p["position"] for p in answer["products"]] == [1, 2, 3, 4]
    assert [c["coverage_code"] for c in answer["coverages"]] == ["A4200_1", "A1100", "A4104_1"]
    for coverage in answer["coverages"]:
        assert [cell["product_key"] for cell in coverage["cells"]] == expected_products
        assert [cell["position"] for cell in coverage["cells"]] == [1, 2, 3, 4]


def test_product_without_the_code_is_not_available(client: httpx.Client, loaded_db: Database) -> None:
    response = post(client, {"products": [{"insurer": "samsung"}, {"insurer": "meritz"}],
                             "target_coverages": [{"coverage_code": "A4104_1"}]})
    assert response.status_code == 200, response.text
    cell = cells_by_product(response.json(), "A4104_1")["meritz_health_v1"]
    assert cell["status"] == "NOT_AVAILABLE"
    assert cell["status_label"] == "해당 담보 없음"
    assert cell["value_text"] is None
    assert cell["instances"] == []
    expected = comparison.compare(["meritz"], ["A4104_1"]).explanations()
    assert cell["explanations"] == [e.sentence for e in expected] == ["메리츠화재에는 해당 담보가 존재하지 않습니다."]


def test_multi_instance_cell_lists_every_instance(client: httpx.Client, loaded_db: Database) -> None:
    response = post(client, {"products": [{"insurer": "삼성화재"}], "target_coverages": [{"coverage_code": "A4104_1"}]})
    assert response.status_code == 200, response.text
    cell = cells_by_product(response.json(), "A4104_1")["samsung_health_v1"]
    core_cell = comparison.compare(["samsung"], ["A4104_1"]).cell("A4104_1", "samsung_health_v1")
    assert len(core_cell.instances) == 2
    assert cell["status"] == core_cell.status == "CONFIRMED"
    assert cell["value_text"] is None  # several instances: none is picked
    assert cell["display_text"] == core_cell.display_text
    assert [(i["coverage_name_raw"], i["status"], i["value_text"]) for i in cell["instances"]] == [
        (i.raw_name, i.status, i.value_text) for i in core_cell.instances]
    assert len(cell["explanations"]) == 2
    for instance in cell["instances"]:
        assert instance["coverage_name_raw"] in instance["explanation"]
        assert instance["evidence"]["doc_type"] == "가입설계서"


def test_unconfirmed_cell_has_no_value(client: httpx.Client) -> None:
    response = post(client, {"products": [{"insurer": "롯데손해보험"}], "target_coverages": [{"coverage_code": "A9619_1"}]})
    assert response.status_code == 200, response.text
    cell = cells_by_product(response.json(), "A9619_1")["lotte_health_v1"]
    assert cell["status"] == "UNCONFIRMED" and cell["status_label"] == "금액 미기재"
    assert cell["value_text"] is None
    assert cell["instances"] and all(i["status"] == "UNCONFIRMED" and i["value_text"] is None and i["evidence"] is None
                                     for i in cell["instances"])
    assert all("명시되어 있지 않습니다" in sentence for sentence in cell["explanations"])


def test_product_name_may_be_the_exact_name_or_key(client: httpx.Client, loaded_db: Database) -> None:
    samsung = next(p for p in catalog.products() if p.insurer_key == "samsung")
    for name in (samsung.name, samsung.key):
        response = post(client, {"products": [{"insurer": "삼성화재", "product_name": name}],
                                 "target_coverages": [{"coverage_code": "A4200_1"}]})
        assert response.status_code == 200, response.text
        assert response.json()["products"][0]["product_key"] == samsung.key


# --- bad input ---------------------------------------------------------------------------------

def test_unknown_insurer_names_the_value_and_the_valid_ones(client: httpx.Client) -> None:
    response = post(client, {"products": [{"insurer": "삼성"}], "target_coverages": [{"coverage_code": "A4200_1"}]})
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "unknown insurer"
    assert body["value"] == "삼성"
    assert {"삼성화재", "메리츠화재", "KB손해보험", "samsung"} <= set(body["valid"])
    assert body["closest"][0] == "삼성화재"
    assert "삼성" in body["detail"]


def test_unknown_product_names_the_value_and_the_valid_ones(client: httpx.Client) -> None:
    response = post(client, {"products": [{"insurer": "samsung", "product_name": "마이헬스"}],
                             "target_coverages": [{"coverage_code": "A4200_1"}]})
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "unknown product" and body["value"] == "마이헬스"
    assert "samsung_health_v1" in body["valid"]
    full_name = next(name for name in body["valid"] if "삼성화재 건강보험" in name)
    assert body["closest"] == [full_name]  # a fragment of the name points at the whole name


@pytest.mark.parametrize("code", ["A4200_9", "암진단비"])
def test_unknown_code_names_the_value_and_the_valid_ones(client: httpx.Client, code: str) -> None:
    response = post(client, {"products": [{"insurer": "samsung"}], "target_coverages": [{"coverage_code": code}]})
    assert response.status_code == 404
    body = response.json()
    assert body["error"] == "unknown coverage code" and body["value"] == code
    assert "A4200_1" in body["valid"] and len(body["valid"]) == 48
    assert body["closest"]


@pytest.mark.parametrize("where", ["insurer", "product_name", "coverage_code"])
@pytest.mark.parametrize("bad", ["samsung\x00", "sam\nsung", "samsung\x9b"])
def test_control_characters_are_a_422_naming_the_position(client: httpx.Client, where: str, bad: str) -> None:
    ref = {"insurer": bad} if where == "insurer" else {"insurer": "samsung"}
    if where == "product_name":
        ref["product_name"] = bad
    codes = [{"coverage_code": bad if where == "coverage_code" else "A4200_1"}]
    response = post(client, {"products": [{"insurer": "kb"}, ref], "target_coverages": codes})
    assert response.status_code == 422, response.text  # never a 500 from the driver
    body = response.json()
    assert body["error"] in ("invalid request", "invalid selection")  # the schema's pattern, or core's check
    assert "control character" in body["detail"] and ("#" in body["detail"] or where in body["detail"])
    assert not any(unicodedata.category(char) == "Cc" for char in json.dumps(body, ensure_ascii=False))  # escaped


def test_decomposed_hangul_and_full_width_letters_resolve(client: httpx.Client) -> None:
    response = post(client, {"products": [{"insurer": unicodedata.normalize("NFD", "삼성화재")}, {"insurer": "ＫＢ"}],
                             "target_coverages": [{"coverage_code": "ａ４２００＿１"}]})
    assert response.status_code == 200, response.text
    answer = response.json()
    assert [p["product_key"] for p in answer["products"]] == ["samsung_health_v1", "kb_health_v1"]
    assert [c["coverage_code"] for c in answer["coverages"]] == ["A4200_1"]


def test_an_over_long_product_name_is_refused_and_echoed_cut(client: httpx.Client) -> None:
    response = post(client, {"products": [{"insurer": "samsung", "product_name": "가" * 250}],
                             "target_coverages": [{"coverage_code": "A4200_1"}]})
    assert response.status_code == 422
    body = response.json()  # refused by the schema's maxLength (the contract says 200), never echoed whole
    assert "product_name" in body["detail"] and "200" in body["detail"]
    assert "가" * 41 not in response.text


@pytest.mark.parametrize(("body", "error", "limit"), [
    ({"products": [{"insurer": "samsung"}] * (comparison.MAX_PRODUCTS + 1),
      "target_coverages": [{"coverage_code": "A4200_1"}]}, "too many products", comparison.MAX_PRODUCTS),
    ({"products": [{"insurer": "samsung"}],
      "target_coverages": [{"coverage_code": "A4200_1"}] * (comparison.MAX_CODES + 1)},
     "too many coverage codes", comparison.MAX_CODES),
])
def test_oversized_lists_are_refused_with_the_limit(client: httpx.Client, body: Any, error: str, limit: int) -> None:
    response = post(client, body)
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"] == error
    assert answer["limit"] == limit and answer["given"] == limit + 1
    assert f"at most {limit}" in answer["detail"]


def test_oversized_body_is_refused(client: httpx.Client) -> None:
    padding = " " * (70 * 1024)
    response = client.post("/compare", content=f'{{"products": [{{"insurer": "samsung"}}]{padding}}}'.encode(),
                           headers={"content-type": "application/json"})
    assert response.status_code == 413
    body = response.json()
    assert body["error"] == "request too large" and body["limit"] == 64 * 1024


@pytest.mark.parametrize(("body", "error"), [
    ({"products": [], "target_coverages": [{"coverage_code": "A4200_1"}]}, "no products"),
    ({"products": [{"insurer": "samsung"}], "target_coverages": []}, "no coverage codes"),
])
def test_empty_lists_are_refused(client: httpx.Client, body: Any, error: str) -> None:
    response = post(client, body)
    assert response.status_code == 422
    assert response.json()["error"] == error
    assert "list 1 to" in response.json()["detail"]


def test_malformed_json_is_a_readable_422(client: httpx.Client) -> None:
    response = client.post("/compare", content=b'{"products": [{"insurer": "samsung"}',
                           headers={"content-type": "application/json"})
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "malformed JSON"
    assert "not valid JSON" in body["detail"]
    assert body["errors"] == [{"field": "body", "message": "JSON decode error"}]


@pytest.mark.parametrize(("body", "field"), [
    ({"products": [{"insurer": "samsung"}]}, "target_coverages"),
    ({"products": "삼성화재", "target_coverages": [{"coverage_code": "A4200_1"}]}, "products"),
    ({"products": [{"insurer": 7}], "target_coverages": [{"coverage_code": "A4200_1"}]}, "products.0.insurer"),
    ({"products": [{"insurer": "samsung", "product": "x"}], "target_coverages": [{"coverage_code": "A4200_1"}]},
     "products.0.product"),
])
def test_wrong_shapes_name_the_field(client: httpx.Client, body: Any, field: str) -> None:
    response = post(client, body)
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"] == "invalid request"
    assert field in [problem["field"] for problem in answer["errors"]]
    assert field in answer["detail"]


def test_a_product_listed_twice_is_refused(client: httpx.Client) -> None:
    response = post(client, {"products": [{"insurer": "samsung"}, {"insurer": "삼성화재"}],
                             "target_coverages": [{"coverage_code": "A4200_1"}]})
    assert response.status_code == 422
    assert response.json()["error"] == "duplicate product"


def test_unknown_route_is_json(client: httpx.Client) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"] == "not found"


# --- resolution and shaping without a database -------------------------------------------------

def _product(key: str, name: str) -> catalog.Product:
    return catalog.Product(key, name, "acme", "에이크미손해보험", None, None, None, (), f"에이크미손해보험 {name}")


def test_an_insurer_with_several_products_needs_product_name() -> None:
    known = [_product("acme_a", "상품 A"), _product("acme_b", "상품 B")]
    with pytest.raises(ApiError) as refused:
        resolve_products([ProductRef(insurer="acme")], known)
    assert refused.value.status == 422
    assert refused.value.body["error"] == "product_name required"
    assert refused.value.body["valid"] == ["상품 A", "상품 B"]
    chosen = resolve_products([ProductRef(insurer="에이크미손해보험", product_name="상품 B"),
                               ProductRef(insurer="acme", product_name="acme_a")], known)
    assert [product.key for product in chosen] == ["acme_b", "acme_a"]


def test_a_cell_whose_instances_differ_is_mixed_and_picks_none() -> None:
    product = _product("acme_a", "상품 A")
    coverage = catalog.Coverage("A4200_1", "암진단비(유사암제외)", "암 진단", ())
    evidence = comparison.Evidence("가입설계서", 2, "암 진단비 1형\n1,000만원")
    instances = (comparison.Instance("암 진단비 1형", "CONFIRMED", "1,000만원", "가입설계서", "PRIMARY", evidence, ()),
                 comparison.Instance("암 진단비 2형", "UNCONFIRMED", None, None, None, None, ()))
    audit = comparison.AuditLineage("run", "PASS", "tag", "commit", "INTACT", True, None, "ok")
    compared = comparison.Comparison((product,), (coverage,),
                                     {("A4200_1", "acme_a"): comparison.Cell("A4200_1", "acme_a", instances)}, {}, audit)
    cell = shape(compared).coverages[0].cells[0]
    assert (cell.status, cell.status_label, cell.value_text) == ("MIXED", "복수 담보", None)
    assert [(i.status, i.value_text) for i in cell.instances] == [("CONFIRMED", "1,000만원"), ("UNCONFIRMED", None)]
    assert cell.explanations == [e.sentence for e in compared.explanations()]


# --- /status -----------------------------------------------------------------------------------

def test_status_equals_the_cli_report(client: httpx.Client, loaded_db: Database) -> None:
    cli = subprocess.run([sys.executable, "-m", "core", "status", "--json"], capture_output=True, text=True,
                         cwd=PROJECT, env=_env(loaded_db.env()), timeout=120)
    assert cli.returncode == 0, cli.stderr
    response = client.get("/status")
    assert response.status_code == 200
    served, printed = response.json(), json.loads(cli.stdout)
    assert served.keys() == printed.keys()
    # Only clock readings differ between two calls: when the fingerprint was checked (and how
    # long it took), when backup health was checked, and the ages it derives from the clock.
    for report in (served, printed):
        for volatile in ("verified_at", "verify_seconds", "proof"):  # how the proof was reached
            report["lock"].pop(volatile)
        for key in [k for k in report["backups"] if k == "checked_at" or "_age_" in k]:
            report["backups"].pop(key)
        # the server's WAL position moves with any write on it (autovacuum, another test database)
        report["database"].pop("wal_lsn", None)
    assert served == printed
    assert served["ok"] is True and served["lock"]["state"] == "INTACT"


# --- the OpenAPI schema ------------------------------------------------------------------------

def test_openapi_describes_every_field_and_shows_the_example() -> None:
    from api.server import app

    schema = app.openapi()
    models = schema["components"]["schemas"]
    names = ["CompareRequest", "ProductRef", "CoverageRef", "CompareResponse", "ProductOut", "CoverageOut", "CellOut",
             "InstanceOut", "EvidenceOut", "AuditOut", "ErrorResponse", "FieldProblem", "HealthResponse",
             "DatabaseHealth", "UnhealthyResponse"]
    missing = [f"{name}.{field}" for name in names for field, spec in models[name]["properties"].items()
               if not spec.get("description")]
    assert missing == []
    body = schema["paths"]["/compare"]["post"]["requestBody"]["content"]["application/json"]
    assert body["examples"]["guide"]["value"] == GUIDE_EXAMPLE
    assert models["CompareRequest"]["properties"]["products"]["maxItems"] == comparison.MAX_PRODUCTS
    assert models["CompareRequest"]["properties"]["target_coverages"]["maxItems"] == comparison.MAX_CODES
    assert {"404", "413", "422", "503"} <= set(schema["paths"]["/compare"]["post"]["responses"])


# --- failures: database down, lock broken, unsafe configuration --------------------------------

def test_database_down_is_503_with_a_masked_reason(tmp_path: Path) -> None:
    env = {"DATABASE_URL": f"postgresql://inca_reader:{SECRET}@127.0.0.1:1/inca"}
    with running_api(env, tmp_path / "uvicorn.log") as down, httpx.Client(base_url=down.base, timeout=30) as http:
        health = http.get("/health")
        assert health.status_code == 503
        body = health.json()
        assert body["status"] == "unhealthy" and body["error"] == "database connection failed"
        assert "127.0.0.1:1" in body["detail"] and "\n" not in body["detail"]
        answer = http.post("/compare", json=GUIDE_EXAMPLE)
        assert answer.status_code == 503 and answer.json()["error"] == "database connection failed"
        status = http.get("/status")
        assert status.status_code == 503 and status.json()["reachable"] is False
        for response in (health, answer, status):
            assert SECRET not in response.text and "Traceback" not in response.text
    assert SECRET not in down.output()


def test_broken_lock_is_503(fresh_loaded_db: Database, tmp_path: Path) -> None:
    with psycopg.connect(db.psycopg_conninfo(fresh_loaded_db.admin), autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")  # superuser bypass of the lock triggers
        conn.execute("UPDATE amount_fact SET value_text = '1억원' WHERE amount_id = "
                     "(SELECT amount_id FROM amount_fact WHERE status = 'CONFIRMED' LIMIT 1)")
    with running_api(fresh_loaded_db.env(), tmp_path / "uvicorn.log") as broken, \
            httpx.Client(base_url=broken.base, timeout=30) as http:
        health = http.get("/health")
        assert health.status_code == 503
        assert health.json()["error"] == "lock broken"
        assert health.json()["lock"]["state"] == "BROKEN"
        answer = http.post("/compare", json=GUIDE_EXAMPLE)
        assert answer.status_code == 503 and answer.json()["error"] == "lock broken"
        assert "1억원" not in answer.text
        status = http.get("/status")
        assert status.status_code == 503 and status.json()["lock"]["state"] == "BROKEN"


@pytest.mark.parametrize(("env", "why"), [
    ({"DATABASE_URL": "postgresql://inca_app:short-secret@127.0.0.1:5432/inca"}, "at least 20 characters"),
    ({"DATABASE_URL": "postgresql://inca_app:CHANGE_ME_TO_A_LONG_RANDOM_SECRET@127.0.0.1:5432/inca"},
     "not the example value"),
    ({"DATABASE_URL": f"postgresql://inca_app:{SECRET}@127.0.0.1:5432/inca",
      "INCA_ADMIN_URL": "postgresql://inca:short-secret@127.0.0.1:5432/inca"}, "INCA_ADMIN_URL"),
    ({"INCA_ADMIN_URL": f"postgresql://inca:{SECRET}@127.0.0.1:5432/inca"}, "needs DATABASE_URL"),
])
def test_production_refuses_to_start_with_unsafe_settings(tmp_path: Path, env: dict[str, str], why: str) -> None:
    api = launch({"INCA_ENV": "production", **env}, tmp_path / "uvicorn.log")
    try:
        code = api.process.wait(timeout=60)
    finally:
        stop(api)
    output = api.output()
    assert code != 0, output
    assert "refusing to start" in output and why in output
    assert "short-secret" not in output and SECRET not in output and "CHANGE_ME" not in output
    assert "Traceback" not in output


def test_compare_carries_the_condition_slots(client: httpx.Client, loaded_db: Database) -> None:
    answer = post(client, {"products": [{"insurer": "heungkuk"}, {"insurer": "samsung"}],
                           "target_coverages": [{"coverage_code": "A4102"}, {"coverage_code": "A4200_1"}]})
    assert answer.status_code == 200, answer.text
    expected = comparison.compare(["heungkuk_health_v1", "samsung_health_v1"], ["A4102", "A4200_1"]).conditions()
    body = answer.json()
    seen_found = False
    for (_coverage, cells), coverage_out in zip(expected, body["coverages"], strict=True):
        for cell, cell_out in zip(cells, coverage_out["cells"], strict=True):
            for instance, instance_out in zip(cell.instances, cell_out["instances"], strict=True):
                slots = instance_out["conditions"]
                assert [s["slot"] for s in slots] == ["waiting_period", "reduction", "payout_limit", "renewal",
                                                      "entry_age"]
                for slot, slot_out in zip(instance.slots, slots, strict=True):
                    assert slot_out["status"] == slot.status
                    assert [p["text"] for p in slot_out["phrases"]] == [p.text for p in slot.phrases]
                    for phrase in slot_out["phrases"]:
                        assert phrase["source_text"][phrase["start"]:phrase["end"]] == phrase["text"]
                    if slot.status == "NOT_FOUND":
                        assert slot_out["status_label"] == "원문에서 찾지 못함" and not slot_out["phrases"]
                    seen_found |= slot.status == "FOUND"
    assert seen_found


def test_include_evidence_false_answers_the_cells_without_snippet_text(client: httpx.Client) -> None:
    body = {**GUIDE_EXAMPLE, "target_coverages": [{"coverage_code": "A4200_1"}, {"coverage_code": "A4210"}]}
    full, lean = post(client, body), post(client, {**body, "include_evidence": False})
    assert full.status_code == lean.status_code == 200, (full.text, lean.text)
    full_answer, lean_answer = full.json(), lean.json()
    assert lean_answer["audit"]["lock_state"] == "INTACT"
    seen = 0
    for full_coverage, lean_coverage in zip(full_answer["coverages"], lean_answer["coverages"], strict=True):
        for full_cell, lean_cell in zip(full_coverage["cells"], lean_coverage["cells"], strict=True):
            assert {k: v for k, v in lean_cell.items() if k != "instances"} == \
                {k: v for k, v in full_cell.items() if k != "instances"}
            for whole, cells_only in zip(full_cell["instances"], lean_cell["instances"], strict=True):
                assert cells_only["supporting_evidence"] == []
                assert whole["snippet_count"] == cells_only["snippet_count"] == \
                    len(whole["supporting_evidence"]) + (whole["evidence"] is not None)
                if whole["evidence"] is not None:
                    assert whole["evidence"]["snippet"]  # the default answer keeps every snippet verbatim
                    assert cells_only["evidence"] == {**whole["evidence"], "snippet": None}  # still citable
                    seen += 1
                rest = {"evidence", "supporting_evidence"}
                assert {k: v for k, v in cells_only.items() if k not in rest} == \
                    {k: v for k, v in whole.items() if k not in rest}
    assert seen
    assert "include_evidence" in client.get("/openapi.json").text
