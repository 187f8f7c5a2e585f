"""The catalog page's view <-> the URL: `?q=유사암&cat=암 진단&ins=samsung,kb&page=2`.

So a view is shareable: search text, categories, insurer columns (keys, in the chosen order) and the
page number. Unknown or malformed values are dropped and named in one warning each (with the
closest known values, core.selection's rule), never fatal; the page then rewrites the URL in
canonical form. Pure: the page passes st.query_params.get_all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from core import selection
from core.errors import SelectionError
from dashboard.lib.params import split

QUERY, CATEGORIES, INSURERS, PAGE = "q", "cat", "ins", "page"
#: a page number beyond any catalog (checked by length first: a 10,000-digit number must not become an int)
MAX_PAGE = 100_000


@dataclass(frozen=True)
class View:
    query: str = ""
    categories: tuple[str, ...] = ()
    #: insurer keys, in the order the columns are shown
    insurers: tuple[str, ...] = ()
    page: int = 1

    def to_params(self) -> dict[str, str]:
        """The URL form; defaults are left out (a bare /catalog is page 1 of everything)."""
        found = {QUERY: self.query, CATEGORIES: ",".join(self.categories), INSURERS: ",".join(self.insurers),
                 PAGE: "" if self.page == 1 else str(self.page)}
        return {name: value for name, value in found.items() if value}


@dataclass(frozen=True)
class Parsed:
    """What the URL asked for (None: absent), and a sentence per value it could not use."""

    query: str | None
    categories: tuple[str, ...] | None
    insurers: tuple[str, ...] | None
    page: int | None
    problems: list[str] = field(default_factory=list)


def _unknown(kind: str, value: str, choices: Sequence[str]) -> str:
    near = selection.closest(value, choices)
    hint = f" (비슷한 값: {', '.join(near)})" if near else ""
    # the value first, then the sentence: no particle has to follow a word the user typed
    return f"URL에서 알 수 없는 {kind} 값을 제외했습니다: '{selection.echo(value)}'{hint}"


def _cleaned(values: list[str], kind: str, problems: list[str]) -> list[str]:
    """Values that can be names at all (core.selection's hygiene); the others named, escaped and cut."""
    found = []
    for value in split(values):
        try:
            found.append(selection.clean(value, kind))
        except SelectionError as error:
            problems.append(f"URL에서 쓸 수 없는 {kind} 값을 제외했습니다: '{error.bad_value or selection.echo(value)}' "
                            f"({error})")
    return [value for value in found if value]


def parse(get_all: Callable[[str], list[str]], categories: Sequence[str],
          insurers: Sequence[tuple[str, str]], max_insurers: int) -> Parsed:
    """`categories`: the ones present; `insurers`: (key, name) in key order; names are accepted for keys."""
    problems: list[str] = []
    query: str | None = None
    if get_all(QUERY):
        try:
            query = selection.clean(get_all(QUERY)[-1], "검색어")
        except SelectionError as error:
            problems.append(f"URL의 검색어를 쓸 수 없어 비웠습니다: {error}")
            query = ""
    chosen_categories: list[str] = []
    for value in _cleaned(get_all(CATEGORIES), "분류", problems):
        if value in categories:
            if value not in chosen_categories:
                chosen_categories.append(value)
        else:
            problems.append(_unknown("분류", value, categories))
    by_name = {name: key for key, name in insurers}
    keys = [key for key, _ in insurers]
    chosen_insurers: list[str] = []
    for value in _cleaned(get_all(INSURERS), "보험사", problems):
        key = value if value in keys else by_name.get(value)
        if key is None:
            problems.append(_unknown("보험사", value, keys + list(by_name)))
        elif key not in chosen_insurers:
            chosen_insurers.append(key)
    if len(chosen_insurers) > max_insurers:
        problems.append(f"URL의 보험사 {len(chosen_insurers)}곳 중 앞의 {max_insurers}곳만 열로 보여 줍니다 "
                        f"(INCA_CATALOG_MAX_INSURERS).")
        chosen_insurers = chosen_insurers[:max_insurers]
    page: int | None = None
    if get_all(PAGE):
        raw = get_all(PAGE)[-1].strip()
        if raw.isascii() and raw.isdigit() and len(raw) <= 6 and 1 <= int(raw) <= MAX_PAGE:
            page = int(raw)
        else:
            shown = selection.echo(raw.encode("unicode_escape").decode("ascii"))  # control characters escaped
            problems.append(f"URL의 페이지 값이 1 이상의 페이지 번호가 아니어서 1페이지를 보여 줍니다: '{shown}'")
            page = 1
    # nothing usable in a parameter: as if it were absent (the session's view or the defaults)
    return Parsed(query, tuple(chosen_categories) or None, tuple(chosen_insurers) or None, page, problems)


def initial(parsed: Parsed, stored: View | None, default_insurers: Sequence[str]) -> View:
    """URL first, then the view kept from earlier in this session, then the defaults (page 1 of every
    coverage, the first insurers in key order)."""
    base = stored or View(insurers=tuple(default_insurers))
    return View(parsed.query if parsed.query is not None else base.query,
                parsed.categories if parsed.categories is not None else base.categories,
                parsed.insurers if parsed.insurers is not None else base.insurers,
                parsed.page if parsed.page is not None else base.page)


def same(get_all: Callable[[str], list[str]], view: View) -> bool:
    """Whether the URL already says `view` (avoids rewriting it on every rerun)."""
    current = {name: ",".join(get_all(name)) for name in (QUERY, CATEGORIES, INSURERS, PAGE) if get_all(name)}
    return current == view.to_params()
