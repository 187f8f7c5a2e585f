"""Putting data strings into Streamlit text verbatim."""

from __future__ import annotations

import re

# Every ASCII punctuation mark may be backslash-escaped in CommonMark; escaping them all keeps
# names such as "let:smile" or "***" (a masked password) from turning into emoji, emphasis or LaTeX.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>()#+\-.!|~$:=^&\"'%/;?@,])")


def md(value: object) -> str:
    """`value` as literal text inside st.markdown / st.error / st.caption."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", str(value))

