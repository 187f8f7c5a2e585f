"""상태 (operators)."""

from dashboard.lib import guard, status_view

guard.run_page(status_view.render, require_data=False)
