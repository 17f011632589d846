"""Connections: open one, describe it without its password, take the run lock.

psycopg is imported here and only here at module level, so commands that never
touch a database (``--help``, ``verify``, ``new``) start without it.
"""

from __future__ import annotations

import getpass
import logging
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from vezamig import __version__
from vezamig.config import os_text
from vezamig.errors import ConnectError, LockBusy, UsageError

Connection = psycopg.Connection[Any]

# Advisory lock key: a fixed class id ('vzmg') and a fixed key ('run!'). Advisory locks
# belong to one database, so this is one run per database, whatever its --table
# (SPEC §5: "Only one run changes a database at a time"): two histories in one
# database (two schemas, two tracking tables) may touch the same objects, and a
# second run waits for the first as for any other.
_LOCK_CLASS = 0x767A6D67  # fits a signed int4
_RUN_KEY = 0x72756E21
_PROBE_CLASS = _LOCK_CLASS + 1
# psycopg logs what it ignores while it raises an error of ours (a guard's error ends
# its pipeline: "error ignored terminating <Pipeline>: pipeline aborted"). vezamig
# reports the error itself; without a handler, Python would print such lines on
# stderr among vezamig's own messages.
logging.getLogger("psycopg").addHandler(logging.NullHandler())
# What a server answers `SET client_connection_check_interval` with on a platform
# that cannot poll sockets: the session setup is then sent without it.
NO_SOCKET_POLLING = (psycopg.errors.InvalidParameterValue, psycopg.errors.FeatureNotSupported)
# Linear time: a scheme starts only at a word boundary and nothing backtracks, so an
# error quoting a 50 KB line of SQL is redacted in microseconds, not minutes.
_URL_PASSWORD_RE = re.compile(
    r"(?P<pre>(?<![a-z0-9+.-])[a-z][a-z0-9+.-]*+://[^:/@\s]*+:)(?P<pw>[^@/\s]*+)(?=@)", re.I
)
# password and sslpassword (the client key's passphrase) are both secrets.
_KV_PASSWORD_RE = re.compile(
    r"(?P<pre>\b(?:ssl)?password\s*=\s*)(?P<pw>'(?:[^'\\]|\\.)*'|\S+)", re.I
)


def redact(text: str, conninfo: str | None = None) -> str:
    """Remove any password from text that may quote a DSN: a URL's `user:…@` and a
    `password=…` keyword, wherever they appear. With ``conninfo`` (for libpq's own
    messages about it), also every form its password may take there, each as a whole
    word, inside the quoted values libpq cites (`"my secret"`, `'cret@host'`); in its
    prose only a long one: masking a password that happens to be `1` or `failed`
    in other words would wreck the message (and tell the password)."""
    secrets = _passwords_in(conninfo)
    if conninfo is not None and os.environ.get("PGPASSWORD"):
        secrets.add(os.environ["PGPASSWORD"])
    if secrets:
        # Before the `password=…` masking below, which could eat a closing quote.
        longest_first = sorted(secrets, key=len, reverse=True)  # one may contain another
        quoted = _words_re(longest_first)
        text = _QUOTED_RE.sub(lambda m: quoted.sub("***", m[0]), text)
        long = [w for w in longest_first if len(w) >= _PROSE_MASK_LEN]
        text = _words_re(long).sub("***", text) if long else text
    text = _URL_PASSWORD_RE.sub(r"\g<pre>***", text)
    return _KV_PASSWORD_RE.sub(r"\g<pre>***", text)


# What libpq cites from a conninfo it quotes, and how long a password must be to be
# masked in its prose too (where a short one would match its own words).
_QUOTED_RE = re.compile(r"\"[^\"\n]*\"|'[^'\n]*'")
_PROSE_MASK_LEN = 8


def _words_re(words: list[str]) -> re.Pattern[str]:
    return re.compile(r"(?<![^\W_])(?:" + "|".join(re.escape(w) for w in words) + r")(?![^\W_])")


