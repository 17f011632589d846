"""`make demo` runs `python -m vezamig.demo`: the operator's whole job on the real corpus.

The demo starts its own throwaway PostgreSQL, so these tests need no fixture
server; they check what an operator sees, in order, and that the server is gone
afterwards (also after Ctrl-C). Durations are printed, never asserted.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from vezamig.cluster import process_alive

ROOT = Path(__file__).resolve().parent.parent
DEMO = [sys.executable, "-m", "vezamig.demo"]
UNPRIVILEGED = "nobody"

# What the operator types, in order (psql lines show the data the guard is about).
EXPECTED_COMMANDS = [
    "$ vezamig status",
    "$ vezamig up",
    "$ vezamig status",
    '$ psql -c "INSERT INTO users',
    '$ psql -c "INSERT INTO tracks',
    "$ vezamig down --to 984 --dry-run",
    "$ vezamig down --to 984 --yes",
    '$ psql -c "SELECT title, storage_backend, storage_key FROM tracks',
    "$ psql -c \"UPDATE tracks SET storage_backend = 'local'",
    "$ vezamig down --to 984 --yes",
    "$ vezamig status",
    "$ vezamig history --limit 5",
    '$ psql -c "CREATE DATABASE roundtrip',
    "$ vezamig roundtrip -d",
]


def demo_env(tmpdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TMPDIR")}
    env.update(TMPDIR=str(tmpdir), NO_COLOR="1", COLUMNS="200")
    return env


@pytest.fixture
def demo_tmp() -> Iterator[Path]:
    """The demo's TMPDIR, so its cluster folder can be found and must be gone afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="vezamig-demo-test-"))
    folder.chmod(0o1777)  # the server's OS user (or the unprivileged runner) writes here
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def cluster_folder(output: str) -> Path:
    """The folder named by the demo's first banner: "a throwaway PostgreSQL in DIR/sock"."""
    for line in output.splitlines():
        if "a throwaway PostgreSQL in " in line:
            return Path(line.split(" in ", 1)[1].split(" (", 1)[0]).parent
    raise AssertionError(f"no cluster banner in:\n{output}")


def servers_in(folder: Path) -> list[int]:
    """Live processes whose command line mentions folder (a postmaster or its children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if str(folder) in cmdline and process_alive(int(entry.name)):
                found.append(int(entry.name))
    return found


def assert_demo_output(output: str) -> None:
    commands = [
        line.split(" VALUES", 1)[0] for line in output.splitlines() if line.startswith("$ ")
    ]
    assert len(commands) == len(EXPECTED_COMMANDS), commands
    for seen, expected in zip(commands, EXPECTED_COMMANDS, strict=True):
        assert seen.startswith(expected), (seen, expected)
    # Every version pending, then applied with per-step progress.
    assert "current version 0 · 67 pending" in output
    assert "  ok up   985 tracks_storage_backend" in output
    assert "applied 67 version(s)" in output
    # The guard refuses, explains itself, and nothing changes.
    assert "refused: down 985 (tracks_storage_backend) refused by its guard" in output
    assert (
        "  guard:    SELECT NOT EXISTS (SELECT 1 FROM tracks WHERE storage_backend <> 'local')"
        in output
    )
    assert "  returned: false (needs exactly one row: true)" in output
    assert "Night Drive | s3 | tracks/1/night-drive.flac" in output
    # Once the track is local again, the same command succeeds.
    assert "rolled back 1 version(s)" in output
    assert "current version 984 · 1 pending" in output
    assert "roundtrip: 37 passed, 0 failed, 30 irreversible" in output
    assert "the server is gone" in output.splitlines()[-1]


def run_demo(argv: list[str], tmpdir: Path) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.monotonic()
    proc = subprocess.run(  # one stream, interleaved as on the operator's terminal
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        stdin=subprocess.DEVNULL,
        env=demo_env(tmpdir),
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    return proc, time.monotonic() - t0


def test_the_demo_shows_the_whole_job_and_removes_its_server(demo_tmp: Path) -> None:
    proc, seconds = run_demo(DEMO, demo_tmp)
    print(f"python -m vezamig.demo took {seconds:.1f}s")
    assert proc.returncode == 0, proc.stdout
    assert_demo_output(proc.stdout)
    folder = cluster_folder(proc.stdout)
    assert not folder.exists()
    assert servers_in(folder) == []
    assert list(demo_tmp.iterdir()) == []


def _can_run_as(user: str) -> str | None:
    """Why this interpreter and checkout cannot be used by user, or None if they can."""
    if shutil.which("runuser") is None:
        return "runuser is not installed"
    check = subprocess.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            sys.executable,
            "-c",
            "import vezamig.demo, psycopg, click, rich, pglast",
        ],
        capture_output=True,
        text=True,
        cwd="/",
        env={"PATH": os.environ.get("PATH", ""), "HOME": "/", "PYTHONPATH": str(ROOT)},
        check=False,
    )
    if check.returncode != 0:
        return (
            f"{sys.executable} or {ROOT} is not usable by {user!r}: "
            f"{(check.stderr.strip().splitlines() or ['?'])[-1]}"
        )
    return None


@pytest.mark.skipif(os.geteuid() != 0, reason="runs the demo as another user; needs root")
def test_the_demo_also_runs_as_a_normal_user(demo_tmp: Path) -> None:
    why_not = _can_run_as(UNPRIVILEGED)
    if why_not is not None:
        pytest.skip(why_not)
    entry = pwd.getpwnam(UNPRIVILEGED)
    home = demo_tmp / "home"
    home.mkdir()
    os.chown(home, entry.pw_uid, entry.pw_gid)
    argv = [
        "runuser",
        "-u",
        UNPRIVILEGED,
        "--",
        "env",
        f"HOME={home}",
        f"PYTHONPATH={ROOT}",
        "PYTHONDONTWRITEBYTECODE=1",
        *DEMO,
    ]
    proc, seconds = run_demo(argv, demo_tmp)
    print(f"python -m vezamig.demo as {UNPRIVILEGED} took {seconds:.1f}s")
    assert proc.returncode == 0, proc.stdout
    assert_demo_output(proc.stdout)
    assert servers_in(cluster_folder(proc.stdout)) == []
    assert [p.name for p in demo_tmp.iterdir()] == ["home"]


def test_ctrl_c_during_the_demo_removes_its_server(demo_tmp: Path) -> None:
    proc = subprocess.Popen(
        DEMO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=demo_env(demo_tmp),
        cwd=ROOT,
        start_new_session=True,
    )
    assert proc.stdout is not None
    seen = ""
    for line in proc.stdout:  # wait until the server is up and `vezamig up` has started
        seen += line
        if line.startswith("$ vezamig up"):
            break
    folder = cluster_folder(seen)
    pid = int((folder / "data" / "postmaster.pid").read_text().split("\n", 1)[0])
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C on a terminal does
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, seen + out
    assert "demo interrupted; the throwaway PostgreSQL is gone" in out
    assert not process_alive(pid)
    assert servers_in(folder) == []
    assert not folder.exists()
