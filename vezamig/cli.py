"""Command line: a thin click layer over the library.

Each command builds a Config, calls the library, renders the result and maps
VezamigError to its exit code. Heavy modules (psycopg, rich, pglast) are
imported inside the commands so that ``vezamig --help`` starts fast.
"""

from __future__ import annotations

import functools
import gc
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from vezamig import __version__
from vezamig.errors import (
    EXIT_BROKEN_PIPE,
    EXIT_HANGUP,
    EXIT_INTERRUPTED,
    EXIT_OUTPUT,
    EXIT_TERMINATED,
    EXIT_USAGE,
    Interrupted,
    LockBusy,
    OutputLost,
    Refused,
    UsageError,
    VezamigError,
)

if TYPE_CHECKING:
    from vezamig.config import Config
    from vezamig.db import Connection
    from vezamig.files import Migration
    from vezamig.output import Output
    from vezamig.runner import Runner, StepResult

F = TypeVar("F", bound=Callable[..., Any])


class _Digits(click.IntRange):
    """An integer written in ASCII digits: Python's int() also reads `٣` (an Arabic-Indic
    three) and `9_84` as numbers, which no operator means as a version or a count."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not re.fullmatch(r"\s*[-+]?[0-9]+\s*", value, re.ASCII):
            self.fail(f"`{value}` is not a whole number: write it in the digits 0-9", param, ctx)
        return super().convert(value, param, ctx)


def _no_color(flag: bool) -> bool:
    return flag or bool(os.environ.get("NO_COLOR"))  # no-color.org: set and not empty


_outputs: dict[tuple[bool, bool, int, int], Output] = {}


def _output(opts: dict[str, Any]) -> Output:
    """One Output per command (and streams): the error printed at the end knows the
    progress line the run left on the terminal."""
    from vezamig.output import Output

    color, quiet = not _no_color(opts.get("no_color", False)), bool(opts.get("quiet", False))
    key = (color, quiet, id(sys.stdout), id(sys.stderr))
    if key not in _outputs:
        _outputs[key] = Output(color=color, quiet=quiet)
    return _outputs[key]


def _fail(exc: VezamigError, opts: dict[str, Any]) -> None:
    if isinstance(exc, OutputLost) and exc.silent:  # `vezamig status | head -1`
        sys.exit(exc.exit_code)
    url = opts.get("database_url")
    try:
        from vezamig.db import redact
    except Exception:  # psycopg half imported: Ctrl-C arrived during its import
        exc.message, exc.details = _blunt_redact(exc.message, url), []
    else:
        # Only what looks like a conninfo: libpq's messages, which quote pieces of the
        # password as well, were redacted with it where they were caught (db.connect).
        exc.message = redact(exc.message)
        exc.details = [redact(d) for d in exc.details]
    try:
        _output(opts).error(exc)
    except Exception:  # rendering must never hide the real error
        with suppress(OSError):  # stderr cannot be written either: the exit code tells
            click.echo(str(exc), err=True)
    sys.exit(exc.exit_code)


def _blunt_redact(text: str, url: str | None) -> str:
    """Without psycopg to parse the URL: hide all of it."""
    return text.replace(url, "***") if url else text


_sigint_seen = False


def _on_sigint(signum: int, frame: Any) -> None:
    """Python's own handler, remembering that it ran: an import that Ctrl-C broke may
    surface as another error (psycopg falls back from one implementation to the next
    and reports that none could be imported)."""
    global _sigint_seen
    _sigint_seen = True
    raise KeyboardInterrupt


def handle_errors(fn: F) -> F:
    """Turn library errors into messages and exit codes; never a traceback."""

    @functools.wraps(fn)
    def wrapper(**opts: Any) -> Any:
        try:
            return fn(**opts)
        except VezamigError as exc:
            _fail(exc, opts)
        except KeyboardInterrupt:
            _fail(Interrupted("interrupted; nothing was in progress"), opts)
        except SystemExit as exc:
            if exc.code == EXIT_TERMINATED:
                _fail(Interrupted("terminated (SIGTERM)", exit_code=EXIT_TERMINATED), opts)
            if exc.code == EXIT_HANGUP:
                _fail(Interrupted("hung up (SIGHUP)", exit_code=EXIT_HANGUP), opts)
            raise
        except BrokenPipeError:
            # The reader went away (`vezamig status | head -1`): exit as a program killed
            # by SIGPIPE does, not 1 ("a step failed"); a run stops between steps.
            sys.exit(EXIT_BROKEN_PIPE)
        except Exception as exc:
            if _sigint_seen:  # the consequence of Ctrl-C, not a bug to show as one
                _fail(Interrupted("interrupted; nothing was in progress"), opts)
            if not type(exc).__module__.startswith("psycopg"):
                raise
            _fail(_database_error(exc, opts), opts)
        return None

    return wrapper  # type: ignore[return-value]


def _database_error(exc: Exception, opts: dict[str, Any]) -> VezamigError:
    """A database error outside any step: lost connection (5), missing privileges (2: a
    configuration error, no step ran) or an unexpected failure (1)."""
    import psycopg
    from psycopg import errors as pgerrors

    from vezamig.errors import ConnectError, LockBusy, StepFailed

    text = str(exc).strip()
    if isinstance(exc, pgerrors.InsufficientPrivilege):
        return _privilege_error(exc, opts.get("table") or "schema_migrations", None)
    if isinstance(exc, pgerrors.LockNotAvailable):  # a role's own lock_timeout, say
        return LockBusy(
            f"lock timeout on vezamig's own query: {text}",
            details=["no step was in progress; run the command again"],
        )
    if isinstance(exc, pgerrors.QueryCanceled):  # pg_cancel_backend, a role's timeout
        timeout = opts.get("statement_timeout")
        timed_out = "statement timeout" in text
        # No step ran: a timeout too short for vezamig's own queries is a configuration
        # error (exit 2), not a failed step (1); someone's pg_cancel_backend stays 1.
        return (UsageError if timed_out else StepFailed)(
            f"the server cancelled vezamig's own query: {text}",
            details=[
                f"no step was in progress; raise --statement-timeout (now {timeout} ms; "
                "default: none), then run the command again"
                if timed_out and timeout
                else "no step was in progress; the database role's or the server's "
                "statement_timeout ended it: raise it for this role, or pass a longer "
                "--statement-timeout, then run the command again"
                if timed_out
                else "no step was in progress; run the command again"
            ],
        )
    if isinstance(exc, psycopg.OperationalError):
        return ConnectError(
            f"lost the database connection: {text}",
            details=["no step was in progress; run the command again"],
        )
    return StepFailed(f"database error: {text}")


# ---- shared options -----------------------------------------------------------------


def _duration(ctx: click.Context, param: click.Parameter, value: Any) -> int | None:
    if value is None:
        return None
    from vezamig.config import parse_duration

    try:
        return parse_duration(str(value))  # click names the option in its message
    except UsageError as exc:
        raise click.BadParameter(exc.message) from None


def file_options(fn: F) -> F:
    for opt in reversed(
        [
            click.option(
                "--dir",
                "dir_",
                envvar="VEZAMIG_DIR",
                show_envvar=True,
                default="sql",
                show_default=True,
                type=click.Path(path_type=Path),
                help="Folder holding up/ and down/.",
            ),
            click.option(
                "--up-dir",
                envvar="VEZAMIG_UP_DIR",
                show_envvar=True,
                type=click.Path(path_type=Path),
                help="Up folder (default DIR/up).",
            ),
            click.option(
                "--down-dir",
                envvar="VEZAMIG_DOWN_DIR",
                show_envvar=True,
                type=click.Path(path_type=Path),
                help="Down folder (default DIR/down).",
            ),
            click.option("--no-color", is_flag=True, help="No colours (also NO_COLOR)."),
            click.option("--quiet", "-q", is_flag=True, help="Only errors and refusals."),
        ]
    ):
        fn = opt(fn)
    return fn


def db_options(fn: F) -> F:
    fn = file_options(fn)
    for opt in reversed(
        [
            click.option(
                "--database-url",
                "-d",
                envvar="DATABASE_URL",
                show_envvar=True,
                metavar="URL",
                help="postgresql://… or key=value conninfo; "
                "default: libpq's PGHOST, PGDATABASE, ~/.pgpass, services.",
            ),
            click.option(
                "--table",
                envvar="VEZAMIG_TABLE",
                show_envvar=True,
                default="schema_migrations",
                show_default=True,
                help="Tracking table, may be schema.table.",
            ),
            click.option(
                "--lock-timeout",
                default="5s",
                show_default=True,
                callback=_duration,
                help="PostgreSQL lock_timeout for each step, and for reading the tracking tables "
                "(0 = none).",
            ),
            click.option(
                "--lock-retries",
                default=3,
                show_default=True,
                type=_Digits(min=0),
                help="Retries of a step that hit the lock timeout.",
            ),
            click.option(
                "--statement-timeout",
                default="0",
                show_default="none",
                callback=_duration,
                help="PostgreSQL statement_timeout for each step.",
            ),
            click.option(
                "--lock-wait",
                default="60s",
                show_default=True,
                callback=_duration,
                help="How long to wait for another vezamig run.",
            ),
        ]
    ):
        fn = opt(fn)
    return fn


def _int_or(value: Any, default: int) -> int:
    return default if value is None else int(value)


def _source(ctx: click.Context, name: str) -> str | None:
    """Where an option's value came from: COMMANDLINE, ENVIRONMENT, DEFAULT, …"""
    source = ctx.get_parameter_source(name)
    return source.name if source is not None else None


