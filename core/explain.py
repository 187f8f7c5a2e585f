"""Fixed explanation sentences, one per amount status, checked for forbidden language.

A sentence only restates what the proposal (가입설계서) prints: the status is never
upgraded or guessed, and `value_text` is inserted exactly as given. Korean particles
(은/는, 이/가, 을/를, 으로/로) follow the final sound of the word before them, read aloud.

A bracketed qualifier supplements the word before it, so the particle follows that word, not
the bracket's content (표준 언어 예절 / 한글 맞춤법 guidance: `커피(coffee)는`,
`진단비(대동맥판막)는`). Qualifier brackets: (), [], {}, 〔〕, 【】, 〖〗, 〘〙, 〚〛 and their
full-width forms; any number of trailing groups, nested, or one left unclosed by a truncated
name (`암진단비(유사암`) are skipped. A name that is only brackets (`(1년50%)`) is read by
the content of its last group. Quotation and title marks (「」, 『』, 〈〉, 《》, quotes) wrap
the word itself, so the last character inside them is read (`「암진단비」는`).
"""

from __future__ import annotations

from core.amounts import is_placeholder_amount
from core.errors import InvalidAmount
from core.forbidden_language import validate_text

__all__ = ["QUALIFIER_BRACKETS", "STATUSES", "TEMPLATES", "base_word", "explain", "has_final_consonant", "particle"]

TEMPLATES: dict[str, str] = {
    "CONFIRMED": "{insurer}의 {coverage}{은/는} 가입설계서에 {value}{으로/로} 명시되어 있습니다.",
    "UNCONFIRMED": "{insurer}의 {coverage}{은/는} 가입설계서에 금액이 명시되어 있지 않습니다.",
    "NOT_AVAILABLE": "{insurer}에는 해당 담보가 존재하지 않습니다.",
}
STATUSES: tuple[str, ...] = tuple(TEMPLATES)

_HANGUL_FIRST, _HANGUL_LAST = 0xAC00, 0xD7A3
_RIEUL = 8  # jongseong index of ㄹ
#: qualifier brackets: the particle follows the word before them
QUALIFIER_BRACKETS: dict[str, str] = {
    ")": "(", "]": "[", "}": "{", "）": "（", "］": "［", "｝": "｛",
    "〕": "〔", "】": "【", "〗": "〖", "〙": "〘", "〛": "〚",
}
_OPENERS = frozenset(QUALIFIER_BRACKETS.values())
# skipped when looking for the last sound: quotation/title marks, punctuation, trailing spaces
_TRAILING_SKIP = frozenset(">〉》」』\"'’”`.,;:!? \t\r\n\u3000")

# Final sound kinds: "none" (open syllable), "rieul" (ㄹ), "other" (any other batchim).
_DIGIT_SOUND = {  # 영 일 이 삼 사 오 육 칠 팔 구
    "0": "other",
    "1": "rieul",
    "2": "none",
    "3": "other",
    "4": "none",
    "5": "none",
    "6": "other",
    "7": "rieul",
    "8": "rieul",
    "9": "none",
}
_ROMAN_SOUND = {  # Ⅰ 일, Ⅱ 이, Ⅲ 삼, Ⅳ 사, Ⅴ 오, Ⅵ 육, Ⅶ 칠, Ⅷ 팔, Ⅸ 구, Ⅹ 십
    "Ⅰ": "rieul",
    "Ⅱ": "none",
    "Ⅲ": "other",
    "Ⅳ": "none",
    "Ⅴ": "none",
    "Ⅵ": "other",
    "Ⅶ": "rieul",
    "Ⅷ": "rieul",
    "Ⅸ": "none",
    "Ⅹ": "other",
}
_ROMAN_SOUND |= {chr(ord(k) + 0x10): v for k, v in _ROMAN_SOUND.items()}  # ⅰ..ⅹ
# Latin letter names: 엘 엠 엔 알 end in a consonant, every other letter name is open
_LETTER_SOUND = {"L": "rieul", "M": "other", "N": "other", "R": "rieul"}


def _number_sound(digits: str) -> str:
    digits = digits.replace(",", "")
    if "." in digits:  # "1.5" reads 일 점 오: the last digit decides
        return _DIGIT_SOUND[digits[-1]]
    stripped = digits.rstrip("0")
    if not stripped:
        return "other"  # 영
    zeros = len(digits) - len(stripped)
    if zeros == 0:
        return _DIGIT_SOUND[digits[-1]]
    # 십 백 천, 만 (…천만), 억 (…천억) end in a consonant; 조 (10^12..10^15) does not
    return "none" if 12 <= zeros < 16 else "other"


def _latin_sound(run: str) -> str | None:
    if run.isupper() or len(run) == 1:  # acronym (CAR-T → 티): spelled letter by letter
        return _LETTER_SOUND.get(run[-1].upper(), "none")
    low = run.lower()  # an English word: only the unambiguous endings
    if low.endswith(("l", "le")):
        return "rieul"
    if low.endswith(("m", "n", "ng")):
        return "other"
    return None


