"""Condition-slot quality on the hand-labelled set (tests/data/conditions_dev.jsonl): dev, holdout and blind.

Reads the real dataset the way the audited load does (proposal snippet + evidence pack, repeats dropped)
and prints, per slot, precision and recall of FOUND phrases (distinct whitespace-free texts per pair)
and the accuracy of the NOT_FOUND / CONFLICT statuses.
Run: PYTHONPATH=$PWD python bench/conditions_quality.py
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from core.conditions import CONFLICT, NOT_FOUND, SLOTS, conditions_for_card
from core.conditions.extract import read_evidence_pack
from core.conditions.rules import squash

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "data" / "dataset"
LABELS = ROOT / "tests" / "data" / "conditions_dev.jsonl"


def load_cards(root: Path = DATASET) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted((root / "cards").glob("*.jsonl"))
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def evaluate(split: str) -> dict[str, dict[str, float]]:
    cards = {(c["insurer"], c["coverage_name_raw"]): c for c in load_cards()}
    pack = read_evidence_pack(DATASET)
    counts = {slot: {"tp": 0, "pred": 0, "gold": 0, "nf_ok": 0, "nf": 0, "cf_ok": 0, "cf": 0} for slot in SLOTS}
    for line in LABELS.read_text(encoding="utf-8").splitlines():
        label = json.loads(line)
        if label.get("split", "dev") != split:
            continue
        key = (label["insurer"], label["coverage_name_raw"])
        got = conditions_for_card(cards[key], pack.get(key, []))
        for slot in SLOTS:
            gold, result, c = label["slots"][slot], got[slot], counts[slot]
            gold_texts = {squash(t) for t in gold["phrases"]}
            pred_texts = {squash(p.text) for p in result.phrases}
            c["tp"] += len(gold_texts & pred_texts)
            c["pred"] += len(pred_texts)
            c["gold"] += len(gold_texts)
            for status, name in ((NOT_FOUND, "nf"), (CONFLICT, "cf")):
                if gold["status"] == status:
                    c[name] += 1
                    c[name + "_ok"] += result.status == status
    return {slot: {
        "precision": c["tp"] / c["pred"] if c["pred"] else 1.0,
        "recall": c["tp"] / c["gold"] if c["gold"] else 1.0,
        "tp": c["tp"], "pred": c["pred"], "gold": c["gold"],
        "not_found_acc": c["nf_ok"] / c["nf"] if c["nf"] else float("nan"), "not_found_n": c["nf"],
        "conflict_acc": c["cf_ok"] / c["cf"] if c["cf"] else float("nan"), "conflict_n": c["cf"],
    } for slot, c in counts.items()}


def totals(table: dict[str, dict[str, float]]) -> tuple[float, float]:
    tp = sum(r["tp"] for r in table.values())
    pred = sum(r["pred"] for r in table.values())
    gold = sum(r["gold"] for r in table.values())
    return (tp / pred if pred else 1.0, tp / gold if gold else 1.0)


def dataset_counts() -> dict[str, dict[str, int]]:
    pack = read_evidence_pack(DATASET)
    found: dict[str, dict[str, int]] = {slot: {"FOUND": 0, "CONFLICT": 0, "NOT_FOUND": 0} for slot in SLOTS}
    for card in load_cards():
        for slot, result in conditions_for_card(card, pack.get((card["insurer"], card["coverage_name_raw"]), [])).items():
            found[slot][result.status] += 1
    return found


def main() -> None:
    for split in ("dev", "holdout", "blind"):
        table = evaluate(split)
        print(f"\n[{split}]  slot            P       R      (tp/pred/gold)   NOT_FOUND acc (n)   CONFLICT acc (n)")
        for slot, r in table.items():
            print(f"  {slot:16} {r['precision']:6.1%} {r['recall']:6.1%}   ({r['tp']}/{r['pred']}/{r['gold']})"
                  f"        {r['not_found_acc']:6.1%} ({r['not_found_n']})        {r['conflict_acc']:.1%} ({r['conflict_n']})")
        p, r = totals(table)
        print(f"  {'all slots':16} {p:6.1%} {r:6.1%}")
    print("\n[whole dataset, 297 instances]  slot: FOUND / CONFLICT / NOT_FOUND")
    for slot, c in dataset_counts().items():
        print(f"  {slot:16} {c['FOUND']:4} {c['CONFLICT']:4} {c['NOT_FOUND']:4}")


if __name__ == "__main__":
    main()
