"""Run configuration shared by every command, built by the CLI from options and env."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

from vezamig.errors import UsageError

_DURATION_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*(ms|s|min|h)?\s*$")
_UNITS_MS = {"ms": 1.0, "s": 1000.0, "min": 60_000.0, "h": 3_600_000.0}
# PostgreSQL truncates identifiers to 63 bytes; `_history` must still fit.
_MAX_TABLE_BYTES = 63 - len("_history")


# PostgreSQL's timeouts are int milliseconds; one limit for every duration option.
MAX_DURATION_MS = 2**31 - 1


def parse_duration(text: str, option: str | None = None) -> int:
    """``500ms``, ``10s``, ``2min``, ``1h`` → milliseconds; a bare number is ms as in PostgreSQL.

    ``option`` prefixes the message (click names the option itself)."""
    prefix = f"{option}: " if option else ""
    m = _DURATION_RE.match(text)
    if not m:
        raise UsageError(
            f"{prefix}cannot read `{text}` as a duration; use e.g. 500ms, 10s, 2min, 1h, or 0"
        )
    value = float(m[1]) * _UNITS_MS[m[2] or "ms"]
    ms = round(value) if math.isfinite(value) else MAX_DURATION_MS + 1  # 309 digits: inf
    if 0 < value < 1:
        # Durations count whole milliseconds, and 0 means something else (no timeout;
        # for --lock-wait, no wait): `0.4ms` would turn into the opposite of what was asked.
        raise UsageError(
            f"{prefix}`{text}` is below 1ms: durations count whole milliseconds, and 0 "
            "means no timeout (for --lock-wait: no wait); use at least 1ms, or 0 for that"
        )
    if ms > MAX_DURATION_MS:
        raise UsageError(
            f"{prefix}`{text}` is longer than PostgreSQL's timeouts allow "
            f"({MAX_DURATION_MS}ms, about 24.8 days)"
        )
    return ms


def os_text(text: str) -> str:
    """Text from the OS (a path, an argument, a user name) with the bytes that are not
    UTF-8, which Python keeps as lone surrogates, written as ``\\xNN``: as they are,
    such strings can be sent neither to the server nor to a UTF-8 terminal."""
    try:
        text.encode()
    except UnicodeEncodeError:
        try:
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # a surrogate that is no escaped byte
            return text.encode("utf-8", "backslashreplace").decode()
        return raw.decode("utf-8", "backslashreplace")
    return text


def shell_quote(text: str) -> str:
    """A word to paste into a shell, also for a path with a byte that is not UTF-8:
    that one is written ``$'lat\\xe9'`` (bash, zsh, ksh, POSIX sh 2024), since no
    plain quoting can carry such a byte."""
    if os_text(text) == text:
        import shlex

        return shlex.quote(text)
    raw = text.encode("utf-8", "surrogateescape")
    return (
        "$'"
        + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b"\\'" else f"\\x{b:02x}" for b in raw)
        + "'"
    )


def parse_table(text: str) -> tuple[str, ...]:
    """``table`` or ``schema.table``; each part is later quoted with sql.Identifier."""
    parts = tuple(text.split("."))
    if len(parts) > 2 or any(not p for p in parts):
        raise UsageError(f"--table: `{text}` must be `table` or `schema.table`")
    for p in parts:
        if p != p.strip():
            # PostgreSQL would take the blank as part of a quoted name: a new, empty pair
            # of tables, and every version applied again. Never meant (a stray blank
            # from a .env file or a paste), so never guessed at either.
            raise UsageError(
                f"--table: `{text}` starts or ends a name with a blank; remove it "
                "(vezamig takes names literally, so it would be part of the table's name)"
            )
        if "\x00" in p:
            raise UsageError("--table: a name cannot contain a NUL character")
        if os_text(p) != p:
            raise UsageError(
                f"--table: `{os_text(p)}` holds a byte that is not valid UTF-8",
                details=["write the name in UTF-8 (the shell's locale may need to be UTF-8)"],
            )
        if len(p.encode()) > _MAX_TABLE_BYTES:
            raise UsageError(
                f"--table: `{p}` is longer than {_MAX_TABLE_BYTES} bytes; PostgreSQL would "
                "truncate it (and its `_history` companion)"
            )
    if len(parts) == 2 and parts[0].startswith("pg_"):
        # PostgreSQL reserves these for itself: CREATE SCHEMA refuses them, and its
        # own (pg_catalog, pg_toast, a session's pg_temp) are no place for our rows.
        raise UsageError(
            f"--table: schema `{parts[0]}`: names starting with pg_ are PostgreSQL's own; "
            "choose another schema (or none: the table then goes where search_path says)"
        )
    return parts


@dataclass(frozen=True)
class Config:
    conninfo: str | None = None
    table: tuple[str, ...] = ("schema_migrations",)
    up_dir: Path = Path("sql/up")
    down_dir: Path = Path("sql/down")
    lock_timeout_ms: int = 5000
    lock_retries: int = 3
    statement_timeout_ms: int = 0
    lock_wait_ms: int = 60_000
    application: str = "vezamig"
    conninfo_given: bool = False  # -d on the command line (not DATABASE_URL): see command
    down_dir_given: bool = False  # --down-dir or VEZAMIG_DOWN_DIR, not DIR/down

    @property
    def history_table(self) -> tuple[str, ...]:
        return (*self.table[:-1], self.table[-1] + "_history")

    @property
    def table_label(self) -> str:
        return ".".join(self.table)

    def command(self, args: str) -> str:
        """``vezamig ARGS`` with this run's folder, table and -d options, so that a command
        vezamig tells the operator to run can be pasted as printed. A -d that holds a
        password is not repeated: a placeholder says to pass it again."""
        default = Config()
        opts = ""
        if self.conninfo and self.conninfo_given:
            from vezamig.db import has_password

            url = "'<the -d URL of this run>'" if has_password(self.conninfo) else None
            opts += f" -d {url or shell_quote(self.conninfo)}"
        if (self.up_dir, self.down_dir) != (default.up_dir, default.down_dir):
            base = self.up_dir.parent
            if (self.up_dir.name, self.down_dir) == ("up", base / "down"):
                opts += f" --dir {shell_quote(str(base))}"
            else:
                opts += f" --up-dir {shell_quote(str(self.up_dir))}"
                opts += f" --down-dir {shell_quote(str(self.down_dir))}"
        if self.table != default.table:
            opts += f" --table {shell_quote(self.table_label)}"
        return f"vezamig {args}{opts}"