def build_config(opts: dict[str, Any], application: str = "vezamig") -> Config:
    from vezamig.config import Config

    base: Path = opts.get("dir_") or Path("sql")
    up_dir, down_dir = opts.get("up_dir"), opts.get("down_dir")
    ctx = click.get_current_context(silent=True)
    if ctx is not None and _source(ctx, "dir_") == "COMMANDLINE":
        # The command line beats the environment: `--dir other` with VEZAMIG_UP_DIR
        # exported means other/up, not half of each.
        up_dir = None if _source(ctx, "up_dir") == "ENVIRONMENT" else up_dir
        down_dir = None if _source(ctx, "down_dir") == "ENVIRONMENT" else down_dir
    return Config(
        conninfo=opts.get("database_url"),
        conninfo_given=ctx is not None and _source(ctx, "database_url") == "COMMANDLINE",
        table=_table(opts, ctx),
        up_dir=up_dir or base / "up",
        down_dir=down_dir or base / "down",
        down_dir_given=down_dir is not None,
        lock_timeout_ms=_int_or(opts.get("lock_timeout"), 5000),
        lock_retries=_int_or(opts.get("lock_retries"), 3),
        statement_timeout_ms=_int_or(opts.get("statement_timeout"), 0),
        lock_wait_ms=_int_or(opts.get("lock_wait"), 60_000),
        application=application,
    )


