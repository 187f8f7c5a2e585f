"""Offline quality check of the coverage-search embedding (`core.search_vectors`).

Run from the project root:  python bench/search_quality.py [--check]

Two evaluations, each for a plain character-bigram baseline and for `embed`:

* Leave-one-out over the 285 (insurer, raw name) rows of the mapping workbook. The index
  holds every canonical name (one per code; a code with two canonical names keeps both)
  and every OTHER row's raw name; the query is the held-out raw name. Codes are ranked by
  their best-matching name, as the SQL will (`ORDER BY embedding <=> q`, then per code).
* Colloquial analyst queries (COLLOQUIAL_QUERIES) against the full index.

Cosine similarity is computed in memory with numpy; no database is needed. `--check`
exits with status 1 when the embedding misses the targets (95 % top-1, 99 % top-3
leave-one-out), so CI can run it.
"""

from __future__ import annotations

import argparse
import math
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openpyxl

PROJECT_ROOT = Path(__file__).resolve().parent.parent
if str(PROJECT_ROOT) not in sys.path:  # run as a script: make `core` importable
    sys.path.insert(0, str(PROJECT_ROOT))

from core.search_vectors import DIM, embed, normalise_name  # noqa: E402

WORKBOOK = PROJECT_ROOT / "data" / "dataset" / "mapping" / "coverage_mapping.xlsx"
TARGET_TOP1 = 95.0
TARGET_TOP3 = 99.0

#: Analyst-style queries and the code they mean. Written from how people talk about the
#: coverages, not copied from the workbook; the expected codes are checked against it.
COLLOQUIAL_QUERIES: tuple[tuple[str, str], ...] = (
    ("암진단금", "A4200_1"),
    ("암 진단비", "A4200_1"),
    ("일반암 진단 자금", "A4200_1"),
    ("뇌졸중 진단 자금", "A4103"),
    ("뇌졸증 진단금", "A4103"),
    ("뇌출혈 진단금", "A4102"),
    ("뇌혈관 진단비", "A4101"),
    ("허혈성 심장 진단", "A4105"),
    ("심장질환 진단금", "A4104_1"),
    ("유사암 진단", "A4210"),
    ("고액암 진단", "A4209"),
    ("재진단암", "A4299_1"),
    ("골절 진단", "A4301_1"),
    ("화상 진단금", "A4302"),
    ("질병 사망 보험금", "A1100"),
    ("상해 사망", "A1300"),
    ("상해 후유 장해", "A3300_1"),
    ("질병 수술", "A5100"),
    ("상해 수술 자금", "A5300"),
    ("암 수술비", "A5200"),
    ("유사암 수술비", "A5298_001"),
    ("갑상샘암 수술", "A5298_001"),
    ("뇌혈관 수술비", "A5104_1"),
    ("허혈성 심장 수술", "A5107_1"),
    ("질병 입원 일당", "A6100_1"),
    ("상해 입원 일당", "A6300_1"),
    ("암 직접치료 입원비", "A6200"),
    ("항암 방사선 치료", "A9617_1"),
    ("표적 항암제 치료비", "A9619_1"),
    ("CAR-T 치료비", "A9620_1"),
    ("다빈치 로봇 수술", "A9630_1"),
    ("혈전 용해 치료", "A9640_1"),
)


@dataclass(frozen=True)
class Row:
    insurer: str
    code: str
    canonical: str
    raw: str


@dataclass(frozen=True)
class Entry:
    code: str
    text: str
    row: int | None  # workbook row it came from; None for canonical names


@dataclass(frozen=True)
class Result:
    query: str
    expected: str
    ranked: tuple[tuple[str, float, str], ...]  # (code, score, best-matching name), top 3

    @property
    def top1(self) -> bool:
        return bool(self.ranked) and self.ranked[0][0] == self.expected

    @property
    def top3(self) -> bool:
        return any(code == self.expected for code, _, _ in self.ranked[:3])


