"""``python -m vezamig`` and the ``vezamig`` console script.

Ctrl-C while Python imports the CLI (click and vezamig's modules: the first
≈ 40 ms of a run, before ``cli.main`` installs its handlers) ends as it does
later, with "interrupted" and exit 130, not with a traceback. Nothing is
imported before the ``try``: this module is all that runs unprotected.
"""

import sys


def main() -> None:
    try:
        from vezamig.cli import main as run
    except KeyboardInterrupt:
        from contextlib import suppress

        with suppress(OSError, AttributeError):  # a stderr that fails, or none (`2>&-`)
            sys.stderr.write("interrupted\n")
        sys.exit(130)  # errors.EXIT_INTERRUPTED, which is not imported yet
    run()


if __name__ == "__main__":
    main()