def has_password(conninfo: str) -> bool:
    """Whether the conninfo carries a password in any form (never to be printed)."""
    return bool(_passwords_in(conninfo))


_QUERY_PASSWORD_RE = re.compile(r"[?&](?:ssl)?password=(?P<pw>[^&#]*)", re.I)
# What a URL's password may be as its author meant it: up to the last `@`, spaces,
# `@`, `?` and `#` included (libpq splits such a URL elsewhere, and its error then
# quotes the pieces: `unexpected spaces found in "my pass#1"`).
_URL_MEANT_RE = re.compile(r"^\s*[a-z][a-z0-9+.-]*://[^:/@?#]*:(?P<pw>.*)@", re.I | re.S)
# In key=value form, after `password=` everything may be the password when the string
# does not parse (`password=my secret`: libpq complains about "secret"; `password=Wk7v
# Rb2n=Pm4t` about an option "Rb2n"), up to the next key libpq knows: what follows
# that is not the password (`… dbname=x bogus=1`: the name "bogus" must be shown).
_KV_MEANT_RE = re.compile(r"\b(?:ssl)?password\s*=\s*(?P<pw>.*)", re.I | re.S)
_KV_NEXT_KEY_RE = re.compile(r"\s+(?P<key>[A-Za-z_]\w*)\s*=")
_KV_QUOTED_RE = re.compile(r"'((?:[^'\\]|\\.)*)'(?=\s|$)", re.S)
# And in a URL's query: `?password=Qw8&Er7#Ty6` is cut at the `&` and the `#`.
_QUERY_MEANT_RE = re.compile(r"[?&](?:ssl)?password=(?P<pw>.*)", re.I | re.S)
_PIECES_RE = re.compile(r"[\s@'\"/:?&#=]+")


def _passwords_in(conninfo: str | None) -> set[str]:
    """Every form of the password the conninfo holds: as parsed, and as written (a URL
    libpq cannot parse, e.g. a bad %-escape, is quoted raw in its error message)."""
    if not conninfo:
        return set()
    from urllib.parse import unquote

    found: set[str] = set()
    parsed = True
    try:
        params = conninfo_to_dict(conninfo)
        found.update(str(params[k]) for k in ("password", "sslpassword") if params.get(k))
    except (psycopg.ProgrammingError, UnicodeError):
        parsed = False
    for pattern in (_URL_PASSWORD_RE, _QUERY_PASSWORD_RE, _KV_PASSWORD_RE):
        for m in pattern.finditer(conninfo):
            raw = m["pw"]
            if raw.startswith("'") and raw.endswith("'") and len(raw) > 1:
                raw = raw[1:-1]
            found.update({raw, unquote(raw)})
    # libpq may have cut the password elsewhere than its author meant (at the first
    # `@` of `se@cret`, whose rest it then takes for the host): each piece of it.
    patterns = (_URL_MEANT_RE,) if parsed else (_URL_MEANT_RE, _QUERY_MEANT_RE, _KV_MEANT_RE)
    for pattern in patterns:
        whole = pattern.search(conninfo)
        meant = whole["pw"].strip() if whole else ""
        if pattern is _KV_MEANT_RE and meant:
            quoted = _KV_QUOTED_RE.match(meant)
            # A quoted value is the password, exactly; an unquoted one may have run on.
            meant = quoted[1] if quoted else _up_to_a_known_key(meant)
        if meant and (meant not in found or not parsed):
            found.update({meant, unquote(meant), *_PIECES_RE.split(meant)})
    found.discard("")
    return found


def _up_to_a_known_key(rest: str) -> str:
    """What follows `password=` up to the next `key=` whose key libpq knows."""
    known = {o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults()}
    for m in _KV_NEXT_KEY_RE.finditer(rest):
        if m["key"].lower() in known:
            return rest[: m.start()].strip()
    return rest


def os_identity() -> tuple[str, str]:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return os_text(user), os_text(socket.gethostname())  # LOGNAME may not be UTF-8


_URL_HINT = "check -d/--database-url or DATABASE_URL"


