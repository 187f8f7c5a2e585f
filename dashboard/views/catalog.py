"""담보 목록."""

from dashboard.lib import catalog_view, guard

guard.run_page(catalog_view.render)
