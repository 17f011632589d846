#!/usr/bin/env python3
"""`make bench`: vezamig against the floors of issue 7, on a throwaway PostgreSQL.

Contenders run as separate processes, exactly as a user or CI job runs them
(stdout to a file, not a terminal), alternating so that machine noise hits
each one alike. The floors:

* psql floor: one ``psql -X -q -v ON_ERROR_STOP=1 -f FILE`` process running, per
  migration, ``BEGIN; <up sql>; INSERT INTO bench_floor_migrations …; COMMIT;``
  (rollback: ``BEGIN; <down sql>; DELETE …; COMMIT;``); for status, one SELECT.
* Python floor: ``python -c`` that imports psycopg, connects and runs one SELECT
  of the tracking table.
* ``python -c "import click"`` for ``vezamig --help``; ``python -c`` parsing every
  file of the corpus with pglast for ``vezamig verify``.
* psycopg floor (rollback only, for the record, not a target of the issue):
  ``python -c`` that imports psycopg, connects and sends the psql floor's
  rollback as one message per migration, ending without the interpreter's
  teardown: the least any Python tool built on psycopg can do for it.

The throwaway cluster keeps PostgreSQL's durability defaults (fsync,
synchronous_commit and full_page_writes on): vezamig.cluster turns them off for
tests, and commit cost is exactly what this benchmark is about.

    .venv/bin/python bench/run.py            # N = 500 and 2000, writes bench/results.md
    .venv/bin/python bench/run.py --quick    # N = 100 and 400, one repetition, prints only
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

from vezamig.cluster import FAST_SETTINGS, ThrowawayCluster, raise_on_sigterm

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results.md"
PROJECT_SQL = ROOT / "sql"

#: PostgreSQL's own defaults, restoring what vezamig.cluster.FAST_SETTINGS turns off.
DURABLE_SETTINGS = {"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on"}
FLOOR_TABLE = "bench_floor_migrations"
ROWS_PER_MIGRATION = 10
ROLLBACK = 100

VZ = "vezamig"
PSQL = "psql floor"
PY = "python floor"
PY_EXIT = "python floor, no teardown"
PSQL_SELECT = "psql floor (one SELECT)"
PY_ROLLBACK = "psycopg floor"
CLICK = "python -c 'import click'"
PGLAST = "python: pglast parse of every file"
FILES = "python: list, read and hash the files"

# Environment that would make a run depend on the caller's shell.
_ISOLATE_PREFIXES = ("PG", "VEZAMIG_")
_ISOLATE = {
    "DATABASE_URL",
    "NO_COLOR",
    "FORCE_COLOR",
    "COLUMNS",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONUNBUFFERED",
    "PYTHONPYCACHEPREFIX",
}


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


class BenchError(RuntimeError):
    pass


# ---- measuring one process ------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    seconds: float
    max_rss_mb: float
    cpu_seconds: float  # user + system time of the client process (steadier than wall time)
    steps_seconds: float | None = None  # vezamig's own time for its steps (its summary line)


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def low(self) -> float:
        return min(s.seconds for s in self.samples)

    @property
    def high(self) -> float:
        return max(s.seconds for s in self.samples)

    @property
    def cpu(self) -> float:
        return statistics.median(s.cpu_seconds for s in self.samples)

    @property
    def steps(self) -> float | None:
        found = [s.steps_seconds for s in self.samples if s.steps_seconds is not None]
        return statistics.median(found) if found else None

    @property
    def rss_mb(self) -> float:
        return max(s.max_rss_mb for s in self.samples)

    def cell(self) -> str:
        if len(self.samples) == 1:
            return secs(self.median)
        return f"{secs(self.median)} [{secs(self.low)}–{secs(self.high)}]"


def secs(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.1:
        return f"{value * 1000:.0f} ms"
    return f"{value * 1000:.1f} ms"


def timed(argv: Sequence[str], env: dict[str, str], cwd: Path, ok: Sequence[int] = (0,)) -> Sample:
    """Wall time and peak RSS of one process.

    Peak RSS comes from GNU time when installed: a child forked straight from
    this Python process inherits its memory high-water mark across exec, so
    wait4's ru_maxrss would report at least the benchmark's own size.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.NamedTemporaryFile("r", suffix=".rss") as rss,
    ):
        wrapped = [GNU_TIME, "-f", "%M", "-o", rss.name, *argv] if GNU_TIME else list(argv)
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            wrapped, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode not in ok:
            out.seek(0)
            err.seek(0)
            tail = (out.read()[-2000:] + err.read()[-3000:]).decode(errors="replace")
            raise BenchError(f"`{' '.join(argv)}` exited {proc.returncode}:\n{tail}")
        kib = usage.ru_maxrss  # Linux: KiB
        if GNU_TIME:
            last = rss.read().strip().splitlines()
            kib = int(last[-1]) if last and last[-1].isdigit() else kib
        out.seek(0)
        steps = steps_time(out.read()[-500:].decode(errors="replace"))
    return Sample(elapsed, kib / 1024, usage.ru_utime + usage.ru_stime, steps)


