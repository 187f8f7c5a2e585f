"""The embedded server sized for its machine (issue 16.4): the pure sizing, INCA_PG_SETTINGS, and real starts.

The sizing is checked against values worked out by hand for a few machines. The overrides are checked on
real servers started through core.embedded in their own folders and processes (a server is shared by
every process that joined it, so "never restarted under another process" needs several processes).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from core import config, server_sizing
from core.errors import ConfigError
from core.server_sizing import GB, MB, Machine

PROJECT = Path(__file__).resolve().parent.parent

# --- the pure sizing ----------------------------------------------------------------------------------

HAND_SIZED = {
    # 256 MB, 1 core: every floor (shared_buffers 128 MB, work_mem 4 MB, maintenance 64 MB, WAL 1 GB)
    Machine(256 * MB, 1): {"shared_buffers": "128MB", "effective_cache_size": "192MB", "work_mem": "4MB",
                           "maintenance_work_mem": "64MB", "max_parallel_workers_per_gather": "0",
                           "max_parallel_maintenance_workers": "0", "max_parallel_workers": "1",
                           "random_page_cost": "1.1", "max_wal_size": "1024MB"},
    # 8 GB, 2 cores: a quarter, three quarters, (8192 - 2048) MB / 400 = 15.36 MB, 1/16, one worker
    Machine(8 * GB, 2): {"shared_buffers": "2048MB", "effective_cache_size": "6144MB", "work_mem": "15MB",
                         "maintenance_work_mem": "512MB", "max_parallel_workers_per_gather": "1",
                         "max_parallel_maintenance_workers": "1", "max_parallel_workers": "2",
                         "random_page_cost": "1.1", "max_wal_size": "2048MB"},
    # 64 GB, 16 cores: every cap (8 GB buffers, 64 MB work_mem, 1 GB maintenance, 4 workers, 8 in all, 4 GB WAL)
    Machine(64 * GB, 16): {"shared_buffers": "8192MB", "effective_cache_size": "49152MB", "work_mem": "64MB",
                           "maintenance_work_mem": "1024MB", "max_parallel_workers_per_gather": "4",
                           "max_parallel_maintenance_workers": "4", "max_parallel_workers": "8",
                           "random_page_cost": "1.1", "max_wal_size": "4096MB"},
}


@pytest.mark.parametrize("machine", list(HAND_SIZED), ids=lambda m: f"{m.memory_bytes // MB}MB-{m.cpus}cpu")
def test_sizing_follows_memory_and_cores(machine: Machine) -> None:
    settings = server_sizing.sized(machine)
    assert {item.name: item.value for item in settings} == HAND_SIZED[machine]
    assert all(item.why and not item.overridden for item in settings)


def test_an_override_replaces_only_its_setting_and_is_marked() -> None:
    settings = {item.name: item for item in server_sizing.sized(Machine(8 * GB, 2), {"work_mem": "32MB"})}
    assert settings["work_mem"].value == "32MB" and settings["work_mem"].overridden
    assert settings["shared_buffers"].value == "2048MB" and not settings["shared_buffers"].overridden


def test_shared_buffers_as_big_as_the_machine_is_refused_before_a_start() -> None:
    with pytest.raises(ConfigError, match=r"shared_buffers=8GB is not below this machine's memory \(8192 MB\)"):
        server_sizing.sized(Machine(8 * GB, 2), {"shared_buffers": "8GB"})


def test_the_include_file_says_each_setting_and_why() -> None:
    text = server_sizing.conf_text(server_sizing.sized(Machine(8 * GB, 2), {"work_mem": "32MB"}))
    assert "shared_buffers = '2048MB'" in text and "work_mem = '32MB'" in text
    assert "# override (INCA_PG_SETTINGS)\nwork_mem = '32MB'" in text
    assert "# 25 % of memory" in text


@pytest.mark.parametrize(("wanted", "running", "same"), [
    ("1024MB", "1GB", True), ("4096MB", "4GB", True), ("45MB", "45MB", True), ("6026MB", "128MB", False),
    ("1.1", "1.1", True), ("1.1", "4", False), ("1", "2", False)])
def test_running_values_compare_by_amount(wanted: str, running: str, same: bool) -> None:
    name = {"1.1": "random_page_cost", "1": "max_parallel_workers"}.get(wanted, "shared_buffers")
    assert server_sizing.same_value(name, wanted, running) is same


# --- INCA_PG_SETTINGS ---------------------------------------------------------------------------------

def test_overrides_are_read_as_pairs_and_normalised(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INCA_PG_SETTINGS", " shared_buffers = 2 GB , work_mem=32MB,random_page_cost=1.50 ,")
    assert config.settings().pg_settings == {"shared_buffers": "2GB", "work_mem": "32MB", "random_page_cost": "1.5"}
    monkeypatch.setenv("INCA_PG_SETTINGS", "")
    assert config.settings().pg_settings is None


@pytest.mark.parametrize(("value", "why"), [
    ("shared_buffers=2 gigs", r"shared_buffers: '2 gigs' is not a size like 512MB or 2GB"),
    ("shared_buffer=2GB", r"'shared_buffer' is not a sized setting; known: shared_buffers, "),
    ("shared_buffers", r"'shared_buffers' is not name=value"),
    ("work_mem=32mb", r"work_mem: '32mb' is not a size"),  # PostgreSQL's units are case-sensitive
    ("max_wal_size=1MB", r"max_wal_size: '1MB' is below PostgreSQL's minimum of 32768kB"),
    ("random_page_cost=0", r"random_page_cost: '0' is not a cost between 0 and 100"),
    ("max_parallel_workers_per_gather=-1", r"max_parallel_workers_per_gather: '-1' is not a whole number"),
])
def test_an_invalid_override_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, value: str, why: str) -> None:
    monkeypatch.setenv("INCA_PG_SETTINGS", value)
    with pytest.raises(ConfigError, match=why) as refused:
        config.settings()
    line = str(refused.value)
    assert line.startswith("INCA_PG_SETTINGS=") and "\n" not in line
    assert line.endswith("set it to e.g. shared_buffers=2GB,work_mem=32MB")


# --- real servers, each in its own folder and processes ----------------------------------------------

#: start (or join) the embedded server in argv[1] through core.embedded, print what it runs with, and
#: with --hold keep it until stdin closes
_START = """
import json, sys, warnings
from pathlib import Path
warnings.simplefilter("ignore")
import psycopg
from core import embedded, server_sizing
server = embedded.start(Path(sys.argv[1]))
with psycopg.connect(f"host={server.socket_dir} user=postgres dbname=postgres") as conn:
    shown = {name: conn.execute("SELECT current_setting(%s)", (name,)).fetchone()[0] for name in server_sizing.CHECKS}