def connect(
    conninfo: str | None,
    application: str = "vezamig",
    *,
    writing: bool = True,
    timeout: int | None = None,
) -> Connection:
    """Autocommit connection: every step opens its own transaction explicitly.

    ``writing``: send the session setup of a run that changes the database now
    (see session_setup). Read-only commands (status, history) skip it; the CLI's
    runs send it with their first run-lock attempt instead (Runner.run_lock).
    ``timeout``: connect_timeout in seconds, whatever the conninfo says (a check
    after a lost connection must not hang for long).
    """
    conninfo = conninfo or ""
    try:
        params = conninfo_to_dict(conninfo)
    except UnicodeEncodeError:
        # A byte that is not UTF-8 (a Latin-1 password typed on a Latin-1 terminal):
        # the text is not shown, it may be the password.
        raise UsageError(
            "cannot read the database URL: it holds a byte that is not valid UTF-8",
            details=[
                _URL_HINT + "; write non-ASCII characters percent-encoded as UTF-8 (é = %C3%A9)"
            ],
        ) from None
    except psycopg.ProgrammingError as exc:
        said = redact(str(exc).strip(), conninfo)
        details = [_URL_HINT]
        if 'invalid connection option "***"' in said:
            details.append(
                "the option right after the password is not one libpq knows; it is not "
                "shown, since it could be the rest of an unquoted password: quote a "
                "password that has spaces (password='…') and check the option names"
            )
        raise UsageError(f"cannot read the database URL: {said}", details=details) from None
    # UTF8 whatever the database's encoding: migration files are UTF-8 (anything else
    # is a layout error), and so is every name vezamig sends. A LATIN1 database then
    # converts on the server, and a character it lacks is an SQL error (22P05) in its
    # step, not a client-side crash; in an SQL_ASCII one, psycopg would return bytes.
    extra: dict[str, Any] = {
        "application_name": application,
        "autocommit": True,
        "client_encoding": "UTF8",
    }
    if timeout is not None:
        extra["connect_timeout"] = timeout
    elif "connect_timeout" not in params and not os.environ.get("PGCONNECT_TIMEOUT"):
        extra["connect_timeout"] = 10
    try:
        conn = psycopg.connect(conninfo, **extra)
        # Never a server-side prepared statement of psycopg's own: a step's session
        # reset deallocates the ones a migration left (DEALLOCATE ALL).
        conn.prepare_threshold = None
    except psycopg.OperationalError as exc:
        raise ConnectError(
            "cannot connect to the database: " + redact(str(exc).strip(), conninfo),
            details=["check -d/--database-url (or DATABASE_URL, PGHOST, PGDATABASE, ~/.pgpass)"],
        ) from None
    except psycopg.ProgrammingError as exc:
        # Rejected before any attempt (`connect_timeout=abc`, also from PGCONNECT_TIMEOUT):
        # a configuration error, like a URL that does not parse.
        raise UsageError(
            "cannot use the database URL: " + redact(str(exc).strip(), conninfo),
            details=[_URL_HINT + " (and PGCONNECT_TIMEOUT)"],
        ) from None
    if writing:
        try:
            conn.execute(session_setup(conn))
        except NO_SOCKET_POLLING:
            conn.execute(session_setup(conn, check_connection=False))  # durability anyway
    return conn


def session_setup(
    conn: Connection, *, check_connection: bool = True, sync: bool | None = None
) -> str:
    """What a session that changes the database sets first, as one message.

    - If vezamig is killed (SIGKILL, OOM) mid-statement, the server otherwise keeps
      running the statement, holding its locks and our run lock, until it next
      writes to the dead socket. PG14+ can poll for it.
    - A step we report as applied must survive a server crash: with
      synchronous_commit off the crash could silently undo it (and its record).
      Other values are kept.

    ``sync``: whether turning synchronous_commit on is known to be needed (True), known
    not to be (False), or to be decided by the server (None), as after a RESET ALL.
    """
    check = (
        "SET client_connection_check_interval = '1s'; "
        if check_connection and conn.info.server_version >= 140000
        else ""
    )
    if sync is True:  # known to be needed (and cheaper than a query)
        return check + "SET synchronous_commit = on"
    if sync is False:  # known not to be needed: keep the server's value
        return check.removesuffix("; ")
    return (
        check + "SELECT set_config('synchronous_commit', 'on', false)"
        " WHERE current_setting('synchronous_commit') = 'off'"
    )


