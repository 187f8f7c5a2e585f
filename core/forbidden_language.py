"""Forbidden-language check: generated text may state facts, never evaluate or advise.

The dashboard only repeats what each proposal (가입설계서) prints. Any sentence it
generates must pass `validate_text`, which rejects superiority, comparison, contrast,
ranking, recommendation and arithmetic wording (see docs/forbidden-language.md).

Matching runs on a normalised copy of the text (NFKC, recomposed Hangul, invisible
characters and ALL whitespace removed) so spacing or Unicode tricks cannot slip a
phrase past the rules; patterns are therefore written against space-free text, and
spans refer to that normalised text. Neutral allowlisted phrases are masked first.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "ALLOWLIST",
    "RULES",
    "ForbiddenLanguageError",
    "Rule",
    "Violation",
    "find_violations",
    "normalise",
    "validate_text",
]


@dataclass(frozen=True)
class Rule:
    """One forbidden pattern, with examples that document and test it."""

    id: str
    family: str
    pattern: re.Pattern[str]
    description: str
    examples_bad: tuple[str, ...]
    examples_ok: tuple[str, ...]


@dataclass(frozen=True)
class Violation:
    """A rule hit; `matched` and `span` refer to the normalised text."""

    rule: str
    family: str
    matched: str
    span: tuple[int, int]
    description: str


class ForbiddenLanguageError(ValueError):
    """Generated text contains evaluative or advisory wording."""

    def __init__(self, violations: list[Violation]) -> None:
        self.violations = violations
        hits = ", ".join(f"{v.rule}({v.matched!r})" for v in violations)
        super().__init__(f"금지 표현이 포함되어 있습니다 / forbidden language found: {hits}")


# --- normalisation -----------------------------------------------------------------

# Invisible characters not all covered by the Cf category (fillers are Lo, CGJ is Mn).
_INVISIBLE = frozenset(
    [chr(c) for c in range(0x200B, 0x2010)]
    + [chr(c) for c in range(0x2060, 0x2065)]
    + [chr(c) for c in range(0xFE00, 0xFE10)]  # variation selectors
    + ["\ufeff", "\u00ad", "\u180e", "\u034f", "\u3164", "\u115f", "\u1160", "\uffa0"]
)


def _strip_invisible(text: str) -> str:
    return "".join(
        ch
        for ch in text
        if ch not in _INVISIBLE and not ch.isspace() and unicodedata.category(ch) not in ("Cf", "Cc", "Zs", "Zl", "Zp")
    )


def normalise(text: str) -> str:
    """Return the space-free canonical form the rules are matched against."""
    # Strip before NFKC (an invisible char between decomposed jamo blocks composition)
    # and after (NFKC turns U+3164/U+FFA0 into the U+1160 filler, U+3000 into a space).
    out = _strip_invisible(text)
    for _ in range(3):
        nxt = unicodedata.normalize("NFC", _strip_invisible(unicodedata.normalize("NFKC", out)))
        if nxt == out:
            break
        out = nxt
    return out


# --- rules -------------------------------------------------------------------------


def _rule(
    rule_id: str,
    family: str,
    pattern: str,
    description: str,
    bad: tuple[str, ...],
    ok: tuple[str, ...] = (),
) -> Rule:
    return Rule(rule_id, family, re.compile(pattern, re.IGNORECASE), description, bad, ok)


SUPERIORITY = "superiority"
COMPARATIVE = "comparative"
CONTRAST = "contrast"
EXTREME = "extreme_ranking"
RECOMMENDATION = "recommendation_judgement"
CALCULATION = "calculation_aggregate"

RULES: tuple[Rule, ...] = (
    # --- superiority / inferiority -----------------------------------------------
    _rule(
        "SUP_FAVOURABLE",
        SUPERIORITY,
        # only adjective forms, so "불리는"(= being called) and "유리체"(vitreous) pass
        r"[유불]리(?:하|한|합|해|했|함|할)",
        "유리/불리 (favourable / unfavourable)",
        ("A사가 유리합니다.", "B사는 불리한 조건입니다.", "가입자에게 유리해요."),
        ("흔히 특약이라고 불리는 담보입니다.", "유리체절제술 수술비"),
    ),
    _rule(
        "SUP_EXCELLENT",
        SUPERIORITY,
        # 장점/단점 must not hit 대장점막 (colon mucosa) or 진단점수 (diagnosis score)
        r"우수|우월|우위|열등|열세|월등|탁월|뛰어나|뛰어난|뒤떨어|뒤처|뒤쳐|(?:보다|만)못[하한함합해]"
        r"|앞섭|앞선다|앞서[있고]|장점(?!막)|(?<!진)단점|강점|약점|메리트",
        "우수/열등/뛰어나다/앞서다/뒤처지다/못하다/장점·단점 (excellent / inferior)",
        ("보장이 우수합니다.", "C사가 월등히 앞섭니다.", "A사보다 못한 금액입니다.", "뛰어난 상품"),
        ("금액을 확인하지 못했습니다.", "대장점막내암 수술비", "진단점수"),
    ),
    _rule(
        "SUP_GOOD_BAD",
        SUPERIORITY,
        r"좋|나쁘|나쁜|나빠|나빴|나쁩|나쁨|낫[다습네고지겠]|나은(?!행)|나아(?!가|갈|간|감)",
        "좋다/나쁘다/낫다/나은 (good / bad / better)",
        ("보장이 좋습니다.", "좋은 선택입니다.", "이 담보가 낫다.", "조건이 나쁜 편입니다.", "더 나은 보장", "조건이 나쁩니다."),
        ("하나은행 계좌", "더 나아가 약관을 인용합니다."),
    ),
    # --- comparative evaluation ---------------------------------------------------
    _rule(
        "CMP_MORE_LESS",
        COMPARATIVE,
        r"[더덜](?:높|낮|많|적|크|큰|큽|작|저렴|비싸|비싼|비쌉|싸|싼|쌉|길|짧|넓|좁|넉넉|든든"
        r"|두텁|두터|유리|불리|좋|나[은았]|나아(?!가|갈|간|감)|받|보장)|훨씬|한층|더욱",
        "더/덜 + 높다/많다/크다/저렴하다…, 훨씬/더욱 (more / less)",
        ("A사가 더 높습니다.", "보장금액이 덜 적어요.", "B사의 보험금이 더 많은 편", "더 저렴합니다."),
        ("더블플러스종합보험", "알파Plus 더끌림"),
    ),
    _rule(
        "CMP_THAN",
        COMPARATIVE,
        # "X보다" attached to a word is the comparative particle, always; verb endings (살펴보다,
        # 해보다) and "담보다"(= is a coverage) are excluded by the look-behind. "보다" standing
        # after a boundary (text start, . ! ? ; : , … or a particle 은/는/을/를/에) is the adverb
        # "more", allowed only before an information word (자세한, 상세히, 정확한, 구체적, 명확히,
        # 많은 정보/내용/안내): "보다 자세한 내용은 약관을 참조하세요."
        r"(?<=[^.!?;:,…。(\[{「『〈《“‘\"'은는을를에\x00])(?<![펴아어여해봐려워져담])보다(?!시피)"
        r"|(?:^|(?<=[.!?;:,…。(\[{「『〈《“‘\"'은는을를에\x00]))보다(?!시피)(?!더?(?:자세|상세|정확|구체적|명확)|많은(?:정보|내용|안내))"
        r"|에비[해하]|대비(?!하|해|책)",
        "A가 B보다, ~에 비해, ~ 대비 (comparative particles; the adverb 보다 only before 자세한/상세히/정확한…)",
        ("A사가 B사보다 많습니다.", "1,000만원보다 큽니다.", "삼성화재보다 적은 금액", "다른 담보보다 높다.",
         "KB보다 높다.", "보다 높은 금액입니다.", "메리츠화재보다 자세히 명시되어 있습니다.", "이 상품은 보다 많이 보장합니다."),
        ("약관을 살펴보다.", "보시다시피 명시되어 있습니다.", "보다 자세한 내용은 약관을 참조하세요.",
         "약관을 보다 자세히 확인할 수 있습니다.", "명시되어 있습니다. 보다 정확한 내용은 원문을 확인하세요."),
    ),
    _rule(
        "CMP_RELATIVE",
        COMPARATIVE,
        r"상대적|비교적|(?:많은|적은|높은|낮은|큰|작은|싼|비싼|저렴한|넉넉한|충분한|부족한)편",
        "상대적으로/비교적/많은 편 (relative judgement)",
        ("상대적으로 높습니다.", "비교적 적은 금액입니다.", "보장금액이 많은 편입니다.", "낮은 편에 속합니다."),
        ("두 회사의 금액을 비교합니다.",),
    ),
    _rule(
        "CMP_LEVEL",
        COMPARATIVE,
        # A level called high/low/many/few/big/small is a comparison with an unstated reference,
        # whatever the subject (금액, an insurer, a product): caught by the kind of predicate.
        # 1) an amount noun with any level word (also adnominal: 보험료가 낮은 상품);
        # 2) any subject: the level adjective conjugated as a predicate or adverb (높습니다, 높아요,
        #    높음, 높네, 높고, 높지만, 높았, 높게, 큽니다, 커요, 적습니다 …); the bare connective -아/-어
        #    (값이 너무 많아 제외했습니다: a count, not a judgement) is not one. 적 only with adjective
        #    endings, so 적용/적혀/적립/적은 (applied / written / accrued / wrote) pass; 높이, 많이,
        #    크기, 크론병 are not predicates.
        r"(?:금액|보장|보험금|보험료|수준|한도)(?:이|가|은|는|도|만)?"
        r"(?:높|낮|많|적[다습어은네고]|크|큽|큰|작|약하|약한|약합|강하|강한|강합)"
        r"|(?:높|낮|많|작)(?:습니|습디|다|아요|았|음|네|군|고|지만|지요|죠|게|더라|으며|으니)"
        r"|적(?:습니|다|어요|음|네|군|지만|지요|죠|게)"
        r"|(?:큽|컸|커요|커지|크다|크네|크군|크고|크지만|크게|크며|큼)",
        "금액이 높다/낮다/크다/적다; 삼성화재는 높습니다 (a level judged high or low, any subject)",
        ("보장금액이 높습니다.", "보험료가 낮은 상품", "보장이 약합니다.", "금액이 적네요.", "삼성화재는 높습니다.",
         "메리츠화재가 많습니다.", "이 상품은 적습니다.", "현대해상은 커요.", "KB손해보험 쪽이 낮게 책정되어 있습니다."),
        ("금액이 적혀 있습니다.", "한도가 적용됩니다.", "적립금이 있습니다.", "크론병 진단비", "높이 제한 없음"),
    ),
    _rule(
        "CMP_GAP_SIZE",
        COMPARATIVE,
        r"차이(?:가|는|도)?(?:크|큽|큰|작|적|많|심|두드러|현저|나[는다요]|납|났|벌어)|격차",
        "차이가 크다/작다, 격차 (size of a difference)",
        ("두 회사의 차이가 큽니다.", "금액 차이가 납니다.", "격차가 벌어졌습니다."),
        ("두 회사의 차이를 확인합니다.",),
    ),
    # --- contrastive conjunctions -------------------------------------------------
    _rule(
        "CON_CONJUNCTION",
        CONTRAST,
        r"반면|그러나|하지만|그런데|반대로|그럼에도|(?:이|그)에반해|대조적",
        "반면/그러나/하지만/그런데/반대로 (contrast)",
        ("A사는 명시되어 있습니다. 반면 B사는 없습니다.", "그러나 B사는 다릅니다.", "하지만 금액은 다릅니다."),
        ("B사의 담보는 명시되어 있지 않습니다.",),
    ),
    _rule(
        "CON_UNLIKE",
        CONTRAST,
        r"[와과]달리|[와과]는달리|다르게도",
        "~와 달리 (unlike)",
        ("A사와 달리 B사는 명시되어 있습니다.", "삼성화재와는 달리 금액이 있습니다."),
        ("각 회사의 금액을 그대로 표시합니다.",),
    ),
    # --- extremes and rankings ----------------------------------------------------
    _rule(
        "EXT_MOST",
        EXTREME,
        r"가장|제일(?!화재|은행|생명)|으뜸|최상|최하|최악|최선|단연|압도적|베스트|넘버원",
        "가장/제일/으뜸/최상/최악 (extremes)",
        ("가장 높은 금액입니다.", "제일 많이 보장합니다.", "으뜸 상품", "단연 앞섭니다."),
        ("SC제일은행",),
    ),
    _rule(
        "EXT_SUPERLATIVE",
        EXTREME,
        # a bare limit such as "최대5회" is a printed fact, not a judgement; 최초
        # (first occurrence, e.g. 최초1회한) is a different word and never matches
        r"최(?:고|저|대|소|다)(?!\d)",
        "최고/최저/최대/최소/최다 as a judgement",
        ("최고의 보장입니다.", "최저 수준입니다.", "보장금액이 최대입니다.", "최소한의 금액"),
        ("암수술비(유사암제외)(최초1회한)", "최대3회까지 지급"),
    ),
    _rule(
        "EXT_RANK",
        EXTREME,
        # 1등급(grade) and 위암(stomach cancer) are insurance vocabulary, not ranks
        r"\d+(?:위|등)(?![암염장궤급])|순위|랭킹|서열|꼴찌|꼴등|일등|상위권|하위권|톱\d|TOP\d",
        "N위/1등/순위/랭킹 (rankings)",
        ("A사가 1위입니다.", "보장금액 순위", "2등 상품입니다.", "상위권에 속합니다."),
        ("장해지급률 1등급", "2대위암진단비"),
    ),
    # --- recommendations and judgements -------------------------------------------
    _rule(
        "REC_RECOMMEND",
        RECOMMENDATION,
        r"추천|강추|권장|권유|권고|권해|권합|제안(?!서)",
        "추천/권장/권유/제안 (recommendation)",
        ("이 상품을 추천합니다.", "가입을 권장합니다.", "A사를 제안드립니다.", "권해 드립니다."),
        ("제안서 양식", "가입설계서에 명시되어 있습니다."),
    ),
    _rule(
        "REC_IMPERATIVE",
        RECOMMENDATION,
        r"(?:선택|가입|구매|구입|결정|변경|전환|해지|유지|비교|고려|검토)(?:하|해)(?:세요|십시오|보세요|보십시오"
        r"|야합|야해|두세요|시길|시기바랍|시는게|시는것이|는게좋|는것이좋)"
        r"|고르(?:세요|십시오|시길)|골라(?:보)?세요|갈아타|챙기세요|놓치지마",
        "선택하세요/가입하세요/고르세요/고려해 보세요 (imperatives, calls to act)",
        ("A사를 선택하세요.", "지금 가입하세요.", "이 담보를 고르세요.", "B사로 갈아타세요."),
        ("가입설계서에 명시된 금액입니다.",),
    ),
    _rule(
        "REC_JUDGEMENT",
        RECOMMENDATION,
        r"판단|결론|바람직|적합|적절|유용|유익|합리적|현명|효율적|최적|무난|(?<![\d%])이상적"
        r"|필요(?:합|해|하다)",
        "판단/결론/바람직/적합/유용/필요합니다 (judgements)",
        ("가입이 바람직합니다.", "적합한 상품입니다.", "결론적으로 A사입니다.", "유용한 담보"),
        ("일반상해80%이상후유장해시", "질병후유장해(80%이상)"),
    ),
    _rule(
        "REC_GAIN_LOSS",
        RECOMMENDATION,
        # insurer names (DB손해보험) and claim vocabulary (손해배상, 손해를 보상) pass
        r"이득|이익|가성비|가심비|본전|남는장사|낭비|혜택이(?:크|큽|큰|많|풍부|좋|더)"
        r"|손해(?!보험|배상|사정|율|액|보상|방지)(?:를|가|도)?(?:봅|봤|본다|볼|보게|보는|보시"
        r"|입니|이다|다|예요|이에요|였|일수|큽|크|큰)",
        "이득/손해를 봅니다/가성비/혜택이 큽니다 (gain / loss)",
        ("가입하면 이득입니다.", "손해를 봅니다.", "가성비가 높습니다.", "혜택이 큽니다.", "손해입니다."),
        ("DB손해보험", "롯데손해보험", "발생한 손해를 보상합니다.", "손해배상책임"),
    ),
    _rule(
        "REC_EVALUATIVE",
        RECOMMENDATION,
        r"든든|넉넉|충분|부족|아쉽|아쉬|아깝|아까운|만족|실속|알차|알찬|훌륭|괜찮|탄탄|저렴|비싸|비싼|비쌉"
        r"|값싼|싸다|싸요|쌉니|짱|대박",
        "든든/넉넉/충분/저렴/비싸다 (evaluative adjectives)",
        ("보장이 든든합니다.", "금액이 충분합니다.", "보험료가 저렴합니다.", "비싼 편입니다.", "아쉬운 금액"),
        ("항암방사선약물치료비",),
    ),
    # --- calculations and aggregates ----------------------------------------------
    _rule(
        "CALC_AGGREGATE",
        CALCULATION,
        r"평균|합계|총합|합산|총액|총계|도합|모두합|더하면|합치면|합하면|[을를]더한",
        "평균/합계/총합/합산/총액 (aggregates)",
        ("평균 금액은 2,000만원입니다.", "합계 5,000만원", "모두 합산하면", "두 금액을 더하면"),
        ("질병사망",),
    ),
    _rule(
        "CALC_DIFFERENCE",
        CALCULATION,
        r"차이(?:는|가)?(?:약|총|무려)?(?:\d|[일이삼사오육칠팔구십백천]+만?원)|차액"
        r"|만큼(?:더|덜|많|적|높|낮|크|작|비싸|저렴|차이)"
        r"|\d[\d,]*(?:십|백|천|만|억)*원(?:이나)?(?:더|덜|많|적|높|낮|차이)",
        "차이는 N, 차액, N원 더 (computed differences)",
        ("차이는 1,000만원입니다.", "두 금액의 차액", "500만원 더 많습니다.", "그만큼 더 받습니다."),
        ("가입설계서에 3,000만원으로 명시되어 있습니다.",),
    ),
    _rule(
        "CALC_RATIO",
        CALCULATION,
        r"\d+(?:\.\d+)?배|[두세네몇]배|배(?:나|이상|가량|차이)|절반"
        r"|\d+(?:\.\d+)?(?:%|퍼센트|프로)(?:p|포인트|차이|더|덜|높|낮|많|적|크|작|증가|감소|늘|줄)"
        r"|퍼센트포인트|퍼센트차이",
        "N배, 절반, 퍼센트 차이 (ratios)",
        ("A사가 2배입니다.", "두 배 많습니다.", "30% 더 높습니다.", "5%p 차이", "10퍼센트 낮습니다."),
        ("유사암 진단비(갑상선암)(1년50%)", "일반상해후유장해(3~100%)", "상해후유장해(80%이상)"),
    ),
    _rule(
        "CALC_CHANGE",
        CALCULATION,
        # 감액(reduced-payment period) is printed in coverage names and is not a comparison
        r"증가|감소|늘어|늘었|늘린|줄어|줄었|줄인",
        "증가/감소/늘다/줄다 (change as comparison)",
        ("전년보다 증가했습니다.", "금액이 감소합니다.", "보장이 늘어났습니다.", "줄어든 금액"),
        ("유사암진단비Ⅱ(1년감액지급)", "질병사망(감액없음)"),
    ),
)

# Neutral phrases masked before the rules run, and proper nouns that contain a
# rule word ("참좋은" is part of DB's product name, not a judgement).
ALLOWLIST: tuple[str, ...] = (
    "비교합니다",
    "차이를확인",
    "명시되어있습니다",
    "명시되어있지않습니다",
    "존재하지않습니다",
    "참좋은훼밀리",
)

_MASK = "\x00"  # not Hangul/Latin/digit, so no rule can match across a masked span
_ALLOW_RE = re.compile("|".join(re.escape(normalise(p)) for p in ALLOWLIST))


def _mask_allowlist(norm: str) -> str:
    # same length as the phrase, so spans still index the normalised text
    return _ALLOW_RE.sub(lambda m: _MASK * len(m.group()), norm)


def find_violations(text: str) -> list[Violation]:
    """All rule hits in `text`, ordered by position in the normalised text."""
    norm = normalise(text)
    masked = _mask_allowlist(norm)
    found = [
        Violation(rule.id, rule.family, norm[m.start() : m.end()], m.span(), rule.description)
        for rule in RULES
        for m in rule.pattern.finditer(masked)
    ]
    return sorted(found, key=lambda v: (v.span, v.rule))


def validate_text(text: str) -> str:
    """Return `text` unchanged, or raise ForbiddenLanguageError naming the rules hit."""
    violations = find_violations(text)
    if violations:
        raise ForbiddenLanguageError(violations)
    return text