_SUMMARY = re.compile(r"(?:applied|rolled back) \d+ version\(s\) in (\d+) ms\b")


def steps_time(stdout: str) -> float | None:
    """The time vezamig reports for its steps (`rolled back 100 version(s) in 209 ms`),
    so the report can split a run into its steps and everything around them."""
    found = _SUMMARY.findall(stdout)
    return int(found[-1]) / 1000 if found else None


# ---- the corpus -----------------------------------------------------------------------


@dataclass(frozen=True)
class Generated:
    version: int
    name: str
    up: str
    down: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.up.encode()).hexdigest()


def generate(n: int) -> list[Generated]:
    """N migrations of the issue's shape: create table, index, 10 inserts."""
    width = max(3, len(str(n)))
    out: list[Generated] = []
    for v in range(1, n + 1):
        table = f"bench_t{v:0{width}d}"
        inserts = "".join(
            f"INSERT INTO {table} (name, amount) VALUES ('row {i} of {v}', {i * v});\n"
            for i in range(1, ROWS_PER_MIGRATION + 1)
        )
        up = (
            f"-- Migration {v}: {table}, an index and {ROWS_PER_MIGRATION} rows.\n"
            f"CREATE TABLE {table} (\n"
            "    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
            "    name text NOT NULL,\n"
            "    amount integer NOT NULL,\n"
            "    created_at timestamptz NOT NULL DEFAULT now()\n"
            ");\n"
            f"CREATE INDEX {table}_name_idx ON {table} (name);\n"
            f"{inserts}"
        )
        down = f"-- Roll back {v}.\nDROP TABLE {table};\n"
        out.append(Generated(v, f"create_{table}", up, down))
    return out


def write_corpus(base: Path, migrations: list[Generated]) -> None:
    width = max(3, len(str(len(migrations))))
    (base / "up").mkdir(parents=True)
    (base / "down").mkdir(parents=True)
    for m in migrations:
        stem = f"{m.version:0{width}d}_{m.name}"
        (base / "up" / f"{stem}_up.sql").write_text(m.up, encoding="utf-8")
        (base / "down" / f"{stem}_down.sql").write_text(m.down, encoding="utf-8")


def floor_apply_script(migrations: Sequence[Generated], create_table: bool) -> str:
    """What the psql floor runs: per migration BEGIN, the SQL, one bookkeeping row, COMMIT."""
    parts: list[str] = []
    if create_table:
        parts.append(
            f"CREATE TABLE {FLOOR_TABLE} (version bigint PRIMARY KEY, name text NOT NULL,"
            " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
            " applied_by text NOT NULL, duration_ms integer NOT NULL,"
            " dirty boolean NOT NULL DEFAULT false);\n"
        )
    for m in migrations:
        parts.append(
            f"BEGIN;\n{m.up}"
            f"INSERT INTO {FLOOR_TABLE} (version, name, checksum, applied_by, duration_ms)"
            f" VALUES ({m.version}, '{m.name}', '{m.checksum}', current_user, 0);\n"
            "COMMIT;\n"
        )
    return "".join(parts)


def floor_rollback_steps(migrations: Sequence[Generated]) -> list[str]:
    return [
        f"BEGIN;\n{m.down}DELETE FROM {FLOOR_TABLE} WHERE version = {m.version};\nCOMMIT;\n"
        for m in sorted(migrations, key=lambda m: m.version, reverse=True)
    ]


# ---- the server -----------------------------------------------------------------------


class Server:
    """The throwaway cluster plus an admin connection for untimed set-up."""

    def __init__(self, cluster: ThrowawayCluster) -> None:
        self.cluster = cluster
        self.admin = psycopg.connect(cluster.conninfo(), autocommit=True)
        self.psql = self._psql()

    def _psql(self) -> str:
        beside = self.cluster.bindir / "psql"
        found = str(beside) if beside.exists() else shutil.which("psql")
        if not found:
            raise BenchError("psql not found (needed for the psql floor)")
        return found

    def conninfo(self, dbname: str) -> str:
        return self.cluster.conninfo(dbname)

    def fresh_db(self, name: str) -> str:
        self.drop_db(name)
        self.admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
        )
        return name

    def copy_db(self, source: str, name: str) -> str:
        self.drop_db(name)
        self.admin.execute(
            sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
                sql.Identifier(name), sql.Identifier(source)
            )
        )
        return name

    def drop_db(self, name: str) -> None:
        self.admin.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )

    def checkpoint(self) -> None:
        """Start each timed write from a clean slate, for every contender alike."""
        self.admin.execute("CHECKPOINT")

    def count(self, dbname: str, table: str) -> int:
        with psycopg.connect(self.conninfo(dbname), autocommit=True) as conn:
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
            ).fetchone()
        assert row is not None
        return int(row[0])

    def settings(self) -> dict[str, str]:
        names = (
            "server_version",
            "fsync",
            "synchronous_commit",
            "full_page_writes",
            "wal_sync_method",
            "shared_buffers",
            "max_wal_size",
        )
        out: dict[str, str] = {}
        for name in names:
            row = self.admin.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
            out[name] = str(row[0]) if row else "?"
        return out

    def close(self) -> None:
        self.admin.close()