def _table(opts: dict[str, Any], ctx: click.Context | None) -> tuple[str, ...]:
    """--table's parts; a bad value from VEZAMIG_TABLE is named as the variable, which
    the operator did not type on this command line."""
    from vezamig.config import parse_table

    # An explicit `--table ""` is an error, not the default table (another project's?).
    try:
        return parse_table("schema_migrations" if opts.get("table") is None else opts["table"])
    except UsageError as exc:
        if ctx is not None and _source(ctx, "table") == "ENVIRONMENT":
            exc.message = exc.message.replace("--table:", "VEZAMIG_TABLE (--table):", 1)
        raise


def _down_dir_exists(cfg: Config) -> None:
    """A down folder named outright must exist: a typo in --down-dir (or
    VEZAMIG_DOWN_DIR) would otherwise make every version quietly irreversible.
    (DIR/down may be absent: a tree whose versions all are irreversible.)"""
    from vezamig.config import shell_quote
    from vezamig.errors import LayoutError

    if cfg.down_dir_given and not cfg.down_dir.exists():
        raise LayoutError(
            f"migration folder {cfg.down_dir} (--down-dir) does not exist",
            details=[
                "check --down-dir (or VEZAMIG_DOWN_DIR); if no version has a down file yet, "
                f"create it: mkdir -p {shell_quote(str(cfg.down_dir))}"
            ],
        )


def load_migrations(
    cfg: Config,
    *,
    check_directives: bool,
    read_down: bool | None = None,
    texts: bool = True,
    lex_bodies: bool = False,
) -> list[Migration]:
    """``lex_bodies``: lex every up file with directives whole now (`roundtrip`, which
    runs them all); otherwise Runner.plan lexes the ones a run executes (files.discover)."""
    from vezamig.files import discover

    _down_dir_exists(cfg)
    return discover(
        cfg.up_dir,
        cfg.down_dir,
        check_directives=check_directives,
        read_down=read_down,
        texts=texts,
        lex_bodies=lex_bodies,
    )


def _privilege_error(exc: Exception, table: str, user: str | None) -> VezamigError:
    """The role may not read (or write) the tracking tables: no step ran (exit 2)."""
    from vezamig.state import grant_hint

    return UsageError(
        f"the database refused vezamig's own query: {str(exc).strip()}",
        details=[f"{grant_hint(table, table + '_history', user)}; no step was run"],
    )


@contextmanager
def open_runner(
    cfg: Config, migrations: list[Migration], out: Output | None, *, writing: bool = True
) -> Iterator[Runner]:
    import psycopg

    from vezamig.db import connect
    from vezamig.runner import Runner

    conn: Connection = connect(cfg.conninfo, cfg.application, writing=False)
    if writing:
        _collect_cycles()
    try:
        # The tracking table's shape is checked by the first read (under the run lock
        # for commands that write): a foreign table is refused before anything changes.
        # A writing run's session setup rides with its first run-lock attempt.
        yield Runner(
            conn, cfg, migrations, reporter=out, session_setup=writing, read_only=not writing
        )
    except psycopg.errors.InsufficientPrivilege as exc:
        # Here the connection is at hand: the GRANT can name its role.
        raise _privilege_error(exc, ".".join(cfg.table), conn.info.user) from None
    finally:
        conn.close()


def _on_stop_signal(signum: int, frame: Any) -> None:
    # SystemExit lets psycopg cancel the running statement, like Ctrl-C does.
    raise SystemExit(EXIT_HANGUP if signum == signal.SIGHUP else EXIT_TERMINATED)


def _plan_options(to_help: str) -> Callable[[F], F]:
    """``--to V`` and ``--dry-run``, shared by up and down."""

    def decorate(fn: F) -> F:
        fn = click.option(
            "--dry-run", is_flag=True, help="Show the plan and guard results; change nothing."
        )(fn)
        return click.option("--to", "to", type=_Digits(min=0), metavar="V", help=to_help)(fn)

    return decorate


# ---- commands -------------------------------------------------------------------------


