"""The operations side: what writes or administers the store (the read library is `core` itself).

- `dataset`: reads `data/dataset/` into rows ready to COPY;
- `loader`: the audited one-time load (`load`, and `ensure_loaded` for a first start);
- `migrate`: applies the schema files;
- `backup`: dump, verify, restore, prune (one module per job);
- `cli`: `python -m core …`.

Nothing under `core` outside this package imports it (import-linter contract in pyproject.toml).
The dashboard and notebooks use only what is exported here: `ensure_loaded`, `load`, `TABLE_ORDER`.
"""

from __future__ import annotations

from core.ops.dataset import TABLE_ORDER
from core.ops.loader import LoadResult, ensure_loaded, load

__all__ = ["TABLE_ORDER", "LoadResult", "ensure_loaded", "load"]
