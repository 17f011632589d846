"""One exception tree; each class carries the exit code of SPEC.md §5.

Only ``cli.py`` turns these into process exits (``__main__``: a Ctrl-C before it
loads, whose 130 is written out there). Library code raises them with messages a
person can act on (file, line, what to do), never a traceback.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_LOCKED = 4
EXIT_CONNECT = 5
EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143
EXIT_HANGUP = 129  # SIGHUP: the terminal or the SSH session went away
EXIT_BROKEN_PIPE = 141  # as if killed by SIGPIPE: what shells report for `| head`
EXIT_OUTPUT = 74  # sysexits.h EX_IOERR: the output could not be written (a full disk)


class VezamigError(Exception):
    """Root of every error vezamig reports to a user."""

    exit_code: int = EXIT_USAGE

    def __init__(self, message: str, *, details: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: list[str] = list(details or [])

    def __str__(self) -> str:
        if not self.details:
            return self.message
        return "\n".join([self.message, *("  " + d for d in self.details)])


class UsageError(VezamigError):
    """Bad option value or configuration (exit 2)."""

    exit_code = EXIT_USAGE


class LayoutError(VezamigError):
    """Migration folder problems: names, pairing, directives, syntax (exit 2).

    ``details`` lists every problem found in the run, not only the first.
    """

    exit_code = EXIT_USAGE


class TrackingTableError(VezamigError):
    """The tracking table exists with a shape vezamig did not create (exit 2)."""

    exit_code = EXIT_USAGE


class Refused(VezamigError):
    """A run or step was refused before changing anything (exit 3).

    ``details`` holds every reason: guard, irreversible, drift, dirty,
    out-of-order, no confirmation.
    """

    exit_code = EXIT_REFUSED


class GuardRefused(Refused):
    """A guard query did not return exactly one row with boolean true."""


class LockBusy(VezamigError):
    """Another run holds the advisory lock, or a step hit lock_timeout (exit 4)."""

    exit_code = EXIT_LOCKED


class ConnectError(VezamigError):
    """The database cannot be reached (exit 5). Never includes a password."""

    exit_code = EXIT_CONNECT


class StepFailed(VezamigError):
    """A step's SQL failed; the step was rolled back (exit 1).

    Like goose's PartialError it carries what was applied before the failure.
    """

    exit_code = EXIT_STEP_FAILED

    def __init__(
        self,
        message: str,
        *,
        details: list[str] | None = None,
        applied: list[int] | None = None,
        version: int | None = None,
        sqlstate: str | None = None,
    ) -> None:
        super().__init__(message, details=details)
        self.applied: list[int] = list(applied or [])
        self.version = version
        self.sqlstate = sqlstate  # the server's, when the step's SQL failed


class Interrupted(VezamigError):
    """Ctrl-C (exit 130) or SIGTERM (exit 143): the running step was rolled back."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str, *, exit_code: int = EXIT_INTERRUPTED) -> None:
        # Which stop it was, when not Ctrl-C: a service manager's SIGTERM or a closed
        # terminal's SIGHUP reads differently from an operator's Ctrl-C in a log.
        by = {EXIT_TERMINATED: "SIGTERM", EXIT_HANGUP: "SIGHUP"}.get(exit_code)
        super().__init__(
            message, details=[f"stopped by {by}"] if by and by not in message else None
        )
        self.exit_code = exit_code


class OutputLost(VezamigError):
    """stdout or stderr could not be written: its reader went away (exit 141, as for
    SIGPIPE) or the file behind it failed, a full disk say (exit 74). A run stops at
    the next step boundary, never inside a step."""

    def __init__(self, error: OSError, stream: str, when: str = "") -> None:
        gone = isinstance(error, BrokenPipeError)
        reason = "its reader went away" if gone else (error.strerror or str(error))
        super().__init__(f"cannot write to {stream} ({reason}){' ' + when if when else ''}")
        self.error, self.stream, self.when = error, stream, when
        self.exit_code = EXIT_BROKEN_PIPE if gone else EXIT_OUTPUT
        # `vezamig status | head -1` is a normal pipeline: like any Unix tool, exit 141
        # without a word. A run that stopped because of it says where it stopped.
        self.silent = gone and not when
