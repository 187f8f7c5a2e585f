"""`python -m core …`: see core/cli.py."""

from core.ops.cli import main

raise SystemExit(main())
