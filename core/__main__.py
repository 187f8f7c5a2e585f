"""`python -m core …`: see core/ops/cli.py."""

import sys

from core.errors import IncaError
from core.ops.cli import main

try:
    code = main()
except IncaError as error:  # raised before main's own handler: building the parser reads settings (help defaults)
    print(f"error: {error}", file=sys.stderr)
    code = error.exit_code
raise SystemExit(code)
