"""Faults on the server side: the session is terminated, the server restarts or is down.

The session server is shared by every test, so restarts happen on a private
cluster started for the test (unix socket only, run as the server's OS user).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest
from psycopg.conninfo import make_conninfo

from vezamig.cluster import ThrowawayCluster

from .support import (
    SLEEP_SQL,
    Result,
    active_backends,
    execute,
    history,
    query,
    recorded,
    regclass_exists,
    run_cli,
    set_sleep,
    start_cli,
    table_exists,
    versions,
    wait_for,
    write_tree,
)

pytestmark = pytest.mark.reliability

SLEEPING = "pg_sleep(seconds)"


def three_step_tree(tree: Path) -> Path:
    return write_tree(
        tree,
        {
            "up/001_first_up.sql": "CREATE TABLE first_t (id int);\n",
            "up/002_slow_up.sql": "CREATE TABLE slow_t (id int);\nINSERT INTO slow_t VALUES (2);\n"
            + SLEEP_SQL,
            "up/003_last_up.sql": "CREATE TABLE last_t (id int);\n",
        },
    )


def test_a_session_terminated_by_the_server_mid_step_fails_clearly_and_changes_nothing(
    dsn: str, tree: Path
) -> None:
    set_sleep(dsn, 600)
    three_step_tree(tree)
    run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    wait_for(lambda: bool(active_backends(dsn, SLEEPING)), what="step 2 to be running")
    [pid] = active_backends(dsn, SLEEPING)

    assert query(dsn, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    result = run.wait(timeout=30)

    assert result.returncode == 1, result
    assert "up 2 (slow) failed and was rolled back" in result.stderr
    assert "connection lost during the step" in result.stderr
    assert "the step did not commit (checked on a new connection" in result.stderr
    assert "Traceback" not in result.output
    assert versions(dsn) == [1]
    assert not table_exists(dsn, "slow_t") and not table_exists(dsn, "last_t")

    set_sleep(dsn, 0)
    rerun = run_cli(["up", "-d", dsn, "--dir", str(tree)])
    assert rerun.returncode == 0, rerun
    assert versions(dsn) == [1, 2, 3]
    assert query(dsn, "SELECT id FROM slow_t") == [(2,)]
    # The failed step's row, written on a new connection (SPEC §4: one per failed step).
    assert [(h["version"], h["outcome"]) for h in history(dsn)] == [
        (1, "ok"),
        (2, "failed"),
        (2, "ok"),
        (3, "ok"),
    ]


@pytest.mark.parametrize("no_transaction", [False, True])
def test_a_session_terminated_during_a_guard_is_a_failure_not_a_refusal(
    dsn: str, tree: Path, no_transaction: bool
) -> None:
    """A guard that never answered did not say no: exit 1, "connection lost", never the
    exit 3 a script would read as "unsafe to proceed"."""
    set_sleep(dsn, 600)
    header = "-- vezamig:no-transaction\n" if no_transaction else ""
    guard = "-- vezamig:guard SELECT true FROM fault_switch, pg_sleep(seconds)\n"
    write_tree(tree, {"up/001_g_up.sql": f"{header}{guard}CREATE TABLE g (id int);\n"})
    run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    wait_for(lambda: bool(active_backends(dsn, "pg_sleep(seconds)")), what="the guard")
    [pid] = active_backends(dsn, "pg_sleep(seconds)")
    assert query(dsn, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    result = run.wait(timeout=30)

    assert result.returncode == 1, result
    assert "connection was lost while its guards ran" in result.stderr or (
        "connection lost during the step" in result.stderr
    )
    assert "refused" not in result.stderr
    assert "Traceback" not in result.output
    assert versions(dsn) == [] and not table_exists(dsn, "g")
    # SPEC §4: a failed step has its history row, written on a new connection.
    assert [(h["version"], h["outcome"]) for h in history(dsn)] == [(1, "failed")]


def pg_ctl(cluster: ThrowawayCluster, *args: str) -> None:
    """Run pg_ctl on the private cluster as the OS user that owns it (as cluster.py does)."""
    argv = [str(cluster.bindir / "pg_ctl"), *args, "-D", str(cluster.datadir)]
    if cluster.os_user is not None:
        assert shutil.which("runuser"), "as root the cluster is driven through runuser"
        argv = ["runuser", "-u", cluster.os_user, "--", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(argv, check=True, capture_output=True, env=env, cwd=cluster.tmpdir, timeout=120)


@pytest.fixture
def private_cluster(pg_bindir: Path) -> Iterator[ThrowawayCluster]:
    with ThrowawayCluster(pg_bindir) as cluster:
        yield cluster


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_a_server_restart_mid_run_fails_the_step_and_the_next_run_continues(
    private_cluster: ThrowawayCluster, tree: Path, mode: str
) -> None:
    dsn = private_cluster.conninfo()
    set_sleep(dsn, 600)
    three_step_tree(tree)
    run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    wait_for(lambda: bool(active_backends(dsn, SLEEPING)), what="step 2 to be running")

    # fast: sessions are told to terminate; immediate: a crash, with recovery on start.
    pg_ctl(private_cluster, "restart", "-w", "-m", mode, "-l", str(private_cluster.logfile))
    result = run.wait(timeout=60)

    assert result.returncode == 1, result
    assert "up 2 (slow) failed and was rolled back" in result.stderr
    assert "connection lost during the step" in result.stderr
    assert "Traceback" not in result.output
    assert versions(dsn) == [1]
    assert table_exists(dsn, "first_t")
    assert not table_exists(dsn, "slow_t") and not table_exists(dsn, "last_t")

    set_sleep(dsn, 0)
    rerun = run_cli(["up", "-d", dsn, "--dir", str(tree)])
    assert rerun.returncode == 0, rerun
    assert "applied 2 version(s)" in rerun.stdout
    assert versions(dsn) == [1, 2, 3]


def test_a_server_that_is_down_is_exit_5_and_changes_nothing(
    private_cluster: ThrowawayCluster, tree: Path
) -> None:
    dsn = private_cluster.conninfo()
    three_step_tree(tree)
    pg_ctl(private_cluster, "stop", "-w", "-m", "fast")
    try:
        for command in (["up"], ["status"], ["down", "--yes"]):
            result = run_cli([*command, "-d", dsn, "--dir", str(tree)])
            assert result.returncode == 5, result
            assert result.stderr.startswith("error: cannot connect to the database"), result
            assert "Traceback" not in result.output
    finally:
        pg_ctl(private_cluster, "start", "-w", "-l", str(private_cluster.logfile))
    assert versions(dsn) == []


# ---- a stop signal while the server commits -----------------------------------------------
#
# A synchronous standby that never answers holds each COMMIT in the server's SyncRep
# wait: a deterministic moment "after the step's work, during its COMMIT". A cancel
# there ends the wait with a WARNING ("already committed locally") and the COMMIT
# succeeds, so the step is applied: vezamig must say so, not "rolled back".


@contextmanager
def commits_wait_for_a_missing_standby(dsn: str) -> Iterator[None]:
    execute(dsn, "ALTER SYSTEM SET synchronous_standby_names = 'nosuchstandby'")
    execute(dsn, "SELECT pg_reload_conf()")
    try:
        yield
    finally:
        execute(dsn, "ALTER SYSTEM RESET synchronous_standby_names")
        execute(dsn, "SELECT pg_reload_conf()")


def end_the_session_waiting_for_the_standby(dsn: str) -> None:
    """Its COMMIT has committed locally: the session ends before it could say so."""
    execute(
        dsn, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
    )


def waiting_in_syncrep(dsn: str, needle: str) -> bool:
    rows = query(
        dsn,
        "SELECT 1 FROM pg_stat_activity WHERE wait_event = 'SyncRep'"
        " AND application_name LIKE 'vezamig%%' AND query LIKE %s",
        (f"%{needle}%",),
    )
    return bool(rows)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_stop_signal_while_a_step_commits_says_the_step_is_applied(
    private_cluster: ThrowawayCluster, tree: Path, signum: int, code: int
) -> None:
    dsn = private_cluster.conninfo()
    write_tree(
        tree,
        {
            "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
            "up/002_b_up.sql": "CREATE TABLE b (id int);\n",
            "up/003_c_up.sql": "CREATE TABLE c (id int);\n",
        },
    )
    assert run_cli(["up", "-d", dsn, "--dir", str(tree), "--to", "1"]).returncode == 0
    with commits_wait_for_a_missing_standby(dsn):
        run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
        wait_for(lambda: waiting_in_syncrep(dsn, "CREATE TABLE b"), what="2's COMMIT to wait")
        run.send(signum)
        result = run.wait(timeout=30)
    assert result.returncode == code, result
    assert "up 2 (b) ran; it finished first and is applied; no later step was run" in (
        result.stderr
    )
    assert "rolled back" not in result.stderr
    assert versions(dsn) == [1, 2] and table_exists(dsn, "b") and not table_exists(dsn, "c")
    assert [(h["version"], h["outcome"]) for h in history(dsn)] == [(1, "ok"), (2, "ok")]


def test_a_stop_signal_in_a_non_transactional_step_stops_between_statements_and_says_so(
    private_cluster: ThrowawayCluster, tree: Path
) -> None:
    # The signal comes while the progress row after statement 1 commits: statement 1
    # ran, statement 2 must not start, and the output must say exactly that.
    dsn = private_cluster.conninfo()
    set_sleep(dsn, 1.5)
    notx = f"-- vezamig:no-transaction\n{SLEEP_SQL}CREATE TABLE c (id int);\n"
    write_tree(tree, {"up/001_a_up.sql": "CREATE TABLE a (id int);\n", "up/002_b_up.sql": notx})
    assert run_cli(["up", "-d", dsn, "--dir", str(tree), "--to", "1"]).returncode == 0
    run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    wait_for(lambda: bool(active_backends(dsn, SLEEPING)), what="statement 1 to run")
    with commits_wait_for_a_missing_standby(dsn):
        wait_for(lambda: waiting_in_syncrep(dsn, "UPDATE"), what="the progress row's commit")
        run.send(signal.SIGINT)
        time.sleep(0.5)  # the last progress update waits for the standby too
    result = run.wait(timeout=30)
    assert result.returncode == 130, result
    assert "it stopped between statements; it is now dirty" in result.stderr
    path = tree / "up" / "002_b_up.sql"
    assert f"statements that ran: {path}:2" in result.stderr
    assert f"statements not run: {path}:3" in result.stderr
    assert not table_exists(dsn, "c")
    assert query(dsn, "SELECT version, dirty FROM schema_migrations ORDER BY 1") == [
        (1, False),
        (2, True),
    ]
    [row] = [h for h in history(dsn) if h["version"] == 2]
    assert row["message"].startswith("interrupted between statements, after 1 of 2")


def test_a_stop_signal_before_a_non_transactional_step_s_first_statement_leaves_it_clean(
    private_cluster: ThrowawayCluster, tree: Path
) -> None:
    # Stopped while the step's dirty mark committed: nothing of it ran, so the mark is
    # undone and no repair is needed (once said "nothing was in progress", left dirty).
    dsn = private_cluster.conninfo()
    notx = "-- vezamig:no-transaction\nCREATE TABLE b (id int);\n"
    write_tree(tree, {"up/001_a_up.sql": "CREATE TABLE a (id int);\n", "up/002_b_up.sql": notx})
    assert run_cli(["up", "-d", dsn, "--dir", str(tree), "--to", "1"]).returncode == 0
    with commits_wait_for_a_missing_standby(dsn):
        run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
        wait_for(lambda: waiting_in_syncrep(dsn, "COMMIT"), what="the dirty mark's commit")
        run.send(signal.SIGINT)
        time.sleep(0.5)  # the undo waits for the standby too
    result = run.wait(timeout=30)
    assert result.returncode == 130, result
    assert "before non-transactional up 2 (b) ran its first statement; nothing of it" in (
        result.stderr
    )
    assert versions(dsn) == [1] and not table_exists(dsn, "b")
    [row] = [h for h in history(dsn) if h["version"] == 2]
    assert (row["outcome"], row["message"]) == (
        "failed",
        "interrupted before its first statement; nothing ran",
    )


def test_a_connection_lost_after_the_commit_says_the_step_is_applied(
    private_cluster: ThrowawayCluster, tree: Path
) -> None:
    # The session is terminated while its COMMIT waits for the standby: committed
    # locally. The new connection finds the tracking row: applied, said so, exit 5
    # (the run could not go on), no failed history row.
    dsn = private_cluster.conninfo()
    files = {"up/001_a_up.sql": "CREATE TABLE a ();\n", "up/002_b_up.sql": "CREATE TABLE b ();\n"}
    write_tree(tree, files)
    assert run_cli(["up", "-d", dsn, "--dir", str(tree), "--to", "1"]).returncode == 0
    with commits_wait_for_a_missing_standby(dsn):
        run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
        wait_for(lambda: waiting_in_syncrep(dsn, "CREATE TABLE b"), what="2's COMMIT to wait")
        end_the_session_waiting_for_the_standby(dsn)
    result = run.wait(timeout=60)
    assert result.returncode == 5, result
    assert "lost the database connection after up 2 (b) committed: it is applied" in result.stderr
    assert "rolled back" not in result.stderr
    assert versions(dsn) == [1, 2] and table_exists(dsn, "b")
    assert [(h["version"], h["outcome"]) for h in history(dsn)] == [(1, "ok"), (2, "ok")]


def test_a_connection_lost_with_no_server_to_ask_says_the_outcome_is_not_known(
    private_cluster: ThrowawayCluster, tree: Path
) -> None:
    dsn = private_cluster.conninfo()
    set_sleep(dsn, 600)
    three_step_tree(tree)
    run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    wait_for(lambda: bool(active_backends(dsn, SLEEPING)), what="step 2 to be running")
    pg_ctl(private_cluster, "stop", "-w", "-m", "immediate")
    try:
        result = run.wait(timeout=60)  # ≈ 10 s of attempts to reach the server again
    finally:
        pg_ctl(private_cluster, "start", "-w", "-l", str(private_cluster.logfile))
    assert result.returncode == 5, result
    assert "lost the database connection during up 2 (slow), and whether its COMMIT" in (
        result.stderr
    )
    assert "run `vezamig status` once the database is back" in result.stderr
    assert "Traceback" not in result.output
    assert versions(dsn) == [1]


def test_one_stop_signal_ends_the_run_even_while_commits_wait_for_a_standby(
    private_cluster: ThrowawayCluster, tree: Path
) -> None:
    # The body is cancelled; the failed step's history row then commits without
    # waiting for the standby that never answers (it waited for ever: a service
    # manager's SIGTERM never stopped the run).
    dsn = private_cluster.conninfo()
    set_sleep(dsn, 600)
    three_step_tree(tree)
    assert run_cli(["up", "-d", dsn, "--dir", str(tree), "--to", "1"]).returncode == 0
    with commits_wait_for_a_missing_standby(dsn):
        run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
        wait_for(lambda: bool(active_backends(dsn, SLEEPING)), what="step 2 to be running")
        run.send(signal.SIGTERM)
        result = run.wait(timeout=20)
    assert result.returncode == 143, result
    assert "interrupted during up 2 (slow)" in result.stderr
    assert versions(dsn) == [1]
    assert [(h["version"], h["outcome"]) for h in history(dsn)] == [(1, "ok"), (2, "failed")]


NO_TX_TREE = {
    "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
    "up/002_i_up.sql": "-- vezamig:no-transaction\nCREATE INDEX CONCURRENTLY i ON a (id);\n",
}


def only_1_applied(dsn: str, tree: Path) -> None:
    """NO_TX_TREE written, and its 1 applied: 2, the no-transaction step, is next."""
    write_tree(tree, NO_TX_TREE)
    assert run_cli(["up", "-d", dsn, "--dir", str(tree), "--to", "1"]).returncode == 0


def said_nothing_of_2_ran(dsn: str, result: Result) -> None:
    """2 is left dirty with none of its statements run, and the message says so,
    naming the repair."""
    assert result.returncode == 1, result
    assert (
        "up 2 (i) failed before its first statement: the connection was lost just after it "
        "was recorded as started (dirty); none of its statements ran"
    ) in result.stderr
    assert "repair --rolled-back 2" in result.stderr
    assert recorded(dsn) == [(1, False), (2, True)]
    assert not regclass_exists(dsn, "i")


def test_a_connection_lost_just_after_the_dirty_mark_committed_says_nothing_ran(
    private_cluster: ThrowawayCluster, tree: Path
) -> None:
    # 2's first commit (the dirty mark) waits for the standby, committed locally: the
    # session is ended there. Its statements never ran, and the message says so,
    # naming the repair; before, it said "no step was in progress" (exit 5).
    dsn = private_cluster.conninfo()
    only_1_applied(dsn, tree)
    with commits_wait_for_a_missing_standby(dsn):
        run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
        wait_for(lambda: waiting_in_syncrep(dsn, "COMMIT"), what="2's dirty mark to wait")
        end_the_session_waiting_for_the_standby(dsn)
        result = run.wait(timeout=60)
    said_nothing_of_2_ran(dsn, result)
    assert history(dsn)[-1]["message"] == (
        "connection lost before its first statement; nothing of it ran"
    )


class CuttingProxy:
    """A unix-socket proxy in front of a cluster whose client sides can be cut while
    the server sides stay open, as a failed network link does: the client sees its
    connection lost while its session lives on (here, in a COMMIT waiting for a
    standby). Sessions that are not cut are passed through untouched."""

    def __init__(self, cluster: ThrowawayCluster) -> None:
        self.upstream = os.path.join(cluster.host, f".s.PGSQL.{cluster.port}")
        self.folder = tempfile.mkdtemp(prefix="vzcut-")  # short: socket paths are limited
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(os.path.join(self.folder, ".s.PGSQL.5432"))
        self.listener.listen(8)
        self.pairs: list[tuple[socket.socket, socket.socket]] = []
        self.cut: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def conninfo(self) -> str:
        return make_conninfo(host=self.folder, port=5432, user="postgres", dbname="postgres")

    def cut_clients(self) -> None:
        """Every client connected now loses its connection; the server keeps its end."""
        for client, _ in self.pairs:
            self.cut.add(client)
            with suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.listener.close()
        for pair in self.pairs:
            for end in pair:
                end.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.upstream)
            self.pairs.append((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        if src not in self.cut and dst not in self.cut:  # the client ended its session
            with suppress(OSError):
                dst.shutdown(socket.SHUT_WR)


def test_a_connection_cut_while_the_dirty_mark_commits_ends_the_live_session_first(
    private_cluster: ThrowawayCluster, tree: Path
) -> None:
    # The link fails while 2's dirty mark waits in its COMMIT (committed locally, not
    # yet visible): the session lives on. vezamig must find it by the COMMIT that
    # pg_stat_activity shows and end it before reading the record; read too early, the
    # mark is not there yet and vezamig said nothing had been changed.
    dsn = private_cluster.conninfo()
    only_1_applied(dsn, tree)
    proxy = CuttingProxy(private_cluster)
    try:
        with commits_wait_for_a_missing_standby(dsn):
            run = start_cli(["up", "-d", proxy.conninfo(), "--dir", str(tree)])
            wait_for(lambda: waiting_in_syncrep(dsn, "COMMIT"), what="2's dirty mark to wait")
            proxy.cut_clients()
            result = run.wait(timeout=60)
            assert not waiting_in_syncrep(dsn, "COMMIT"), "the lost session was left running"
    finally:
        proxy.close()
    said_nothing_of_2_ran(dsn, result)


def test_a_connection_lost_while_the_end_of_a_no_tx_step_commits_says_it_is_applied(
    private_cluster: ThrowawayCluster, tree: Path
) -> None:
    # Only the COMMIT that marks 2 clean waits for the (missing) standby: the session
    # is ended there, committed locally. Before, vezamig said 2 was dirty and to repair.
    dsn = private_cluster.conninfo()
    only_1_applied(dsn, tree)
    execute(
        dsn,
        "CREATE FUNCTION wait_on_clean() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " IF OLD.dirty AND NOT NEW.dirty THEN"
        " PERFORM set_config('synchronous_commit', 'on', true); END IF; RETURN NEW; END $$;"
        " CREATE TRIGGER wait_on_clean AFTER UPDATE ON schema_migrations"
        " FOR EACH ROW EXECUTE FUNCTION wait_on_clean()",
    )
    execute(dsn, "ALTER ROLE CURRENT_USER SET synchronous_commit = local")
    try:
        with commits_wait_for_a_missing_standby(dsn):
            run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
            wait_for(lambda: waiting_in_syncrep(dsn, "dirty = false"), what="the end to wait")
            end_the_session_waiting_for_the_standby(dsn)
            result = run.wait(timeout=60)
    finally:
        execute(dsn, "ALTER ROLE CURRENT_USER RESET synchronous_commit")
    assert result.returncode == 5, result
    assert "lost the database connection after up 2 (i) was recorded finished: it is applied" in (
        result.stderr
    )
    assert "dirty" not in result.stderr
    assert recorded(dsn) == [(1, False), (2, False)]
    assert [(h["version"], h["outcome"]) for h in history(dsn)] == [(1, "ok"), (2, "ok")]


def test_a_session_the_server_ended_while_the_prompt_waited_changes_nothing(
    dsn: str, tree: Path
) -> None:
    from helpers import run_cli_on_terminal

    files = {"up/001_a_up.sql": "CREATE TABLE a ();\n", "down/001_a_down.sql": "DROP TABLE a;\n"}
    write_tree(tree, files)
    assert run_cli(["up", "-d", dsn, "--dir", str(tree)]).returncode == 0
    # This test's database only: sessions idle for a second are ended by the server.
    execute(
        dsn,
        "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET idle_session_timeout = 1000',"
        " current_database()); END $$",
    )
    result = run_cli_on_terminal(
        ["down", "-d", dsn, "--dir", str(tree), "--no-color"], "y", delay=2.5
    )
    assert result.returncode == 5, result
    assert "the database ended the session while vezamig waited for the answer" in result.stdout
    assert "nothing was changed" in result.stdout
    assert versions(dsn) == [1] and table_exists(dsn, "a")
    assert [(h["version"], h["outcome"]) for h in history(dsn)] == [(1, "ok")]


def test_a_connection_lost_while_the_dirty_mark_is_written_changes_nothing_and_says_so(
    dsn: str, tree: Path
) -> None:
    only_1_applied(dsn, tree)
    set_sleep(dsn, 600)
    execute(
        dsn,
        "CREATE FUNCTION slow_mark() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
        " PERFORM pg_sleep(seconds) FROM fault_switch; RETURN NEW; END $$;"
        " CREATE TRIGGER slow_mark AFTER INSERT ON schema_migrations"
        " FOR EACH ROW EXECUTE FUNCTION slow_mark()",
    )
    run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    wait_for(lambda: bool(active_backends(dsn, "INSERT INTO")), what="2's dirty mark")
    [pid] = active_backends(dsn, "INSERT INTO")
    assert query(dsn, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    result = run.wait(timeout=60)
    assert result.returncode == 1, result
    assert "up 2 (i) failed before it started: the connection was lost while it was being " in (
        result.stderr
    )
    assert "nothing was changed (checked on a new connection)" in result.stderr
    assert recorded(dsn) == [(1, False)]
    assert [(h["version"], h["outcome"], h["message"]) for h in history(dsn)][-1] == (
        2,
        "failed",
        "connection lost before its first statement; nothing of it ran",
    )


def test_a_session_terminated_during_a_dry_run_s_guard_says_why(dsn: str, tree: Path) -> None:
    set_sleep(dsn, 600)
    guard = "-- vezamig:guard SELECT true FROM fault_switch, pg_sleep(seconds)\n"
    write_tree(tree, {"up/001_g_up.sql": f"{guard}CREATE TABLE g (id int);\n"})
    run = start_cli(["up", "--dry-run", "-d", dsn, "--dir", str(tree)])
    wait_for(lambda: bool(active_backends(dsn, SLEEPING)), what="the guard")
    [pid] = active_backends(dsn, SLEEPING)
    assert query(dsn, "SELECT pg_terminate_backend(%s)", (pid,)) == [(True,)]
    result = run.wait(timeout=30)
    assert result.returncode == 5, result
    # What the server or libpq said, not "the connection is closed" from a later ROLLBACK.
    assert "the connection is closed" not in result.stderr
    assert "server closed the connection" in result.stderr or (
        "terminating connection due to administrator command" in result.stderr
    )
    assert versions(dsn) == [] and not table_exists(dsn, "g")


def as_cluster_user(cluster: ThrowawayCluster, argv: list[str]) -> None:
    if cluster.os_user is not None:
        argv = ["runuser", "-u", cluster.os_user, "--", *argv]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    subprocess.run(argv, check=True, capture_output=True, env=env, cwd=cluster.tmpdir, timeout=120)


@contextmanager
def hot_standby(cluster: ThrowawayCluster) -> Iterator[str]:
    """A streaming replica of ``cluster`` (same socket folder, port + 1); its dsn."""
    assert cluster.tmpdir is not None
    data = cluster.tmpdir / "standby"
    port = cluster.port + 1
    bindir = cluster.bindir
    as_cluster_user(
        cluster,
        [
            str(bindir / "pg_basebackup"),
            "-D",
            str(data),
            "-R",
            "-X",
            "stream",
            "-h",
            cluster.host,
            "-p",
            str(cluster.port),
            "-U",
            cluster.user,
        ],
    )
    log = cluster.tmpdir / "standby.log"
    as_cluster_user(
        cluster,
        [
            str(bindir / "pg_ctl"),
            "start",
            "-w",
            "-t",
            "60",
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            f"-p {port}",
        ],
    )
    try:
        yield cluster.conninfo().replace(f"port={cluster.port}", f"port={port}")
    finally:
        as_cluster_user(cluster, [str(bindir / "pg_ctl"), "stop", "-m", "fast", "-D", str(data)])


def test_a_hot_standby_is_read_by_status_and_refused_by_every_writing_command(
    private_cluster: ThrowawayCluster, tree: Path
) -> None:
    primary = private_cluster.conninfo()
    write_tree(
        tree,
        {
            "up/001_a_up.sql": "CREATE TABLE a (id int);\n",
            "down/001_a_down.sql": "DROP TABLE a;\n",
            "up/002_b_up.sql": "CREATE TABLE b (id int);\n",
        },
    )
    assert run_cli(["up", "--to", "1", "-d", primary, "--dir", str(tree)]).returncode == 0
    with hot_standby(private_cluster) as standby:
        wait_for(lambda: versions(standby) == [1], what="the standby to replay version 1")
        status = run_cli(["status", "-d", standby, "--dir", str(tree)])
        assert status.returncode == 0, status
        assert "current version 1" in status.stdout
        edited = write_tree(tree.parent / "edited", {"up/001_a_up.sql": "CREATE TABLE a ();\n"})
        for command in (
            ["up", "--dir", str(tree)],
            ["down", "--yes", "--dir", str(tree)],
            ["baseline", "--version", "1", "--table", "other", "--dir", str(tree)],
            ["repair", "--checksums", "--yes", "--dir", str(edited)],
        ):
            result = run_cli([*command, "-d", standby])
            assert result.returncode == 2, (command, result)
            assert "the server is a hot standby (in recovery): it accepts no writes" in (
                result.stderr
            )
            assert "nothing was changed" in result.stderr
            assert "connect to the primary" in result.stderr
    assert versions(primary) == [1]
    assert len(history(primary)) == 1
