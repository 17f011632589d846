#!/usr/bin/env python3
"""Profile vezamig on the benchmark's workload (issue 7): where does the time go?

Starts the same durable throwaway PostgreSQL as bench/run.py, generates N
migrations, and runs under pyinstrument (wall clock, so waits for the server
show up under the call that waited):

* ``vezamig up`` from empty (apply N),
* ``vezamig status`` with all N applied,
* ``vezamig up`` with nothing pending,
* ``vezamig down`` of the last 100 versions,
* ``vezamig --help``.

Each report goes to OUT/<scenario>.txt, with the process's wall, user and
system time, so CPU spent in Python can be told apart from waiting.
pyinstrument must be importable by --python (default: this interpreter):

    .venv/bin/python bench/profile.py --python /tmp/tv/bin/python --n 2000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from run import (
    DURABLE_SETTINGS,
    Server,
    base_env,
    generate,
    write_corpus,
)

from vezamig.cluster import ThrowawayCluster, raise_on_sigterm

# vezamig ends with os._exit (cli._exit_now), which would also end pyinstrument before
# it writes its report: under the profiler the command ends with a normal exit instead.
_RUN_KEEPING_TEARDOWN = (
    "import sys, vezamig.cli as c; c._exit_now = sys.exit; sys.argv[0] = 'vezamig'; c.main()"
)


def profiled(
    python: str, out: Path, name: str, args: list[str], env: dict[str, str], cwd: Path
) -> str:
    import subprocess

    report = out / f"{name}.txt"
    argv = [
        python,
        "-m",
        "pyinstrument",
        "-r",
        "text",
        "--show-all",
        "-o",
        str(report),
        "-c",
        _RUN_KEEPING_TEARDOWN,
        *args,
    ]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{err}")
    line = (
        f"{name}: wall {wall:.3f} s, user {usage.ru_utime:.3f} s, "
        f"sys {usage.ru_stime:.3f} s (under the profiler)"
    )
    with report.open("a", encoding="utf-8") as f:
        f.write(f"\n{line}\n")
    return line


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter with vezamig and pyinstrument importable",
    )
    p.add_argument("--n", type=int, default=2000, help="number of migrations (default 2000)")
    p.add_argument(
        "--out",
        type=Path,
        default=Path(tempfile.gettempdir()) / "vezamig-profile",
        help="folder for the reports",
    )
    args = p.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with (
        raise_on_sigterm(),
        tempfile.TemporaryDirectory(prefix="vezamig-prof-") as tmp,
        ThrowawayCluster(settings=DURABLE_SETTINGS) as cluster,
    ):
        work = Path(tmp)
        corpus = work / "corpus"
        write_corpus(corpus, generate(args.n))
        server = Server(cluster)
        try:
            db = server.fresh_db("profile")
            env = {
                **base_env(),
                "DATABASE_URL": server.conninfo(db),
                "VEZAMIG_DIR": str(corpus),
                "PYTHONPYCACHEPREFIX": str(work / "pycache"),
            }
            # Warm the bytecode cache first, so start-up is profiled as after an install.
            profiled(args.python, args.out, "warm-up", ["--help"], env, work)
            server.checkpoint()
            for name, cli in (
                (f"up-{args.n}", ["up"]),
                (f"status-{args.n}", ["status"]),
                (f"noop-up-{args.n}", ["up"]),
                (f"down-100-of-{args.n}", ["down", "--to", str(max(0, args.n - 100)), "--yes"]),
                ("help", ["--help"]),
            ):
                print(profiled(args.python, args.out, name, cli, env, work), flush=True)
        finally:
            server.close()
    print(f"reports in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
