"""Round trips to the server per step, counted on the wire (issue 7).

With durable commits the cost of a step is its waits for the server. Each
simple Query message and each Sync of the extended protocol is answered by one
ReadyForQuery: one round trip. A small proxy between the real CLI and the test
server counts those messages, so the numbers are exact, independent of timing,
and independent of how the code sends them (one string, cursors, pipeline).

No timing is asserted here; `make bench` measures time.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

# The budget of issue 7 (upper bounds; fewer is always fine).
#: A plain transactional step (no guard, no lock), however many statements its body has:
#: BEGIN … body … bookkeeping … COMMIT in one simple-query message.
PER_STEP = 1
#: Each guard on top of that: the guard query (extended protocol, its result must be read),
#: and the ROLLBACK TO SAVEPOINT that cannot ride along with it.
PER_GUARD = 2
#: The first `up` on a database, besides its steps: the session setup with the run lock
#: (one message), the shape check with the rows (fails: no table yet), the shape check
#: alone, creating the tracking tables.
RUN_OVERHEAD = 4
#: Any later `up`/`down` run besides its steps: session setup with the run lock, then the
#: shape check with the tracking rows. (The session's end frees the lock: no unlock.)
LATER_RUN_OVERHEAD = 2
#: `status`: the tracking-table check and its rows in one message.
STATUS = 1
#: `up` with nothing pending: the run lock (with the session setup), then the same.
NOOP_UP = 2

_STARTUP_CODES_THEN_STARTUP = (80877103, 80877104)  # SSLRequest, GSSENCRequest


class WireCounter:
    """A unix-socket proxy in front of the test server that records each round trip.

    Every Query ('Q') and Sync ('S') message from the client is recorded before
    the server can see it, so after the client process has exited the record is
    complete.
    """

    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.folder = tempfile.mkdtemp(prefix="vzrt-")  # short: socket paths are limited
        self.port = 5432
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(os.path.join(self.folder, f".s.PGSQL.{self.port}"))
        self.listener.listen(8)
        self.listener.settimeout(0.1)
        self.messages: list[str] = []
        self._lock = threading.Lock()
        self._sessions: list[threading.Thread] = []
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()

    def conninfo(self, dsn: str) -> str:
        """The same database as ``dsn``, reached through the proxy."""
        params: dict[str, Any] = {
            k: v for k, v in conninfo_to_dict(dsn).items() if k not in ("host", "hostaddr", "port")
        }
        return make_conninfo(host=self.folder, port=self.port, **params)

    def round_trips(self) -> list[str]:
        """What was recorded since the last call, once every session has ended."""
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for t in sessions:
            t.join(timeout=10)
        with self._lock:
            recorded, self.messages = self.messages, []
        return recorded

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        self.listener.close()
        self.round_trips()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- internals ---------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._session, args=(client,), daemon=True)
            with self._lock:
                self._sessions.append(t)
            t.start()

    def _connect_upstream(self) -> socket.socket:
        host, port = self.upstream
        if host.startswith("/"):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(os.path.join(host, f".s.PGSQL.{port}"))
            return s
        return socket.create_connection((host, port))

    def _session(self, client: socket.socket) -> None:
        client.settimeout(None)
        with client, self._connect_upstream() as upstream:
            back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
            back.start()
            try:
                with contextlib.suppress(OSError):
                    self._forward_counting(client, upstream)
            finally:
                _shutdown(upstream)
                back.join(timeout=10)

    def _forward_counting(self, client: socket.socket, upstream: socket.socket) -> None:
        buf = bytearray()
        startup = True
        while chunk := client.recv(65536):
            buf += chunk
            while True:
                if startup:  # untyped: length, then a protocol version or request code
                    if len(buf) < 8 or len(buf) < (n := int.from_bytes(buf[:4], "big")):
                        break
                    startup = int.from_bytes(buf[4:8], "big") in _STARTUP_CODES_THEN_STARTUP
                else:  # typed: one byte, then a length that counts itself
                    if len(buf) < 5 or len(buf) < (n := int.from_bytes(buf[1:5], "big") + 1):
                        break
                    self._note(chr(buf[0]), bytes(buf[5:n]))
                del buf[:n]
            upstream.sendall(chunk)

    def _note(self, kind: str, payload: bytes) -> None:
        if kind == "Q":
            text = " ".join(payload.rstrip(b"\0").decode(errors="replace").split())
            entry = f"Query: {text[:120]}"
        elif kind == "S":
            entry = "Sync (extended protocol)"
        else:
            return
        with self._lock:
            self.messages.append(entry)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        _shutdown(dst)


def _shutdown(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_WR)


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture
def wire(pg_server: Any) -> Iterator[WireCounter]:
    counter = WireCounter(pg_server.host, pg_server.port)
    yield counter
    counter.close()


def write_migrations(base: Path, count: int, *, statements: int = 3, guards: int = 0) -> Path:
    """``count`` plain migrations (a table, an index, rows), each with ``guards`` guards."""
    (base / "up").mkdir(parents=True)
    (base / "down").mkdir(parents=True)
    header = "".join(f"-- vezamig:guard SELECT {i} > 0\n" for i in range(1, guards + 1))
    for v in range(1, count + 1):
        t = f"t{v:03d}"
        body = [
            f"CREATE TABLE {t} (id int PRIMARY KEY, name text);",
            f"CREATE INDEX {t}_name ON {t} (name);",
        ]
        body += [f"INSERT INTO {t} VALUES ({i}, 'row {i}');" for i in range(1, statements - 1)]
        (base / "up" / f"{v:03d}_create_{t}_up.sql").write_text(
            f"-- create {t}\n{header}" + "\n".join(body) + "\n", encoding="utf-8"
        )
        (base / "down" / f"{v:03d}_create_{t}_down.sql").write_text(
            f"-- drop {t}\n{header}DROP TABLE {t};\n", encoding="utf-8"
        )
    return base


Run = Callable[[Sequence[str], str, Path], list[str]]


@pytest.fixture
def vezamig(wire: WireCounter) -> Run:
    """Run the real CLI through the proxy; return the round trips it made."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PG", "VEZAMIG_")) and k != "DATABASE_URL"
    }
    env["NO_COLOR"] = "1"

    def run(args: Sequence[str], dsn: str, folder: Path) -> list[str]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "vezamig",
                *args,
                "-d",
                wire.conninfo(dsn),
                "--dir",
                str(folder),
            ],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
            check=False,
        )
        trips = wire.round_trips()
        assert proc.returncode == 0, (
            f"vezamig {' '.join(args)}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
        )
        return trips

    return run


