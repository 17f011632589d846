"""``python -m vezamig`` and the ``vezamig`` console script.

Ctrl-C while Python imports the CLI (click and vezamig's modules: the first
≈ 40 ms of a run, before ``cli.main`` installs its handlers) ends as it does
later, with "interrupted" and exit 130, not with a traceback.
"""

import sys

from vezamig.errors import EXIT_INTERRUPTED


def main() -> None:
    try:
        from vezamig.cli import main as run
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        sys.exit(EXIT_INTERRUPTED)
    run()


if __name__ == "__main__":
    main()