print(json.dumps(shown), flush=True)
if "--hold" in sys.argv:
    sys.stdin.read()
"""


def _env(folder: Path, overrides: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "INCA_ADMIN_URL", "INCA_PG_SETTINGS")}
    env.update(PYTHONPATH=str(PROJECT), INCA_DATA_DIR=str(folder))
    if overrides is not None:
        env["INCA_PG_SETTINGS"] = overrides
    return env


def _start(folder: Path, overrides: str | None) -> dict[str, str]:
    done = subprocess.run([sys.executable, "-c", _START, str(folder / "pgdata")], env=_env(folder, overrides),
                          capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.splitlines()[-1]))


@pytest.fixture
def server_folder() -> Iterator[Path]:
    # project-local and short (the package opens every parent folder; a socket path has ~107 characters)
    folder = PROJECT / ".inca-test" / f"sizing-{uuid.uuid4().hex[:8]}"
    folder.mkdir(parents=True)
    yield folder
    pgdata = folder / "pgdata"
    if (pgdata / "postmaster.pid").exists():  # a failed test left it running: stop it as its own user
        from core import embedded

        user = ["runuser", "-u", "pgserver", "--"] if os.geteuid() == 0 else []
        subprocess.run([*user, str(embedded.bin_dir() / "pg_ctl"), "stop", "-D", str(pgdata), "-m", "fast", "-w"],
                       capture_output=True, timeout=60)
    shutil.rmtree(folder, ignore_errors=True)


def test_a_new_server_starts_with_the_overrides(server_folder: Path) -> None:
    shown = _start(server_folder, "shared_buffers=192MB,work_mem=24MB,random_page_cost=1.5")
    assert shown["shared_buffers"] == "192MB" and shown["work_mem"] == "24MB" and shown["random_page_cost"] == "1.5"
    conf = (server_folder / "pgdata" / "inca-sizing.conf").read_text(encoding="utf-8")
    assert "shared_buffers = '192MB'" in conf
    # the last process left: the server stopped, and the next start takes the new overrides
    assert not (server_folder / "pgdata" / "postmaster.pid").exists()
    assert _start(server_folder, "shared_buffers=160MB")["shared_buffers"] == "160MB"


def test_a_running_server_is_never_restarted_and_status_says_what_waits(server_folder: Path) -> None:
    holder = subprocess.Popen([sys.executable, "-c", _START, str(server_folder / "pgdata"), "--hold"],
                              env=_env(server_folder, "shared_buffers=192MB"), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=PROJECT)
    try:
        assert holder.stdout is not None
        assert json.loads(holder.stdout.readline())["shared_buffers"] == "192MB"
        # another process wanting other settings joins the running server as it is
        assert _start(server_folder, "shared_buffers=160MB")["shared_buffers"] == "192MB"
        assert "shared_buffers = '192MB'" in (server_folder / "pgdata" / "inca-sizing.conf").read_text()
        status = subprocess.run([sys.executable, "-m", "core", "status", "--json"], capture_output=True, text=True,
                                env=_env(server_folder, "shared_buffers=160MB"), timeout=120, cwd=PROJECT)
        report = json.loads(status.stdout)
        assert report["database"]["server_settings"]["shared_buffers"] == "192MB"
        assert report["database"]["server_settings_next_start"] == {"shared_buffers": "160MB"}
        assert any("shared_buffers 192MB (next start: 160MB)" in problem for problem in report["problems"])
    finally:
        holder.communicate(timeout=60)  # closes stdin: the holder exits, the last handle stops the server
    assert holder.returncode == 0
    assert _start(server_folder, "shared_buffers=160MB")["shared_buffers"] == "160MB"


def test_an_invalid_override_stops_the_cli_in_one_line_before_any_start(server_folder: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "core", "status"], capture_output=True, text=True, timeout=120,
                          env=_env(server_folder, "shared_buffers=lots"), cwd=PROJECT)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "error: INCA_PG_SETTINGS='shared_buffers=lots' is not valid (shared_buffers: 'lots' is not a size like "
        "512MB or 2GB (units kB, MB, GB, TB)); set it to e.g. shared_buffers=2GB,work_mem=32MB"]
    assert not (server_folder / "pgdata").exists()
