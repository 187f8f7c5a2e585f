"""Every setting in one place, read from the environment.

`SETTINGS` is the registry: `docs/settings.md` must document each name (tests/test_docs.py
checks it), so an operator never meets an undocumented knob.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    description: str


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", None, "Reading connection (SELECT-only role in production). Unset: embedded PostgreSQL."),
    Setting("INCA_ADMIN_URL", None, "Owner connection for load, backup and restore. Falls back to DATABASE_URL."),
    Setting("INCA_DATA_DIR", ".inca", "Embedded PostgreSQL and default backups folder (a relative path is taken from the "
            "project root when the working directory is inside the project, else from the working directory)."),
    Setting("INCA_DATASET_DIR", "data/dataset", "The dataset the audited load reads (relative to the project)."),
    Setting("INCA_BACKUP_DIR", "<INCA_DATA_DIR>/backups", "Where backups and their manifests are written."),
    Setting("INCA_CACHE_TTL", "60", "Seconds the dashboard caches query results."),
    Setting("INCA_STATEMENT_TIMEOUT_MS", "15000", "Statement timeout of reading sessions, in milliseconds."),
    Setting("INCA_STANDBY_PROOF_INTERVAL_S", "30", "On a hot standby: page views rerun the lock's full proof at most "
            "once per this many seconds after replay moved on (in between the lock is UNPROVEN, never INTACT)."),
    Setting("INCA_ENV", "development", "`production` refuses weak or default database passwords."),
    Setting("INCA_BACKUP_KEEP_DAILY", "7", "Daily backups kept by `prune`."),
    Setting("INCA_BACKUP_KEEP_WEEKLY", "4", "Weekly backups kept by `prune`."),
    Setting("INCA_PG_BIN", None, "Folder of the pg_dump/pg_restore to use. Unset: the bundled ones, then PATH, then "
            "/usr/lib/postgresql/*/bin, the first at least the server's major version."),
    Setting("INCA_BACKUP_RPO_HOURS", "24", "Backup health: the newest backup may be this many hours old "
            "(WARNING beyond, FAILING beyond twice)."),
    Setting("INCA_VERIFY_OBJECTIVE_DAYS", "31", "Backup health: a restore verification must have passed within "
            "this many days (WARNING beyond)."),
)
_DEFAULTS = {s.name: s.default for s in SETTINGS}


def env(name: str) -> str | None:
    """A registered setting's value (empty strings count as unset)."""
    if name not in _DEFAULTS:
        raise KeyError(f"unregistered setting {name}: add it to core.config.SETTINGS and docs/settings.md")
    value = os.environ.get(name, "").strip()
    return value or _DEFAULTS[name]


def env_int(name: str) -> int:
    raw = env(name)
    try:
        return int(raw or "")
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to e.g. {_DEFAULTS[name]}") from None


def data_dir() -> Path:
    path = Path(env("INCA_DATA_DIR") or ".inca").expanduser()
    # Inside the project (notebooks/ run with their own folder as the working directory) a relative
    # path is taken from the project root, so every tool shares one embedded server and one load.
    cwd = Path.cwd().resolve()
    return ((PROJECT_ROOT if cwd.is_relative_to(PROJECT_ROOT) else cwd) / path).resolve()


def dataset_dir() -> Path:
    path = Path(env("INCA_DATASET_DIR") or "data/dataset").expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path)


def backup_dir() -> Path:
    raw = os.environ.get("INCA_BACKUP_DIR", "").strip()
    return Path(raw).expanduser().resolve() if raw else data_dir() / "backups"


def parse_database_url(raw: str, setting: str) -> URL:
    """Accept the libpq forms users paste (postgres://, postgresql://, ?host=/socket) for psycopg 3."""
    try:
        url = make_url(raw.strip())
    except ArgumentError:
        raise ConfigError(
            f"{setting} is not a database URL; expected postgresql://USER:PASSWORD@HOST:PORT/DBNAME"
        ) from None
    if url.drivername in ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"):
        url = url.set(drivername="postgresql+psycopg")
    else:
        raise ConfigError(f"{setting} uses '{url.drivername}://'; only postgresql:// URLs are supported")
    if not url.database:
        raise ConfigError(f"{setting} names no database; add it after the host, e.g. postgresql://…@host:5432/inca")
    if url.port is not None and not 0 < url.port < 65536:
        raise ConfigError(f"{setting} has an invalid port {url.port}")
    return url


def mask(url: URL | str) -> str:
    """A URL safe for logs and error messages: the password is never shown."""
    if isinstance(url, str):
        try:
            url = make_url(url)
        except ArgumentError:
            return "<unparseable URL>"
    return url.render_as_string(hide_password=True)


@dataclass(frozen=True)
class Connections:
    """Where to read and where to administer. `embedded` is True when the project runs its own server."""

    reader: URL
    admin: URL
    embedded: bool


WEAK_PASSWORD_MIN_LENGTH = 20
EXAMPLE_PASSWORDS = frozenset({"change-me", "changeme", "postgres", "password", "CHANGE_ME_TO_A_LONG_RANDOM_SECRET"})


def check_production_password(url: URL, setting: str) -> None:
    """Production refuses weak or example passwords before any connection is tried."""
    if (env("INCA_ENV") or "").lower() != "production":
        return
    password = url.password or ""
    if password in EXAMPLE_PASSWORDS or len(password) < WEAK_PASSWORD_MIN_LENGTH:
        raise ConfigError(
            f"{setting}: production needs a password of at least {WEAK_PASSWORD_MIN_LENGTH} characters "
            "that is not the example value; generate one with `openssl rand -hex 24`"
        )


def configured_urls() -> tuple[URL, URL] | None:
    """The (reader, admin) URLs from the environment, or None for the embedded server."""
    reader_raw = os.environ.get("DATABASE_URL", "").strip()
    admin_raw = os.environ.get("INCA_ADMIN_URL", "").strip()
    if not reader_raw and not admin_raw:
        return None
    reader = parse_database_url(reader_raw or admin_raw, "DATABASE_URL" if reader_raw else "INCA_ADMIN_URL")
    admin = parse_database_url(admin_raw, "INCA_ADMIN_URL") if admin_raw else reader
    check_production_password(reader, "DATABASE_URL" if reader_raw else "INCA_ADMIN_URL")
    check_production_password(admin, "INCA_ADMIN_URL" if admin_raw else "DATABASE_URL")
    return reader, admin