# ---- the contenders ---------------------------------------------------------------------


def vezamig_command() -> list[str]:
    """The console script users run, if installed next to this interpreter."""
    script = Path(sys.executable).parent / "vezamig"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "vezamig"]


PYCACHE: Path | None = None  # set by main(): bytecode cache shared by every Python contender


def base_env() -> dict[str, str]:
    """The caller's environment without connection settings, Python as after an install.

    PYTHONDONTWRITEBYTECODE would make every run recompile vezamig from source
    (an editable install has no .pyc files), and PYTHONUNBUFFERED turns each line
    of output into a write(2); a user's shell has neither. The bytecode goes to
    a private cache instead of the source tree.
    """
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _ISOLATE and not k.startswith(_ISOLATE_PREFIXES)
    }
    if PYCACHE is not None:
        env["PYTHONPYCACHEPREFIX"] = str(PYCACHE)
    return env


STATUS_SELECT = (
    "SELECT version, name, checksum, applied_at, applied_by, duration_ms, dirty"
    " FROM schema_migrations ORDER BY version"
)
PY_FLOOR = (
    "import os, psycopg\n"
    "conn = psycopg.connect(os.environ['DATABASE_URL'])\n"
    f"conn.execute({STATUS_SELECT!r}).fetchall()\n"
    "conn.close()\n"
)
# The same, ending as vezamig does (os._exit after its work): the interpreter's teardown
# (≈ 30 ms once psycopg is loaded) is not work a migration tool must do, so the least
# time any psycopg tool needs is measured without it.
PY_FLOOR_NO_TEARDOWN = PY_FLOOR + "os._exit(0)\n"
# What `status` cannot avoid doing per version, and nothing else: list both folders,
# read and SHA-256 every up file. Its growth from N=small to N=large is the part of
# vezamig's growth the target allows ("beyond reading and hashing files").
FILES_FLOOR = (
    "import hashlib, os\n"
    "base = os.environ['VEZAMIG_DIR']\n"
    "downs = sorted(os.listdir(base + '/down'))\n"
    "for name in sorted(os.listdir(base + '/up')):\n"
    "    fd = os.open(base + '/up/' + name, os.O_RDONLY)\n"
    "    hashlib.sha256(os.read(fd, 1 << 16)).hexdigest()  # the bench files are < 64 KiB\n"
    "    os.close(fd)\n"
)
# The rollback as the least a psycopg tool can send it: one message per migration
# (BEGIN; the down SQL; the bookkeeping DELETE; COMMIT), nothing read back, no teardown;
# its steps timed and printed like vezamig's summary line, for the report's split.
PY_ROLLBACK_FLOOR = (
    "import os, sys, time, psycopg\n"
    "steps = open(sys.argv[1], encoding='utf-8').read().split('\\0')\n"
    "conn = psycopg.connect(os.environ['DATABASE_URL'], autocommit=True)\n"
    "t = time.perf_counter()\n"
    "for step in steps:\n"
    "    conn.execute(step)\n"
    "ms = round((time.perf_counter() - t) * 1000)\n"
    "print(f'rolled back {len(steps)} version(s) in {ms} ms', flush=True)\n"  # as vezamig's
    "os._exit(0)\n"
)
PGLAST_FLOOR = (
    "import pathlib, sys, pglast\n"
    "for p in sorted(pathlib.Path(sys.argv[1]).glob('*/*.sql')):\n"
    "    try:\n"
    "        pglast.parse_sql(p.read_text(encoding='utf-8'))\n"
    "    except pglast.parser.ParseError:\n"
    "        pass\n"
)


@dataclass
class Plan:
    sizes: tuple[int, ...]
    reps_slow: int
    reps_fast: int
    reps_startup: int

    def slow_reps(self, n: int) -> int:
        """Short runs are noisier and cheap: the smaller size gets more repetitions."""
        return self.reps_slow if n >= max(self.sizes) else 2 * self.reps_slow + 1


