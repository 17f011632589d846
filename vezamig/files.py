"""Discover and pair migration files (SPEC §1).

Every problem in the folders is collected before reporting, so an operator
fixes a broken tree in one pass instead of one error per run.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from vezamig.directives import PREFIX, Directives, ParsedHeader, parse_directives
from vezamig.errors import LayoutError

_UP_RE = re.compile(r"^(?P<version>[0-9]+)_(?P<name>[A-Za-z0-9_.-]+?)(?:_up)?\.sql$")
_DOWN_RE = re.compile(r"^(?P<version>[0-9]+)_(?P<name>[A-Za-z0-9_.-]+)_down\.sql$")
# The tracking table's version column is a bigint.
_MAX_VERSION = 2**63 - 1


@dataclass
class SqlFile:
    """One migration file, read and hashed once per run."""

    path: Path
    text: str
    checksum: str
    _header: ParsedHeader | None = field(default=None, repr=False)

    @property
    def header(self) -> ParsedHeader:
        # Parsed on demand: `status` needs checksums but not directives. A file that
        # never mentions `vezamig:` has no directive, misplaced or not, so the lexer
        # pass is skipped (most files; an empty body is then a harmless empty query).
        if self._header is None:
            if PREFIX in self.text:
                self._header = parse_directives(self.text, str(self.path))
            else:
                self._header = ParsedHeader(Directives())
        return self._header

    @property
    def directives(self) -> Directives:
        return self.header.directives


@dataclass
class Migration:
    version: int
    name: str
    up: SqlFile
    down: SqlFile | None

    @property
    def checksum(self) -> str:
        return self.up.checksum

    @property
    def reversible(self) -> bool:
        return self.down is not None

    @property
    def label(self) -> str:
        return f"{self.version} {self.name}"


def checksum_of(data: bytes) -> str:
    """SHA-256 of the content with CRLF normalised, so a Windows checkout is not drift."""
    return hashlib.sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def read_sql(path: Path) -> tuple[SqlFile | None, str | None]:
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        return None, f"{path}: cannot read ({exc.strerror})"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return None, (
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save the file as UTF-8"
        )
    if "\x00" in text:
        return None, f"{path}: contains a NUL byte; is this really an SQL file?"
    return SqlFile(path, text.replace("\r\n", "\n"), checksum_of(data)), None


def _scan(
    folder: Path, pattern: re.Pattern[str], kind: str, problems: list[str], shared: bool = False
) -> dict[int, tuple[str, Path]]:
    """``shared``: up and down files live in one folder, each scan takes its own kind."""
    found: dict[int, tuple[str, Path]] = {}
    if not folder.is_dir():
        return found
    # scandir's entries know their type without a stat per file; names sort as
    # strings (cheaper than Path objects), and a Path is made only for .sql files.
    with os.scandir(folder) as entries:
        names = sorted(e.name for e in entries if e.name.endswith(".sql") and e.is_file())
    for name in names:
        path = folder / name
        is_down = name.endswith("_down.sql")
        if shared and is_down != (kind == "down"):
            continue
        m = pattern.match(name)
        if kind == "up" and is_down:
            problems.append(f"{path}: a down file in the up folder; move it to the down folder")
            continue
        if not m:
            example = "NNN_name_up.sql" if kind == "up" else "NNN_name_down.sql"
            problems.append(
                f"{path}: name does not match <version>_<name>"
                f"{'[_up]' if kind == 'up' else '_down'}.sql (e.g. {example}; "
                "name: letters, digits, _ . -)"
            )
            continue
        version = int(m["version"])
        if version == 0:
            problems.append(f'{path}: version 0 is reserved for "nothing applied"; start at 1')
            continue
        if version > _MAX_VERSION:
            problems.append(
                f"{path}: version {version} is larger than the tracking table's "
                f"bigint allows ({_MAX_VERSION}); use a shorter number"
            )
            continue
        if version in found:
            problems.append(
                f"{path}: version {version} is also used by {found[version][1].name} "
                f"in the same folder; give one of them a new number"
            )
            continue
        found[version] = (m["name"], path)
    return found


def discover(up_dir: Path, down_dir: Path, *, check_directives: bool = False) -> list[Migration]:
    """Return migrations ascending by version, or raise LayoutError listing every problem."""
    if not up_dir.is_dir():
        raise LayoutError(
            f"migration folder {up_dir} does not exist",
            details=[
                "pass --dir DIR (DIR/up, DIR/down) or --up-dir/--down-dir, or set VEZAMIG_DIR"
            ],
        )
    migrations, problems = collect(up_dir, down_dir)
    if check_directives:
        problems.extend(directive_problems(migrations))
    if problems:
        raise LayoutError(f"{len(problems)} problem(s) in the migration folders", details=problems)
    return migrations


def collect(up_dir: Path, down_dir: Path) -> tuple[list[Migration], list[str]]:
    """Every readable migration plus every naming/pairing problem, without raising."""
    problems: list[str] = []
    shared = up_dir.resolve() == down_dir.resolve()
    ups = _scan(up_dir, _UP_RE, "up", problems, shared)
    downs = _scan(down_dir, _DOWN_RE, "down", problems, shared)
    migrations: list[Migration] = []
    for version, (name, dpath) in downs.items():
        if version not in ups:
            problems.append(f"{dpath}: down file for version {version} has no up file")
        elif ups[version][0] != name:
            problems.append(
                f"{dpath}: name `{name}` differs from the up file's "
                f"`{ups[version][0]}` ({ups[version][1].name}); rename one to match"
            )
    for version in sorted(ups):
        name, upath = ups[version]
        up, problem = read_sql(upath)
        if problem:
            problems.append(problem)
        down: SqlFile | None = None
        if version in downs and downs[version][0] == name:
            down, problem = read_sql(downs[version][1])
            if problem:
                problems.append(problem)
        if up is not None:
            migrations.append(Migration(version, name, up, down))
    return migrations, problems


def directive_problems(migrations: list[Migration]) -> list[str]:
    problems: list[str] = []
    for m in migrations:
        for f in (m.up, m.down):
            if f is not None:
                problems.extend(f.header.problems)
    return problems