class _Command(click.Command):
    """A command whose options each take one value: given twice, it is refused rather
    than the last one silently winning (`down --to 984 … --to 0` would roll back
    everything). `--help` still wins, as click has it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        options = [p for p in self.params if isinstance(p, click.Option)]
        takes_value = {
            name: p.name or name
            for p in options
            if not (p.is_flag or p.multiple or p.count)
            for name in p.opts
        }
        helps = set(ctx.help_option_names)
        seen: dict[str, str] = {}

        def count(name: str) -> None:
            key = takes_value[name]
            if key in seen:
                also = "" if seen[key] == name else f" (as {seen[key]})"
                raise click.UsageError(f"{name} was given more than once{also}; give it once", ctx)
            seen[key] = name

        before_dashes = args[: args.index("--")] if "--" in args else args
        if helps.isdisjoint(before_dashes):
            i = 0
            while i < len(before_dashes):
                arg = before_dashes[i]
                if arg.startswith("--"):
                    name = arg.split("=", 1)[0]
                    if name in takes_value:
                        count(name)
                        i += "=" not in arg  # the value is the next argument
                elif arg.startswith("-") and len(arg) > 1:
                    # A cluster of short options (`-qd URL`, `-yd=URL`): as click reads
                    # it, flags until one that takes a value, which takes the rest.
                    for j, char in enumerate(arg[1:], start=1):
                        if f"-{char}" in takes_value:
                            count(f"-{char}")
                            i += j == len(arg) - 1  # nothing attached: the next argument
                            break
                i += 1
        return super().parse_args(ctx, args)


class _Commands(click.Group):
    """The top level: an option of a command written before it (`vezamig -d URL status`)
    is told where it goes, instead of only "no such option"."""

    command_class = _Command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.NoSuchOption as exc:
            name = exc.option_name
            owners = [
                cmd_name
                for cmd_name, cmd in sorted(self.commands.items())
                if any(name in p.opts or name in p.secondary_opts for p in cmd.params)
            ]
            if not owners:
                raise
            given = next((a for a in args if a in self.commands), None)
            if given is not None and given not in owners:
                raise click.UsageError(
                    f"`vezamig {given}` has no option {name} (it is an option of: "
                    f"{', '.join(owners)})",
                    ctx,
                ) from None
            raise click.UsageError(
                f"{name} is an option of the command, not of vezamig itself: write it "
                f"after the command's name, e.g. `vezamig {given or owners[0]} {name} …`",
                ctx,
            ) from None


@click.group(
    cls=_Commands,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, "--version", "-V", prog_name="vezamig")
def cli() -> None:
    """vezamig: raw-SQL PostgreSQL migrations with guarded rollbacks.

    Migrations live in sql/up/NNN_name_up.sql and sql/down/NNN_name_down.sql.
    Each step runs in its own transaction; rollbacks that would lose data are
    refused by their guards.
    """


@cli.command()
@db_options
@_plan_options("Apply pending versions up to and including V.")
@click.option(
    "--allow-out-of-order",
    is_flag=True,
    help="Also apply pending versions below the highest applied one.",
)
@handle_errors
def up(**opts: Any) -> None:
    """Apply pending migrations, ascending, one transaction each."""
    cfg = build_config(opts, "vezamig up")
    out = _output(opts)
    migrations = load_migrations(cfg, check_directives=True, read_down=False)
    with open_runner(cfg, migrations, out) as runner:
        if opts["dry_run"]:
            with _telling(DRY_RUN_DONE):
                _dry_run(runner, out, "up", opts["to"], opts["allow_out_of_order"])
            return
        with runner.run_lock(release=False):
            plan = runner.plan("up", opts["to"], opts["allow_out_of_order"])
            if plan.refusals:
                raise Refused("up refused; nothing was changed", details=plan.refusals)
            result = runner.execute(plan)
            current = max([plan.current, *(r.version for r in result.results)])
            with _telling(_run_done(result.results, "applied", current)):
                out.summary(result.results, "up", current, result.elapsed_ms)


def _dry_run(
    runner: Runner, out: Output, direction: str, to: int | None, allow_out_of_order: bool = False
) -> None:
    plan = runner.plan(direction, to, allow_out_of_order)
    missing = runner.missing_lock_tables(plan)
    guards = runner.evaluate_guards(plan, skip=missing)
    out.plan(plan, guards, dry_run=True, missing_locks=missing)
    reasons = list(plan.refusals)
    blocked: list[str] = []
    fails: list[str] = []
    for i, step in enumerate(plan.steps):
        if tables := missing.get((step.version, step.direction)):
            where = f"{step.file.path}:{tables[0][0]}"
            names = "; ".join(f"{name}, which {why}" for _, name, why in tables)
            what = f"{where}: {step.direction} {step.version} locks {names}"
            if i == 0:
                fails.append(f"{what}: the real run fails at its LOCK")
            else:
                out.line(
                    f"note: {what} now; one of the {i} earlier step(s) must make it a "
                    "table, or the real run fails at that LOCK"
                )
        for g in guards.get((step.version, step.direction), []):
            if g.passed:
                continue
            where = f"{step.file.path}:{g.guard.line}: guard of {step.direction} {step.version}"
            if g.blocked:
                blocked.append(f"{where} cannot be evaluated now: {g.guard.query} got {g.returned}")
                continue
            reason = f"{where} would refuse now: {g.guard.query} returned {g.returned}"
            if i > 0:  # not knowable without running the earlier steps: say so
                reason += (
                    f" (evaluated against today's schema, before the {i} earlier step(s) of "
                    "this run; it may pass once they have run)"
                )
            reasons.append(reason)
    # A first step that fails at its LOCK is not a refusal (SPEC §5: exit 3 only if the
    # real run would be refused, else 0): it is said, as a warning, whatever the exit.
    if reasons:
        raise Refused(
            f"dry run: the real `{direction}` would be refused now",
            details=reasons + fails + blocked,
        )
    if blocked:
        # No verdict: the real run would wait --lock-timeout per try, retry, then exit 4.
        raise LockBusy(
            f"dry run: a guard cannot be evaluated while another session holds a lock it "
            f"needs; the real `{direction}` would wait and retry, then exit 4 if it is "
            "still held; nothing was changed",
            details=fails + blocked,
        )
    for fail in fails:
        out.warn(f"warning: not refused, but the real `{direction}` would fail: {fail}")
    out.line("dry run: nothing was changed")


@cli.command()
@db_options
@_plan_options("Roll back every applied version above V (V stays applied; 0 = all).")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def down(**opts: Any) -> None:
    """Roll back the latest version, or every version above --to V."""
    cfg = build_config(opts, "vezamig down")
    out = _output(opts)
    migrations = load_migrations(cfg, check_directives=True, read_down=False)
    with open_runner(cfg, migrations, out) as runner:
        if opts["dry_run"]:
            with _telling(DRY_RUN_DONE):
                _dry_run(runner, out, "down", opts["to"])
            return
        with runner.run_lock(release=False):
            plan = runner.plan("down", opts["to"])
            if plan.refusals:
                raise Refused("down refused; nothing was rolled back", details=plan.refusals)
            if not plan.steps:
                with _telling("nothing was changed"):
                    out.summary([], "down", plan.current)
                return
            runner.check_writable()  # before asking: the answer could not be acted on
            # Whoever is asked to confirm sees the plan, even with --quiet.
            with _telling(NOTHING_DONE):
                out.plan(plan, force=not opts["yes"] and sys.stdin.isatty())
            if confirm(opts["yes"], "Roll back these versions?"):
                runner.still_connected()
            result = runner.execute(plan)
            current = plan.stays or 0
            with _telling(_run_done(result.results, "rolled back", current)):
                out.summary(result.results, "down", current, result.elapsed_ms)


NOTHING_DONE = "before anything was done; nothing was changed"
DRY_RUN_DONE = "during a dry run; nothing was changed"


def _run_done(results: Sequence[StepResult], verb: str, current: int) -> str:
    return f"after the run finished: it {verb} {len(results)} version(s); current version {current}"


@contextmanager
def _telling(when: str) -> Iterator[None]:
    """Output that fails before or after the work says which: a script that sees exit
    74 or 141 must know whether the database (or the files) changed."""
    try:
        yield
    except OutputLost as exc:
        if exc.when:  # the runner said where it stopped
            raise
        raise OutputLost(exc.error, exc.stream, when) from None


def _print_json(data: Any) -> None:
    try:
        click.echo(json.dumps(data, indent=2))
    except OSError as exc:
        raise OutputLost(exc, "stdout") from None


def confirm(yes: bool, question: str, *, needed_off_terminal: bool = True) -> bool:
    """y/yes proceeds; anything else, or no terminal without --yes, refuses (exit 3).
    True when the operator was asked (and so the session sat idle meanwhile).
    ``needed_off_terminal=False``: without a terminal, proceed without asking."""
    if yes or (not needed_off_terminal and not sys.stdin.isatty()):
        return False
    if not sys.stdin.isatty():
        raise Refused(
            "no confirmation: stdin is not a terminal; pass --yes to proceed without asking"
        )
    # Read the line ourselves: click.prompt turns Ctrl-C into a plain "no" (exit 3),
    # an operator's Ctrl-C must stay an interruption (exit 130).
    with suppress(OSError):  # stderr cannot be written: the answer is read all the same
        click.echo(f"{question} [y/N] ", err=True, nl=False)
    answer = sys.stdin.readline()
    # Exactly `y` or `yes` (SPEC §5: anything else declines), spaces around it aside:
    # rolling data back is never the outcome of a guess at what `Y` or `YES!` meant.
    if answer.strip() not in ("y", "yes"):
        raise Refused(f"not confirmed ({answer.strip()!r} is not y or yes); nothing was changed")
    return True


@cli.command()
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@click.option("--exit-code", is_flag=True, help="Exit 3 unless every version is applied.")
@handle_errors
def status(**opts: Any) -> None:
    """Every version known from files or database, with its state. Read-only."""
    from vezamig.db import describe, run_in_progress

    cfg = build_config(opts, "vezamig status")
    # status runs and parses nothing: the up files' texts are not kept (issue 7).
    migrations = load_migrations(cfg, check_directives=True, read_down=False, texts=False)
    with open_runner(cfg, migrations, None, writing=False) as runner:
        rows = runner.status()
        duplicates = runner.duplicates()
        info = describe(runner.conn)
        running = run_in_progress(runner.conn) if any(r.state == "dirty" for r in rows) else None
    if opts["as_json"]:
        _print_json(status_json(info, cfg, rows))
    else:
        _output(opts).status(info, cfg.table_label, rows)
    for problem in [*duplicates, *runner.tracker.elsewhere]:
        _output(opts).warn(f"warning: {problem}")
    if running is not None and not opts.get("quiet"):  # a note, not a warning
        _output(opts).warn(
            f"note: a vezamig run is in progress ({running}): a dirty version may be its "
            "non-transactional step, still running; run `vezamig status` again once it ends"
        )
    if opts["exit_code"] and (duplicates or any(r.state != "applied" for r in rows)):
        sys.exit(3)


def status_json(info: Any, cfg: Config, rows: list[Any]) -> dict[str, Any]:
    current = max((r.version for r in rows if r.applied is not None), default=0)
    migrations = []
    for r in rows:
        a = r.applied
        migrations.append(
            {
                "version": r.version,
                "name": r.name,
                "state": r.state,
                "reversible": r.reversible,
                "applied_at": a.applied_at if a else None,
                "applied_by": a.applied_by if a else None,
                "duration_ms": a.duration_ms if a else None,
                "checksum": r.migration.checksum if r.migration else (a.checksum if a else None),
                "applied_checksum": a.checksum if a else None,
            }
        )
    return {
        "database": {
            "host": info.host,
            "port": info.port,
            "dbname": info.dbname,
            "user": info.user,
        },
        "table": cfg.table_label,
        "current_version": current,
        "pending": sum(1 for r in rows if r.state in ("pending", "out-of-order")),
        "migrations": migrations,
    }


def main() -> None:
    # A short-lived process: what start-up creates (click, psycopg, the files, the
    # tracking rows) lives until exit, so the cycle collector has nothing to find in it
    # and scanning it again and again is pure cost (measured: ≈ 12 ms of a 150 ms
    # `status`, in some 70 collections). It is off until a command begins work whose
    # garbage grows with the run (`_collect_cycles`); `status` and `history` never do.
    gc.disable()
    _usable_streams()
    signal.signal(signal.SIGTERM, _on_stop_signal)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_sigint)
    # A dropped SSH session or closed terminal (SIGHUP) stops a run as SIGTERM does:
    # the step rolled back, a throwaway cluster removed. Under nohup it stays ignored.
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _on_stop_signal)
    stdout = sys.stdout
    try:
        code = _invoke()
    except SystemExit as exc:  # every normal end: click and handle_errors exit this way
        code = _exit_status(exc.code)
        if code == 1 and sys.stdout is not stdout:
            # click's own output (--help, --version) met a reader that went away: click
            # replaced the streams and exits 1, which would read as "a step failed".
            code = EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        with suppress(OSError):
            click.echo("interrupted", err=True)
        code = EXIT_INTERRUPTED
    except BrokenPipeError:  # outside a command (click's own output)
        code = EXIT_BROKEN_PIPE
    except OSError as exc:  # click's own output on a full disk (`--help > /dev/full`)
        if _sigint_seen:  # click's "Aborted!" after a Ctrl-C, on a stderr that fails
            code = EXIT_INTERRUPTED
        elif exc.filename is not None:
            # Not the output: a file or folder the command could not use, which the
            # command should have said itself; still named, as a configuration error.
            with suppress(OSError):
                click.echo(f"error: {exc.filename}: {exc.strerror or exc}", err=True)
            code = EXIT_USAGE
        else:
            with suppress(OSError):
                click.echo(f"error: cannot write the output ({exc.strerror or exc})", err=True)
            code = EXIT_OUTPUT
    _exit_now(code)


def _invoke() -> int:
    """click's parsing and its own messages, with the exit codes of SPEC §5 also when
    stderr cannot be written (click would lose a usage error's 2 in a traceback)."""
    try:
        result = cli.main(prog_name="vezamig", standalone_mode=False)
    except click.ClickException as exc:  # a usage error: exit 2
        with suppress(OSError):
            exc.show()
        return exc.exit_code
    except click.Abort:  # Ctrl-C or end of input while click parsed the command line
        with suppress(OSError):
            click.echo("Aborted!", err=True)
        return EXIT_INTERRUPTED if _sigint_seen else 1
    return result if isinstance(result, int) else 0  # --help, --version: click's Exit


def _collect_cycles() -> None:
    """Start-up is over and long work begins (steps, parsing): collect cycles again,
    without rescanning what was loaded so far (it lives until exit)."""
    gc.freeze()
    gc.enable()


def _usable_streams() -> None:
    """A closed stdin/stdout/stderr (`<&-`, `>&-`) reads and writes nothing instead of
    crashing (Python sets it to None); an output that cannot encode UTF-8 (LC_ALL=C)
    gets `?` for what it cannot show instead of an exception."""
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))  # noqa: SIM115
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "").lower().replace("-", "")
        if encoding != "utf8" and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace")


