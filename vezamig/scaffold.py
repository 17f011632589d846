"""``vezamig new``: the next migration file(s), with a header that teaches the directives."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from vezamig.errors import UsageError
from vezamig.files import MAX_VERSION, folder_unreadable, not_a_folder

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_VERSION_RE = re.compile(r"^([0-9]+)_.*\.sql$")

UP_TEMPLATE = """\
-- {version} {name}: say what this migration changes and why.
--
-- Directives go in these header comments, before the first statement, e.g.:
--   "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM t)"  must return one row: true
--   "-- vezamig:lock t"          ACCESS EXCLUSIVE lock before guards and body
--   "-- vezamig:no-transaction"  statement by statement (CREATE INDEX CONCURRENTLY)

"""

DOWN_TEMPLATE = """\
-- Roll back {version} {name}: say what is undone, and what data it would lose.
--
-- If this rollback can lose data, declare when it is safe, e.g.:
--   "-- vezamig:lock t"
--   "-- vezamig:guard SELECT NOT EXISTS (SELECT 1 FROM t WHERE new_column IS NOT NULL)"

"""


@dataclass(frozen=True)
class NewFiles:
    version: int
    up: Path
    down: Path | None
    created_folders: tuple[Path, ...] = ()


def _listed(folder: Path) -> list[Path]:
    """The folder's entries; [] when it does not exist yet (`new` creates it)."""
    if not folder.is_dir():
        return []
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise UsageError(f"{folder_unreadable(folder, exc)}; no file was created") from None


def _existing(folder: Path) -> list[str]:
    try:
        return [m[1] for p in _listed(folder) if (m := _VERSION_RE.match(p.name)) and p.is_file()]
    except OSError as exc:  # a folder it may list but not search (mode 444)
        raise UsageError(f"{folder_unreadable(folder, exc)}; no file was created") from None


def _up_suffix(up_dir: Path) -> str:
    """``_up.sql`` unless the folder's up files all use the bare ``NNN_name.sql`` form.

    A tree such as ``migrations/`` + ``migrations/rollback/`` keeps its own
    convention, so a new file looks like its neighbours.
    """
    ups = [
        p.name
        for p in _listed(up_dir)
        if _VERSION_RE.match(p.name) and not p.name.endswith("_down.sql")
    ]
    if ups and not any(n.endswith("_up.sql") for n in ups):
        return ".sql"
    return "_up.sql"


def create(up_dir: Path, down_dir: Path, name: str, *, irreversible: bool = False) -> NewFiles:
    if not _NAME_RE.fullmatch(name) or name.endswith(("_up", "_down")):
        raise UsageError(
            f"name `{name}` is not valid: use letters, digits, `_`, `.` and `-` "
            "(e.g. add_tracks_storage_backend), without a trailing _up/_down"
        )
    for folder in (up_dir, down_dir):
        problem = not_a_folder(folder)
        if problem is not None:
            raise UsageError(problem)
    versions = _existing(up_dir) + _existing(down_dir)
    width = max((len(v) for v in versions), default=3)
    version = max((int(v) for v in versions), default=0) + 1
    if version > MAX_VERSION:
        raise UsageError(
            f"the next version would be {version}, above what the tracking table's bigint "
            f"holds ({MAX_VERSION}); no file was created"
        )
    stem = f"{version:0{width}d}_{name}"
    up = up_dir / f"{stem}{_up_suffix(up_dir)}"
    down = None if irreversible else down_dir / f"{stem}_down.sql"
    # A missing folder is created (the first migration of a project), and reported.
    folders = [up_dir] + ([down_dir] if down is not None else [])
    created = tuple(dict.fromkeys(f for f in folders if not f.is_dir()))
    try:
        for p in (up, down):
            if p is not None and p.exists():
                raise UsageError(f"{p} already exists")
        for folder in created:
            folder.mkdir(parents=True, exist_ok=True)
        up.write_text(UP_TEMPLATE.format(version=version, name=name), encoding="utf-8")
        try:
            if down is not None:
                down.write_text(DOWN_TEMPLATE.format(version=version, name=name), encoding="utf-8")
        except OSError:
            up.unlink()  # both files or neither
            raise
    except OSError as exc:
        raise UsageError(
            f"cannot write {exc.filename or up}: {exc.strerror}; check the name, the folder "
            "and its permissions"
        ) from None
    return NewFiles(version, up, down, created)
