"""Writing into the backup folder: manifests and verification records atomically, resolving a named dump.
"""

from __future__ import annotations

import json
import os
import secrets
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core import config
from core.errors import BackupError

if TYPE_CHECKING:
    pass
from core.backup_folder import (
    _KEEP_VERIFICATIONS,
    DUMP_SUFFIX,
    MANIFEST_SUFFIX,
    VERIFY_SUFFIX,
    list_backups,
    read_verifications,
    verify_path,
)


def _write_json_atomic(path: Path, data: object) -> None:
    """Readers never see a half-written file: write a temporary sibling, fsync, rename."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, ensure_ascii=False, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)




def _record_verification(dump: Path, record: dict[str, Any]) -> None:
    history = [*read_verifications(dump), record][-_KEEP_VERIFICATIONS:]
    with suppress(OSError):  # a read-only backup folder must not hide the verification's own outcome
        _write_json_atomic(verify_path(dump), {"file": dump.name, "verifications": history})




def resolve(file: str | Path | None) -> Path:
    """A dump path from the command line: a path, a bare name in the backup folder, or None for the newest."""
    folder = config.backup_dir()
    if file is None:
        backups = [b for b in list_backups(folder) if b.manifest is not None] or list_backups(folder)
        if not backups:
            raise BackupError(f"no backup in {folder}: run `python -m core backup` first")
        return backups[0].path
    path = Path(file).expanduser()
    if path.name.endswith(DUMP_SUFFIX + MANIFEST_SUFFIX) or path.name.endswith(DUMP_SUFFIX + VERIFY_SUFFIX):
        path = path.with_name(path.name[: path.name.index(DUMP_SUFFIX) + len(DUMP_SUFFIX)])
    if not path.exists() and len(path.parts) == 1 and (folder / path).exists():
        path = folder / path
    if not path.is_file():
        raise BackupError(f"backup file not found: {path} (backups are in {folder})")
    return path.resolve()