class Bench:
    def __init__(self, server: Server, work: Path, plan: Plan) -> None:
        self.server = server
        self.work = work
        self.plan = plan
        self.vz = vezamig_command()
        self.results: dict[str, dict[str, Series]] = {}
        self.revision = revision()
        self.applied: dict[int, tuple[Path, str]] = {}
        self.load: list[float] = []  # 1-minute load average, sampled as the run goes
        self.databases: list[str] = []  # dropped by cleanup(), after every timed write

    def record(self, scenario: str, contender: str, sample: Sample) -> None:
        self.results.setdefault(scenario, {}).setdefault(contender, Series()).samples.append(sample)

    def series(self, scenario: str, contender: str) -> Series:
        return self.results[scenario][contender]

    def env(self, dbname: str | None, corpus: Path | None) -> dict[str, str]:
        env = base_env()
        if dbname is not None:
            env["DATABASE_URL"] = self.server.conninfo(dbname)
        if corpus is not None:
            env["VEZAMIG_DIR"] = str(corpus)
        return env

    def psql_file(self, dbname: str, script: Path) -> list[str]:
        return [
            self.server.psql,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            self.server.conninfo(dbname),
            "-f",
            str(script),
        ]

    def log(self, text: str) -> None:
        self.load.append(os.getloadavg()[0])
        print(text, flush=True)

    # -- phases ------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Untimed: compile .pyc files and fill the page cache for every program."""
        migrations = generate(3)
        corpus = self.work / "warmup"
        write_corpus(corpus, migrations)
        script = self.work / "warmup.sql"
        script.write_text(floor_apply_script(migrations, True), encoding="utf-8")
        for db in ("bench_warm_vz", "bench_warm_floor"):
            self.server.fresh_db(db)
        timed([*self.vz, "up"], self.env("bench_warm_vz", corpus), self.work)
        timed([*self.vz, "status"], self.env("bench_warm_vz", corpus), self.work)
        timed(self.psql_file("bench_warm_floor", script), base_env(), self.work)
        timed([sys.executable, "-c", PY_FLOOR], self.env("bench_warm_vz", None), self.work)
        for db in ("bench_warm_vz", "bench_warm_floor"):
            self.server.drop_db(db)

    def size(self, n: int) -> None:
        migrations = generate(n)
        corpus = self.work / f"corpus_{n}"
        write_corpus(corpus, migrations)
        apply_sql = self.work / f"floor_apply_{n}.sql"
        apply_sql.write_text(floor_apply_script(migrations, True), encoding="utf-8")
        last = migrations[-ROLLBACK:]
        rollback_sql = self.work / f"floor_rollback_{n}.sql"
        steps = floor_rollback_steps(last)
        rollback_sql.write_text("".join(steps), encoding="utf-8")
        rollback_steps = self.work / f"floor_rollback_{n}.steps"
        rollback_steps.write_text("\0".join(steps), encoding="utf-8")
        reapply_sql = self.work / f"floor_reapply_{n}.sql"
        reapply_sql.write_text(floor_apply_script(last, False), encoding="utf-8")

        vz_db, floor_db = self._apply(n, corpus, apply_sql)
        self._rollback(n, corpus, vz_db, floor_db, rollback_sql, rollback_steps, reapply_sql)
        self.applied[n] = (corpus, vz_db)  # all applied again: read by reads()

    def _apply(self, n: int, corpus: Path, apply_sql: Path) -> tuple[str, str]:
        scenario = f"apply {n}"
        kept: dict[str, str] = {}
        for rep in range(self.plan.slow_reps(n)):
            order = [VZ, PSQL] if rep % 2 == 0 else [PSQL, VZ]
            for who in order:
                db = self.server.fresh_db(f"bench_{n}_{'vz' if who == VZ else 'floor'}_{rep}")
                self.databases.append(db)
                kept[who] = db
                self.server.checkpoint()
                if who == VZ:
                    s = timed([*self.vz, "up"], self.env(db, corpus), self.work)
                    table = "schema_migrations"
                else:
                    s = timed(self.psql_file(db, apply_sql), base_env(), self.work)
                    table = FLOOR_TABLE
                if self.server.count(db, table) != n:
                    raise BenchError(f"{who} did not record {n} versions in {db}")
                self.record(scenario, who, s)
                self.log(
                    f"  {scenario:<22} {who:<24} {secs(s.seconds):>10}  "
                    f"({s.seconds / n * 1000:.2f} ms/migration, CPU {s.cpu_seconds:.2f} s, "
                    f"{s.max_rss_mb:.0f} MB)"
                )
        return kept[VZ], kept[PSQL]

    def reads(self) -> None:
        """status, no-op up and the read floors, every size in one alternating loop,
        so that N=large against N=small compares runs made side by side."""
        commands: list[tuple[str, str, list[str], dict[str, str]]] = []
        for n, (corpus, db) in self.applied.items():
            env = self.env(db, corpus)
            commands += [
                (f"status {n}", VZ, [*self.vz, "status"], env),
                (f"up no-op {n}", VZ, [*self.vz, "up"], env),
                (f"reads {n}", PY, [sys.executable, "-c", PY_FLOOR], env),
                (f"reads {n}", PY_EXIT, [sys.executable, "-c", PY_FLOOR_NO_TEARDOWN], env),
                (f"files {n}", FILES, [sys.executable, "-c", FILES_FLOOR], env),
                (
                    f"reads {n}",
                    PSQL_SELECT,
                    [
                        self.server.psql,
                        "-X",
                        "-q",
                        "-A",
                        "-t",
                        "-d",
                        self.server.conninfo(db),
                        "-c",
                        STATUS_SELECT,
                    ],
                    env,
                ),
            ]
        for rep in range(self.plan.reps_fast):
            k = rep % len(commands)
            for scenario, who, argv, env in commands[k:] + commands[:k]:
                self.record(scenario, who, timed(argv, env, self.work))
        for scenario, who, _, _ in commands:
            s = self.series(scenario, who)
            self.log(
                f"  {scenario:<22} {who:<24} {s.cell():>10}  (CPU {s.cpu:.3f} s, {s.rss_mb:.0f} MB)"
            )

    def cleanup(self) -> None:
        """Drop the databases only now: dropping one between timed runs (files unlinked,
        and this disk is mounted with `discard`) made the next runs' times far more erratic."""
        for db in self.databases:
            self.server.drop_db(db)
        self.databases.clear()

    def _rollback(
        self,
        n: int,
        corpus: Path,
        vz_db: str,
        floor_db: str,
        rollback_sql: Path,
        rollback_steps: Path,
        reapply_sql: Path,
    ) -> None:
        scenario = f"rollback {ROLLBACK} of {n}"
        # The psycopg floor needs its own copy of the psql floor's database, all applied.
        py_db = self.server.copy_db(floor_db, f"bench_{n}_pyfloor")
        self.databases.append(py_db)
        runs: dict[str, tuple[list[str], dict[str, str], str, str]] = {
            VZ: (
                [*self.vz, "down", "--to", str(n - ROLLBACK), "--yes"],
                self.env(vz_db, corpus),
                vz_db,
                "schema_migrations",
            ),
            PSQL: (self.psql_file(floor_db, rollback_sql), base_env(), floor_db, FLOOR_TABLE),
            PY_ROLLBACK: (
                [sys.executable, "-c", PY_ROLLBACK_FLOOR, str(rollback_steps)],
                self.env(py_db, None),
                py_db,
                FLOOR_TABLE,
            ),
        }
        contenders = list(runs)
        for rep in range(self.plan.slow_reps(n)):
            k = rep % len(contenders)
            for who in contenders[k:] + contenders[:k]:
                argv, env, db, table = runs[who]
                self.server.checkpoint()
                s = timed(argv, env, self.work)
                left = self.server.count(db, table)
                if left != n - ROLLBACK:
                    raise BenchError(
                        f"{who}: {left} versions left after rolling back {ROLLBACK} of {n}"
                    )
                self.record(scenario, who, s)
                self.log(
                    f"  {scenario:<22} {who:<24} {secs(s.seconds):>10}  "
                    f"(CPU {s.cpu_seconds:.2f} s, {s.max_rss_mb:.0f} MB)"
                )
            # Untimed: bring every database back to "all applied".
            timed([*self.vz, "up"], self.env(vz_db, corpus), self.work)
            for db in (floor_db, py_db):
                timed(self.psql_file(db, reapply_sql), base_env(), self.work)

    def startup(self) -> None:
        """--help against `import click`; verify on the project's corpus against pglast."""
        files = len(list(PROJECT_SQL.glob("*/*.sql")))
        commands: list[tuple[str, str, list[str], dict[str, str], tuple[int, ...]]] = [
            ("--help", VZ, [*self.vz, "--help"], base_env(), (0,)),
            ("--help", CLICK, [sys.executable, "-c", "import click"], base_env(), (0,)),
            (
                f"verify ({files} files)",
                VZ,
                [*self.vz, "verify", "--dir", str(PROJECT_SQL)],
                base_env(),
                (0, 2),
            ),
            (
                f"verify ({files} files)",
                PGLAST,
                [sys.executable, "-c", PGLAST_FLOOR, str(PROJECT_SQL)],
                base_env(),
                (0,),
            ),
        ]
        for rep in range(self.plan.reps_startup):
            k = rep % len(commands)
            for scenario, who, argv, env, ok in commands[k:] + commands[:k]:
                self.record(scenario, who, timed(argv, env, ROOT, ok))
        for scenario, who, *_ in commands:
            s = self.series(scenario, who)
            self.log(
                f"  {scenario:<22} {who:<34} {s.cell():>10}  (CPU {s.cpu:.3f} s, {s.rss_mb:.0f} MB)"
            )


