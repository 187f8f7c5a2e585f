"""Errors a user can cause, each with one line that says what is wrong and what to do.

Every public entry point (CLI, dashboard, API, notebooks) catches `IncaError` and shows
`str(error)`; anything else is a bug and may show a traceback.
"""

from __future__ import annotations


class IncaError(Exception):
    """Base of all expected, user-facing failures."""

    #: process exit code for the CLI; monitoring distinguishes "down" from "broken"
    exit_code: int = 1


class ConfigError(IncaError):
    """A setting (environment variable, URL) is malformed or unsafe."""

    exit_code = 2


class DatabaseUnavailable(IncaError):
    """The server cannot be reached, refused the login, or the database is missing."""

    exit_code = 3


class SchemaMissing(IncaError):
    """Connected, but the database has no (or an older) inca schema."""

    exit_code = 4


class DatasetError(IncaError):
    """A bundled dataset file is missing or malformed; nothing was loaded."""

    exit_code = 5


class AuditFailed(IncaError):
    """The load's audit found rows that break the rules; the transaction was rolled back."""

    exit_code = 6

    def __init__(self, message: str, failures: list[str]) -> None:
        super().__init__(message)
        self.failures = failures


class LockBroken(IncaError):
    """The live amount_fact content no longer matches the audited fingerprint."""

    exit_code = 7


class SelectionError(IncaError, ValueError):
    """A comparison request names something that does not exist, or nothing at all."""

    def __init__(self, message: str, *, bad_value: str | None = None, suggestions: list[str] | None = None,
                 valid: list[str] | None = None, kind: str | None = None) -> None:
        super().__init__(message)
        self.bad_value = bad_value
        #: closest accepted spellings, best first (core.selection.closest: the one rule)
        self.suggestions = suggestions or []
        #: every accepted spelling of the value's kind, when known
        self.valid = valid or []
        #: what went wrong (core.selection: "unknown insurer", "duplicate", "invalid", ...), for the shells
        self.kind = kind


class InvalidAmount(IncaError, ValueError):
    """A CONFIRMED amount that is a status text or placeholder (확인 불가, -, blank), not an amount."""


class DatasetMismatch(IncaError):
    """A load was given a dataset other than the one the locked database already holds."""

    exit_code = 9


class BackupError(IncaError):
    """A backup could not be written, verified or restored; nothing live was changed."""

    exit_code = 8
