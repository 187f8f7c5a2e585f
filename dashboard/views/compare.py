"""비교: amounts side by side, exactly as printed (the default page)."""

from dashboard.lib import compare_view, guard

guard.run_page(compare_view.render)
