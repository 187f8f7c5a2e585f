"""The compare page: pick products and coverages (in order), see amounts exactly as printed."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import streamlit as st

from core import LockState, catalog, config, status
from core.comparison import Comparison
from dashboard.lib import conditions_view, data, exports, params, search_box, table
from dashboard.lib.text import md

PRODUCTS_KEY, CODES_KEY, CATEGORIES_KEY = "sel_products", "sel_codes", "sel_categories"
INSURERS_KEY = "sel_insurers"  # the picker's insurer filter, at market scale only (issue 16)
STORED_KEY = "compare_selection"  # survives page switches (widget state does not)


def _add_category_codes(coverages: Sequence[catalog.Coverage]) -> None:
    chosen = st.session_state.get(CATEGORIES_KEY) or []
    current = list(st.session_state.get(CODES_KEY) or [])
    current += [c.code for c in coverages if c.category in chosen and c.code not in current]
    st.session_state[CODES_KEY] = current


def _add_code(code: str) -> None:
    """A search suggestion joins the rows (a callback: widget state may change only before the rerun)."""
    current = list(st.session_state.get(CODES_KEY) or [])
    if code not in current:
        st.session_state[CODES_KEY] = [*current, code]


def _init_widgets(products: Sequence[catalog.Product], coverages: Sequence[catalog.Coverage]) -> None:
    """On a session's first run (or back from another page): URL, then kept selection, then defaults."""
    if PRODUCTS_KEY in st.session_state and CODES_KEY in st.session_state:
        # Widget state outlives a change of database; a value that no longer exists would crash the widget.
        for key, known in ((PRODUCTS_KEY, {p.key for p in products}), (CODES_KEY, {c.code for c in coverages})):
            if any(value not in known for value in st.session_state[key]):
                st.session_state[key] = [value for value in st.session_state[key] if value in known]
        return
    parsed = params.parse(st.query_params.get_all, products, coverages)
    if parsed.rejected_products:
        # URL values are user input: escaped, so a crafted link or markup shows as plain text.
        st.warning(md(params.describe_rejected("상품", _shortened(parsed.rejected_products))), icon=":material/warning:")
    if parsed.rejected_codes:
        st.warning(md(params.describe_rejected("담보 코드", _shortened(parsed.rejected_codes))), icon=":material/warning:")
    if parsed.truncated:
        st.warning("URL에 값이 너무 많아 한도를 넘는 값은 제외했습니다.", icon=":material/warning:")
    start = params.initial(parsed, st.session_state.get(STORED_KEY), products, coverages)
    st.session_state[PRODUCTS_KEY] = list(start.products)
    st.session_state[CODES_KEY] = list(start.codes)


def _product_lines(products: Sequence[catalog.Product]) -> list[str]:
    lines = []
    for product in products:
        variants = f" · 변형: {' / '.join(v.name for v in product.variants)}" if product.variants else ""
        lines.append(f"{product.label} — {product.name}{variants}")
    return lines


