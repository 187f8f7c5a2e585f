"""Process hygiene with real processes: SIGTERM leaves no embedded server behind; odd folder names work."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.test_api import launch, stop


def _postmaster(pgdata: Path) -> int | None:
    pid_file = pgdata / "postmaster.pid"
    try:
        return int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return None


@pytest.fixture
def odd_data_dir() -> Path:
    # Short on purpose: a socket path over ~107 characters moves to /tmp/<hash>, hiding the encoding bug.
    folder = Path(tempfile.mkdtemp(prefix="inca+%#", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_sigterm_stops_the_embedded_server_and_an_odd_folder_name_works(odd_data_dir: Path, tmp_path: Path) -> None:
    api = launch({"INCA_DATA_DIR": str(odd_data_dir)}, tmp_path / "uvicorn.log")
    pgdata = odd_data_dir / "pgdata"
    try:
        deadline, health = time.monotonic() + 90, None
        with httpx.Client(base_url=api.base, timeout=60) as http:
            while time.monotonic() < deadline and health is None:
                try:
                    health = http.get("/health")
                except httpx.TransportError:
                    assert api.process.poll() is None, api.output()
                    time.sleep(0.3)
            assert health is not None, api.output()
            # reachable through a socket path holding '+', '%' and '#' (nothing loaded yet: 503)
            assert health.status_code == 503 and health.json()["error"] == "database not loaded", health.text
            head = http.head("/health")
            assert head.status_code == 503 and head.content == b""
        postmaster = _postmaster(pgdata)
        assert postmaster is not None and psutil.pid_exists(postmaster)
        api.process.send_signal(signal.SIGTERM)  # what systemd and Docker send
        api.process.wait(timeout=30)
    finally:
        stop(api)
    # the last user stopped the server: no postmaster, and no dead PID left in the handle file
    for _ in range(50):
        if not psutil.pid_exists(postmaster):
            break
        time.sleep(0.1)
    assert not psutil.pid_exists(postmaster), api.output()
    assert _postmaster(pgdata) is None
    handles = json.loads((pgdata / ".handle_pids.json").read_text() or "[]")
    assert api.process.pid not in handles