def _exit_status(code: object) -> int:
    """What the interpreter would make of ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    click.echo(str(code), err=True)
    return 1


def _exit_now(code: int) -> None:
    """End the process without the interpreter's teardown.

    Once psycopg is imported, finalising the interpreter (modules, asyncio, ssl,
    every object of the run) takes longer than most commands' own work
    (measured: 28 ms of a 150 ms ``import psycopg``). By now the command has
    finished: its connection is closed, its files are closed, and vezamig
    registers no atexit handler, so the only thing left to do is to flush the
    output. An unexpected exception (a bug) never gets here: it ends the
    interpreter the normal way, with its traceback.
    """
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # a reader that left before the end (`| head -c 10`)
            code = code or EXIT_BROKEN_PIPE
        except (OSError, ValueError):  # a closed stream
            pass
    os._exit(code)


# ---- operations (SPEC §5 [ops]) ---------------------------------------------------------


@cli.command()
@db_options  # accepted (and ignored) so one set of options works for every command
@click.option("--strict", is_flag=True, help="Treat lint warnings as errors (exit 2).")
@handle_errors
def verify(**opts: Any) -> None:
    """Offline check: layout, directives, PostgreSQL syntax, authoring lint. No database."""
    from vezamig.errors import LayoutError
    from vezamig.verify import verify_tree

    cfg = build_config(opts)
    out = _output(opts)
    _collect_cycles()
    _down_dir_exists(cfg)
    report = verify_tree(cfg.up_dir, cfg.down_dir)
    for w in report.warnings if opts["strict"] or not opts["quiet"] else []:
        out.warn(("error: " if opts["strict"] else "warning: ") + w)
    problems = report.problems + (report.warnings if opts["strict"] else [])
    if problems:
        raise LayoutError(
            f"verify: {len(problems)} problem(s) ({report.files} file(s) parsed)",
            details=report.problems
            + (
                [f"{len(report.warnings)} lint finding(s) above (--strict)"]
                if opts["strict"] and report.warnings
                else []
            ),
        )
    suffix = f", {len(report.warnings)} warning(s)" if report.warnings else ""
    out.line(f"verified {report.files} file(s): no problems{suffix}")


@cli.command()
@click.argument("name")
@db_options  # accepted (and ignored): `new` never connects
@click.option("--irreversible", is_flag=True, help="Create only the up file.")
@handle_errors
def new(**opts: Any) -> None:
    """Create the next up (and down) file: version = highest + 1, same zero-padding."""
    from vezamig.scaffold import create

    cfg = build_config(opts)
    created = create(cfg.up_dir, cfg.down_dir, opts["name"], irreversible=opts["irreversible"])
    out = _output(opts)
    files = " and ".join(str(p) for p in (created.up, created.down) if p is not None)
    with _telling(f"after {files} {'were' if created.down else 'was'} created"):
        for folder in created.created_folders:
            out.line(f"created folder {folder} (it did not exist)")
        out.line(f"created {created.up}")
        if created.down is not None:
            out.line(f"created {created.down}")
        else:
            out.line(f"version {created.version} is irreversible (no down file)")


@cli.command()
@db_options
@click.option(
    "--version",
    "version",
    type=_Digits(min=1),
    required=True,
    metavar="V",
    help="Record every up file up to V as applied, without running it.",
)
@handle_errors
def baseline(**opts: Any) -> None:
    """Adopt an existing database: record versions up to V as applied without running them."""
    from vezamig.maintenance import apply_baseline, plan_baseline

    cfg = build_config(opts, "vezamig baseline")
    out = _output(opts)
    migrations = load_migrations(cfg, check_directives=True, read_down=False)
    with open_runner(cfg, migrations, out) as runner, runner.run_lock(release=False):
        changes = plan_baseline(runner, opts["version"])
        runner.check_writable()
        with _telling(NOTHING_DONE):
            out.line(
                f"baseline: record {len(changes)} version(s) up to {opts['version']} as "
                "applied without running them",
                style="bold",
            )
            for c in changes[:5]:
                out.line(f"  {c}")
            if len(changes) > 5:
                out.line(f"  … {len(changes) - 5} more, up to {changes[-1].version}")
        apply_baseline(runner, changes)
        done = f"recorded {len(changes)} version(s); current version {changes[-1].version}"
        with _telling(f"after the baseline was recorded: {done}"):
            out.line(done, style="bold green")


@cli.command()
@db_options
@click.option("--checksums", is_flag=True, help="Re-record checksums of modified versions.")
@click.option(
    "--applied",
    type=_Digits(min=1),
    metavar="V",
    help="A dirty version is in fact applied: mark it clean.",
)
@click.option(
    "--rolled-back",
    type=_Digits(min=1),
    metavar="V",
    help="A dirty version is in fact not applied: remove its record.",
)
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@handle_errors
def repair(**opts: Any) -> None:
    """Re-record checksums after an intentional edit, or resolve a dirty version."""
    from vezamig.maintenance import apply_repair, plan_repair

    chosen = [k for k in ("checksums", "applied", "rolled_back") if opts[k]]
    if len(chosen) != 1:
        raise UsageError("repair needs exactly one of --checksums, --applied V, --rolled-back V")
    cfg = build_config(opts, "vezamig repair")
    out = _output(opts)
    migrations = load_migrations(cfg, check_directives=True, read_down=False)
    with open_runner(cfg, migrations, out) as runner, runner.run_lock(release=False):
        changes = plan_repair(
            runner,
            runner.status(),
            checksums=opts["checksums"],
            applied=opts["applied"],
            rolled_back=opts["rolled_back"],
        )
        if not changes:  # only --checksums plans nothing; the others refuse instead
            out.line("nothing to repair: no applied version has a changed checksum")
            return
        runner.check_writable()
        with _telling(NOTHING_DONE):
            out.line(
                "repair: change the tracking table only (the schema is not touched):",
                style="bold",
            )
            for c in changes:
                out.line(f"  {c}")
        # SPEC §5 asks only `down` for confirmation: a repair changes no schema and
        # loses no data, and the command vezamig prints to resolve a dirty version must
        # work as pasted into a script. On a terminal it shows the plan and asks.
        if confirm(opts["yes"], "Record this repair?", needed_off_terminal=False):
            runner.still_connected()
        apply_repair(
            runner,
            changes,
            checksums=opts["checksums"],
            rolled_back=opts["rolled_back"] is not None,
        )
        with _telling(f"after the repair was recorded: {len(changes)} version(s)"):
            out.line(f"repaired {len(changes)} version(s)", style="bold green")


@cli.command()
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array on stdout.")
@click.option(
    "--limit", type=_Digits(min=1, max=2**63 - 1), metavar="N", help="Newest N rows only."
)
@handle_errors
def history(**opts: Any) -> None:
    """The audit log, newest first. Read-only."""
    cfg = build_config(opts, "vezamig history")
    with open_runner(cfg, [], None, writing=False) as runner:
        rows = runner.tracker.history_rows(opts["limit"])
    if opts["as_json"]:
        _print_json([r.as_json() for r in rows])
    else:
        _output(opts).history(rows)
    for problem in runner.tracker.elsewhere:
        _output(opts).warn(f"warning: {problem}")


@cli.command()
@db_options
@click.option(
    "--from",
    "first",
    type=_Digits(min=1),
    metavar="V",
    help="Check versions from V on (lower ones are only applied).",
)
@click.option("--to", "last", type=_Digits(min=1), metavar="V", help="Stop after version V.")
@click.option(
    "--pg-bin",
    metavar="DIR",
    help="PostgreSQL server binaries for the throwaway "
    "cluster (default: PATH, pg_config --bindir, /usr/lib/postgresql/*/bin).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout.")
@handle_errors
def roundtrip(**opts: Any) -> None:
    """Prove every down undoes its up (up, down, up) on a scratch or throwaway database."""
    from contextlib import nullcontext

    from vezamig.cluster import ThrowawayCluster
    from vezamig.db import connect
    from vezamig.errors import ConnectError
    from vezamig.roundtrip import require_empty, run_roundtrip

    # A scratch database must be named explicitly: DATABASE_URL may well point at
    # production, so roundtrip ignores it (its -d reads no environment variable, see
    # below) and uses a throwaway cluster instead.
    cfg = build_config(opts, "vezamig roundtrip")
    out = _output(opts)
    migrations = load_migrations(cfg, check_directives=True, lex_bodies=True)
    first, last = opts["first"], opts["last"]
    if first is not None and last is not None and first > last:
        raise UsageError(f"--from {first} is above --to {last}: nothing would be checked")
    _require_something_to_check(cfg, migrations, first, last)
    _collect_cycles()
    cluster = None if cfg.conninfo else ThrowawayCluster(opts["pg_bin"])
    with cluster if cluster is not None else nullcontext():
        conninfo = cluster.conninfo() if cluster is not None else cfg.conninfo
        if cluster is not None and not out.quiet:
            out.info(f"throwaway PostgreSQL in {cluster.host} (removed afterwards)")
        try:
            conn = connect(conninfo, cfg.application)
        except ConnectError as exc:
            if cluster is None:  # roundtrip ignores DATABASE_URL: name only what it uses
                exc.details = ["check -d (the scratch database's URL)"]
            raise
        try:
            require_empty(conn)
            report = run_roundtrip(
                conn,
                cfg,
                migrations,
                first=opts["first"],
                last=opts["last"],
                progress=None if opts["as_json"] else out.roundtrip_progress,
            )
        finally:
            conn.close()
    if opts["as_json"]:
        _print_json(report.as_json())
    else:
        out.roundtrip_summary(report)
    if not report.ok:
        sys.exit(1)


def _require_something_to_check(
    cfg: Config, migrations: Sequence[Migration], first: int | None, last: int | None
) -> None:
    """A green roundtrip must mean something: one that would check no version is exit 2,
    as a typo in CI (a down folder under another name, an empty range) would be."""
    in_range = [
        m
        for m in migrations
        if (first is None or m.version >= first) and (last is None or m.version <= last)
    ]
    if any(m.reversible for m in in_range):
        return
    if first is not None or last is not None:
        raise UsageError(
            "no reversible migration in the --from/--to range: nothing would be checked "
            "(a green run must mean something)"
        )
    if not migrations:
        raise UsageError(
            f"no migration in {cfg.up_dir}: nothing would be checked "
            "(a green run must mean something)",
            details=["check --dir or --up-dir"],
        )
    raise UsageError(
        f"no reversible migration: none of the {len(migrations)} up file(s) has a down file "
        f"in {cfg.down_dir}, so nothing would be checked (a green run must mean something)",
        details=["check --dir or --down-dir (down files are NNN_name_down.sql)"],
    )


def _scratch_url_only(command: click.Command) -> None:
    """roundtrip's -d names a scratch database; it never comes from DATABASE_URL."""
    for param in command.params:
        if param.name == "database_url" and isinstance(param, click.Option):
            param.envvar = None
            param.show_envvar = False
            param.help = (
                "An empty scratch database to run on (DATABASE_URL is ignored: it may be "
                "production); default: a throwaway PostgreSQL."
            )


_scratch_url_only(roundtrip)
