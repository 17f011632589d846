"""Discover and pair migration files (SPEC §1).

Every problem in the folders is collected before reporting, so an operator
fixes a broken tree in one pass instead of one error per run.

Loading is on the path of every command and grows with the history, so it is
kept lean (issue 7): paths stay strings until a message needs a ``Path``, a
file is read with one ``read(2)``, and the directive parser is imported only
for files that mention ``vezamig:``. Down files are read only by the commands
that may run them or must check them (``up``, ``down``, ``verify``,
``roundtrip``); ``status`` only needs to know that they exist.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from vezamig.errors import LayoutError

if TYPE_CHECKING:
    from vezamig.directives import Directives, ParsedHeader

# <version>_<name>[_up].sql: the `_up` suffix is removed afterwards (a greedy match
# is half the cost of a lazy one, for every file of every run); <version>_<name>_down.sql.
_UP_RE = re.compile(r"([0-9]+)_([A-Za-z0-9_.-]+)\.sql")
_DOWN_RE = re.compile(r"([0-9]+)_([A-Za-z0-9_.-]+)_down\.sql")
# The tracking table's version column is a bigint.
MAX_VERSION = 2**63 - 1
# Directives start with this. A file that does not mention the tool at all (in any
# case: `VEZAMIG:guard` or `vezamig guard` are reported, never silently ignored) has
# none, misplaced or not.
PREFIX = "vezamig:"


def _mentions_directives(text: str) -> bool:
    """``vezamig`` in any case anywhere in the text (run on every up file of every run).

    Found through its rare ``z``: a one-character search is a ``memchr``, ≈ 40 times
    faster than a substring search over a typical file, which had cost as much as its
    SHA-256. Each ``z`` found (``timestamptz``) costs one match, case-insensitive as
    the directive reader's look-alike check (``VEZAMIg:guard`` must reach it).
    """
    match = _WORD.match
    for z in ("z", "Z"):
        i = text.find(z, 2)
        while i != -1:
            if match(text, i - 2):
                return True
            i = text.find(z, i + 1)
    return False


_WORD = re.compile("vezamig", re.I)


_BOM = b"\xef\xbb\xbf"
_sha256 = hashlib.sha256
_CHUNK = 1 << 16
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0)
_EMPTY_HEADER: ParsedHeader | None = None


def _no_directives() -> ParsedHeader:
    """One shared header for every file without directives (most of them)."""
    global _EMPTY_HEADER
    if _EMPTY_HEADER is None:
        from vezamig.directives import Directives, ParsedHeader

        _EMPTY_HEADER = ParsedHeader(Directives())
    return _EMPTY_HEADER


class SqlFile:
    """One migration file, read and hashed once per run."""

    __slots__ = (
        "_bom",
        "_checksum",
        "_header",
        "_lex_body",
        "_text",
        "location",
        "mentions_vezamig",
    )

    def __init__(
        self,
        location: str,
        text: str,
        checksum: str | None = None,
        *,
        bom: bool = False,
        keep_text: bool = True,
        lex_body: bool = True,
    ) -> None:
        self.location = location  # the path as a string; `path` for messages and sets
        self._checksum = checksum
        self._bom = bom
        self._header: ParsedHeader | None = None
        self._lex_body = lex_body  # see parse_directives and body_lexer_problems
        # Could hold a directive, or something that looks like one: scanned while the
        # text is fresh in the cache, as every command checks the up files' directives.
        self.mentions_vezamig = _mentions_directives(text)
        # `keep_text=False` (`status`): the checksum and the directives are all it needs,
        # so the text of a hashed file without directives is not kept. Kept, a kilobyte
        # per version is new memory to fault in (≈ 2 µs per version at N=2000, issue 7).
        drop = not keep_text and checksum is not None and not self.mentions_vezamig
        self._text = None if drop else text

    def __repr__(self) -> str:
        return f"SqlFile({self.location!r})"

    @property
    def text(self) -> str:
        """The content, CRLF normalised, without a BOM."""
        if self._text is None:  # a bug, not a user mistake: say which file and why
            raise RuntimeError(f"{self.location} was loaded without its text (keep_text=False)")
        return self._text

    @property
    def checksum(self) -> str:
        # Up files are hashed as they are read; a down file's checksum is never
        # recorded, so it is only computed if asked for (same value: the text is the
        # content, decoded, with CRLF already normalised).
        if self._checksum is None:
            self._checksum = checksum_of((_BOM if self._bom else b"") + self.text.encode())
        return self._checksum

    @property
    def path(self) -> Path:
        return Path(self.location)

    @property
    def header(self) -> ParsedHeader:
        # Parsed on demand: `status` needs checksums but not directives.
        if self._header is None:
            if self.mentions_vezamig:
                from vezamig.directives import parse_directives

                self._header = parse_directives(self.text, self.location, lex_body=self._lex_body)
            else:
                self._header = _no_directives()
        return self._header

    @property
    def directives(self) -> Directives:
        return self.header.directives

    @property
    def problems(self) -> list[str]:
        """Directive problems as ``file:line: …``; a file not mentioning vezamig has none."""
        return list(self.header.problems) if self.mentions_vezamig else []

    def body_lexer_problems(self) -> list[str]:
        """The lexer error (an unterminated quote or comment) of a body that the
        directive check did not lex (``lex_body=False``), for a file about to run or
        in a run that fails anyway; [] when it was lexed."""
        if not self.mentions_vezamig or self.header.lexed:
            return []
        from vezamig.directives import parse_directives

        known = set(self.header.problems)  # the rest reads the same either way
        return [p for p in parse_directives(self.text, self.location).problems if p not in known]


class Migration:
    """A version: its up file, and its down file if it has one (read on first use)."""

    __slots__ = ("_down", "down_location", "name", "up", "version")

    def __init__(
        self,
        version: int,
        name: str,
        up: SqlFile,
        down: SqlFile | None = None,
        down_location: str | None = None,
    ) -> None:
        self.version = version
        self.name = name
        self.up = up
        self._down = down
        self.down_location = down.location if down is not None else down_location

    def __repr__(self) -> str:
        return f"Migration({self.version}, {self.name!r}, reversible={self.reversible})"

    @property
    def down(self) -> SqlFile | None:
        problem = self._read_down()
        if problem is not None:
            raise LayoutError(problem)
        return self._down

    def down_problems(self) -> list[str]:
        """Read the down file if not yet done; what is wrong with it (unreadable,
        directives), as ``file:line: …``, or nothing."""
        problem = self._read_down()
        if problem is not None:
            return [problem]
        return self._down.problems if self._down is not None else []

    def _read_down(self) -> str | None:
        if self._down is None and self.down_location is not None:
            f, problem = read_sql(self.down_location, hashed=False)
            if problem is not None:
                return problem
            self._down = f
        return None

    @property
    def checksum(self) -> str:
        return self.up.checksum

    @property
    def reversible(self) -> bool:
        return self.down_location is not None

    @property
    def label(self) -> str:
        return f"{self.version} {self.name}"


def checksum_of(data: bytes) -> str:
    """SHA-256 of the content with CRLF normalised, so a Windows checkout is not drift."""
    return _sha256(data.replace(b"\r\n", b"\n")).hexdigest()


def read_sql(
    path: str | os.PathLike[str],
    *,
    hashed: bool = True,
    keep_text: bool = True,
    lex_body: bool = True,
) -> tuple[SqlFile | None, str | None]:
    """The file, or a message naming it; ``hashed``: compute its checksum now;
    ``keep_text``, ``lex_body``: see SqlFile.

    Run for every up file by every command, so the common case (one read(2), valid
    UTF-8, no BOM, no CR, no NUL) takes the shortest path.
    """
    location = os.fspath(path)
    try:
        fd = os.open(location, _OPEN_FLAGS)
        try:
            data = os.read(fd, _CHUNK)
            if len(data) == _CHUNK:  # a large file: read the rest
                chunks = [data]
                while chunk := os.read(fd, _CHUNK):
                    chunks.append(chunk)
                data = b"".join(chunks)
        finally:
            os.close(fd)
        text = data.decode()
    except OSError as exc:
        return None, f"{location}: cannot read ({exc.strerror})"
    except UnicodeDecodeError as exc:
        before = data[: exc.start]  # lines end as in sqltext.line_col
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        return None, (
            f"{location}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); save the file as UTF-8"
        )
    if "\r" in text or "\x00" in text or text.startswith("\ufeff"):
        return _unusual(location, data, text, hashed, keep_text, lex_body)
    checksum = _sha256(data).hexdigest() if hashed else None
    return SqlFile(location, text, checksum, keep_text=keep_text, lex_body=lex_body), None


def _unusual(
    location: str, data: bytes, text: str, hashed: bool, keep_text: bool, lex_body: bool
) -> tuple[SqlFile | None, str | None]:
    """A file with a BOM, CRs or a NUL: rare, so off the common path."""
    bom = text.startswith("\ufeff")
    if bom:
        text = text[1:]
    if "\x00" in text:
        return None, f"{location}: contains a NUL byte; is this really an SQL file?"
    if "\r" in text:
        text = text.replace("\r\n", "\n")
        checksum = checksum_of(data) if hashed else None
    else:
        checksum = _sha256(data).hexdigest() if hashed else None
    file = SqlFile(location, text, checksum, bom=bom, keep_text=keep_text, lex_body=lex_body)
    return file, None


def is_file(entry: os.DirEntry[str] | Path) -> bool:
    """A regular file, or a link to one; a link that loops (ELOOP) is not, nor one in
    a folder the user may list but not search (mode 444), which is reported apart."""
    try:
        return entry.is_file()
    except OSError:
        return False


def folder_unreadable(folder: str | os.PathLike[str], exc: OSError) -> str:
    return (
        f"{os.fspath(folder)}: cannot read the folder ({exc.strerror}); give the user "
        "running vezamig read and search access to it (chmod u+rx), or pass another --dir"
    )


def _scan(
    folder: Path, pattern: re.Pattern[str], kind: str, problems: list[str], shared: bool = False
) -> dict[int, tuple[str, str]]:
    """version -> (name, path). ``shared``: up and down files live in one folder, each
    scan takes its own kind."""
    found: dict[int, tuple[str, str]] = {}
    base = str(folder)
    if not os.path.isdir(base):
        return found
    # scandir's entries know their type without a stat per file; names sort as strings.
    try:
        with os.scandir(base) as entries:
            sql_entries = [e for e in entries if e.name.endswith(".sql")]
    except OSError as exc:  # a folder the user may not list (mode, ACL, SELinux)
        if kind == "up" or not shared:
            problems.append(folder_unreadable(base, exc))
        return found
    names = sorted([e.name for e in sql_entries if is_file(e)])
    prefix = base if base.endswith("/") else base + "/"  # str(Path) never ends in / but /
    up_scan = kind == "up"
    if len(names) < len(sql_entries) and (up_scan or not shared):  # rare: say so, once
        problems.extend(
            f"{prefix}{e.name}: not a regular file (a folder, or a link to nothing); "
            "remove or rename it"
            for e in sorted(sql_entries, key=lambda e: e.name)
            if not is_file(e)
        )
    for name in names:
        path = prefix + name
        is_down = name.endswith("_down.sql")
        if shared and is_down == up_scan:
            continue
        m = pattern.fullmatch(name)
        if up_scan and is_down:
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
        digits, stem = m.groups()
        if up_scan and len(stem) > 3 and stem.endswith("_up"):
            stem = stem[:-3]
        version = int(digits)
        if version == 0:
            problems.append(f'{path}: version 0 is reserved for "nothing applied"; start at 1')
            continue
        if version > MAX_VERSION:
            problems.append(
                f"{path}: version {version} is larger than the tracking table's "
                f"bigint allows ({MAX_VERSION}); use a shorter number"
            )
            continue
        if version in found:
            problems.append(
                f"{path}: version {version} is also used by "
                f"{os.path.basename(found[version][1])} in the same folder; "
                "give one of them a new number"
            )
            continue
        found[version] = (stem, path)
    return found


def not_a_folder(folder: Path) -> str | None:
    """What is wrong with a migration folder that exists as something else: a file, or
    a link to nothing (not an absent down folder, where every version is irreversible)."""
    if folder.is_symlink() and not folder.exists():
        return f"migration folder {folder} is a symbolic link to nothing (or a loop)"
    if folder.exists() and not folder.is_dir():
        return f"migration folder {folder} is a file, not a folder"
    return None


def check_folders(up_dir: Path, down_dir: Path) -> None:
    """The up folder must be a folder; a down folder may be absent (every version
    irreversible), but not a file. `--dir FILE` is named as the file it is."""
    for folder in (up_dir, down_dir, up_dir.parent, down_dir.parent):
        problem = not_a_folder(folder)
        if problem is not None:
            raise LayoutError(
                problem,
                details=["pass --dir DIR (DIR/up, DIR/down) or --up-dir/--down-dir"],
            )
    if not up_dir.is_dir():
        raise LayoutError(
            f"migration folder {up_dir} does not exist",
            details=[
                "pass --dir DIR (DIR/up, DIR/down) or --up-dir/--down-dir, or set VEZAMIG_DIR"
            ],
        )


def discover(
    up_dir: Path,
    down_dir: Path,
    *,
    check_directives: bool = False,
    read_down: bool | None = None,
    texts: bool = True,
    lex_bodies: bool = True,
) -> list[Migration]:
    """Return migrations ascending by version, or raise LayoutError listing every problem.

    ``check_directives``: report the directive problems of every file read (and, when
    there is any problem, of every down file too).
    ``read_down`` (default: as ``check_directives``): read every down file now
    (verify, roundtrip). Otherwise a down file is read when something needs it:
    `up` and `down` check the down files of the versions they run
    (Runner.plan), `status`, `baseline` and `repair` only need to know that
    they exist.
    ``texts=False`` (`status`, which runs and parses nothing): up files keep only
    their checksum and directives (SqlFile's ``keep_text``).
    ``lex_bodies=False`` (every command but `verify` and `roundtrip`): an up file
    whose directive header is plain is not lexed whole (SqlFile's ``lex_body``);
    Runner.plan lexes those it is about to run.
    """
    check_folders(up_dir, down_dir)
    unpaired: list[str] = []
    migrations, problems = collect(
        up_dir,
        down_dir,
        read_down=check_directives if read_down is None else read_down,
        texts=texts,
        lex_bodies=lex_bodies,
        unpaired=unpaired,
    )
    if check_directives:
        problems.extend(directive_problems(migrations))
    if problems and check_directives:
        # Failing anyway: check the down files not read yet too (those that pair with
        # no up file among them), and the bodies not lexed, so that the operator sees
        # every problem in one run rather than one folder per run.
        for m in migrations:
            problems.extend(m.up.body_lexer_problems())
            if m._down is None:
                problems.extend(m.down_problems())
        for location in unpaired:
            down, problem = read_sql(location, hashed=False)
            problems.extend([problem] if problem else down.problems if down else [])
    if problems:
        raise LayoutError(f"{len(problems)} problem(s) in the migration folders", details=problems)
    return migrations


def collect(
    up_dir: Path,
    down_dir: Path,
    *,
    read_down: bool = True,
    texts: bool = True,
    lex_bodies: bool = True,
    unpaired: list[str] | None = None,
) -> tuple[list[Migration], list[str]]:
    """Every readable migration plus every naming/pairing problem, without raising;
    ``unpaired`` receives the down files that pair with no up file (not read)."""
    problems: list[str] = []
    shared = up_dir.resolve() == down_dir.resolve()
    ups = _scan(up_dir, _UP_RE, "up", problems, shared)
    downs = _scan(down_dir, _DOWN_RE, "down", problems, shared)
    for version, (name, dpath) in downs.items():
        if version not in ups:
            problems.append(f"{dpath}: down file for version {version} has no up file")
            if unpaired is not None:
                unpaired.append(dpath)
        elif ups[version][0] != name:
            if unpaired is not None:
                unpaired.append(dpath)
            upath = ups[version][1]
            problems.append(
                f"{dpath}: name `{name}` differs from the up file's "
                f"`{ups[version][0]}` ({os.path.basename(upath)}); rename one to match"
            )
    migrations: list[Migration] = []
    for version in sorted(ups):
        name, upath = ups[version]
        up, problem = read_sql(upath, keep_text=texts, lex_body=lex_bodies)
        if problem:
            problems.append(problem)
        paired = downs.get(version)
        down_location = paired[1] if paired is not None and paired[0] == name else None
        down: SqlFile | None = None
        if down_location is not None and read_down:
            down, problem = read_sql(down_location, hashed=False)
            if problem:
                problems.append(problem)
                down_location = None
        if up is not None:
            migrations.append(Migration(version, name, up, down, down_location))
    return migrations, problems


def directive_problems(migrations: list[Migration]) -> list[str]:
    """Directive problems of every file read so far (a down file not read is skipped)."""
    problems: list[str] = []
    for m in migrations:
        for f in (m.up, m._down):
            if f is not None and f.mentions_vezamig:  # most files: nothing to ask
                problems.extend(f.problems)
    return problems