@dataclass(frozen=True)
class DatabaseInfo:
    host: str
    port: int
    dbname: str
    user: str

    def __str__(self) -> str:
        return f"{self.dbname} on {self.host}:{self.port} as {self.user}"


def describe(conn: Connection) -> DatabaseInfo:
    info = conn.info
    return DatabaseInfo(info.host, int(info.port), info.dbname, info.user)


def applied_by(conn: Connection) -> str:
    user, host = os_identity()
    return f"{conn.info.user} ({user}@{host})"


def tool_version() -> str:
    return __version__


def lock_holder(conn: Connection, key: int) -> str:
    """Who holds the run lock ``key``, or a word that nobody visibly does (see _holder)."""
    return _holder(conn, sql.Literal(key)) or (
        "another session (it has just released the lock or is not visible to you)"
    )


def _holder(conn: Connection, key: sql.Composable) -> str | None:
    """Who holds the run lock ``key`` (see acquire_run_lock): pid, application, client,
    since when.

    Advisory locks belong to one database, and every database tracked by a table of
    the same name has the same key: only this database's holder is the one we wait
    for. A role without pg_read_all_stats sees another role's pid, user and
    application, but not its client or start: that is said, not guessed. ``key``: the
    key, or the SQL that computes it. None when nobody holds it."""
    row = conn.execute(
        sql.SQL(
            "SELECT a.pid, a.application_name, a.usename, a.backend_start IS NOT NULL,"
            " coalesce(host(a.client_addr), 'local socket'),"
            " to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), current_user"
            " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted AND l.classid::int = {}::int"
            " AND l.objid::int = {}::int AND l.objsubid = 2"
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " LIMIT 1"
        ).format(sql.Literal(_LOCK_CLASS), key)
    ).fetchone()
    if row is None:
        return None
    pid, app, user, visible, client, since, me = row
    who = f"pid {pid}, application {app or '?'}, user {user}"
    if not visible:
        return (
            f"{who}; its client and start time are not visible to {me} "
            "(that needs pg_read_all_stats)"
        )
    return f"{who}, client {client}, connected since {since}"


def run_in_progress(conn: Connection) -> str | None:
    """Who holds this database's run lock now (see lock_holder), or None: for a
    read-only command that shows a dirty version, which may be a running
    non-transactional step rather than one a run left behind."""
    return _holder(conn, sql.Literal(_RUN_KEY))


def server_codec(conn: Connection) -> str | None:
    """Python's codec for the database's encoding, or None where any text fits (UTF8,
    SQL_ASCII) or it is not known (psycopg's table of names is a private helper)."""
    name = conn.info.parameter_status("server_encoding") or ""
    if name in ("UTF8", "SQL_ASCII", ""):
        return None
    try:
        from psycopg._encodings import pg2pyenc

        return str(pg2pyenc(name.encode()))
    except Exception:
        return None


def storable(text: str, codec: str | None) -> str:
    """``text`` as the database can store it: a character its encoding lacks (a path's
    `☃` in a LATIN1 database's history row) written as `\u2603`, not a failed row."""
    if codec is None:
        return text
    try:
        text.encode(codec)
        return text
    except UnicodeEncodeError:
        return text.encode(codec, "backslashreplace").decode(codec)
    except LookupError:
        return text


