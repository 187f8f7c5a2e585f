"""Every setting in one place: a typed pydantic-settings model read from the environment.

`Settings` is the registry: one typed field per environment variable, with its description and a
default that is a value. `settings()` is the one accessor (it re-reads the environment whenever a
setting's variable changed, so tests can monkeypatch it). `docs/settings.md` carries the table
`settings_table()` renders (tests/test_docs.py checks both directions), so an operator never meets an
undocumented knob. A malformed value is one `ConfigError` line naming the variable and an example.

Database URLs are parsed here too (`parse_database_url`): a URL whose meaning is ambiguous (an
unencoded `@` in the password, a non-numeric port, an unknown scheme) is refused in one line, and
`mask()` hides every credential wherever it sits (the password, `?password=`, `?sslpassword=`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from core import server_sizing
from core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """The application's settings; each field's alias is its environment variable."""

    model_config = SettingsConfigDict(case_sensitive=True, extra="ignore", frozen=True, populate_by_name=True)

    database_url: SecretStr | None = Field(
        default=None, alias="DATABASE_URL",
        description="Reading connection (SELECT-only role in production). Unset: embedded PostgreSQL.",
        examples=["postgresql://inca_app:SECRET@db:5432/inca"])
    admin_url: SecretStr | None = Field(
        default=None, alias="INCA_ADMIN_URL",
        description="Owner connection for load, backup and restore. Falls back to DATABASE_URL.",
        examples=["postgresql://inca:SECRET@db:5432/inca"])
    data_dir: Path = Field(
        default=Path(".inca"), alias="INCA_DATA_DIR",
        description="Embedded PostgreSQL and default backups folder. A relative path is taken from the project "
                    "root when the working directory is inside the project (so `notebooks/` and the dashboard "
                    "share one server and one load), else from the working directory.",
        examples=["/srv/inca"])
    dataset_dir: Path = Field(
        default=Path("data/dataset"), alias="INCA_DATASET_DIR",
        description="The dataset the audited load reads (relative to the project).", examples=["data/dataset"])
    backup_dir_setting: Path | None = Field(
        default=None, alias="INCA_BACKUP_DIR",
        description="Where backups and their manifests are written.",
        examples=["/srv/inca-backups"])
    cache_ttl: int = Field(
        default=60, ge=0, alias="INCA_CACHE_TTL", description="Seconds the dashboard caches query results.",
        examples=[60])
    # --- dashboard page bounds (issue 16): what one rerun of a page may send, at any market size ---
    catalog_page_rows: int = Field(
        default=25, ge=1, le=500, alias="INCA_CATALOG_PAGE_ROWS",
        description="Catalog page: canonical coverages (rows) per page; the rest are reached by page number "
                    "and search.", examples=[25])
    catalog_max_insurers: int = Field(
        default=12, ge=1, le=200, alias="INCA_CATALOG_MAX_INSURERS",
        description="Catalog page: at most this many insurer columns at once, in the order the analyst "
                    "chose them (the first ones in key order by default).", examples=[12])
    picker_max_options: int = Field(
        default=500, ge=10, le=20000, alias="INCA_PICKER_MAX_OPTIONS",
        description="Compare page: the product picker lists every product up to this many; beyond, it lists "
                    "the products of the insurers chosen first (as many insurers as fit). URL `?p=` keys "
                    "always work.", examples=[500])
    # 7: the default selection's codes on one page; at 10 products x 50 codes the compare page then
    # stays under 500 KB a rerun at 1 M facts (bench/pages.py, docs/performance.md)
    conditions_page_coverages: int = Field(
        default=7, ge=1, le=200, alias="INCA_CONDITIONS_PAGE_COVERAGES",
        description="Compare page: the 지급 조건 section shows this many chosen coverages at once, in the chosen "
                    "order; the rest are reached by page (the exports hold every one).", examples=[7])
    standby_proof_interval_s: int = Field(
        default=30, ge=0, alias="INCA_STANDBY_PROOF_INTERVAL_S",
        description="On a hot standby: page views rerun the lock's full proof at most once per this many seconds "
                    "after replay moved on; in between the lock is `UNPROVEN`, never `INTACT`. `status` always "
                    "proves. See [scaling.md](scaling.md).", examples=[30])
    statement_timeout_ms: int = Field(
        default=15000, gt=0, alias="INCA_STATEMENT_TIMEOUT_MS",
        description="Statement timeout of reading sessions, in milliseconds.", examples=[15000])
    env: Literal["development", "production"] = Field(
        default="development", alias="INCA_ENV",
        description="`production` refuses weak or default database passwords.", examples=["production"])
    backup_keep_daily: int = Field(
        default=7, ge=0, alias="INCA_BACKUP_KEEP_DAILY", description="Daily backups kept by `prune`.",
        examples=[7])
    backup_keep_weekly: int = Field(
        default=4, ge=0, alias="INCA_BACKUP_KEEP_WEEKLY", description="Weekly backups kept by `prune`.",
        examples=[4])
    pg_bin: Path | None = Field(
        default=None, alias="INCA_PG_BIN",
        description="Folder of the `pg_dump`/`pg_restore` to use. Unset: the bundled ones, then `PATH`, then "
                    "`/usr/lib/postgresql/*/bin`, the first at least the server's major version.",
        examples=["/usr/lib/postgresql/18/bin"])
    backup_rpo_hours: int = Field(
        default=24, gt=0, alias="INCA_BACKUP_RPO_HOURS",
        description="Backup health: the newest backup may be this many hours old (WARNING beyond, FAILING "
                    "beyond twice).", examples=[24])
    verify_objective_days: int = Field(
        default=31, gt=0, alias="INCA_VERIFY_OBJECTIVE_DAYS",
        description="Backup health: a restore verification must have passed within this many days (WARNING "
                    "beyond).", examples=[31])
    # --- the embedded server's settings (core/server_sizing.py, docs/operations.md) ---
    pg_settings: Annotated[dict[str, str] | None, NoDecode] = Field(
        default=None, alias="INCA_PG_SETTINGS",
        description="Embedded server only: overrides of the settings sized from this machine's memory and cores, "
                    "as `name=value` pairs separated by commas (`shared_buffers`, `effective_cache_size`, "
                    "`work_mem`, `maintenance_work_mem`, `max_parallel_workers_per_gather`, "
                    "`max_parallel_maintenance_workers`, `max_parallel_workers`, `random_page_cost`, "
                    "`max_wal_size`). Applied when the server starts, never to a running one. Unset: all sized "
                    "(`python -m core status` shows them).",
        examples=["shared_buffers=2GB,work_mem=32MB"])

    @field_validator("pg_settings", mode="before")
    @classmethod
    def _pairs(cls, value: Any) -> Any:
        # `a=1,b=2` (what fits in a compose file), or a mapping given in code
        if not isinstance(value, str):
            return value
        pairs: dict[str, str] = {}
        for item in filter(None, (part.strip() for part in value.split(","))):
            name, sep, setting = item.partition("=")
            if not sep or not name.strip() or not setting.strip():
                raise ValueError(f"{item[:40]!r} is not name=value")
            pairs[name.strip()] = setting.strip()
        return pairs

    @field_validator("pg_settings")
    @classmethod
    def _known_and_valid(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        return None if value is None else {name: server_sizing.check_override(name, setting)
                                           for name, setting in value.items()}

    bench_server_url: SecretStr | None = Field(
        default=None, alias="INCA_BENCH_SERVER_URL",
        description="Benchmarks only: a superuser URL of the server the bench creates its databases on. Unset: "
                    "an embedded server in `.inca-bench/`.", examples=["postgresql://postgres:SECRET@127.0.0.1/postgres"])

    @model_validator(mode="before")
    @classmethod
    def _blank_is_unset(cls, values: Any) -> Any:
        # An empty or blank variable (`FOO=` in a compose file) means "use the default", never "".
        if isinstance(values, dict):
            return {k: v.strip() if isinstance(v, str) else v for k, v in values.items()
                    if not (isinstance(v, str) and not v.strip())}
        return values

    @field_validator("env", mode="before")
    @classmethod
    def _lowercase_env(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value

    @property
    def backup_dir(self) -> Path:
        """INCA_BACKUP_DIR, or INCA_DATA_DIR/backups (resolved like data_dir())."""
        if self.backup_dir_setting is not None:
            return self.backup_dir_setting.expanduser().resolve()
        return data_dir() / "backups"


#: the unset default shown for settings whose default is derived from another one
DERIVED_DEFAULTS = {"INCA_BACKUP_DIR": "INCA_DATA_DIR/backups"}
ENV_NAMES: tuple[str, ...] = tuple(str(f.alias) for f in Settings.model_fields.values())

_cache: tuple[tuple[str | None, ...], Settings] | None = None


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    name = str(first["loc"][0]) if first.get("loc") else "a setting"
    field = next((f for f in Settings.model_fields.values() if f.alias == name), None)
    example = (field.examples or [field.default])[0] if field else None
    # pydantic's own messages start with a capital; a validator's text keeps its case (units: 2GB, not 2gb)
    what = str(first.get("msg", "invalid")).removeprefix("Value error, ").rstrip(".")
    what = what[:1].lower() + what[1:]
    shown = first.get("input")
    shown = "" if isinstance(shown, dict) or name in _SECRET_SETTINGS else f"={str(shown)[:40]!r}"
    return f"{name}{shown} is not valid ({what}); set it to e.g. {example}"


_SECRET_SETTINGS = frozenset({"DATABASE_URL", "INCA_ADMIN_URL", "INCA_BENCH_SERVER_URL"})


def settings() -> Settings:
    """The settings of the current environment (re-read when any of its variables changed)."""
    global _cache
    snapshot = tuple(os.environ.get(name) for name in ENV_NAMES)
    if _cache is not None and _cache[0] == snapshot:
        return _cache[1]
    try:
        current = Settings()
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    _cache = (snapshot, current)
    return current


def _field_by_env(name: str) -> str:
    for key, field in Settings.model_fields.items():
        if field.alias == name:
            return key
    raise KeyError(f"unregistered setting {name}: add a field to core.config.Settings and run the docs test")


def env(name: str) -> str | None:
    """A setting's value as text, by variable name (for callers that format it; prefer `settings()`)."""
    value = getattr(settings(), _field_by_env(name))
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return None if value is None else str(value)