def _trim(word: str) -> str:
    end = len(word)
    while end and word[end - 1] in _TRAILING_SKIP:
        end -= 1
    return word[:end]


def _unclosed_opener(word: str) -> int | None:
    """Position of the last opening qualifier bracket left unclosed (a truncated name)."""
    stack: list[int] = []
    for i, ch in enumerate(word):
        if ch in _OPENERS:
            stack.append(i)
        elif ch in QUALIFIER_BRACKETS and stack:
            stack.pop()
    return stack[0] if stack else None


def _strip_group(word: str) -> tuple[str, str] | None:
    """(text before, content) of the trailing bracket group of `word`, or None if it ends otherwise."""
    if not word or word[-1] not in QUALIFIER_BRACKETS:
        return None
    depth = 0
    for i in range(len(word) - 1, -1, -1):
        ch = word[i]
        if ch in QUALIFIER_BRACKETS:
            depth += 1
        elif ch in _OPENERS:
            depth -= 1
            if depth == 0:
                return word[:i], word[i + 1 : -1]
    return None  # more closers than openers: leave it to the caller


def base_word(word: str) -> str:
    """The part of `word` its particle follows: trailing qualifier groups removed.

    `진단비(대동맥판막)` -> `진단비`, `A(B)(C)` -> `A`, `암진단비(유사암` -> `암진단비`;
    a name that is only a bracket group yields its content (`(1년50%)` -> `1년50%`).
    """
    current = _trim(word)
    while current:
        opener = _unclosed_opener(current)
        if opener is not None:
            before = _trim(current[:opener])
            current = before if before else current[opener + 1 :]
            continue
        group = _strip_group(current)
        if group is None:
            break
        before, content = _trim(group[0]), group[1]
        current = before if before else _trim(content)
    return current


def _final_sound(word: str) -> str | None:
    word = base_word(word)
    end = len(word)
    while end and word[end - 1] in QUALIFIER_BRACKETS:  # unbalanced leftovers
        end -= 1
        word = _trim(word[:end])
        end = len(word)
    if not end:
        return None
    ch = word[end - 1]
    code = ord(ch)
    if _HANGUL_FIRST <= code <= _HANGUL_LAST:
        jong = (code - _HANGUL_FIRST) % 28
        return "none" if jong == 0 else ("rieul" if jong == _RIEUL else "other")
    if ch.isascii() and ch.isdigit():
        start = end
        while start and (word[start - 1].isdigit() or word[start - 1] in ",."):
            start -= 1
        return _number_sound(word[start:end].lstrip(",."))
    if ch in _ROMAN_SOUND:
        return _ROMAN_SOUND[ch]
    if ch.isascii() and ch.isalpha():
        start = end
        while start and word[start - 1].isascii() and word[start - 1].isalpha():
            start -= 1
        return _latin_sound(word[start:end])
    if ch == "%":
        return "none"  # 퍼센트
    return None


def has_final_consonant(word: str) -> bool | None:
    """Whether `word`, read aloud, ends in a consonant (받침); None when unknown."""
    sound = _final_sound(word)
    return None if sound is None else sound != "none"


def particle(word: str, with_batchim: str, without_batchim: str) -> str:
    """The particle that follows `word`, e.g. particle("암진단비", "은", "는") == "는".

    For 으로/로 a final ㄹ takes 로 (서울로). When the sound is unknown the combined
    form is used: "은(는)", or "(으)로".
    """
    sound = _final_sound(word)
    is_euro = with_batchim == "으로" and without_batchim == "로"
    if sound is None:
        return "(으)로" if is_euro else f"{with_batchim}({without_batchim})"
    if sound == "none" or (is_euro and sound == "rieul"):
        return without_batchim
    return with_batchim


def _require_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string, got {value!r}")
    return value


def explain(insurer_name: str, coverage_name: str, status: str, value_text: str | None = None) -> str:
    """The fixed sentence for one coverage's amount status, validated before return."""
    if status not in TEMPLATES:
        raise ValueError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
    insurer = _require_text("insurer_name", insurer_name)
    coverage = _require_text("coverage_name", coverage_name)
    if status == "CONFIRMED":
        value = _require_text("value_text (required when status is CONFIRMED)", value_text)
        if is_placeholder_amount(value):
            raise InvalidAmount(f"value_text {value!r} is a placeholder or status text, not an amount; "
                                "a CONFIRMED fact must carry the amount as the proposal prints it")
    elif value_text is not None:
        # never show an amount next to a status that says there is none
        raise ValueError(f"status {status} carries no amount, but value_text={value_text!r} was given")
    else:
        value = ""
    sentence = TEMPLATES[status].format_map(
        {
            "insurer": insurer,
            "coverage": coverage,
            "value": value,
            "은/는": particle(coverage, "은", "는"),
            "으로/로": particle(value, "으로", "로") if value else "",
        }
    )
    return validate_text(sentence)
