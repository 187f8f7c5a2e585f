"""Documentation must keep up with the code it describes."""

from __future__ import annotations

import re
from pathlib import Path

from core.forbidden_language import RULES

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_every_forbidden_language_rule_is_documented() -> None:
    text = (DOCS / "forbidden-language.md").read_text(encoding="utf-8")
    missing = [r.id for r in RULES if not re.search(rf"(?<![A-Z_]){re.escape(r.id)}(?![A-Z_])", text)]
    assert missing == [], f"rule ids missing from docs/forbidden-language.md: {missing}"


def test_every_setting_is_documented() -> None:
    from core.config import SETTINGS

    text = (DOCS / "settings.md").read_text(encoding="utf-8")
    missing = [s.name for s in SETTINGS if f"`{s.name}`" not in text]
    assert missing == [], f"settings missing from docs/settings.md: {missing}"


def test_every_cli_command_is_documented() -> None:
    from core.ops.cli import build_parser

    _, handlers = build_parser()
    text = (DOCS.parent / "README.md").read_text(encoding="utf-8") + (DOCS / "settings.md").read_text(encoding="utf-8")
    missing = [name for name in handlers if f"python -m core {name}" not in text]
    assert missing == [], f"commands missing from README.md / docs/settings.md: {missing}"