def load_rows(path: Path = WORKBOOK) -> list[Row]:
    workbook = openpyxl.load_workbook(path, read_only=True)
    try:
        sheet = workbook.worksheets[0]
        lines = sheet.iter_rows(values_only=True)
        header = [str(cell).strip() for cell in next(lines)]
        col = {name: header.index(name) for name in ("보험사명", "cre_cvr_cd", "신정원코드명", "담보명(가입설계서)")}
        rows = []
        for line in lines:
            if line is None or line[col["cre_cvr_cd"]] is None:
                continue
            rows.append(
                Row(
                    insurer=str(line[col["보험사명"]]).strip(),
                    code=str(line[col["cre_cvr_cd"]]).strip(),
                    canonical=str(line[col["신정원코드명"]]).strip(),
                    raw=str(line[col["담보명(가입설계서)"]]).strip(),
                )
            )
        return rows
    finally:
        workbook.close()


def build_entries(rows: Sequence[Row]) -> list[Entry]:
    """Every distinct (code, canonical name), then every row's raw name."""
    canonical = sorted({(row.code, row.canonical) for row in rows})
    entries = [Entry(code, text, None) for code, text in canonical]
    entries += [Entry(row.code, row.raw, i) for i, row in enumerate(rows)]
    return entries


# ---------------------------------------------------------------------------------------
# Methods: text → unit vector (numpy). Cosine is then a dot product.
# ---------------------------------------------------------------------------------------


def _bigrams(texts: Sequence[str], normalise: Callable[[str], str]) -> np.ndarray:
    """Plain character-bigram counts over an exact vocabulary; no weighting, no synonyms."""
    grams = []
    for text in texts:
        compact = normalise(text)
        grams.append(Counter(compact[i : i + 2] for i in range(len(compact) - 1)) or Counter([compact]))
    vocab = {g: i for i, g in enumerate(sorted({g for c in grams for g in c}))}
    matrix = np.zeros((len(texts), len(vocab)))
    for r, counts in enumerate(grams):
        for gram, count in counts.items():
            matrix[r, vocab[gram]] = count
    return matrix / np.linalg.norm(matrix, axis=1, keepdims=True)


def _bigram_plain(texts: Sequence[str]) -> np.ndarray:
    return _bigrams(texts, lambda text: "".join(unicodedata.normalize("NFKC", text).lower().split()))


def _bigram_normalised(texts: Sequence[str]) -> np.ndarray:
    return _bigrams(texts, normalise_name)


def _embedding(texts: Sequence[str]) -> np.ndarray:
    return np.array([embed(text) for text in texts], dtype=np.float64)


METHODS: dict[str, Callable[[Sequence[str]], np.ndarray]] = {
    "baseline: bigrams, NFKC no spaces": _bigram_plain,
    "baseline: bigrams, normalise_name": _bigram_normalised,
    f"search_vectors.embed (DIM={DIM})": _embedding,
}

# ---------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------


def rank_codes(scores: np.ndarray, entries: Sequence[Entry], keep: np.ndarray, k: int = 3) -> tuple[tuple[str, float, str], ...]:
    """Best score per code among kept entries, highest first (ties: code order)."""
    best: dict[str, tuple[float, str]] = {}
    for i in np.flatnonzero(keep):
        entry = entries[i]
        score = float(scores[i])
        if entry.code not in best or score > best[entry.code][0]:
            best[entry.code] = (score, entry.text)
    ordered = sorted(best.items(), key=lambda item: (-item[1][0], item[0]))
    return tuple((code, score, text) for code, (score, text) in ordered[:k])