def error_lines(exc: psycopg.Error) -> list[str]:
    """A server error on vezamig's own statements (no file to point into): SQLSTATE and
    message on one line, then its detail, hint and context."""
    diag = exc.diag
    primary = " ".join((diag.message_primary or str(exc)).split())
    return [f"{diag.sqlstate or '?'} {primary}"] + [
        f"{label}: {text.strip()}"
        for label, text in (
            ("detail", diag.message_detail),
            ("hint", diag.message_hint),
            ("context", diag.context),
        )
        if text
    ]


def table_lockers(conn: Connection, tables: dict[str, str]) -> list[tuple[str, int | None, str]]:
    """Who holds, or waits ahead of us for, a lock that blocks reading ``tables``
    (label -> quoted name): only ACCESS EXCLUSIVE conflicts with a SELECT (ALTER
    TABLE, VACUUM FULL, LOCK TABLE, TRUNCATE). A request still waiting counts too: a
    read queues behind it. The sessions' queries are not shown: another role's
    statement may hold a secret (ALTER ROLE … PASSWORD). Each: (label, pid, what)."""
    rows = conn.execute(
        "SELECT l.pid, l.granted, a.application_name, a.usename, a.state,"
        " to_char(coalesce(a.xact_start, a.backend_start), 'YYYY-MM-DD HH24:MI:SS TZ'), t.label,"
        " CASE WHEN l.relation = pg_catalog.to_regclass(t.name) THEN ''"
        " ELSE ' (its index ' || l.relation::regclass::text || ')' END"
        " FROM unnest(%s::text[], %s::text[]) t(label, name)"
        # The table or one of its indexes (a REINDEX): a read opens both.
        " JOIN pg_catalog.pg_locks l ON l.relation = pg_catalog.to_regclass(t.name)"
        " OR l.relation IN (SELECT i.indexrelid FROM pg_catalog.pg_index i"
        " WHERE i.indrelid = pg_catalog.to_regclass(t.name))"
        " LEFT JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'relation' AND l.mode = 'AccessExclusiveLock'"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        " AND l.pid IS DISTINCT FROM pg_backend_pid()"
        " ORDER BY l.granted DESC, l.pid",
        [list(tables), list(tables.values())],
    ).fetchall()
    said: list[tuple[str, int | None, str]] = []
    for pid, granted, app, user, state, since, label, index in rows:
        lock = f"{'holds' if granted else 'waits for'} an ACCESS EXCLUSIVE lock on {label}{index}"
        if pid is None:  # PREPARE TRANSACTION keeps its locks after its session ended
            what = (
                f"a prepared transaction {lock} (see pg_prepared_xacts; it stays until "
                "COMMIT PREPARED or ROLLBACK PREPARED)"
            )
        elif state is None:
            what = (
                f"pid {pid} (application {app or '?'}, user {user}) {lock}; what it is "
                "doing is not visible to you (that needs pg_read_all_stats)"
            )
        else:
            what = (
                f"pid {pid} (application {app or '?'}, user {user}, {state}, in its "
                f"transaction since {since}) {lock}"
            )
        said.append((label, pid, what))
    return said


class RunLock(NamedTuple):
    """The run lock a session holds: its key (for release_run_lock), and whether the
    session setup sent with it could ask the server to poll the socket (Runner
    sends the same setup again after each step's RESET ALL)."""

    key: int
    polls: bool | None  # None: no setup was sent with the lock
    # The setup turned synchronous_commit on (the server's default was off): after a
    # RESET ALL it must be turned on again. None: not known.
    forced_sync: bool | None = None
    classid: int = _LOCK_CLASS  # _PROBE_CLASS: a dry run's probe (hold_probe_lock)
    # Why this session cannot write: 'recovery' (a hot standby), 'read-only'
    # (default_transaction_read_only on); None: it can.
    read_only: str | None = None