def env_int(name: str) -> int:
    """A whole-number setting by variable name (validated by the model)."""
    value = getattr(settings(), _field_by_env(name))
    if not isinstance(value, int):
        raise KeyError(f"{name} is not a whole-number setting")
    return value


def data_dir() -> Path:
    path = settings().data_dir.expanduser()
    # Inside the project (notebooks/ run with their own folder as the working directory) a relative
    # path is taken from the project root, so every tool shares one embedded server and one load.
    cwd = Path.cwd().resolve()
    return ((PROJECT_ROOT if cwd.is_relative_to(PROJECT_ROOT) else cwd) / path).resolve()


def dataset_dir() -> Path:
    path = settings().dataset_dir.expanduser()
    return path if path.is_absolute() else (PROJECT_ROOT / path)


def backup_dir() -> Path:
    return settings().backup_dir


def documented_default(name: str) -> str:
    """The default as docs/settings.md shows it: a value, `(unset)`, or the derived default."""
    field = Settings.model_fields[_field_by_env(name)]
    if name in DERIVED_DEFAULTS:
        return f"`{DERIVED_DEFAULTS[name]}`"
    return "(unset)" if field.default is None else f"`{field.default}`"


def settings_table() -> str:
    """The markdown table of docs/settings.md, generated from the model."""
    rows = ["| name | default | what it does |", "| --- | --- | --- |"]
    for field in Settings.model_fields.values():
        rows.append(f"| `{field.alias}` | {documented_default(str(field.alias))} | {field.description} |")
    return "\n".join(rows)


