"""Many runs at once on one database: each version applied exactly once, status never blocks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from .support import (
    SLEEP_SQL,
    Running,
    active_backends,
    history,
    query,
    recorded,
    run_cli,
    run_lock_held,
    set_sleep,
    start_cli,
    wait_for,
    write_tree,
)

pytestmark = pytest.mark.reliability

RUNS = 8
REPETITIONS = 3

FILES = {
    "up/001_counter_up.sql": "CREATE TABLE applied_log (version int NOT NULL);\n"
    "INSERT INTO applied_log VALUES (1);\n",
    "up/002_items_up.sql": "CREATE TABLE items (id int PRIMARY KEY, label text);\n"
    "INSERT INTO applied_log VALUES (2);\n",
    # CREATE INDEX CONCURRENTLY waits for every older transaction: it would hang if a
    # waiting run held a transaction open while polling for the run lock.
    "up/003_items_label_up.sql": "-- vezamig:no-transaction\n"
    "CREATE INDEX CONCURRENTLY items_label ON items (label);\n"
    "INSERT INTO applied_log VALUES (3);\n",
    "up/004_more_up.sql": "ALTER TABLE items ADD COLUMN extra int;\n"
    "INSERT INTO applied_log VALUES (4);\n",
}


@pytest.mark.parametrize("repetition", range(REPETITIONS))
def test_eight_simultaneous_ups_apply_every_version_exactly_once(
    make_database: Callable[[], str], tree: Path, repetition: int
) -> None:
    dsn = make_database()
    write_tree(tree, FILES)
    # Half wait for the run lock, half give up at once (exit 4): both must be clean.
    runs = [
        start_cli(
            ["up", "-d", dsn, "--dir", str(tree), "--lock-wait", "60s" if i % 2 == 0 else "0"]
        )
        for i in range(RUNS)
    ]
    results = [r.wait(timeout=120) for r in runs]

    codes = sorted(r.returncode for r in results)
    assert set(codes) <= {0, 4}, "\n\n".join(str(r) for r in results)
    assert all(r.returncode == 0 for r in results[::2]), "\n\n".join(map(str, results[::2]))
    assert all("Traceback" not in r.output for r in results)
    for r in results:
        if r.returncode == 4:
            assert "another vezamig run holds the lock" in r.stderr, r
    assert recorded(dsn) == [(1, False), (2, False), (3, False), (4, False)]
    assert query(dsn, "SELECT version, count(*) FROM applied_log GROUP BY 1 ORDER BY 1") == [
        (1, 1),
        (2, 1),
        (3, 1),
        (4, 1),
    ]
    assert query(dsn, "SELECT count(*) FROM pg_indexes WHERE indexname = 'items_label'") == [(1,)]
    assert query(
        dsn,
        "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = 'items_label' AND i.indisvalid",
    ) == [(1,)]
    ok = [(h["version"], h["direction"]) for h in history(dsn) if h["outcome"] == "ok"]
    assert ok == [(1, "up"), (2, "up"), (3, "up"), (4, "up")]
    assert [h for h in history(dsn) if h["outcome"] != "ok"] == []


def test_status_runs_while_up_is_mid_step_without_blocking_it_or_failing(
    dsn: str, tree: Path
) -> None:
    set_sleep(dsn, 600)
    write_tree(
        tree,
        {
            "up/001_first_up.sql": "CREATE TABLE first_t (id int);\n",
            "up/002_slow_up.sql": "ALTER TABLE first_t ADD COLUMN c int;\n" + SLEEP_SQL,
        },
    )
    up: Running = start_cli(["up", "-d", dsn, "--dir", str(tree)])
    try:
        wait_for(
            lambda: bool(active_backends(dsn, "pg_sleep(seconds)")), what="step 2 to be running"
        )
        # Several status runs, text and JSON, each finishing while step 2 still runs.
        for args in (["status"], ["status", "--json"], ["history"], ["status"]):
            result = run_cli([*args, "-d", dsn, "--dir", str(tree)], timeout=60)
            assert result.returncode == 0, result
            assert up.proc.poll() is None, "up finished early; status proved nothing"
            assert active_backends(dsn, "pg_sleep(seconds)"), "step 2 is no longer running"
        assert (
            '"current_version": 1'
            in run_cli(["status", "--json", "-d", dsn, "--dir", str(tree)]).stdout
        )
        # And up was never waiting on a lock a status run held.
        waits = query(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name ="
            " 'vezamig up' AND wait_event_type = 'Lock'",
        )
        assert waits == [(0,)]
    finally:
        set_sleep(dsn, 0)
        query(
            dsn,
            "SELECT pg_cancel_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'vezamig up' AND state = 'active'",
        )
    result = up.wait(timeout=60)
    # Cancelled by the test (not by status): the step fails cleanly and is rolled back.
    assert result.returncode == 1, result
    assert recorded(dsn) == [(1, False)]
    rerun = run_cli(["up", "-d", dsn, "--dir", str(tree)])
    assert rerun.returncode == 0, rerun
    assert recorded(dsn) == [(1, False), (2, False)]


def test_runs_that_queued_before_the_tracking_table_existed_apply_nothing_twice(
    dsn: str, tree: Path
) -> None:
    """Both runs look at the database before either has created the tracking table."""
    write_tree(tree, FILES)
    with run_lock_held(dsn):
        runs = [start_cli(["up", "-d", dsn, "--dir", str(tree)]) for _ in range(2)]
        for run in runs:
            wait_for(
                lambda run=run: "waiting up to" in run.output_so_far(),
                what="both runs to be waiting for the run lock",
            )
    results = [r.wait(timeout=120) for r in runs]

    assert [r.returncode for r in results] == [0, 0], "\n\n".join(map(str, results))
    assert sorted("nothing to do" in r.stdout for r in results) == [False, True]
    assert recorded(dsn) == [(1, False), (2, False), (3, False), (4, False)]
    assert [h["outcome"] for h in history(dsn)] == ["ok"] * 4