def _product_options(products: Sequence[catalog.Product]) -> list[str]:
    """Every product while they fit in INCA_PICKER_MAX_OPTIONS; beyond, an insurer filter comes first and
    lists the products of the insurers chosen in it (as many insurers as fit), so a rerun never sends
    10,000 options at market scale. Chosen products always stay options (a URL's `?p=` keys too)."""
    limit = config.settings().picker_max_options
    if len(products) <= limit:
        return [product.key for product in products]
    by_insurer = data.products_by_insurer(data.db_key())
    names = {insurer: by_insurer[insurer][0].insurer_name for insurer in by_insurer}
    fit = max(1, limit // max(len(found) for found in by_insurer.values()))
    selected = list(st.session_state.get(PRODUCTS_KEY) or [])
    if INSURERS_KEY not in st.session_state:  # first run: the insurers of the chosen products
        by_key = {product.key: product for product in products}
        start = dict.fromkeys(by_key[key].insurer_key for key in selected if key in by_key)
        st.session_state[INSURERS_KEY] = list(start)[:fit]
    kept = st.session_state[INSURERS_KEY]
    if len(kept) > fit or any(insurer not in by_insurer for insurer in kept):  # another database since
        st.session_state[INSURERS_KEY] = [insurer for insurer in kept if insurer in by_insurer][:fit]
    insurers = st.multiselect(f"보험사 (상품 목록을 좁힙니다, {fit}곳까지)", list(by_insurer), key=INSURERS_KEY,
                              format_func=names.__getitem__, max_selections=fit, placeholder="보험사 선택")
    options = [product.key for insurer in insurers for product in by_insurer[insurer]]
    listed = set(options)
    options += [key for key in selected if key not in listed]  # chosen products stay chosen
    st.caption(f"상품 {len(products)}개 중 고른 보험사의 상품 {len(listed)}개를 목록에 보여 줍니다.")
    return options


def selection_widgets(products: Sequence[catalog.Product], coverages: Sequence[catalog.Coverage]) -> params.Selection:
    _init_widgets(products, coverages)
    by_key = {product.key: product for product in products}
    by_code = {coverage.code: coverage for coverage in coverages}
    left, right = st.columns([1, 1], gap="large")
    with left:
        chosen = st.multiselect("상품 (선택한 순서대로 열이 놓입니다)", _product_options(products), key=PRODUCTS_KEY,
                                format_func=lambda key: by_key[key].label, placeholder="상품 선택")
        if chosen:
            st.html(table.products_html(_product_lines([by_key[key] for key in chosen])))
    with right:
        present = [c for c in catalog.CATEGORY_ORDER if any(cov.category == c for cov in coverages)]
        categories = st.multiselect("분류로 좁히기", present, key=CATEGORIES_KEY, placeholder="전체 분류")
        selected = st.session_state.get(CODES_KEY) or []
        options = [c.code for c in coverages if not categories or c.category in categories]
        options += [code for code in selected if code not in options]  # chosen codes stay chosen
        codes = st.multiselect("담보 (코드나 이름을 입력해 검색, 선택한 순서대로 행이 놓입니다)", options, key=CODES_KEY,
                               format_func=lambda code: f"{code} · {by_code[code].name}", placeholder="담보 선택")
        st.button("이 분류의 담보 모두 추가", on_click=_add_category_codes, args=(coverages,), disabled=not categories)
        with st.expander("담보 검색 · 보험사 담보명으로 표준 코드 찾기"):
            search_box.render("compare_search", on_add=_add_code, chosen=frozenset(codes))
    selection = params.Selection(tuple(chosen), tuple(codes))
    st.session_state[STORED_KEY] = selection
    if not params.same(st.query_params, selection):
        st.query_params.from_dict(selection.to_params())
    return selection


#: how much of a rejected URL value the warning repeats (a 10 KB value must not make a 10 KB warning)
ECHO_LIMIT = 40


def _shortened(rejected: list[params.Rejected]) -> list[params.Rejected]:
    return [dataclasses.replace(item, value=shorten(item.value)) for item in rejected]


def shorten(value: str, limit: int = ECHO_LIMIT) -> str:
    return value if len(value) <= limit else value[:limit] + "…"


def live_lock() -> LockState:
    """The lock as it is now, never from a cached comparison: a database that went down raises
    DatabaseUnavailable here (the page then shows the error, not cached amounts labelled INTACT)."""
    return status.quick().lock


def lock_alert(cmp: Comparison, lock: LockState | None = None) -> None:
    audit = cmp.audit
    state, reason = (lock.state, lock.reason) if lock is not None else (audit.lock_state, audit.reason)
    if state == "INTACT":
        return
    st.error(f"**잠금 상태 {md(state)}: 아래 금액은 감사를 통과한 적재 내용과 다를 수 있습니다.**\n\n"
             f"원인: {md(reason)}\n\n운영자에게 알리고 상태 페이지에서 잠금 상태를 확인하세요.", icon=":material/lock:")


def comparison_section(cmp: Comparison) -> None:
    head, csv_col, xlsx_col = st.columns([6, 1, 1], vertical_alignment="bottom")
    head.subheader(f"비교표 · 상품 {len(cmp.products)}개 × 담보 {len(cmp.coverages)}개")
    stem = exports.file_stem(cmp)
    # Deferred: the files are built from this same comparison only when a button is clicked (the
    # workbook costs ~0.15 s, too much for every rerun); the workbook reads every snippet then (issue 16).
    csv_col.download_button("CSV", lambda: exports.csv_bytes(exports.with_evidence_check(cmp)), file_name=f"{stem}.csv",
                            mime=exports.CSV_MIME,
                            icon=":material/download:", key="download_csv", on_click="ignore",
                            help="보이는 표 그대로 (UTF-8 BOM, Excel에서 바로 열림)")
    xlsx_col.download_button("Excel", lambda: exports.xlsx_bytes(cmp), file_name=f"{stem}.xlsx", mime=exports.XLSX_MIME,
                             icon=":material/download:", key="download_xlsx", on_click="ignore",
                             help="비교표 시트(보이는 표 그대로), 상세 시트(셀마다 상태·원문), 감사 시트")
    st.html(table.legend_html())
    st.html(table.comparison_html(cmp))


#: session key: the codes whose evidence is open (closed evidence is neither read nor rendered)
OPEN_EVIDENCE_KEY = "evidence_open"


def _toggle_evidence(code: str) -> None:
    opened = set(st.session_state.get(OPEN_EVIDENCE_KEY) or ())
    st.session_state[OPEN_EVIDENCE_KEY] = opened ^ {code}


def _snippet_count(cmp: Comparison, code: str) -> int:
    return sum(instance.snippet_count or 0 for product in cmp.products
               for instance in cmp.cell(code, product.key).instances)


def explanations_section(cmp: Comparison, lock: str = "") -> None:
    """Sentences per coverage; its 원문 only when opened (issue 16): a button per coverage, so a closed
    coverage's snippets are neither fetched nor sent (an expander's body would run on every rerun)."""
    st.subheader("담보별 설명과 근거자료")
    st.caption("설명은 가입설계서 내용을 정해진 문장으로 옮긴 것입니다. 근거자료는 문서의 원문 그대로입니다.")
    sentences: dict[str, list[str]] = {}
    for explanation in cmp.explanations():
        sentences.setdefault(explanation.coverage_code, []).append(explanation.sentence)
    opened = st.session_state.get(OPEN_EVIDENCE_KEY) or set()
    keys = tuple(product.key for product in cmp.products)
    for coverage in cmp.coverages:
        st.html(table.explanations_html(coverage, sentences.get(coverage.code, [])))
        is_open = coverage.code in opened
        label = "근거자료 닫기" if is_open else f"근거자료 (원문) 보기 · {_snippet_count(cmp, coverage.code)}건"
        st.button(label, key=f"evidence_{coverage.code}", on_click=_toggle_evidence, args=(coverage.code,),
                  icon=":material/expand_less:" if is_open else ":material/expand_more:")
        if is_open:
            shown = cmp.with_evidence(coverage.code, data.evidence(data.db_key(), keys, coverage.code, lock))
            with st.container(border=True):
                st.html(table.evidence_html(shown, coverage))


#: session key: the products whose uncoded coverages are open (a closed list is not sent)
OPEN_UNMATCHED_KEY = "unmatched_open"


def _toggle_unmatched(product_key: str) -> None:
    opened = set(st.session_state.get(OPEN_UNMATCHED_KEY) or ())
    st.session_state[OPEN_UNMATCHED_KEY] = opened ^ {product_key}


def unmatched_section(cmp: Comparison) -> None:
    """Per product, its uncoded coverages when its button opens them: Streamlit sends an expander's body
    on every rerun, and ten products' lists were 250 KB per rerun at market scale (issue 16)."""
    st.subheader("표준 담보 코드에 연결되지 않은 담보")
    st.caption("선택한 상품의 가입설계서에 있으나 표준 담보 코드에 연결되지 않은 담보입니다. 표기는 원문 그대로입니다.")
    opened = st.session_state.get(OPEN_UNMATCHED_KEY) or set()
    for product in cmp.products:
        # the instances as read, in product order (no frame per rerun: a table per product is all it shows)
        found = cmp.unmatched.get(product.key, ())
        is_open = product.key in opened
        st.button(f"{product.label} · {len(found)}건", key=f"unmatched_{product.key}", on_click=_toggle_unmatched,
                  args=(product.key,), icon=":material/expand_less:" if is_open else ":material/expand_more:")
        if not is_open:
            continue
        with st.container(border=True):
            if not found:
                st.caption("이 상품의 가입설계서 담보는 모두 표준 코드에 연결되어 있습니다.")
                continue
            st.html(table.static_table_html(
                ["보험사 담보명", "금액 (가입설계서 표기)"],
                [[(instance.raw_name, None), (instance.display_text, instance.status)] for instance in found],
                css_class="inca-unmatched"))


def audit_footer(cmp: Comparison, lock: LockState | None = None) -> None:
    audit = cmp.audit
    state = lock.state if lock is not None else audit.lock_state
    verified = (lock.verified_at if lock is not None else audit.fingerprint_verified_at) or "—"
    st.divider()
    commit = (audit.git_commit or "—")[:12]
    st.caption(f"감사 이력 · 감사 상태 {md(audit.audit_status or '—')} · 동결 태그 {md(audit.freeze_tag or '—')} · "
               f"커밋 {md(commit)} · 잠금 {md(state)} · 지문 확인 {md(verified)}")


def render() -> None:
    st.title("보장금액 비교")
    st.html(table.STYLE)
    key = data.db_key()
    products, coverages = data.products(key), data.coverages(key)
    selection = selection_widgets(products, coverages)
    if not selection.products or not selection.codes:
        st.info("상품과 담보가 하나 이상 선택되면 비교표가 표시됩니다.")
        return
    lock = live_lock()  # before anything of the (possibly cached) comparison is shown
    token = data.lock_token(lock)
    cmp = data.compare(key, selection.products, selection.codes, token)
    lock_alert(cmp, lock)
    comparison_section(cmp)
    explanations_section(cmp, token)
    conditions_view.conditions_section(cmp, token)
    unmatched_section(cmp)
    audit_footer(cmp, lock)