# --- database URLs ---------------------------------------------------------------------------------

_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2")
#: query parameters that carry a secret (libpq: password, sslpassword); passfile/sslkey are paths
_SECRET_QUERY_KEYS = frozenset({"password", "sslpassword"})
_EXAMPLE_URL = "postgresql://USER:PASSWORD@HOST:5432/DBNAME"


def parse_database_url(raw: str, setting: str) -> URL:
    """Accept the libpq forms users paste (postgres://, postgresql://, ?host=/socket) for psycopg 3.

    Refuse, in one line that never echoes the URL (it holds the password), anything whose meaning
    would be a guess: an unknown scheme, more than one '@' (an unencoded '@' in the password would
    otherwise turn part of it into the host), a port that is not a number from 1 to 65535.
    """
    raw = raw.strip()
    scheme, sep, rest = raw.partition("://")
    if not sep:
        raise ConfigError(f"{setting} is not a database URL; expected {_EXAMPLE_URL}")
    if scheme.lower() not in _SCHEMES:
        raise ConfigError(f"{setting} uses '{scheme[:20]}://'; only postgresql:// URLs are supported "
                          f"(e.g. {_EXAMPLE_URL})")
    before_query = rest.split("?", 1)[0]
    if before_query.count("@") > 1:
        raise ConfigError(f"{setting} has more than one '@' before the host: percent-encode an '@' in the user "
                          f"name or password as %40 (e.g. postgresql://USER:pa%40ss@HOST:5432/DBNAME)")
    authority = before_query.split("/", 1)[0]
    hostport = authority.rsplit("@", 1)[-1]
    port = re.fullmatch(r"(?:\[[^\]]*\]|[^:]*):(.*)", hostport)
    if port and port.group(1) and not (port.group(1).isdigit() and 0 < int(port.group(1)) < 65536):
        raise ConfigError(f"{setting} has an invalid port: use a number from 1 to 65535 after the host "
                          f"(e.g. HOST:5432), and percent-encode ':' '/' '@' in the password")
    try:
        url = make_url(raw)
    except (ArgumentError, ValueError):
        raise ConfigError(f"{setting} is not a database URL; expected {_EXAMPLE_URL}") from None
    url = url.set(drivername="postgresql+psycopg")
    if not url.database:
        raise ConfigError(f"{setting} names no database; add it after the host, e.g. postgresql://…@host:5432/inca")
    return url