def listing(trips: list[str]) -> str:
    return "\n".join(f"  {i}. {t}" for i, t in enumerate(trips, 1))


# ---- tests ----------------------------------------------------------------------------


def per_step(short: list[str], long: list[str], extra_steps: int) -> int:
    """Round trips of one step, from two runs that differ only by ``extra_steps`` steps."""
    extra = len(long) - len(short)
    assert extra % extra_steps == 0, f"not linear in the number of steps:\n{listing(long)}"
    return extra // extra_steps


def test_round_trips_grow_with_the_steps_run_and_not_with_the_history_length(
    vezamig: Run, make_database: Callable[[], str], tmp_path: Path
) -> None:
    short = vezamig(["up"], make_database(), write_migrations(tmp_path / "short", 3))
    long = vezamig(["up"], make_database(), write_migrations(tmp_path / "long", 13))
    assert per_step(short, long, 10) == PER_STEP


def test_status_and_an_up_with_nothing_pending_cost_the_same_for_3_and_13_versions(
    vezamig: Run, make_database: Callable[[], str], tmp_path: Path
) -> None:
    counts: dict[str, list[int]] = {"status": [], "up": []}
    for n in (3, 13):
        folder, dsn = write_migrations(tmp_path / f"n{n}", n), make_database()
        vezamig(["up"], dsn, folder)
        for command, trips in counts.items():
            trips.append(len(vezamig([command], dsn, folder)))
    assert counts["status"][0] == counts["status"][1]
    assert counts["up"][0] == counts["up"][1]


def test_a_plain_step_is_one_round_trip_however_many_statements_its_body_has(
    vezamig: Run, make_database: Callable[[], str], tmp_path: Path
) -> None:
    for statements in (2, 12):
        short = vezamig(
            ["up"],
            make_database(),
            write_migrations(tmp_path / f"s{statements}", 2, statements=statements),
        )
        long = vezamig(
            ["up"],
            make_database(),
            write_migrations(tmp_path / f"l{statements}", 5, statements=statements),
        )
        steps = per_step(short, long, 3)
        assert steps <= PER_STEP, (
            f"{steps} round trips per step of {statements} statements:\n{listing(long)}"
        )


