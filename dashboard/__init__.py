"""The Streamlit dashboard: `streamlit run dashboard/app.py` (pages in pages/, logic in lib/)."""
