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


def _documented_settings(text: str) -> dict[str, str]:
    """name -> default column of the settings table in docs/settings.md."""
    rows = re.findall(r"^\| `([A-Z_]+)` \| ([^|]+) \|", text, flags=re.MULTILINE)
    return {name: default.strip() for name, default in rows}


def test_every_setting_is_documented_with_its_default_and_nothing_else() -> None:
    from core import config

    text = (DOCS / "settings.md").read_text(encoding="utf-8")
    documented = _documented_settings(text)
    fields = {str(f.alias): f for f in config.Settings.model_fields.values()}
    missing = sorted(set(fields) - set(documented))
    unknown = sorted(set(documented) - set(fields))
    assert missing == [] and unknown == [], f"docs/settings.md: missing {missing}, not settings {unknown}"
    for name, field in fields.items():
        want = "(unset)" if field.default is None else f"`{field.default}`"
        want = f"`{config.DERIVED_DEFAULTS[name]}`" if name in config.DERIVED_DEFAULTS else want
        assert documented[name] == want, f"{name}: documented default {documented[name]}, model says {want}"
        assert field.description, f"{name} has no description"
    # the table is the generated one, descriptions included
    assert config.settings_table() in text, "regenerate the table with core.config.settings_table()"


def test_no_setting_is_read_raw_from_the_environment() -> None:
    """Settings are read through core.config.settings() only (writing the environment is fine)."""
    root = DOCS.parent
    raw_read = re.compile(r"os\.getenv\(|os\.environ\.get\(|os\.environ\[[^]]+\](?!\s*=[^=])")
    offenders = []
    for folder in ("core", "api", "dashboard", "bench"):
        for path in (root / folder).rglob("*.py"):
            if path == root / "core" / "config.py":
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if raw_read.search(line):
                    offenders.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    assert offenders == [], "read settings through core.config.settings():\n" + "\n".join(offenders)


def test_every_cli_command_is_documented() -> None:
    from core.ops.cli import build_parser

    _, handlers = build_parser()
    text = (DOCS.parent / "README.md").read_text(encoding="utf-8") + (DOCS / "settings.md").read_text(encoding="utf-8")
    missing = [name for name in handlers if f"python -m core {name}" not in text]
    assert missing == [], f"commands missing from README.md / docs/settings.md: {missing}"
