"""Deployment files: compose files, Dockerfile, .env.example, the reader-role script and the docs.

There is no Docker engine here, so the compose files are validated against the compose
specification (check-jsonschema) and read as YAML; the reader-role script runs for real with psql.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from core import config, db
from core.ops.cli import build_parser
from tests.conftest import PROJECT, Database, PgServer

DOCKER = PROJECT / "docker"
DEV = DOCKER / "compose.yml"
PRODUCTION = DOCKER / "docker-compose.production.yml"
DOCS = [PROJECT / "docs" / "deployment.md", PROJECT / "docs" / "operations.md", PROJECT / "docs" / "api.md"]
TUNED = ["max_connections=100", "shared_buffers=256MB", "effective_cache_size=1GB", "work_mem=4MB",
         "maintenance_work_mem=64MB", "random_page_cost=1.1", "log_min_duration_statement=1000"]
APP_SERVICES = ("load", "reader", "api", "dashboard")


def compose(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def check_jsonschema() -> list[str]:
    found = shutil.which("check-jsonschema")
    return [found] if found else [sys.executable, "-m", "check_jsonschema"]


# --- compose files -----------------------------------------------------------------------------

@pytest.mark.parametrize("path", [DEV, PRODUCTION], ids=lambda p: p.name)
def test_compose_file_follows_the_compose_spec(path: Path) -> None:
    result = subprocess.run([*check_jsonschema(), "--builtin-schema", "vendor.compose-spec", str(path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", [DEV, PRODUCTION], ids=lambda p: p.name)
def test_compose_services_are_wired_in_order(path: Path) -> None:
    services = compose(path)["services"]
    front = {"caddy"} if path == PRODUCTION else set()
    assert set(services) == {"db", *APP_SERVICES, *front}
    db_service = services["db"]
    assert db_service["image"] == "pgvector/pgvector:pg16"
    assert "pg_isready" in " ".join(db_service["healthcheck"]["test"])
    assert any(volume.endswith(":/var/lib/postgresql/data") for volume in db_service["volumes"])
    # Only the production proxy publishes ports (80/443); everything else stays on loopback.
    assert all(port.startswith("127.0.0.1:") for name, s in services.items() if name != "caddy"
               for port in s.get("ports", []))
    load = services["load"]
    assert load["command"] == ["python", "-m", "core", "load"]
    assert load["environment"]["INCA_ADMIN_URL"].startswith("postgresql://${POSTGRES_USER")
    assert load["depends_on"]["db"]["condition"] == "service_healthy"
    assert services["reader"]["depends_on"]["load"]["condition"] == "service_completed_successfully"
    assert "/create-reader.sql" in services["reader"]["command"][-1]
    for name in ("api", "dashboard"):
        service = services[name]
        assert service["depends_on"]["load"]["condition"] == "service_completed_successfully"
        assert service["depends_on"]["reader"]["condition"] == "service_completed_successfully"
        # The applications read with the SELECT-only role and never see the owner password.
        assert service["environment"]["DATABASE_URL"].startswith("postgresql://inca_app:${INCA_APP_PASSWORD")
        assert "INCA_ADMIN_URL" not in service["environment"]
        assert "POSTGRES_PASSWORD" not in str(service["environment"])
    assert "uvicorn api.server:app" in " ".join(services["api"]["command"])
    assert "dashboard/app.py" in services["dashboard"]["command"]
    assert "/_stcore/health" in " ".join(services["dashboard"]["healthcheck"]["test"])


@pytest.mark.parametrize("path", [DEV, PRODUCTION], ids=lambda p: p.name)
def test_compose_paths_resolve_from_the_docker_folder(path: Path) -> None:
    for name, service in compose(path)["services"].items():
        if "build" in service:
            context = (path.parent / service["build"]["context"]).resolve()
            assert context == PROJECT, name
            assert (context / service["build"]["dockerfile"]).is_file(), name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (path.parent / source).is_file(), f"{name}: {source}"
    for name in ("dashboard/app.py", "api/server.py"):
        assert (PROJECT / name).is_file()


def test_production_compose_requires_a_password_and_is_tuned() -> None:
    document = compose(PRODUCTION)
    services = document["services"]
    db_service = services["db"]
    assert db_service["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "20 characters" in db_service["environment"]["POSTGRES_PASSWORD"]
    assert db_service["environment"]["TZ"] == "Asia/Seoul"
    assert db_service["environment"]["PGTZ"] == "Asia/Seoul"
    assert db_service["restart"] == "unless-stopped"
    command = db_service["command"]
    assert command[0] == "postgres"
    for setting in TUNED:
        assert setting in command, setting
        assert command[command.index(setting) - 1] == "-c"
    # The database alone by default; everything else only with --profile app.
    assert "profiles" not in db_service
    for name in APP_SERVICES:
        assert services[name]["profiles"] == ["app"], name
        environment = services[name]["environment"]
        if name != "reader":
            assert environment["INCA_ENV"] == "production", name
        for value in environment.values():
            for reference in re.findall(r"\$\{(POSTGRES_PASSWORD|INCA_APP_PASSWORD)([^}]*)\}", str(value)):
                assert reference[1].startswith(":?"), f"{name}: {reference}"
    assert services["api"]["restart"] == services["dashboard"]["restart"] == "unless-stopped"


def test_dockerfile_is_slim_non_root_and_checks_health() -> None:
    text = (DOCKER / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"^FROM python:3\.11-slim$", text, re.M)
    assert "pip install -r requirements.txt" in text
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert "HEALTHCHECK" in text and "/health" in text
    assert "INCA_ENV=production" in text
    for source in re.findall(r"^COPY (?:--\S+ )*(\S+) ", text, re.M):
        assert (PROJECT / source).exists(), source
    assert '"uvicorn", "api.server:app"' in text


def test_dockerignore_keeps_secrets_out_and_the_code_in() -> None:
    lines = {line.strip() for line in (PROJECT / ".dockerignore").read_text(encoding="utf-8").splitlines()}
    assert {".env", ".inca", ".inca-test", ".git"} <= lines
    assert not {"core", "api", "dashboard", "data", "requirements.txt"} & lines


# --- secrets -----------------------------------------------------------------------------------

def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (PROJECT / ".env.example").read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def test_env_example_holds_placeholders_only() -> None:
    values = _env_example()
    secrets = {name: value for name, value in values.items() if "PASSWORD" in name}
    assert values["INCA_PROXY_PASSWORD_HASH"].strip("'").startswith("CHANGE_ME")  # not a usable hash
    secrets.pop("INCA_PROXY_PASSWORD_HASH")
    assert set(secrets) == {"POSTGRES_PASSWORD", "INCA_APP_PASSWORD"}
    # The placeholder is one production refuses (core.config.EXAMPLE_PASSWORDS).
    assert all(value in config.EXAMPLE_PASSWORDS for value in secrets.values())
    referenced = set()
    for path in (DEV, PRODUCTION):
        referenced |= set(re.findall(r"\$\{([A-Z_]+)", path.read_text(encoding="utf-8")))
    assert referenced <= set(values), referenced - set(values)


def test_env_is_ignored_by_git() -> None:
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=PROJECT, timeout=30)
    assert ignored.returncode == 0
    example = subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=PROJECT, timeout=30)
    assert example.returncode == 1


# --- the reader role script, run for real ------------------------------------------------------

def psql() -> str:
    from core import embedded

    bundled = embedded.bin_dir() / "psql"
    return str(bundled) if bundled.exists() else (shutil.which("psql") or pytest.fail("no psql"))


def run_script(database: Database, password: str | None) -> subprocess.CompletedProcess[str]:
    variables = ["-v", f"app_password={password}"] if password is not None else []
    return subprocess.run([psql(), db.psycopg_conninfo(database.admin), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                           *variables, "-f", str(DOCKER / "create-reader.sql")],
                          capture_output=True, text=True, timeout=60)


def test_create_reader_script_before_and_after_the_load(fresh_db: Database, server: PgServer) -> None:
    from core.ops import loader

    password = "reader-test-password-0123456789"
    try:
        missing = run_script(fresh_db, None)
        assert missing.returncode != 0 and "app_password" in missing.stdout + missing.stderr
        before = run_script(fresh_db, password)  # before the load: creates inca_read if needed
        assert before.returncode == 0, before.stderr
        assert password not in before.stdout + before.stderr
        loader.load()
        again = run_script(fresh_db, password)  # idempotent
        assert again.returncode == 0, again.stderr
        app_url = server.url(fresh_db.name, "inca_app").set(password=password)
        with psycopg.connect(db.psycopg_conninfo(app_url), autocommit=True) as conn:
            assert conn.execute("SHOW default_transaction_read_only").fetchone() == ("on",)
            assert conn.execute("SELECT count(*) FROM amount_fact").fetchone() == (297,)
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("DELETE FROM amount_fact")
            conn.execute("SET default_transaction_read_only = off")
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute("UPDATE amount_fact SET value_text = '1억원'")
        status = subprocess.run([sys.executable, "-c", "import json; from core.status import collect; "
                                 "print(json.dumps(collect().to_dict()['database']))"], capture_output=True, text=True,
                                cwd=PROJECT, timeout=120,
                                env={**os.environ, "DATABASE_URL": app_url.render_as_string(hide_password=False)})
        assert status.returncode == 0, status.stderr
        assert '"reader_select_only": true' in status.stdout and '"read_only_transaction": true' in status.stdout
    finally:
        with psycopg.connect(server.conninfo(), autocommit=True) as conn:
            conn.execute("DROP ROLE IF EXISTS inca_app")


# --- the docs ----------------------------------------------------------------------------------

def _subcommands() -> dict[str, set[str]]:
    parser, _ = build_parser()
    for action in parser._actions:  # argparse exposes subcommands only through its actions
        if isinstance(action, argparse._SubParsersAction):
            return {name: set(sub._option_string_actions) for name, sub in action.choices.items()}
    raise AssertionError("python -m core has no subcommands")


_COMMAND = re.compile(r"python -m core ([^\s`|;&>)]+)([^`\n|;&>]*)")


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_core_command_in_the_docs_exists(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path.name} not written yet")
    known = _subcommands()
    found = _COMMAND.findall(path.read_text(encoding="utf-8"))
    assert found or path.name == "api.md"
    for command, rest in found:
        if command.startswith("%"):  # a systemd template (python -m core %i), expanded per unit
            continue
        assert command in known, f"{path.name}: `python -m core {command}` is not a subcommand"
        for flag in re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", rest):
            assert flag in known[command], f"{path.name}: `python -m core {command} {flag}` is not an option"


_REPO_PATH = re.compile(
    r"(?<![\w./-])((?:docker|docs|core|api|dashboard|tests|data|notebooks|bench)/[\w.@-]+(?:/[\w.@-]+)*"
    r"|\.env\.example|\.dockerignore|requirements(?:-dev)?\.txt|pyproject\.toml)"
)


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_file_the_docs_name_exists(path: Path) -> None:
    if not path.exists():
        pytest.skip(f"{path.name} not written yet")
    named = {match.rstrip(".") for match in _REPO_PATH.findall(path.read_text(encoding="utf-8"))}
    missing = sorted(name for name in named if not (PROJECT / name).exists())
    assert missing == [], f"{path.name} names files that do not exist: {missing}"