# ---- the report -------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    label: str
    mine: tuple[str, str]
    base: tuple[str, str]
    base_label: str
    limit: float
    limit_label: str


def targets(small: int, large: int, verify: str) -> list[Target]:
    t: list[Target] = []
    for n in (small, large):
        t.append(
            Target(
                f"apply {n} from empty",
                (f"apply {n}", VZ),
                (f"apply {n}", PSQL),
                "psql floor",
                1.10,
                "≤ 1.10×",
            )
        )
    for n in (small, large):
        t.append(
            Target(
                f"roll back the last {ROLLBACK} (N={n})",
                (f"rollback {ROLLBACK} of {n}", VZ),
                (f"rollback {ROLLBACK} of {n}", PSQL),
                "psql floor",
                1.5,
                "≤ 1.5×",
            )
        )
    for n in (small, large):
        t.append(
            Target(
                f"roll back the last {ROLLBACK} (N={n})",
                (f"rollback {ROLLBACK} of {n}", VZ),
                (f"rollback {ROLLBACK} of {n}", PY_ROLLBACK),
                "psycopg floor (the same messages, no teardown)",
                0,
                "(info)",
            )
        )
    for what, key in (("`status`", "status"), ("no-op `up`", "up no-op")):
        t.append(
            Target(
                f"{what}, N={small}",
                (f"{key} {small}", VZ),
                (f"reads {small}", PY),
                "Python floor",
                1.3,
                "≤ 1.3×",
            )
        )
        t.append(
            Target(
                f"{what}, N={small}",
                (f"{key} {small}", VZ),
                (f"reads {small}", PY_EXIT),
                "Python floor without teardown",
                0,
                "(info)",
            )
        )
        t.append(
            Target(
                f"{what}, N={large} vs N={small}",
                (f"{key} {large}", VZ),
                (f"{key} {small}", VZ),
                f"vezamig at N={small}",
                1.15,
                "≤ 1.15×",
            )
        )
        t.append(
            Target(
                f"{what}, N={large}",
                (f"{key} {large}", VZ),
                (f"reads {large}", PY),
                "Python floor",
                1.3,
                "(info)",
            )
        )
        t.append(
            Target(
                f"{what}, N={small}",
                (f"{key} {small}", VZ),
                (f"reads {small}", PSQL_SELECT),
                "psql, one SELECT",
                0,
                "(info)",
            )
        )
    t.append(
        Target(
            "`vezamig --help`",
            ("--help", VZ),
            ("--help", CLICK),
            "`python -c 'import click'`",
            1.5,
            "≤ 1.5×",
        )
    )
    t.append(
        Target(
            f"`vezamig verify` on sql/ ({verify})",
            (f"verify ({verify})", VZ),
            (f"verify ({verify})", PGLAST),
            "pglast parse of every file",
            0,
            "(info)",
        )
    )
    return t


