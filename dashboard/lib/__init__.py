"""Dashboard logic: data access with caching, readiness and errors, rendering, exports, URL state.

Page scripts in dashboard/pages/ only call `render()` of a view module here, so everything is
importable and testable without a browser.
"""
