"""The throwaway cluster (SPEC §7), server-binary discovery, and the shared DB fixtures."""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from vezamig.cluster import ClusterError, ThrowawayCluster, process_alive
from vezamig.errors import UsageError
from vezamig.pgbin import find_bindir


@pytest.fixture
def private_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp folder of our own for clusters, so leftovers can be counted.

    Under /tmp and world-traversable: as root the server's OS user must reach it
    (pytest's tmp_path is 0700 and owned by root).
    """
    folder = Path(tempfile.mkdtemp(prefix="vezamig-test-"))
    folder.chmod(0o711)
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    yield folder
    monkeypatch.undo()
    subprocess.run(["rm", "-rf", str(folder)], check=False)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_find_bindir_finds_a_folder_with_the_server_binaries(pg_bindir: Path) -> None:
    found = find_bindir()
    assert {"initdb", "pg_ctl", "postgres"} <= {p.name for p in found.iterdir()}


def _fake_bin(folder: Path, names: tuple[str, ...], real: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).symlink_to(real / name)
    return folder


def test_find_bindir_prefers_pg_ctl_on_path(
    tmp_path: Path, pg_bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    on_path = _fake_bin(tmp_path / "onpath", ("initdb", "postgres"), pg_bindir)
    wrapper = on_path / "pg_ctl"  # a file of its own, so the folder is not resolved away
    wrapper.write_text(f'#!/bin/sh\nexec {pg_bindir / "pg_ctl"} "$@"\n')
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{on_path}:/bin")
    assert find_bindir() == on_path.resolve()


def test_find_bindir_asks_pg_config_when_pg_ctl_is_not_on_path(
    tmp_path: Path, pg_bindir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chosen = _fake_bin(tmp_path / "chosen", ("initdb", "pg_ctl", "postgres"), pg_bindir)
    tools = tmp_path / "tools"
    tools.mkdir()
    pg_config = tools / "pg_config"
    pg_config.write_text(f'#!/bin/sh\n[ "$1" = --bindir ] && echo {chosen}\n')
    pg_config.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:/bin")  # no pg_ctl anywhere on it
    assert find_bindir() == chosen


def test_find_bindir_rejects_an_explicit_folder_without_binaries(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as info:
        find_bindir(tmp_path)
    assert "initdb, pg_ctl, postgres" in str(info.value)
    assert "apt-get install postgresql" in str(info.value)


def test_cluster_accepts_connections_on_its_unix_socket(private_tmp: Path) -> None:
    with ThrowawayCluster() as cluster, psycopg.connect(cluster.conninfo()) as conn:
        assert Path(cluster.host).is_dir()
        assert conn.info.host == cluster.host
        row = conn.execute("SELECT inet_server_addr() IS NULL, current_user").fetchone()
        assert row == (True, "postgres")


def test_cluster_listens_on_no_tcp_port(private_tmp: Path) -> None:
    with ThrowawayCluster() as cluster, psycopg.connect(cluster.conninfo()) as conn:
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)


def test_cluster_server_does_not_run_as_root(private_tmp: Path) -> None:
    with ThrowawayCluster() as cluster:
        assert cluster.pid is not None
        owner = Path(f"/proc/{cluster.pid}").stat().st_uid
    expected = pwd.getpwnam("postgres").pw_uid if os.geteuid() == 0 else os.geteuid()
    assert owner == expected


def test_stopping_the_cluster_removes_its_folder_and_server(private_tmp: Path) -> None:
    with ThrowawayCluster() as cluster:
        pid, folder = cluster.pid, cluster.tmpdir
        assert pid is not None and process_alive(pid)
        assert folder is not None and folder.is_dir()
    assert not process_alive(pid)
    assert not folder.exists()
    assert leftovers(private_tmp) == []


def test_an_exception_in_the_with_block_still_removes_the_cluster(private_tmp: Path) -> None:
    seen: dict[str, Any] = {}
    with pytest.raises(RuntimeError, match="boom"), ThrowawayCluster() as cluster:
        seen.update(pid=cluster.pid, folder=cluster.tmpdir)
        raise RuntimeError("boom")
    assert not process_alive(seen["pid"])
    assert not seen["folder"].exists()
    assert leftovers(private_tmp) == []


def test_a_failed_start_raises_with_the_server_log_and_leaves_nothing(private_tmp: Path) -> None:
    cluster = ThrowawayCluster(settings={"shared_buffers": "not-a-size"})
    with pytest.raises(ClusterError) as info:
        cluster.start()
    assert "pg_ctl start failed" in str(info.value)
    assert "shared_buffers" in str(info.value)
    assert cluster.tmpdir is None
    assert leftovers(private_tmp) == []


def test_two_clusters_can_run_at_once(private_tmp: Path) -> None:
    with ThrowawayCluster() as one, ThrowawayCluster() as two:
        for cluster in (one, two):
            with psycopg.connect(cluster.conninfo()) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        assert one.host != two.host
    assert leftovers(private_tmp) == []


CHILD = textwrap.dedent(
    """
    import sys, tempfile, time
    from vezamig.cluster import ThrowawayCluster, raise_on_sigterm
    tempfile.tempdir = sys.argv[1]
    with raise_on_sigterm(), ThrowawayCluster() as cluster:
        print(cluster.pid, cluster.tmpdir, flush=True)
        time.sleep(600)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_a_process_running_a_cluster_removes_the_cluster(
    private_tmp: Path, signum: signal.Signals
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(private_tmp)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        pid_text, folder_text = child.stdout.readline().split()
        pid, folder = int(pid_text), Path(folder_text)
        assert process_alive(pid) and folder.is_dir()
        child.send_signal(signum)
        _, stderr = child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode != 0
    assert ("KeyboardInterrupt" if signum == signal.SIGINT else "Interrupted") in stderr
    assert not process_alive(pid)
    assert not folder.exists()
    assert leftovers(private_tmp) == []


SLOW_INITDB = textwrap.dedent(
    """
    import sys, tempfile
    from vezamig.cluster import ThrowawayCluster, raise_on_sigterm
    tempfile.tempdir = sys.argv[1]
    with raise_on_sigterm(), ThrowawayCluster():
        pass
    """
)


def _initdb_pids(folder: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if cmdline[0].endswith(b"initdb") and str(folder).encode() in b" ".join(cmdline):
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_vezamig_alone_during_initdb_leaves_no_initdb_and_no_folder(
    private_tmp: Path, signum: signal.Signals
) -> None:
    # Not Ctrl-C on a terminal (that reaches the whole process group): `kill -INT pid`,
    # or a CI timeout, reaches vezamig only; initdb runs under runuser as root.
    child = subprocess.Popen(
        [sys.executable, "-c", SLOW_INITDB, str(private_tmp)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not _initdb_pids(private_tmp) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _initdb_pids(private_tmp), "initdb never started"
        child.send_signal(signum)
        child.communicate(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()
    assert child.returncode != 0
    assert _initdb_pids(private_tmp) == []
    assert leftovers(private_tmp) == []


def test_postgresql_and_dsn_fixtures_share_one_database(
    postgresql: psycopg.Connection[Any], dsn: str
) -> None:
    postgresql.execute("CREATE TABLE seen_from_both (id int)")
    postgresql.execute("INSERT INTO seen_from_both VALUES (42)")
    postgresql.commit()
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT id FROM seen_from_both").fetchall() == [(42,)]
        assert "password" not in dsn


def test_make_database_gives_another_empty_database(
    postgresql: psycopg.Connection[Any], dsn: str, make_database: Callable[[], str]
) -> None:
    other = make_database()
    assert other != dsn
    with psycopg.connect(other) as conn:
        user_tables = (
            "SELECT count(*) FROM pg_tables"
            " WHERE schemaname NOT IN ('pg_catalog', 'information_schema')"
        )
        assert conn.execute(user_tables).fetchone() == (0,)
        assert conn.info.dbname != postgresql.info.dbname


def test_session_server_is_a_socket_only_cluster_as_root_else_postgresql_proc(
    pg_server: Any, postgresql: psycopg.Connection[Any]
) -> None:
    listen = postgresql.execute("SHOW listen_addresses").fetchone()
    if os.geteuid() == 0:
        assert Path(pg_server.host).is_dir()
        assert listen == ("",)
    else:
        assert pg_server.host == "127.0.0.1"
        assert listen is not None and listen != ("",)