def evaluate(
    method: Callable[[Sequence[str]], np.ndarray],
    rows: Sequence[Row],
    queries: Sequence[tuple[str, str]],
) -> tuple[list[Result], list[Result]]:
    entries = build_entries(rows)
    query_texts = [text for text, _ in queries]
    # One batch, so corpus-dependent baselines see one vocabulary; the index side and
    # the query side of a text get the same vector.
    vectors = method([e.text for e in entries] + query_texts)
    index, query_vectors = vectors[: len(entries)], vectors[len(entries) :]
    row_position = {e.row: i for i, e in enumerate(entries) if e.row is not None}

    loo = []
    for r, row in enumerate(rows):
        keep = np.array([e.row != r for e in entries])  # leave only this row out
        scores = index @ index[row_position[r]]
        loo.append(Result(row.raw, row.code, rank_codes(scores, entries, keep)))

    everything = np.ones(len(entries), dtype=bool)
    colloquial = [
        Result(text, code, rank_codes(index @ query_vectors[q], entries, everything)) for q, (text, code) in enumerate(queries)
    ]
    return loo, colloquial


def percent(results: Sequence[Result], attribute: str) -> float:
    return 100.0 * sum(getattr(r, attribute) for r in results) / len(results)


def describe_misses(results: Sequence[Result], codes: dict[str, set[str]]) -> list[str]:
    lines = []
    for r in results:
        if r.top1:
            continue
        mark = "top-3" if r.top3 else "MISS "
        got = ", ".join(f"{code} {score:.3f} «{text}»" for code, score, text in r.ranked)
        lines.append(f"  [{mark}] «{r.query}» want {r.expected} ({' / '.join(sorted(codes[r.expected]))}) got {got}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the embedding misses the targets")
    args = parser.parse_args(argv)

    rows = load_rows()
    codes: dict[str, set[str]] = {}
    for row in rows:
        codes.setdefault(row.code, set()).add(row.canonical)
    unknown = [(text, code) for text, code in COLLOQUIAL_QUERIES if code not in codes]
    if unknown:
        raise SystemExit(f"colloquial queries name codes missing from the workbook: {unknown}")

    seen = Counter((row.code, row.raw) for row in rows)
    duplicated_rows = sum(n for n in seen.values() if n > 1)
    cross_code = {raw for raw in {r.raw for r in rows} if len({r.code for r in rows if r.raw == raw}) > 1}
    equals_canonical = sum(row.raw in codes[row.code] for row in rows)
    print(f"workbook: {len(rows)} rows, {len(codes)} codes, {sum(map(len, codes.values()))} canonical names")
    print(
        f"leave-one-out: {duplicated_rows} rows share their exact raw text with another row of the same code "
        f"({sum(1 for n in seen.values() if n > 1)} distinct texts; the twin stays in the index), "
        f"{equals_canonical} rows equal their code's canonical name, {len(cross_code)} raw texts span codes"
    )
    print(f"colloquial: {len(COLLOQUIAL_QUERIES)} queries\n")

    header = f"{'method':<36} {'LOO top-1':>9} {'LOO top-3':>9} {'coll top-1':>10} {'coll top-3':>10}"
    table = [header, "-" * len(header)]
    details = []
    ours: tuple[float, float] = (math.nan, math.nan)
    for name, method in METHODS.items():
        loo, colloquial = evaluate(method, rows, COLLOQUIAL_QUERIES)
        loo1, loo3 = percent(loo, "top1"), percent(loo, "top3")
        table.append(
            f"{name:<36} {loo1:>8.1f}% {loo3:>8.1f}% {percent(colloquial, 'top1'):>9.1f}% {percent(colloquial, 'top3'):>9.1f}%"
        )
        details.append(f"\n{name}: leave-one-out misses (not top-1)")
        details += describe_misses(loo, codes) or ["  none"]
        details.append(f"{name}: colloquial misses (not top-1)")
        details += describe_misses(colloquial, codes) or ["  none"]
        if method is _embedding:
            ours = (loo1, loo3)
    print("\n".join(table))
    print("\n".join(details))

    met = ours[0] >= TARGET_TOP1 and ours[1] >= TARGET_TOP3
    print(f"\ntarget (embed, leave-one-out): top-1 >= {TARGET_TOP1}%, top-3 >= {TARGET_TOP3}%: {'met' if met else 'NOT met'}")
    return 0 if met or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