def secrets_of(url: URL) -> list[str]:
    """Every credential a URL carries (to scrub them from text that might echo one)."""
    found = [url.password] if url.password else []
    for key, value in url.query.items():
        if key.lower() in _SECRET_QUERY_KEYS:
            found.extend([value] if isinstance(value, str) else list(value))
    return [str(s) for s in found if s]


def mask(url: URL | str) -> str:
    """A URL safe for logs and error messages: no credential is ever shown (password, ?password=, ?sslpassword=)."""
    if isinstance(url, str):
        try:
            url = parse_database_url(url, "URL")
        except ConfigError:
            return "<unparseable URL>"
    query = {key: ("***" if key.lower() in _SECRET_QUERY_KEYS else value) for key, value in url.query.items()}
    # SQLAlchemy percent-encodes query values; the mask stays readable as ***
    return url.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


@dataclass(frozen=True)
class Connections:
    """Where to read and where to administer. `embedded` is True when the project runs its own server."""

    reader: URL
    admin: URL
    embedded: bool


WEAK_PASSWORD_MIN_LENGTH = 20
EXAMPLE_PASSWORDS = frozenset({"change-me", "changeme", "postgres", "password", "CHANGE_ME_TO_A_LONG_RANDOM_SECRET"})


def is_production() -> bool:
    return settings().env == "production"


def check_production_password(url: URL, setting: str) -> None:
    """Production refuses weak or example passwords before any connection is tried."""
    if not is_production():
        return
    query_password = url.query.get("password")
    password = url.password or (query_password if isinstance(query_password, str) else "") or ""
    if password in EXAMPLE_PASSWORDS or len(password) < WEAK_PASSWORD_MIN_LENGTH:
        raise ConfigError(
            f"{setting}: production needs a password of at least {WEAK_PASSWORD_MIN_LENGTH} characters "
            "that is not the example value; generate one with `openssl rand -hex 24`"
        )


def _secret(value: SecretStr | None) -> str:
    return value.get_secret_value() if value is not None else ""


#: configured_urls() of the settings object it was computed from (settings() returns the same object
#: while the environment is unchanged): every read asks for the URLs, and parsing and checking them
#: twice cost ~0.2 ms of a ~1 ms evidence read
_urls_cache: tuple[Settings, tuple[URL, URL] | None] | None = None


def configured_urls() -> tuple[URL, URL] | None:
    """The (reader, admin) URLs from the environment, or None for the embedded server."""
    global _urls_cache
    current = settings()
    if _urls_cache is not None and _urls_cache[0] is current:
        return _urls_cache[1]
    urls = _parsed_urls(current)
    _urls_cache = (current, urls)  # (only once parsed and checked: an error is raised again next time)
    return urls


def _parsed_urls(current: Settings) -> tuple[URL, URL] | None:
    reader_raw, admin_raw = _secret(current.database_url), _secret(current.admin_url)
    if not reader_raw and not admin_raw:
        return None
    reader = parse_database_url(reader_raw or admin_raw, "DATABASE_URL" if reader_raw else "INCA_ADMIN_URL")
    admin = parse_database_url(admin_raw, "INCA_ADMIN_URL") if admin_raw else reader
    check_production_password(reader, "DATABASE_URL" if reader_raw else "INCA_ADMIN_URL")
    check_production_password(admin, "INCA_ADMIN_URL" if admin_raw else "DATABASE_URL")
    return reader, admin


def database_identity() -> str:
    """Which database the environment points at, for cache keys (the raw URLs: hash before showing)."""
    current = settings()
    return f"{_secret(current.database_url)}\n{_secret(current.admin_url)}"


def socket_query(path: str) -> str:
    """A socket directory for a URL's `?host=`: percent-encoded, so '+', ' ', '%', '#' survive the trip."""
    return quote(path, safe="/")
