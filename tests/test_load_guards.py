"""The load refuses a placeholder amount, and a locked database refuses a different dataset."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from core import db
from core.errors import AuditFailed, DatasetMismatch
from core.ops import dataset, loader
from tests.test_store import DATASET, admin_conn, assert_empty, copy_dataset, remanifest, run_cli

# --- a placeholder is not an amount -------------------------------------------------------------


@pytest.mark.parametrize("placeholder", ["확인 불가", "금액 미기재", "-", "해당 담보 없음"])
def test_confirmed_placeholder_fails_the_load_naming_the_row(fresh_db, tmp_path: Path, placeholder: str) -> None:
    root = copy_dataset(tmp_path)
    path = root / "cards" / "meritz.jsonl"
    cards = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    victim = next(card for card in cards if card["amount"]["status"] == "CONFIRMED")
    victim["amount"]["value_text"] = placeholder
    # the snippet holds the placeholder too, so only the placeholder rule can catch it
    victim["amount"]["evidence_ref"]["snippet"] += f"\n{placeholder}"
    path.write_text("\n".join(json.dumps(c, ensure_ascii=False) for c in cards) + "\n", encoding="utf-8")
    remanifest(root)
    with pytest.raises(AuditFailed) as failure:
        loader.load(root)
    assert [line for line in failure.value.failures if victim["coverage_name_raw"] in line] == [
        f"{victim['coverage_name_raw']} ({victim['coverage_code'] or 'unmatched'}): CONFIRMED value_text "
        f"{placeholder!r} is a placeholder, not an amount"
    ]
    assert_empty(fresh_db)


def test_real_dataset_has_no_placeholder_failure() -> None:
    assert loader.pre_audit(dataset.read_bundle(DATASET)) == []


# --- a locked database is never reloaded ----------------------------------------------------------


def _snapshot(database) -> tuple[list[tuple[str, int]], str, list[tuple]]:
    with admin_conn(database) as conn:
        counts = [(table, conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])  # constant names
                  for table in (*dataset.TABLE_ORDER, "audit_runs")]
        fingerprint = conn.execute("SELECT inca_amount_fact_fingerprint()").fetchone()[0]
        runs = conn.execute("SELECT audit_run_id, kind, dataset_sha256, recorded_at FROM audit_runs ORDER BY 1").fetchall()
    return counts, fingerprint, runs


def _other_dataset(tmp_path: Path) -> Path:
    root = copy_dataset(tmp_path)
    path = root / "cards" / "kb.jsonl"
    path.write_text(path.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # other bytes, same facts
    remanifest(root)
    return root


def test_different_dataset_is_refused_and_changes_nothing(loaded_db, tmp_path: Path) -> None:
    root = _other_dataset(tmp_path)
    held = dataset.read_bundle(DATASET).dataset_sha256
    given = dataset.read_bundle(root).dataset_sha256
    assert held != given
    before = _snapshot(loaded_db)
    with pytest.raises(DatasetMismatch) as refused:
        loader.load(root)
    message = str(refused.value)
    assert held in message and given in message
    assert "never reloaded" in message and "new, empty database" in message and "docs/operations.md" in message
    assert "freeze/pre-10b2g2-20251229-024400" in message
    assert _snapshot(loaded_db) == before

    result = run_cli("load", env={**loaded_db.env(), "INCA_DATASET_DIR": str(root)})
    assert result.returncode == DatasetMismatch.exit_code != 0
    assert held in result.stderr and given in result.stderr
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert _snapshot(loaded_db) == before


def test_same_dataset_stays_a_quiet_no_op(loaded_db, tmp_path: Path) -> None:
    before = _snapshot(loaded_db)
    root = copy_dataset(tmp_path)  # a copy elsewhere is the same dataset: same digest
    result = run_cli("load", env={**loaded_db.env(), "INCA_DATASET_DIR": str(root)})
    assert result.returncode == 0, result.stderr
    assert "nothing changed" in result.stdout
    assert _snapshot(loaded_db) == before


def test_recorded_digest_is_the_bundle_digest(loaded_db) -> None:
    with psycopg.connect(db.psycopg_conninfo(loaded_db.admin), autocommit=True) as conn:
        recorded = conn.execute("SELECT dataset_sha256 FROM audit_runs WHERE kind = 'load'").fetchone()[0]
    assert recorded == dataset.read_bundle(DATASET).dataset_sha256
