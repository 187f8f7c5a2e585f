"""core.search_vectors: deterministic, unit-length vectors that find the right coverage code.

No database: the held-out check ranks codes in memory over the mapping workbook, the way
the SQL will (`ORDER BY embedding <=> :query`, best name per code).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest

from core import search_vectors as sv
from core.search_vectors import DIM, EMPTY_QUERY_MESSAGE, MAX_QUERY_CHARS, embed, normalise_name

PROJECT = Path(__file__).resolve().parent.parent
WORKBOOK = PROJECT / "data" / "dataset" / "mapping" / "coverage_mapping.xlsx"

SAMPLES = (
    "암 진단비(유사암 제외)",
    "뇌혈관질환진단담보",
    "뇌졸중 진단금",
    "카티(CAR-T)항암약물허가치료비(연간1회한)【갱신계약】",
    "표적항암약물허가치료비II(갱신형_10년)",
    "CAR-T",
    "암",
)

#: Real-looking insurer names that are NOT in the workbook verbatim (most come from the
#: proposal cards, where spacing, suffixes or generation marks differ), with their code.
HELD_OUT: tuple[tuple[str, str], ...] = (
    ("상해입원비(1일-180일)", "A6300_1"),
    ("질병입원일당(1-180일)담보", "A6100_1"),
    ("유사암진단Ⅱ담보", "A4210"),
    ("심혈관질환(심근병증)진단담보", "A4104_1"),
    ("심혈관질환(대동맥판막협착증)진단담보", "A4104_1"),
    ("부정맥질환(Ⅰ49)진단비", "A4104_1"),
    ("혈전용해치료비Ⅱ(최초1회한)(특정심장질환)담보", "A9640_1"),
    ("일반암수술비(1회한)", "A5200"),
    ("뇌혈관질환 진단비(1년50%)", "A4101"),
    ("허혈성심장질환 진단비(1년50%)", "A4105"),
    ("[갱신형] 표적항암약물허가 치료비(1년50%)", "A9619_1"),
    ("암직접입원비(요양병원제외)(1일-120일)", "A6200"),
    ("항암약물치료Ⅱ담보", "A9617_1"),
    ("카티(CAR-T)항암약물허가치료비(연간1회한)(갱신형)", "A9620_1"),
    ("2대주요기관질병 관혈수술비Ⅱ(1년50%)", "A5104_1"),
    ("일반상해후유장해(3%~100%)", "A3300_1"),
    ("골절 진단비(치아파절(깨짐", "A4301_1"),
    ("뇌출혈진단비(갱신형)", "A4102"),
    ("화상진단비Ⅱ(1회한)", "A4302"),
    ("질병 입원일당", "A6100_1"),
)


def _cosine(a: list[float], b: list[float]) -> float:
    return math.fsum(x * y for x, y in zip(a, b, strict=True))


@pytest.fixture(scope="module")
def index() -> list[tuple[str, str, dict[int, float]]]:
    """(code, name, sparse vector) for every canonical and raw name of the workbook."""
    workbook = openpyxl.load_workbook(WORKBOOK, read_only=True)
    try:
        lines = workbook.worksheets[0].iter_rows(values_only=True)
        header = list(next(lines))
        code_col, canon_col, raw_col = (header.index(h) for h in ("cre_cvr_cd", "신정원코드명", "담보명(가입설계서)"))
        names = set()
        for line in lines:
            if line[code_col] is not None:
                names.add((str(line[code_col]), str(line[canon_col])))
                names.add((str(line[code_col]), str(line[raw_col])))
    finally:
        workbook.close()
    return [(code, name, {i: x for i, x in enumerate(embed(name)) if x}) for code, name in sorted(names)]


def _top_codes(query: str, index: list[tuple[str, str, dict[int, float]]], k: int = 3) -> list[str]:
    vector = embed(query)
    best: dict[str, float] = {}
    for code, _, sparse in index:
        score = math.fsum(x * vector[i] for i, x in sparse.items())
        best[code] = max(score, best.get(code, -2.0))
    return sorted(best, key=lambda code: (-best[code], code))[:k]


# --- shape ------------------------------------------------------------------------------


def test_dimension_fits_pgvector_hnsw() -> None:
    assert 256 <= DIM <= 2000  # pgvector HNSW indexes at most 2000 dimensions


@pytest.mark.parametrize("text", SAMPLES)
def test_vectors_have_dim_floats_and_unit_length(text: str) -> None:
    vector = embed(text)
    assert len(vector) == DIM
    assert all(isinstance(x, float) and math.isfinite(x) for x in vector)
    assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-12)


# --- determinism ------------------------------------------------------------------------


def test_same_text_gives_identical_vector() -> None:
    for text in SAMPLES:
        assert embed(text) == embed(text)


@pytest.mark.parametrize("hash_seed", ["0", "1", "4242"])
def test_identical_in_a_fresh_process_with_another_hash_seed(hash_seed: str) -> None:
    code = "import json, sys\nfrom core.search_vectors import embed\nprint(json.dumps([embed(t) for t in json.load(sys.stdin)]))"
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(SAMPLES),
        capture_output=True,
        text=True,
        cwd=PROJECT,
        env=env,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == [embed(t) for t in SAMPLES]  # JSON keeps floats exact


#: sha256 of the SAMPLES vectors (rounded to 10 decimals) for FEATURE_VERSION v1.
PINNED_DIGEST = "bfaa6413713e9758880b7c056b85e61c23c453ea964ffd30417e28976b038027"


def test_fingerprint_is_pinned() -> None:
    """Stored vectors are only valid for these exact features: if this fails on purpose,
    bump FEATURE_VERSION and rebuild the stored vectors, then update the digest."""
    payload = json.dumps([[round(x, 10) for x in embed(t)] for t in SAMPLES])
    digest = hashlib.sha256(payload.encode()).hexdigest()
    assert (sv.FEATURE_VERSION, digest) == ("v1", PINNED_DIGEST)


# --- normalisation and input handling -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("암 진단비Ⅱ(유사암 제외)", "암진단비2유사암제외"),
        ("  질병사망 담보 ", "질병사망담보"),
        ("ＣＡＲ－Ｔ", "cart"),
        ("카티(CAR-T)", "카티cart"),
        ("표적항암약물허가치료비II(갱신형_10년)", "표적항암약물허가치료비2갱신형10년"),
        ("부정맥질환(Ⅰ49)진단비", "부정맥질환i49진단비"),
        ("갑상선암·기타피부암【갱신계약】", "갑상선암기타피부암갱신계약"),
        ("!!!", ""),
        ("", ""),
    ],
)
def test_normalise_name(text: str, expected: str) -> None:
    assert normalise_name(text) == expected


@pytest.mark.parametrize("text", ["", "   ", "\t\n", "!!!", "()[]【】", "·, - ~", "\u200b"])
def test_text_empty_after_normalisation_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=EMPTY_QUERY_MESSAGE):
        embed(text)


def test_non_text_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        embed(None)  # type: ignore[arg-type]


def test_latin_only_text_is_valid() -> None:
    vector = embed("CAR-T")
    assert len(vector) == DIM
    assert embed("car t") == embed("CAR-T")  # spaces and case do not matter


def test_only_noise_words_still_give_a_vector() -> None:
    assert len(embed("담보")) == DIM
    assert len(embed("(1회한)")) == DIM


def test_long_text_is_capped() -> None:
    long = "암진단비(유사암제외)" + "가나다" * 2000
    assert embed(long) == embed(long[:MAX_QUERY_CHARS])
    assert len(normalise_name(long)) <= MAX_QUERY_CHARS


# --- meaning ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variant", "canonical"),
    [
        ("뇌졸증 진단금", "뇌졸중진단비"),
        ("뇌졸중 진단 자금", "뇌졸중진단비"),
        ("갑상샘암 수술자금", "갑상선암수술비"),
        ("질병사망담보", "질병사망"),
        ("상해 입원 일당", "상해입원비"),
        ("허혈심장질환진단담보", "허혈성심장질환진단비"),
        ("암진단비Ⅱ", "암진단비2"),
    ],
)
def test_synonyms_and_noise_words_collapse(variant: str, canonical: str) -> None:
    assert embed(variant) == embed(canonical)


def test_exclusion_is_not_inclusion() -> None:
    excluded = embed("암진단비(유사암제외)")
    assert _cosine(excluded, embed("암진단비")) > _cosine(excluded, embed("유사암진단비")) + 0.2
    assert _cosine(embed("일반암진단비"), excluded) > 0.9  # 일반암 means "without 유사암"


def test_benefit_kind_separates_codes() -> None:
    query = embed("유사암 진단비")
    assert _cosine(query, embed("유사암진단비")) > _cosine(query, embed("유사암수술비")) + 0.2


def test_data_tables_are_in_normalised_form() -> None:
    """A table entry not already in prepared form could never match anything."""
    for word in [*sv.SYNONYMS, *sv.NOISE_WORDS, *sv.CONCEPTS, *sv.CONCEPT_PARENTS.values()]:
        assert sv._prepare(word) == word, word
    assert set(sv.CONCEPT_PARENTS) <= set(sv.CONCEPTS)
    assert set(sv.CONCEPT_PARENTS.values()) <= set(sv.CONCEPTS)
    assert sv.BENEFITS.issubset(sv.CONCEPTS)


def test_held_out_names_are_really_held_out(index: list[tuple[str, str, dict[int, float]]]) -> None:
    known = {name for _, name, _ in index}
    codes = {code for code, _, _ in index}
    assert len(HELD_OUT) >= 10
    for name, code in HELD_OUT:
        assert name not in known, name
        assert code in codes, code


@pytest.mark.parametrize(("name", "code"), HELD_OUT)
def test_held_out_name_finds_its_code_in_top_3(name: str, code: str, index: list[tuple[str, str, dict[int, float]]]) -> None:
    assert code in _top_codes(name, index)
