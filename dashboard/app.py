"""Entry point: `streamlit run dashboard/app.py`. Only the router; pages live in views/, logic in lib/.

The page scripts are deliberately not in a folder named `pages/`: Streamlit would serve such a folder
as its own multipage app, so a bookmark to /status opened first would run the page without this router
(no project root on sys.path, no page config, a second navigation). Every URL goes through here."""

import sys
from pathlib import Path

import streamlit as st

# Streamlit puts only this folder on sys.path; the project root makes `core` and `dashboard.lib`
# importable whether or not the project was pip-installed.
ROOT = str(Path(__file__).resolve().parent.parent)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

st.set_page_config(page_title="inca-rag-scope · 보장금액 비교", page_icon=":material/table_view:", layout="wide")
# Navigation on top: the comparison table gets the full width.
page = st.navigation([
    st.Page("views/compare.py", title="비교", icon=":material/table_view:", default=True),
    st.Page("views/catalog.py", title="담보 목록", icon=":material/list:", url_path="catalog"),
    st.Page("views/status.py", title="상태", icon=":material/monitor_heart:", url_path="status"),
], position="top")
page.run()