def acquire_run_lock(
    conn: Connection,
    wait_ms: int,
    on_wait: Callable[[str], None] | None = None,
    *,
    setup: bool = False,
    statement_timeout_ms: int = 0,
) -> RunLock:
    """Session-level advisory lock on the same connection that runs the steps.

    One run per database (see _RUN_KEY), whatever its --table. Polling with
    pg_try_advisory_lock (not a blocking call) keeps Ctrl-C responsive and lets us
    name the holder once while waiting. ``setup``: send the session setup (see
    session_setup) in the same message as the first try, one round trip for both.
    ``statement_timeout_ms``: vezamig's own (--statement-timeout), not one a role or
    database sets for the application's queries, for this message.
    """
    # The same answer says whether this session can write at all (see RunLock.read_only).
    query = (
        sql.SQL(
            "SELECT pg_try_advisory_lock({}::int, k), k, CASE WHEN pg_is_in_recovery()"
            " THEN 'recovery' WHEN current_setting('transaction_read_only') = 'on'"
            " THEN 'read-only' END FROM (SELECT {}::int AS k) s"
        )
        .format(sql.Literal(_LOCK_CLASS), sql.Literal(_RUN_KEY))
        .as_string(conn)
    )
    # First in each message, so the answers read below keep their places.
    timeout = (
        sql.SQL("SET LOCAL statement_timeout = {}; ")
        .format(sql.Literal(f"{statement_timeout_ms}ms"))
        .as_string(conn)
    )
    deadline = time.monotonic() + wait_ms / 1000
    told = False
    polls: bool | None = True if setup else None
    forced_sync: bool | None = None
    first = session_setup(conn) + "; " if setup else ""
    while True:
        try:
            cur = conn.execute(timeout + first + query)
        except NO_SOCKET_POLLING:
            if not first:
                raise
            # nothing after the failing SET ran: try again without it
            first = session_setup(conn, check_connection=False) + "; "
            polls = False
            continue
        sent_setup, first = bool(first), ""
        answers: list[list[Any]] = []
        while True:  # the setup's answers, then the lock's (the last result)
            answers.append(cur.fetchall() if cur.description is not None else [])
            if not cur.nextset():
                break
        if sent_setup:
            forced_sync = bool(answers[-2])  # set_config answers a row only if it changed
        row = answers[-1][0]
        locked, key, read_only = row
        if locked:
            return RunLock(int(key), polls, forced_sync, read_only=read_only)
        holder = lock_holder(conn, key)
        if time.monotonic() >= deadline:
            raise LockBusy(
                f"another vezamig run holds the lock on this database: {holder}",
                details=["wait for it to finish, or raise --lock-wait"],
            )
        if not told and on_wait is not None:
            on_wait(f"waiting up to {wait_ms / 1000:g}s for another vezamig run ({holder})")
            told = True
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))


def hold_probe_lock(conn: Connection) -> RunLock:
    """A dry run takes no run lock (it must not make a real run wait); it holds a
    session lock of its own instead, keyed by its backend, so its guards are judged
    as a real run's: one that releases the session's locks (pg_advisory_unlock_all())
    is caught, not shown as passing."""
    key = conn.execute(
        sql.SQL("SELECT pg_advisory_lock({}::int, pg_backend_pid()), pg_backend_pid()")
        .format(sql.Literal(_PROBE_CLASS))
        .as_string(conn)
    ).fetchone()
    assert key is not None
    return RunLock(int(key[1]), None, classid=_PROBE_CLASS)


def run_lock_held_sql(conn: Connection, lock: RunLock) -> str:
    """A query answering whether this session still holds ``lock``: a guard that
    calls pg_advisory_unlock_all() would otherwise end the one-run-at-a-time rule
    unseen (a savepoint's rollback does not give a session lock back)."""
    return (
        sql.SQL(
            "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory'"
            " AND pid = pg_backend_pid() AND granted AND classid::int = {}::int"
            " AND objid::int = {}::int AND objsubid = 2"
        )
        .format(sql.Literal(lock.classid), sql.Literal(lock.key))
        .as_string(conn)
    )


def release_run_lock(conn: Connection, lock: RunLock) -> None:
    conn.execute(
        sql.SQL("SELECT pg_advisory_unlock({}::int, {}::int)").format(
            sql.Literal(lock.classid), sql.Literal(lock.key)
        )
    )