def busy_warning(load: list[float]) -> list[str]:
    cpus = os.cpu_count() or 1
    if max(load) <= cpus + 1:  # the benchmark itself keeps about one CPU busy
        return []
    return [
        f"- **Warning: the machine was busy** (load average up to {max(load):.1f} on {cpus} "
        "CPUs): other processes competed for the CPUs and the disk, so wall times and "
        "ratios are noisy; the client CPU column is steadier. Rerun on a quiet machine "
        "before drawing conclusions."
    ]


def revision() -> str:
    """The commit measured, and whether vezamig/ had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "vezamig"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head} (with uncommitted changes in vezamig/)" if dirty else head


def machine(settings: dict[str, str]) -> list[str]:
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    return [
        f"- Machine: {os.cpu_count()} CPUs ({model}), {mem} RAM, "
        f"{platform.system()} {platform.release()}",
        f"- PostgreSQL {settings['server_version']} (throwaway cluster, data on local disk): "
        f"fsync={settings['fsync']}, synchronous_commit={settings['synchronous_commit']}, "
        f"full_page_writes={settings['full_page_writes']}, "
        f"wal_sync_method={settings['wal_sync_method']}, "
        f"shared_buffers={settings['shared_buffers']}, max_wal_size={settings['max_wal_size']}",
        f"- Python {platform.python_version()}, psycopg {psycopg.__version__}",
    ]


def growth(bench: Bench, small: int, large: int) -> list[str]:
    """How much of the growth from N=small to N=large is reading and hashing files."""

    def grew(scenario: str, contender: str) -> float:
        return (
            bench.series(f"{scenario} {large}", contender).median
            - bench.series(f"{scenario} {small}", contender).median
        )

    files = grew("files", FILES)
    lines = [
        f"Growth from N={small} to N={large} ({large - small} more versions), and how much "
        "of it is what the target allows: listing both folders and reading and hashing "
        f"every up file ({FILES!r}, which does only that: +{secs(files)}):",
        "",
    ]
    for what, key in (("`status`", "status"), ("no-op `up`", "up no-op")):
        total = grew(key, VZ)
        rest = total - files
        lines.append(
            f"- {what}: +{secs(total)}; beyond reading and hashing files +{secs(rest)}, "
            f"{rest / (large - small) * 1e6:.1f} µs per version"
        )
    return lines


def paired(bench: Bench, scenario: str) -> str:
    mine = bench.series(scenario, VZ).samples
    base = bench.series(scenario, PSQL).samples
    ratios = sorted(m.seconds / b.seconds for m, b in zip(mine, base, strict=True))
    return ", ".join(f"{r:.2f}×" for r in ratios) + f" (median {statistics.median(ratios):.2f}×)"


def report(
    bench: Bench,
    settings: dict[str, str],
    started: dt.datetime,
    elapsed: float,
    plan: Plan,
    load: list[float],
) -> str:
    small, large = plan.sizes
    verify = (
        next(k for k in bench.results if k.startswith("verify ("))
        .removeprefix("verify (")
        .removesuffix(")")
    )
    lines = [
        "# vezamig benchmark (issue 7)",
        "",
        f"Generated by `make bench` (bench/run.py) on {started:%Y-%m-%d %H:%M} UTC, "
        f"in {elapsed / 60:.1f} min, on commit {bench.revision}.",
        "",
        *machine(settings),
        *busy_warning(load),
        f"- Load average (1 min) at start / end / highest: {load[0]:.2f} / {load[-1]:.2f} / "
        f"{max(load):.2f} (other work on the machine adds noise; contenders alternate so it "
        "hits each alike)",
        f"- vezamig run as `{' '.join(Path(a).name for a in bench.vz)}` (the console script),"
        " stdout to a file (not a terminal), DATABASE_URL and VEZAMIG_DIR set; every Python"
        " contender with bytecode cached (PYTHONPYCACHEPREFIX, warmed up) and without"
        " PYTHONDONTWRITEBYTECODE/PYTHONUNBUFFERED, as after `pip install`. Peak RSS from "
        + ("GNU time." if GNU_TIME else "wait4 (includes the benchmark's own size)."),
        f"- Migrations: N generated files, each `CREATE TABLE`, `CREATE INDEX` and "
        f"{ROWS_PER_MIGRATION} `INSERT`s; down = `DROP TABLE`.",
        f"- Repetitions, alternating contenders: {plan.slow_reps(small)} at N={small} and "
        f"{plan.slow_reps(large)} at N={large} (apply, rollback; a fresh "
        f"database from template0 and a CHECKPOINT before each), {plan.reps_fast} (status, "
        f"no-op up), {plan.reps_startup} (--help, verify). Cells: median [min–max] of wall "
        "time; ratio = vezamig median / floor median; client CPU = median user + system time "
        "of the vezamig process / of the floor's process (the server's work is not in it).",
        "",
        "| scenario | vezamig | floor | floor time | ratio | target | met? | client CPU |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in targets(small, large, verify):
        mine = bench.series(*t.mine)
        base = bench.series(*t.base)
        ratio = mine.median / base.median
        met = "–" if t.limit_label == "(info)" else "yes" if ratio <= t.limit else "**no**"
        lines.append(
            f"| {t.label} | {mine.cell()} | {t.base_label} | {base.cell()} | "
            f"{ratio:.2f}× | {t.limit_label} | {met} | "
            f"{mine.cpu:.3f} s / {base.cpu:.3f} s |"
        )
    rss = bench.series(f"apply {large}", VZ).rss_mb
    lines.append(
        f"| peak memory (max RSS), apply {large} | {rss:.0f} MB | psql floor | "
        f"{bench.series(f'apply {large}', PSQL).rss_mb:.0f} MB | – | ≤ 80 MB | "
        f"{'yes' if rss <= 80 else '**no**'} | |"
    )
    lines += ["", *growth(bench, small, large)]
    lines += [
        "",
        "Per migration, apply from empty (median / N), and the ratio of each "
        "repetition's vezamig run to the floor run next to it (less sensitive to load "
        "that changes during the benchmark):",
        "",
    ]
    for n in (small, large):
        vz = bench.series(f"apply {n}", VZ).median / n * 1000
        fl = bench.series(f"apply {n}", PSQL).median / n * 1000
        lines.append(
            f"- apply N={n}: vezamig {vz:.2f} ms, psql floor {fl:.2f} ms "
            f"({vz - fl:+.2f} ms per migration); paired ratios "
            f"{paired(bench, f'apply {n}')}"
        )
    for n in (small, large):
        lines.append(
            f"- roll back {ROLLBACK} of N={n}: paired ratios "
            f"{paired(bench, f'rollback {ROLLBACK} of {n}')}"
        )
    lines += [
        "",
        f"The least time any Python tool built on psycopg could take to roll back {ROLLBACK} "
        "versions: the Python floor (start, import psycopg, connect, one SELECT) ended "
        "without the interpreter's teardown (`os._exit`, as vezamig ends), plus the psql "
        "floor's server work (the psql floor minus psql's own start, taken as its "
        "one-SELECT run):",
        "",
    ]
    for n in (small, large):
        py = bench.series(f"reads {n}", PY_EXIT).median
        floor = bench.series(f"rollback {ROLLBACK} of {n}", PSQL).median
        start = bench.series(f"reads {n}", PSQL_SELECT).median
        ours = bench.series(f"rollback {ROLLBACK} of {n}", VZ).median
        bound = py + floor - start
        lines.append(
            f"- N={n}: {secs(py)} + ({secs(floor)} − {secs(start)}) = {secs(bound)}, "
            f"{bound / floor:.2f}× the psql floor; vezamig {secs(ours)}, {ours / floor:.2f}× "
            f"({secs(ours - bound)} above that bound)"
        )
    lines += [
        "",
        f"The same bound measured directly: the psycopg floor ({PY_ROLLBACK!r}: start, import "
        f"psycopg, connect, the psql floor's {ROLLBACK} steps as one message each, no "
        "teardown), timed in the same rotation as the other two:",
        "",
    ]
    for n in (small, large):
        scenario = f"rollback {ROLLBACK} of {n}"
        py = bench.series(scenario, PY_ROLLBACK).median
        floor = bench.series(scenario, PSQL).median
        ours = bench.series(scenario, VZ).median
        lines.append(
            f"- N={n}: {secs(py)}, {py / floor:.2f}× the psql floor; vezamig {ours / py:.2f}× "
            f"the psycopg floor ({secs(ours - py)} more)"
        )
    lines += [
        "",
        f"The same rollbacks split into the {ROLLBACK} steps (for vezamig and the psycopg "
        "floor, the time their summary line reports; for psql, its run minus its one-SELECT "
        "run) and everything around them (start-up, connect; for vezamig also the run lock "
        "and the plan, against `status` on the same database):",
        "",
    ]
    for n in (small, large):
        ours_s = bench.series(f"rollback {ROLLBACK} of {n}", VZ)
        steps = ours_s.steps
        floor = bench.series(f"rollback {ROLLBACK} of {n}", PSQL).median
        start = bench.series(f"reads {n}", PSQL_SELECT).median
        status = bench.series(f"status {n}", VZ).median
        if steps is None:
            lines.append(f"- N={n}: vezamig's summary line was not found")
            continue
        py_s = bench.series(f"rollback {ROLLBACK} of {n}", PY_ROLLBACK)
        py_steps = py_s.steps or 0.0
        lines.append(
            f"- N={n}: vezamig's steps {secs(steps)} ({steps / ROLLBACK * 1000:.2f} ms a step), "
            f"the psycopg floor's {secs(py_steps)} ({py_steps / ROLLBACK * 1000:.2f} ms a step), "
            f"psql's {secs(floor - start)} ({(floor - start) / ROLLBACK * 1000:.2f} ms a step); "
            f"around the steps: vezamig {secs(ours_s.median - steps)} (`status` "
            f"{secs(status)}), the psycopg floor {secs(py_s.median - py_steps)}"
        )
    lines += [
        "",
        "Every contender: wall time in seconds; the client process's own CPU time "
        "(user + system, median; excludes the server) and peak RSS:",
        "",
        "| scenario | contender | runs | median | min | max | client CPU | max RSS |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario, by in bench.results.items():
        for who, s in by.items():
            lines.append(
                f"| {scenario} | {who} | {len(s.samples)} | {s.median:.4f} | "
                f"{s.low:.4f} | {s.high:.4f} | {s.cpu:.3f} | {s.rss_mb:.0f} MB |"
            )
    return "\n".join(lines) + "\n"


# ---- main -------------------------------------------------------------------------------


@contextmanager
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vezamig-bench-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--quick",
        action="store_true",
        help="N = 100 and 400, one repetition of the slow scenarios; prints only",
    )
    p.add_argument(
        "--sizes",
        type=int,
        nargs=2,
        metavar=("SMALL", "LARGE"),
        help="the two history lengths (default 500 2000)",
    )
    p.add_argument(
        "--reps",
        type=int,
        help="repetitions of apply and rollback at the larger size (default 5; "
        "the smaller size gets 2 × REPS + 1)",
    )
    p.add_argument(
        "--out",
        type=Path,
        help=f"markdown output (default {RESULTS.relative_to(ROOT)}; none with --quick)",
    )
    p.add_argument("--pg-bin", metavar="DIR", help="PostgreSQL server binaries")
    p.add_argument(
        "--no-fsync",
        action="store_true",
        help="diagnosis only: fsync and synchronous_commit off, so the ratios show "
        "client-side overhead instead of disk waits; prints only",
    )
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan((100, 400), 1, 3, 5) if args.quick else Plan((500, 2000), 5, 15, 20)
    if args.sizes:
        plan.sizes = tuple(args.sizes)
    if args.reps:
        plan.reps_slow = args.reps
    if min(plan.sizes) < ROLLBACK:
        raise SystemExit(f"sizes must be at least {ROLLBACK} (the rollback scenario)")
    out: Path | None = args.out or (None if args.quick or args.no_fsync else RESULTS)
    settings_in = dict(FAST_SETTINGS) if args.no_fsync else DURABLE_SETTINGS
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    with (
        raise_on_sigterm(),
        workdir() as work,
        ThrowawayCluster(args.pg_bin, settings=settings_in) as cluster,
    ):
        global PYCACHE
        PYCACHE = work / "pycache"
        load = [os.getloadavg()[0]]
        server = Server(cluster)
        try:
            settings = server.settings()
            print(
                f"PostgreSQL {settings['server_version']} in {cluster.host}: fsync="
                f"{settings['fsync']}, synchronous_commit={settings['synchronous_commit']}",
                flush=True,
            )
            bench = Bench(server, work, plan)
            bench.warm_up()
            for n in plan.sizes:
                print(f"N = {n}", flush=True)
                bench.size(n)
            print("status and no-op up, every size alternating", flush=True)
            bench.reads()
            bench.cleanup()
            print("start-up", flush=True)
            bench.startup()
            load.append(os.getloadavg()[0])
        finally:
            server.close()
    text = report(
        bench, settings, started, time.monotonic() - t0, plan, [load[0], *bench.load, load[-1]]
    )
    print()
    print(text)
    if out is not None:
        out.write_text(text, encoding="utf-8")
        print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
