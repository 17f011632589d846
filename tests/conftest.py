"""Shared fixtures: one PostgreSQL server per test session, a fresh database per test.

PostgreSQL refuses to run as root, and CI runs as root. So:

* as root, the session server is a :class:`vezamig.cluster.ThrowawayCluster`
  (run as the ``postgres`` OS user, unix socket only) and pytest-postgresql
  attaches to it with ``postgresql_noproc``;
* as a normal user, pytest-postgresql's own ``postgresql_proc`` starts it
  (TCP on 127.0.0.1, a free port).

Fixtures for tests: ``postgresql`` (psycopg connection to a fresh database,
dropped after the test), ``dsn`` (libpq conninfo of that same database),
``pg_server`` (host/port/user/conninfo), ``make_database``/``new_dsn`` (more
fresh databases), ``pg_bindir``. Option: ``--pg-bin DIR``.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pytest_postgresql import factories

from vezamig.cluster import FAST_SETTINGS, ThrowawayCluster
from vezamig.errors import VezamigError
from vezamig.pgbin import find_bindir

TEST_DBNAME = "vezamig_test"


def _children() -> list[int]:
    """Pids of this process's children (in pytest-xdist's controller: its workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                found.append(int(entry.name))
    return found


def _sigterm_as_ctrl_c(signum: int, frame: object) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ:
        # Each worker has its own server, stopped by its own session teardown: a
        # worker that xdist's controller ends after its exit timeout stops none.
        for pid in _children():
            with suppress(OSError):
                os.kill(pid, signal.SIGTERM)
    raise KeyboardInterrupt("SIGTERM")


def pytest_sessionstart(session: pytest.Session) -> None:
    """A CI timeout sends SIGTERM: stop like Ctrl-C, so session teardown stops the servers."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--pg-bin",
        metavar="DIR",
        help="folder with initdb, pg_ctl and postgres "
        "(default: PATH, pg_config --bindir, /usr/lib/postgresql/*/bin)",
    )


@dataclass(frozen=True)
class PgServer:
    """Where the session's server is; host is a socket folder (root) or 127.0.0.1."""

    host: str
    port: int
    user: str
    password: str | None = None
    # Read by pytest-postgresql's postgresql_noproc(depends_on=...).
    options: str = ""
    maintenance_dbname: str = "postgres"
    template_dbname: str | None = None

    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq ``key=value`` string, usable as ``vezamig -d`` in a subprocess."""
        return make_conninfo(
            host=self.host, port=self.port, user=self.user, password=self.password, dbname=dbname
        )


def _fail_session(reason: str) -> NoReturn:
    pytest.exit(f"vezamig's tests need a PostgreSQL server: {reason}", returncode=1)


@pytest.fixture(scope="session")
def pg_bindir(request: pytest.FixtureRequest) -> Path:
    try:
        return find_bindir(request.config.getoption("pg_bin"))
    except VezamigError as exc:
        _fail_session(str(exc))


@pytest.fixture(scope="session")
def _vz_root_cluster(pg_bindir: Path) -> Iterator[PgServer]:
    """As root: a throwaway cluster run by the postgres OS user; stopped at session end."""
    cluster = ThrowawayCluster(pg_bindir)
    try:
        cluster.start()
    except VezamigError as exc:
        _fail_session(str(exc))
    with cluster:
        yield PgServer(host=cluster.host, port=cluster.port, user=cluster.user)


_vz_root_noproc = factories.postgresql_noproc(dbname=TEST_DBNAME, depends_on="_vz_root_cluster")
_vz_user_proc = factories.postgresql_proc(
    dbname=TEST_DBNAME,
    postgres_options=" ".join(f"-c {k}={v}" for k, v in FAST_SETTINGS.items()),
)


@pytest.fixture(scope="session")
def vz_pg_proc(request: pytest.FixtureRequest, pg_bindir: Path) -> Any:
    """The session server as pytest-postgresql sees it (its executor or noop executor)."""
    if os.geteuid() == 0:
        return request.getfixturevalue("_vz_root_noproc")
    if not request.config.getoption("postgresql_exec"):
        # postgresql_proc reads this at fixture setup; the factory ran before we knew bindir.
        request.config.option.postgresql_exec = str(pg_bindir / "pg_ctl")
    return request.getfixturevalue("_vz_user_proc")


postgresql = factories.postgresql("vz_pg_proc")


@pytest.fixture(scope="session")
def pg_server(vz_pg_proc: Any) -> PgServer:
    return PgServer(
        host=str(vz_pg_proc.host),
        port=int(vz_pg_proc.port),
        user=str(vz_pg_proc.user),
        password=vz_pg_proc.password or None,
    )


@pytest.fixture
def dsn(postgresql: psycopg.Connection[Any], pg_server: PgServer) -> str:
    """Conninfo of the ``postgresql`` fixture's fresh database."""
    return pg_server.conninfo(postgresql.info.dbname)


_extra_db_numbers = itertools.count(1)


@pytest.fixture
def make_database(pg_server: PgServer) -> Iterator[Callable[[], str]]:
    """Call it to get the dsn of another fresh, empty database; all dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"{TEST_DBNAME}_extra_{os.getpid()}_{next(_extra_db_numbers)}"
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return pg_server.conninfo(name)

    yield make
    if created:
        with psycopg.connect(pg_server.conninfo(), autocommit=True) as conn:
            for name in created:
                drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                conn.execute(drop.format(sql.Identifier(name)))


@pytest.fixture
def new_dsn(make_database: Callable[[], str]) -> Callable[[], str]:
    """Same as make_database."""
    return make_database
