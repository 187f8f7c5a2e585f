"""The status page (operators): the lock as one state, row counts, database and backup health.

Built from core.collect(), which never raises for a user-caused failure: a database that is
down is a state shown here, with what to do, not an error page.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from core.data_quality import MARKER, NOTICE
from core.errors import IncaError
from core.status import BackupSummary, StatusReport, backup_frame, backup_health, collect, replication_line, settings_line
from dashboard.lib import data, guard, table
from dashboard.lib.text import md

LOCK_WORDS = {"INTACT": "잠긴 모든 테이블의 현재 내용이 감사된 적재가 기록한 다이제스트·행 수와 일치합니다.",
              "BROKEN": "잠긴 테이블의 현재 내용이 감사된 적재의 기록과 다릅니다. 비교 페이지의 금액을 신뢰할 수 없습니다.",
              "UNLOADED": "감사된 적재 기록이 없습니다.",
              "UNPROVEN": "대기 서버의 복제가 마지막 증명 이후 진행되어, 현재 내용은 아직 다시 증명되지 않았습니다.",
              "UNKNOWN": "잠금 상태를 읽을 수 없습니다."}
COMPLETENESS = {"confirmed": "금액 기재", "unconfirmed": "금액 미기재", "unmatched": "표준 코드 미연결"}
COMPLETENESS_COLORS = ["#4b6584", "#a5b1c2", "#d1a054"]


def _yes_no(value: Any) -> str:
    return "예" if value is True else "아니요" if value is False else "—"


def down_section(report: StatusReport) -> None:
    st.html(table.badge_html("DOWN", "연결 안 됨"))
    reasons = "\n".join(f"- {md(problem)}" for problem in report.problems) or "- (원인 미상)"
    st.error("**데이터베이스에 연결할 수 없습니다.**\n\n" + reasons + "\n\n"
             "확인할 것: 데이터베이스 서버가 실행 중인지, DATABASE_URL(호스트·포트·데이터베이스 이름·사용자·비밀번호)이 "
             "맞는지. 터미널에서 `python -m core status`로 같은 점검을 할 수 있습니다.", icon=":material/error:")
    if report.database.url:
        st.caption(f"연결 대상: {md(report.database.url)}")
    guard.retry_button("retry_status")


def lock_section(report: StatusReport) -> None:
    lock = report.lock
    state = report.lock_state
    st.subheader("잠금")
    st.html(table.badge_html(state if state in LOCK_WORDS else "UNKNOWN", state))
    st.markdown(md(LOCK_WORDS.get(state, LOCK_WORDS["UNKNOWN"])))
    if state == "BROKEN":
        st.error(f"**잠금 BROKEN**: {md(lock.reason)}\n\n데이터를 바꾼 경로를 조사하고, 검증된 백업에서 복원하세요 "
                 "(docs/operations.md).", icon=":material/lock:")
    # original_audit is the dataset's own record of the first audit (a JSON object from the load).
    original = lock.original_audit or {}
    st.html(table.key_values_html([
        ("감사 상태", lock.audit_status), ("감사 이름", lock.audit_name),
        ("감사 실행 ID", lock.audit_run_id), ("동결 태그", lock.freeze_tag),
        ("커밋", lock.git_commit), ("적재 시각", lock.loaded_at),
        ("기록된 지문", lock.recorded_fingerprint), ("현재 지문", lock.live_fingerprint),
        ("지문 확인 시각", lock.verified_at), ("확인 소요 (초)", lock.verify_seconds),
        ("증명 기준 (복제 LSN)", f"proof as of replay LSN {lock.proof_replay_lsn}" if lock.proof_replay_lsn else None),
        ("증명 경로", lock.proof),
        ("판정 근거", lock.reason),
        ("잠금 범위", f"{lock.scope} · {len(lock.covers)}개 테이블·뷰의 모든 행과 열: {', '.join(lock.covers)}"
         if lock.scope else None),
        ("아직 기록되지 않음", ", ".join(lock.not_covered) or None),
        ("기록된 잠금 다이제스트", lock.recorded_lock_digest), ("현재 잠금 다이제스트", lock.live_lock_digest),
        ("증명 방식", lock.proof),
        ("불일치", "; ".join(lock.mismatches) or None),
        ("원본 감사", f"{original.get('audit_name')} · {original.get('status')} · {original.get('rows_audited')}행 · "
                   f"값 불일치 {original.get('value_mismatches')} · 유형 불일치 {original.get('type_mismatches')}"
         if original else None),
    ]))


def counts_section(report: StatusReport) -> None:
    st.subheader("테이블 행 수")
    if not report.counts:
        st.caption("행 수를 읽지 못했습니다.")
        return
    frame = pd.DataFrame([row.to_dict() for row in report.counts]).rename(
        columns={"table": "테이블", "live": "현재", "expected": "기대", "matches": "일치"})
    frame["일치"] = frame["일치"].map({True: "✓", False: "✗ 불일치"})
    frame["기대"] = frame["기대"].map(lambda value: "—" if value is None or pd.isna(value) else str(int(value)))
    st.table(frame, hide_index=True, width="content")
    mismatched = [row.table for row in report.counts if not row.matches]
    if mismatched:
        st.warning("기대와 다른 행 수: " + md(", ".join(mismatched)))


def database_section(report: StatusReport) -> None:
    database = report.database
    st.subheader("데이터베이스")
    st.html(table.key_values_html([
        ("연결", "예" if report.reachable else "아니요"), ("연결 대상", database.url),
        ("내장 PostgreSQL", _yes_no(database.embedded)), ("PostgreSQL", database.server_version),
        ("pgvector", database.pgvector_version),
        ("스키마 버전", f"{database.schema_version} / {database.schema_latest}"),
        ("서버 역할", {"primary": "주 서버 (primary)", "standby": "대기 서버 (standby)"}.get(database.role or "", "—")),
        ("복제 상태", replication_line(database) if database.role == "standby" else None),
        ("복제 지연 (초)", database.replay_lag_seconds),
        ("읽기 역할", database.reader_role),
        ("읽기 전용 트랜잭션", _yes_no(database.read_only_transaction)),
        ("SELECT 전용 역할", _yes_no(database.reader_select_only)),
        # what the server runs with (the embedded one sized for this machine, docs/operations.md)
        ("서버 설정", settings_line(database)),
    ]))
    for problem in report.problems:
        st.warning(md(problem))


def completeness_chart(frame: pd.DataFrame) -> alt.Chart:
    """Grouped bars per insurer in key order (never sorted by a count): a completeness view, not a ranking."""
    long = frame.melt(id_vars=["insurer_key", "insurer"], value_vars=list(COMPLETENESS), var_name="kind", value_name="n")
    long["구분"] = long["kind"].map(COMPLETENESS)
    order = list(frame.sort_values("insurer_key")["insurer"])
    return alt.Chart(long).mark_bar().encode(
        x=alt.X("insurer:N", sort=order, title=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("구분:N", sort=list(COMPLETENESS.values())),
        y=alt.Y("n:Q", title="담보 수"),
        color=alt.Color("구분:N", sort=list(COMPLETENESS.values()),
                        scale=alt.Scale(domain=list(COMPLETENESS.values()), range=COMPLETENESS_COLORS),
                        legend=alt.Legend(orient="top", title=None)),
        tooltip=[alt.Tooltip("insurer:N", title="보험사"), "구분:N", alt.Tooltip("n:Q", title="담보 수")],
    ).properties(height=280)


def completeness_section(key: str) -> None:
    st.subheader("데이터 완결성")
    st.caption("보험사별로 표준 담보 코드에 연결된 담보 중 가입설계서에 금액이 기재된 건수와 기재되지 않은 건수, "
               "그리고 표준 코드에 연결되지 않은 담보 건수입니다. 데이터가 얼마나 갖춰졌는지 보는 표시이며, "
               "보험사는 키 순서로 놓입니다.")
    st.vega_lite_chart(spec=completeness_spec(data.status_counts(key)), width="stretch")


@st.cache_data(ttl=data.TTL, show_spinner=False, max_entries=4)
def completeness_spec(frame: pd.DataFrame) -> dict[str, Any]:
    """The chart's Vega-Lite spec, built (and schema-validated) by altair once per counts rather than on
    every rerun (about half of the page's rerun time, issue 16); the spec st.altair_chart would send.
    Keyed by the counts themselves, so it is never older than data.status_counts()."""
    return completeness_chart(frame).to_dict()


def backups_section(report: StatusReport) -> None:
    st.subheader("백업")
    backups = report.backups
    if backups is None:  # the report stops early when the database is down; files still tell
        backups = BackupSummary.from_record(backup_health())
    state = backups.state
    st.html(table.badge_html(state if state in ("OK", "WARNING", "FAILING") else "UNKNOWN", state, small=True))
    st.caption(md(backups.reason))
    try:
        frame = backup_frame()
    except (IncaError, OSError) as error:
        st.warning(f"백업 목록을 읽지 못했습니다: {md(error)}")
        return
    if frame.empty:
        st.info("아직 백업이 없습니다. `python -m core backup`으로 만드세요.")
        return
    sizes = frame.assign(size_mb=frame["size_bytes"] / 1_000_000)
    chart = alt.Chart(sizes).mark_line(point=True).encode(
        x=alt.X("created_at:T", title="백업 시각"), y=alt.Y("size_mb:Q", title="크기 (MB)"),
        tooltip=["file", alt.Tooltip("created_at:T", title="시각"), alt.Tooltip("size_mb:Q", title="MB", format=".2f"),
                 "checksum", "verification"],
    ).properties(height=220)
    st.altair_chart(chart, width="stretch")
    listing = frame.sort_values("created_at", ascending=False).rename(columns={
        "file": "파일", "created_at": "시각", "size_bytes": "크기 (바이트)", "checksum": "체크섬", "verification": "복원 검증",
        "verified_at": "검증 시각"})
    st.dataframe(listing, hide_index=True)


def data_quality_section(report: StatusReport) -> None:
    """Evidence findings (issue 13) and the locked dataset's manifest digest. A finding is about the
    extraction, not the lock: the values stay as locked; the snippets are 원문, collapsed."""
    quality = report.data_quality
    if quality is None:
        return
    st.subheader("데이터 품질")
    st.html(table.key_values_html([
        ("데이터셋 매니페스트 digest", quality.dataset_sha256),
        ("원문 확인 필요 금액", quality.findings),
    ]))
    if not quality.items:
        return
    st.markdown(md(f"{MARKER}: {NOTICE}"))
    for item in quality.items:
        st.html(table.render("findings.html.j2", code=item["coverage_code"] or "", insurer=item["insurer"],
                             code_label=item["coverage_code"] or "표준 코드 없음", raw_name=item["coverage_name_raw"],
                             value_text=item["value_text"], marker=MARKER))
        with st.expander(f"원문 · {item['snippet_source']} ({', '.join(item['kinds'])})", expanded=False):
            st.html(table.render("snippet.html.j2", snippet=item["snippet"]))


def render() -> None:
    st.title("상태")
    st.html(table.STYLE)
    fresh = st.button("지금 다시 검증", help="잠금 지문을 지금 다시 계산합니다 (평소에는 감시 지표가 그대로일 때만 재사용)")
    report = collect(fresh=fresh)
    if not report.reachable:
        down_section(report)
        backups_section(report)
        return
    lock_section(report)
    left, right = st.columns([1, 1], gap="large")
    with left:
        counts_section(report)
    with right:
        database_section(report)
    if report.counts:  # only once the schema and data are there
        completeness_section(data.db_key())
    data_quality_section(report)
    backups_section(report)