def test_rolling_back_a_plain_step_is_one_round_trip(
    vezamig: Run, make_database: Callable[[], str], tmp_path: Path
) -> None:
    folder, dsn = write_migrations(tmp_path / "sql", 13), make_database()
    vezamig(["up"], dsn, folder)
    one = vezamig(["down", "--to", "12", "--yes"], dsn, folder)
    ten = vezamig(["down", "--to", "2", "--yes"], dsn, folder)
    steps = per_step(one, ten, 9)
    assert steps <= PER_STEP, f"{steps} round trips per step:\n{listing(ten)}"


def test_a_run_costs_a_few_round_trips_besides_its_steps(
    vezamig: Run, make_database: Callable[[], str], tmp_path: Path
) -> None:
    short = vezamig(["up"], make_database(), write_migrations(tmp_path / "short", 3))
    long = vezamig(["up"], make_database(), write_migrations(tmp_path / "long", 13))
    overhead = len(short) - 3 * per_step(short, long, 10)
    assert overhead <= RUN_OVERHEAD, f"{overhead} besides the steps:\n{listing(short)}"


def test_a_run_on_a_database_already_tracked_costs_two_round_trips_besides_its_steps(
    vezamig: Run, make_database: Callable[[], str], tmp_path: Path
) -> None:
    folder, dsn = write_migrations(tmp_path / "sql", 13), make_database()
    vezamig(["up", "--to", "3"], dsn, folder)
    up = vezamig(["up"], dsn, folder)
    down = vezamig(["down", "--to", "8", "--yes"], dsn, folder)
    assert len(up) - 10 * PER_STEP <= LATER_RUN_OVERHEAD, f"up:\n{listing(up)}"
    assert len(down) - 5 * PER_STEP <= LATER_RUN_OVERHEAD, f"down:\n{listing(down)}"


def test_status_and_an_up_with_nothing_pending_are_a_few_round_trips(
    vezamig: Run, make_database: Callable[[], str], tmp_path: Path
) -> None:
    folder, dsn = write_migrations(tmp_path / "sql", 5), make_database()
    vezamig(["up"], dsn, folder)
    status = vezamig(["status"], dsn, folder)
    noop = vezamig(["up"], dsn, folder)
    assert len(status) <= STATUS, f"status:\n{listing(status)}"
    assert len(noop) <= NOOP_UP, f"up with nothing pending:\n{listing(noop)}"


def test_each_guard_adds_at_most_two_round_trips_to_its_step(
    vezamig: Run, make_database: Callable[[], str], tmp_path: Path
) -> None:
    plain = vezamig(["up"], make_database(), write_migrations(tmp_path / "plain", 4))
    guarded = vezamig(["up"], make_database(), write_migrations(tmp_path / "guarded", 4, guards=2))
    per_guard = (len(guarded) - len(plain)) / 8
    assert 0 < per_guard <= PER_GUARD, f"{per_guard} per guard:\n{listing(guarded)}"


def test_plain_runs_never_load_the_sql_parser(tmp_path: Path, dsn: str) -> None:
    """pglast costs tens of milliseconds to import: a run whose bodies hold no
    transaction-control or COPY word, and whose files hold no directive, never loads it."""
    from helpers import modules_loaded

    where = ["-d", dsn, "--dir", str(write_migrations(tmp_path / "plain", 3))]
    for args in (["up"], ["status"], ["down", "--to", "0", "--yes"]):
        assert "pglast" not in modules_loaded([*args, *where]), args


def test_offline_commands_never_load_psycopg(tmp_path: Path) -> None:
    """`verify`, `new` and `--help` touch no database: importing psycopg (≈ 110–170 ms
    here) would be most of their time."""
    from helpers import modules_loaded

    where = ["--dir", str(write_migrations(tmp_path / "plain", 3))]
    for args in (["verify", *where], ["new", "add_thing", *where], ["--help"], ["up", "--help"]):
        assert "psycopg" not in modules_loaded(args), args
