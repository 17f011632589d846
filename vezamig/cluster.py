"""A throwaway PostgreSQL cluster for `vezamig roundtrip` and the test suite (SPEC §7).

initdb + pg_ctl from the local server binaries, in a private temporary folder,
listening on a unix socket only. The folder and the server go away when the
``with`` block ends, however it ends. PostgreSQL refuses to run as root, so as
root the server runs as the ``postgres`` OS user (or ``nobody``).

Python's default SIGTERM action ends the process without running ``finally``
blocks; wrap the work in :func:`raise_on_sigterm` so SIGTERM cleans up as well.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from vezamig.errors import EXIT_TERMINATED, Interrupted, UsageError
from vezamig.pgbin import find_bindir

#: Safe to lose: the cluster is thrown away, so durability buys nothing.
FAST_SETTINGS: dict[str, str] = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
}

SUPERUSER = "postgres"
DEFAULT_PORT = 5432  # only names the socket file; the socket folder is private
_LOG_TAIL = 25


class ClusterError(UsageError):
    """The throwaway cluster could not be created or started (exit 2)."""


class ThrowawayCluster:
    """A private PostgreSQL server that lives as long as a ``with`` block."""

    def __init__(
        self,
        bindir: str | os.PathLike[str] | None = None,
        *,
        listen_tcp_port: int | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        self.bindir = find_bindir(bindir)
        self.listen_tcp_port = listen_tcp_port
        self.port = listen_tcp_port or DEFAULT_PORT
        self.user = SUPERUSER
        self.host = ""
        self.pid: int | None = None
        self.tmpdir: Path | None = None
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.os_user = _unprivileged_user() if os.geteuid() == 0 else None
        self._launching = False

    @property
    def datadir(self) -> Path:
        assert self.tmpdir is not None, "cluster not started"
        return self.tmpdir / "data"

    @property
    def logfile(self) -> Path:
        assert self.tmpdir is not None, "cluster not started"
        return self.tmpdir / "server.log"

    def conninfo(self, dbname: str = "postgres") -> str:
        """A libpq ``key=value`` string for the superuser; no password needed (trust)."""
        from psycopg.conninfo import make_conninfo

        return make_conninfo(host=self.host, port=self.port, user=self.user, dbname=dbname)

    def start(self) -> ThrowawayCluster:
        if self.tmpdir is not None:
            return self
        try:
            self._create_dirs()
            self._run(
                [
                    self.bindir / "initdb",
                    *("-D", self.datadir, "--auth=trust", f"--username={self.user}"),
                    *("--no-sync", "-E", "UTF8", "--locale=C"),
                ],
                "initdb",
            )
            self._write_settings()
            self._launching = True
            try:
                self._run(
                    [
                        self.bindir / "pg_ctl",
                        *("start", "-w", "-t", "60", "-D", self.datadir, "-l", self.logfile),
                    ],
                    "pg_ctl start",
                )
            except ClusterError:
                self._launching = False  # pg_ctl finished: no postmaster is on its way up
                raise
            self._launching = False
            self.pid = self._read_pid()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server and remove the folder; safe to call twice or after a failed start.

        SIGINT/SIGTERM are held back meanwhile, so a second Ctrl-C cannot leave
        a server behind; they are delivered once everything is gone.
        """
        if self.tmpdir is None:
            return
        with _signals_held():
            try:
                self._stop_server()
            finally:
                _remove_tree(self.tmpdir)
                self.tmpdir = None
                self.pid = None
                self.host = ""

    def __enter__(self) -> ThrowawayCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------

    def _create_dirs(self) -> None:
        self.tmpdir = Path(tempfile.mkdtemp(prefix="vezamig-pg-"))
        sockdir = self.tmpdir / "sock"
        sockdir.mkdir(mode=0o700)
        self.host = str(sockdir)
        if self.os_user is None:
            return
        entry = pwd.getpwnam(self.os_user)
        blocked = _first_untraversable(self.tmpdir.parent, entry)
        if blocked is not None:
            raise ClusterError(
                f"the OS user {self.os_user!r} that runs the throwaway server cannot enter "
                f"{blocked}; set TMPDIR to a folder it can reach (for example /tmp)"
            )
        for path in (self.tmpdir, sockdir):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _write_settings(self) -> None:
        """Append to postgresql.conf rather than pass ``-o``: pg_ctl hands -o to /bin/sh."""
        values = {
            "listen_addresses": "127.0.0.1" if self.listen_tcp_port else "",
            "port": str(self.port),
            "unix_socket_directories": self.host,
            **self.settings,
        }
        lines = [f"{name} = {_guc_quote(value)}\n" for name, value in values.items()]
        with (self.datadir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# throwaway cluster settings (vezamig)\n")
            conf.writelines(lines)

    def _run(self, argv: Sequence[str | os.PathLike[str]], what: str) -> None:
        """Run a server binary as the server's OS user; raise ClusterError with the log tail."""
        argv = [os.fspath(a) for a in argv]
        kwargs: dict[str, Any] = {}
        if self.os_user is not None:
            if shutil.which("runuser"):
                argv = ["runuser", "-u", self.os_user, "--", *argv]
            else:
                entry = pwd.getpwnam(self.os_user)
                kwargs = {
                    "user": entry.pw_uid,
                    "group": entry.pw_gid,
                    "extra_groups": os.getgrouplist(self.os_user, entry.pw_gid),
                }
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        # Its own process group: a signal that reaches only vezamig (`kill -INT pid`, a CI
        # timeout) must not leave initdb running under runuser, writing into the folder
        # that stop() removes; the whole group is killed instead.
        proc = subprocess.Popen(
            argv,
            cwd=self.tmpdir,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
            **kwargs,
        )
        try:
            stdout, stderr = proc.communicate()
        except BaseException:
            _kill_group(proc)
            raise
        if proc.returncode != 0:
            output = (stdout + stderr).strip().splitlines()[-_LOG_TAIL:]
            raise ClusterError(
                f"{what} failed (exit {proc.returncode}) for the throwaway cluster",
                details=[*output, *self._log_tail()],
            )

    def _log_tail(self) -> list[str]:
        try:
            lines = self.logfile.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []
        return ["server log:", *lines[-_LOG_TAIL:]] if lines else []

    def _read_pid(self) -> int | None:
        try:
            first = (self.datadir / "postmaster.pid").read_text().split("\n", 1)[0]
            return int(first)
        except (OSError, ValueError):
            return None

    def _stop_server(self) -> None:
        if self._launching:
            # pg_ctl start was interrupted: the postmaster may still be on its way up.
            deadline = time.monotonic() + 5
            while self._read_pid() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            self._launching = False
        pid = self._read_pid() or self.pid
        if pid is None:
            return
        for mode in ("fast", "immediate"):
            with contextlib.suppress(ClusterError):
                stop = ["stop", "-w", "-t", "30", "-m", mode, "-D", self.datadir]
                self._run([self.bindir / "pg_ctl", *stop], f"pg_ctl stop -m {mode}")
            if not process_alive(pid):
                return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """Kill a tool's process group and wait until no member is left (a few seconds
    at most). The postmaster is not in it: pg_ctl starts it in a session of its own,
    and _stop_server takes care of it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)


def process_alive(pid: int) -> bool:
    """Whether pid names a live process; a zombie waiting to be reaped counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


@contextlib.contextmanager
def raise_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into Interrupted (exit 143) so ``with``/``finally`` cleanup runs.

    Only the main thread can own signal handlers; elsewhere this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise Interrupted("terminated (SIGTERM)", exit_code=EXIT_TERMINATED)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _unprivileged_user() -> str:
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise ClusterError(
        "running as root, but there is no 'postgres' or 'nobody' OS user to run "
        "the throwaway PostgreSQL server (PostgreSQL refuses to run as root)"
    )


def _first_untraversable(path: Path, entry: pwd.struct_passwd) -> Path | None:
    """The first folder on the way to path that entry's user may not enter, if any."""
    groups = set(os.getgrouplist(entry.pw_name, entry.pw_gid))
    for folder in [path, *path.parents]:
        st = folder.stat()
        if st.st_uid == entry.pw_uid:
            bit = stat.S_IXUSR
        elif st.st_gid in groups:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return folder
    return None


def _guc_quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace("'", "''")
    return f"'{escaped}'"


def _remove_tree(path: Path) -> None:
    """Remove path; a late write by a dying backend may need a second try."""
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except OSError:
        time.sleep(0.2)
        shutil.rmtree(path, ignore_errors=True)
