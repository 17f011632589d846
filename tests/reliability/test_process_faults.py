"""Faults that happen to the vezamig process itself: SIGKILL, SIGINT, SIGTERM mid-step.

Every test ends by asserting the database's final state: what is recorded,
what exists, and that a re-run does the right thing.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from .support import (
    SLEEP_SQL,
    active_backends,
    history,
    query,
    recorded,
    run_cli,
    run_lock_held,
    set_sleep,
    start_cli,
    table_exists,
    versions,
    wait_for,
    write_tree,
)

pytestmark = pytest.mark.reliability

SLEEPING = "pg_sleep(seconds)"


def slow_tree(tree: Path) -> Path:
    """Version 1 is quick; version 2 changes things and then sleeps while the switch says so."""
    return write_tree(
        tree,
        {
            "up/001_first_up.sql": "CREATE TABLE first_t (id int);\n",
            "up/002_slow_up.sql": (
                "CREATE TABLE slow_t (id int);\nINSERT INTO slow_t VALUES (1);\n" + SLEEP_SQL
            ),
            "down/002_slow_down.sql": "DROP TABLE slow_t;\n",
        },
    )


def backend_alive(dsn: str, pid: int) -> bool:
    return bool(query(dsn, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,))[0][0])


def test_sigkill_mid_step_leaves_nothing_and_the_server_ends_the_session_promptly(
    dsn: str, tree: Path
) -> None:
    # A 10-minute statement: without client_connection_check_interval the server
    # would keep running it (and holding the run lock) long after the client died.
    set_sleep(dsn, 600)
    slow_tree(tree)
    run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    wait_for(lambda: bool(active_backends(dsn, SLEEPING)), what="step 2 to be running")
    [pid] = active_backends(dsn, SLEEPING)

    run.send(signal.SIGKILL)
    assert run.wait().returncode == -signal.SIGKILL

    wait_for(
        lambda: not backend_alive(dsn, pid),
        timeout=20,
        what="the server to notice the dead client and end its session",
    )
    assert versions(dsn) == [1]
    assert not table_exists(dsn, "slow_t")
    assert [(h["version"], h["outcome"]) for h in history(dsn)] == [(1, "ok")]

    set_sleep(dsn, 0)
    rerun = run_cli(["up", "-d", dsn, "--dir", str(tree), "--lock-wait", "5s"])
    assert rerun.returncode == 0, rerun
    assert versions(dsn) == [1, 2]
    assert query(dsn, "SELECT id FROM slow_t") == [(1,)]


@pytest.mark.parametrize(
    ("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)]
)
def test_a_signal_mid_step_cancels_the_statement_rolls_back_and_exits_with_its_code(
    dsn: str, tree: Path, signum: int, code: int
) -> None:
    set_sleep(dsn, 600)
    slow_tree(tree)
    run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    wait_for(lambda: bool(active_backends(dsn, SLEEPING)), what="step 2 to be running")

    run.send(signum)
    result = run.wait(timeout=30)

    assert result.returncode == code, result
    assert "interrupted during up 2 (slow)" in result.stderr
    assert "cancelled and the step rolled back" in result.stderr
    # Which stop, when not Ctrl-C: a service manager's or a closed terminal's.
    by = {signal.SIGTERM: "stopped by SIGTERM", signal.SIGHUP: "stopped by SIGHUP"}.get(signum)
    assert ("stopped by SIG" in result.stderr) is (by is not None)
    assert by is None or by in result.stderr
    assert "Traceback" not in result.output
    # The statement was cancelled on the server before vezamig exited, not left running.
    assert active_backends(dsn, SLEEPING) == []
    assert versions(dsn) == [1]
    assert not table_exists(dsn, "slow_t")
    assert [(h["version"], h["outcome"], h["message"]) for h in history(dsn)] == [
        (1, "ok", None),
        (2, "failed", "interrupted"),
    ]

    set_sleep(dsn, 0)
    rerun = run_cli(["up", "-d", dsn, "--dir", str(tree)])
    assert rerun.returncode == 0, rerun
    assert versions(dsn) == [1, 2]


def no_tx_tree(tree: Path) -> Path:
    return write_tree(
        tree,
        {
            "up/001_concurrent_up.sql": (
                "-- vezamig:no-transaction\n"
                "CREATE TABLE nt_a (id int);\n" + SLEEP_SQL + "CREATE TABLE nt_b (id int);\n"
            ),
        },
    )


def test_a_non_transactional_step_killed_between_statements_is_dirty_and_explained(
    dsn: str, tree: Path
) -> None:
    set_sleep(dsn, 600)
    no_tx_tree(tree)
    run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    wait_for(lambda: bool(active_backends(dsn, SLEEPING)), what="statement 2 to be running")
    [pid] = active_backends(dsn, SLEEPING)
    run.send(signal.SIGKILL)
    run.wait()
    wait_for(lambda: not backend_alive(dsn, pid), timeout=20, what="the session to end")

    # The truth: statement 1 ran, statement 3 did not, and the version says so.
    assert recorded(dsn) == [(1, True)]
    assert table_exists(dsn, "nt_a")
    assert not table_exists(dsn, "nt_b")
    [row] = history(dsn)
    assert row["outcome"] == "failed"
    assert row["message"].startswith("1 of 3 statements ran (last: ")
    assert "001_concurrent_up.sql:2" in row["message"]

    refused = run_cli(["up", "-d", dsn, "--dir", str(tree), "--lock-wait", "5s"])
    assert refused.returncode == 3, refused
    assert "version 1 (concurrent) is dirty" in refused.stderr
    assert "1 of 3 statements ran" in refused.stderr
    assert "vezamig repair --applied 1" in refused.stderr
    assert "vezamig repair --rolled-back 1" in refused.stderr
    status = run_cli(["status", "-d", dsn, "--dir", str(tree)])
    assert status.returncode == 0, status
    assert "dirty" in status.stdout

    # The operator undoes statement 1 by hand and records that; the next run re-applies.
    query(dsn, "DROP TABLE nt_a")
    repair = run_cli(["repair", "-d", dsn, "--dir", str(tree), "--rolled-back", "1", "--yes"])
    assert repair.returncode == 0, repair
    set_sleep(dsn, 0)
    rerun = run_cli(["up", "-d", dsn, "--dir", str(tree)])
    assert rerun.returncode == 0, rerun
    assert recorded(dsn) == [(1, False)]
    assert table_exists(dsn, "nt_a") and table_exists(dsn, "nt_b")


def test_a_non_transactional_step_interrupted_says_which_statements_ran(
    dsn: str, tree: Path
) -> None:
    set_sleep(dsn, 600)
    no_tx_tree(tree)
    run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    wait_for(lambda: bool(active_backends(dsn, SLEEPING)), what="statement 2 to be running")

    run.send(signal.SIGINT)
    result = run.wait(timeout=30)

    assert result.returncode == 130, result
    assert "it is now dirty" in result.stderr
    assert "statements that ran: " in result.stderr and "001_concurrent_up.sql:2" in result.stderr
    assert "statements not run: " in result.stderr and "001_concurrent_up.sql:4" in result.stderr
    assert "repair --applied 1" in result.stderr
    assert active_backends(dsn, SLEEPING) == []
    assert recorded(dsn) == [(1, True)]
    assert table_exists(dsn, "nt_a") and not table_exists(dsn, "nt_b")
    [row] = history(dsn)
    assert row["outcome"] == "failed" and "statement 2 of 3 failed" in row["message"]


def test_a_signal_while_waiting_for_another_run_exits_cleanly_with_nothing_done(
    dsn: str, tree: Path
) -> None:
    slow_tree(tree)
    set_sleep(dsn, 0)
    with run_lock_held(dsn):
        run = start_cli(["up", "-d", dsn, "--dir", str(tree)])
        wait_for(
            lambda: "waiting up to 60s for another vezamig run" in run.output_so_far(),
            what="the run to wait for the run lock",
        )
        run.send(signal.SIGINT)
        result = run.wait(timeout=30)
    assert result.returncode == 130, result
    assert "interrupted; nothing was in progress" in result.stderr
    assert "Traceback" not in result.output
    assert versions(dsn) == [] and history(dsn) == []
