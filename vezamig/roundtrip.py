"""Prove every down undoes its up: the "stairway" of SPEC §7.

For each reversible version, ascending: snapshot, up, snapshot, down, compare
with the first, up again, compare with the second. The schema is read from the
catalogs (vezamig.snapshot), so a forgotten index or enum value is named, not
merely "different".
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vezamig.config import Config
from vezamig.db import Connection
from vezamig.errors import Interrupted, UsageError, VezamigError
from vezamig.files import Migration
from vezamig.plan import Plan, Step
from vezamig.runner import Runner

PASS = "pass"
FAIL = "fail"
IRREVERSIBLE = "irreversible"
SKIPPED = "skipped"
NOT_RUN = "not run"


@dataclass
class VersionReport:
    version: int
    name: str
    result: str
    problems: list[str] = field(default_factory=list)
    duration_ms: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "result": self.result,
            "problems": self.problems,
            "duration_ms": self.duration_ms,
        }


@dataclass
class RoundtripReport:
    versions: list[VersionReport] = field(default_factory=list)

    def count(self, result: str) -> int:
        return sum(1 for v in self.versions if v.result == result)

    @property
    def ok(self) -> bool:
        return self.count(FAIL) == 0

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "passed": self.count(PASS),
            "failed": self.count(FAIL),
            "irreversible": self.count(IRREVERSIBLE),
            "skipped": self.count(SKIPPED),
            "not_run": self.count(NOT_RUN),
            "versions": [v.as_json() for v in self.versions],
        }


def user_tables(conn: Connection) -> list[str]:
    rows = conn.execute(
        "SELECT n.nspname || '.' || c.relname FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
        " AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'"
        # An extension's own views (pg_stat_statements, often in template1) are not
        # the user's: the snapshot leaves them out too.
        " AND NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = 'pg_class'::regclass"
        " AND e.objid = c.oid AND e.deptype = 'e')"
        " ORDER BY 1 LIMIT 6"
    ).fetchall()
    return [r[0] for r in rows]  # at most 6: enough to show 5 and know there are more


def require_empty(conn: Connection) -> None:
    found = user_tables(conn)
    if found:
        more = ", …" if len(found) > 5 else ""
        raise UsageError(
            f"roundtrip needs an empty scratch database, but this one has tables "
            f"({', '.join(found[:5])}{more}); vezamig changed nothing",
            details=[
                "give -d a freshly created database (createdb scratch), or leave -d out "
                "to use a throwaway PostgreSQL"
            ],
        )


def run_roundtrip(
    conn: Connection,
    config: Config,
    migrations: list[Migration],
    *,
    first: int | None = None,
    last: int | None = None,
    progress: Callable[[VersionReport], None] | None = None,
) -> RoundtripReport:
    """Run the stairway on an empty database; stops at the first step that errors."""
    from vezamig.snapshot import diff_snapshots, summarize, take_snapshot

    runner = Runner(conn, config, migrations)
    runner.tracker.ensure()
    # Schema-qualified as the bookkeeping uses them: an unqualified name, looked up again
    # at each snapshot, would leave out a migration's own table of that name in a schema
    # earlier in the search_path (`CREATE SCHEMA app; CREATE TABLE app.schema_migrations`
    # for the role app) and compare vezamig's table instead.
    schema = runner.tracker.resolved_schema or (config.table[0] if len(config.table) > 1 else None)
    exclude = [
        ".".join([schema, table[-1]] if schema else table)
        for table in (config.table, config.history_table)
    ]
    report = RoundtripReport()

    def snap() -> Any:
        return take_snapshot(conn, exclude_tables=exclude)

    def step(m: Migration, direction: str) -> None:
        runner.execute(Plan(direction, [Step(m, direction)], None, 0))

    selected = [m for m in migrations if last is None or m.version <= last]
    for i, m in enumerate(selected):
        vr = VersionReport(m.version, m.name, PASS)
        t0 = time.monotonic()
        stage = "up"
        errored = False
        try:
            if not m.reversible or (first is not None and m.version < first):
                step(m, "up")
                vr.result = IRREVERSIBLE if not m.reversible else SKIPPED
            else:
                before = snap()
                step(m, "up")
                after_up = snap()
                stage = "down"
                step(m, "down")
                diffs = diff_snapshots(before, snap())
                vr.problems += summarize(diffs, f"after down of {m.version}")
                stage = "up again"
                step(m, "up")
                diffs = diff_snapshots(after_up, snap())
                vr.problems += summarize(diffs, f"after up again of {m.version}")
                if vr.problems:
                    vr.result = FAIL
        except Interrupted:
            raise  # Ctrl-C ends the whole run (exit 130), never one version
        except VezamigError as exc:
            vr.result = FAIL
            errored = True
            prefix = f"{stage} of {m.version}: " if stage == "up again" else ""
            vr.problems.append(prefix + exc.message)
            vr.problems += ["  " + d for d in exc.details]
        vr.duration_ms = round((time.monotonic() - t0) * 1000)
        report.versions.append(vr)
        if progress:
            progress(vr)
        if errored:
            # A step that errored leaves the schema in between versions; a pure
            # difference does not, so later versions still say something useful.
            for rest in selected[i + 1 :]:
                skipped = VersionReport(
                    rest.version, rest.name, NOT_RUN, [f"not run: {stage} of {m.version} failed"]
                )
                report.versions.append(skipped)
            break
    return report
