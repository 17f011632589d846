"""Find the local PostgreSQL server binaries (initdb, pg_ctl, postgres).

Distributions hide them in different places: Debian keeps them in
``/usr/lib/postgresql/N/bin`` (often with only ``pg_ctl`` symlinked onto PATH),
Fedora puts them on PATH, a source build uses ``/usr/local/pgsql/bin``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from vezamig.errors import UsageError

REQUIRED = ("initdb", "pg_ctl", "postgres")

INSTALL_HINT = (
    "Install the PostgreSQL server: Debian/Ubuntu `apt-get install postgresql`, "
    "Fedora `dnf install postgresql-server`, macOS `brew install postgresql@15`; "
    "or pass --pg-bin DIR (the folder holding initdb, pg_ctl and postgres)."
)


def missing_binaries(bindir: Path) -> list[str]:
    """Names from REQUIRED that are not runnable files in bindir."""
    return [
        name
        for name in REQUIRED
        if not ((bindir / name).is_file() and os.access(bindir / name, os.X_OK))
    ]


def find_bindir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The first folder holding initdb, pg_ctl and postgres.

    An explicit folder is never second-guessed: if it lacks a binary that is an
    error, not a reason to pick some other installation.
    """
    if explicit is not None:
        bindir = Path(explicit).expanduser().resolve()
        missing = missing_binaries(bindir)
        if missing:
            raise UsageError(f"--pg-bin {bindir}: no {', '.join(missing)} there. {INSTALL_HINT}")
        return bindir
    for candidate in _candidates():
        if not missing_binaries(candidate):
            return candidate
    raise UsageError(
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found. {INSTALL_HINT}"
    )


def _candidates() -> Iterator[Path]:
    """Places to look, in order of preference; lazily, so pg_config runs only if needed."""
    pg_ctl = shutil.which("pg_ctl")
    if pg_ctl is not None:
        yield Path(pg_ctl).resolve().parent
    from_pg_config = _pg_config_bindir()
    if from_pg_config is not None:
        yield from_pg_config
    debian = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if p.is_dir()]
    yield from sorted(debian, key=lambda p: _version_key(p.parent.name), reverse=True)
    yield Path("/usr/local/pgsql/bin")


def _pg_config_bindir() -> Path | None:
    """``pg_config --bindir``; only a hint, since pg_config ships with the client headers."""
    pg_config = shutil.which("pg_config")
    if pg_config is None:
        return None
    try:
        out = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(out) if out else None


def _version_key(name: str) -> tuple[int, ...]:
    """Sort "9.6" below "15"; names that are not versions sort lowest."""
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (-1,)
