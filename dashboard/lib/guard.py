"""Every page runs inside `run_page`: the first-start load, and one clear message for any IncaError.

A user-caused failure (database down, wrong password, bad setting, missing data) never shows a
traceback: the page shows what is wrong, the one-line reason from core, what to do, and a retry
button. Caches are cleared on every error so the retry (or the next rerun after a database
restart) reads fresh data; core.db pings a pooled connection that sat idle or that the server hung up on.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core import config, ops
from core.errors import AuditFailed, ConfigError, DatabaseUnavailable, DatasetError, IncaError, SchemaMissing
from dashboard.lib import data
from dashboard.lib.text import md

LOAD_COMMAND = "INCA_ADMIN_URL=postgresql://OWNER:PASSWORD@HOST:5432/DBNAME python -m core load"

# (what happened, what to do) per error class; the reason line comes from str(error).
_MESSAGES: tuple[tuple[type[IncaError], str, str], ...] = (
    (DatabaseUnavailable, "데이터베이스에 연결할 수 없습니다.",
     "데이터베이스 서버가 실행 중인지, DATABASE_URL의 호스트·포트·사용자·비밀번호가 맞는지 확인한 뒤 다시 시도하세요."),
    (ConfigError, "설정 값이 올바르지 않습니다.",
     "환경 변수를 고친 뒤 대시보드를 다시 시작하세요 (docs/settings.md 참고)."),
    (SchemaMissing, "데이터베이스에 inca 스키마가 없습니다.",
     f"운영자가 소유자 연결로 한 번 적재하세요: `{LOAD_COMMAND}`"),
    (AuditFailed, "데이터 적재의 감사가 실패하여 아무것도 적재하지 않았습니다.",
     "데이터셋(INCA_DATASET_DIR)을 확인하세요. 데이터베이스는 적재 전 상태 그대로입니다."),
    (DatasetError, "데이터셋 파일에 문제가 있어 적재하지 않았습니다.",
     "데이터셋(INCA_DATASET_DIR)을 확인하세요. 데이터베이스는 적재 전 상태 그대로입니다."),
)


def describe(error: IncaError) -> tuple[str, str]:
    for kind, title, todo in _MESSAGES:
        if isinstance(error, kind):
            return title, todo
    return "요청을 처리할 수 없습니다.", "잠시 뒤 다시 시도하고, 계속되면 운영자에게 상태 페이지를 확인하도록 요청하세요."


def retry_button(key: str = "retry") -> None:
    st.button("다시 시도", key=key, on_click=data.clear_caches, type="primary")


def show_error(error: IncaError) -> None:
    title, todo = describe(error)
    st.error(f"**{title}**\n\n원인: {md(error)}\n\n{todo}", icon=":material/error:")
    retry_button()


@st.cache_resource(show_spinner=False)
def _ready_databases() -> set[str]:
    """Databases known to be loaded: the probe runs once per database and process, not per rerun."""
    return set()


def _first_start_load() -> None:
    """Embedded mode only: the one audited load, with visible progress (a few seconds)."""
    with st.status("처음 시작: 내장 데이터베이스에 데이터셋을 적재하고 감사하는 중입니다…", expanded=True) as box:
        bar = st.progress(0.0, text="준비 중")
        finished: set[str] = set()

        def progress(table: str, written: int, total: int) -> None:
            if written == total:
                finished.add(table)
            bar.progress(min(1.0, len(finished) / len(ops.TABLE_ORDER)), text=f"{table}: {written:,} / {total:,}행")

        try:
            result = ops.load(progress=progress)
        except IncaError:
            box.update(label="첫 적재가 실패했습니다. 아무것도 적재하지 않았습니다.", state="error")
            raise
        label = "적재 완료: 감사 PASS, 잠금 기록" if result.changed else "이미 적재되어 있습니다"
        box.update(label=label, state="complete", expanded=False)


def _show_how_to_load() -> None:
    st.warning("**데이터베이스에 아직 데이터가 적재되지 않았습니다.**\n\n"
               "대시보드는 읽기 전용 연결만 쓰므로 설정된 데이터베이스(DATABASE_URL)에는 적재하지 않습니다. "
               "운영자가 소유자 연결로 한 번 적재한 뒤 '다시 시도'를 누르세요.", icon=":material/info:")
    st.code(LOAD_COMMAND, language="bash")
    retry_button("retry_load")


def ensure_ready(*, block: bool = True) -> bool:
    """True when the data is there. Embedded: load it on first start. Configured: explain, then stop if `block`."""
    config.settings()  # a malformed setting is reported here, on every page
    key = data.db_key()
    if key in _ready_databases():
        return True
    connections = data.connections(key)
    if not data.is_loaded():
        if not connections.embedded:
            _show_how_to_load()
            if block:
                st.stop()
            return False
        _first_start_load()
        data.clear_caches()
    _ready_databases().add(key)
    return True


def run_page(render: Callable[[], None], *, require_data: bool = True) -> None:
    """Run a page body; `require_data=False` pages (status) still render when nothing is loaded."""
    try:
        try:
            ensure_ready(block=require_data)
        except IncaError:
            if require_data:
                raise
            # Pages without data needs (status) report the problem themselves, in more detail.
        render()
    except IncaError as error:
        data.clear_caches()
        _ready_databases().clear()
        show_error(error)
