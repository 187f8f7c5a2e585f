"""비교: amounts side by side, exactly as printed (the default page)."""

import sys
from pathlib import Path

# Opened first (an operator's bookmark to /status on a fresh server), this page may run before
# app.py put the project root on sys.path: make `dashboard` and `core` importable from here too.
ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from dashboard.lib import compare_view, guard  # noqa: E402

guard.run_page(compare_view.render)
