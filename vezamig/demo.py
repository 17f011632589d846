"""`make demo`: the whole job on the real corpus, on a throwaway PostgreSQL.

Runs the CLI exactly as an operator would type it, against a private server
that is removed at the end (also on failure or Ctrl-C).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from vezamig.cluster import ThrowawayCluster, raise_on_sigterm
from vezamig.errors import EXIT_INTERRUPTED, Interrupted

ROOT = Path(__file__).resolve().parent.parent


def banner(text: str) -> None:
    print(f"\n\033[1;36m# {text}\033[0m" if sys.stdout.isatty() else f"\n# {text}", flush=True)


def vezamig(*args: str, env: dict[str, str], expect: int = 0) -> None:
    command = shlex.join(["vezamig", *args])  # quoted, so it can be copied and pasted
    print(f"$ {command}", flush=True)
    rc = subprocess.call([sys.executable, "-m", "vezamig", *args], env=env, cwd=ROOT)
    print(f"(exit {rc})", flush=True)
    if rc != expect:
        raise SystemExit(f"demo: expected exit {expect} from `{command}`, got {rc}")


def sql(conninfo: str, statement: str) -> None:
    import psycopg

    print(f'$ psql -c "{statement}"', flush=True)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        cur = conn.execute(statement)
        if cur.description is not None:
            for row in cur.fetchall():
                print(" | ".join("" if v is None else str(v) for v in row))
        print(cur.statusmessage, flush=True)


def main() -> int:
    try:
        return run()
    except KeyboardInterrupt:
        print("demo interrupted; the throwaway PostgreSQL is gone", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Interrupted as exc:
        print(f"demo {exc.message}; the throwaway PostgreSQL is gone", file=sys.stderr)
        return exc.exit_code


def run() -> int:
    t0 = time.monotonic()
    with raise_on_sigterm(), ThrowawayCluster() as cluster:
        banner(f"a throwaway PostgreSQL in {cluster.host} (unix socket only)")
        conninfo = cluster.conninfo()
        # Only the private server and the corpus: none of the caller's PG*/VEZAMIG_* settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "VEZAMIG_"))}
        env.update(DATABASE_URL=conninfo, VEZAMIG_DIR="sql")  # relative to ROOT, as in README
        banner("every version is pending")
        vezamig("status", env=env)
        banner("apply the whole Veza history, one transaction per version")
        vezamig("up", env=env)
        vezamig("status", env=env)
        banner("a track is now stored on S3: rolling back 985 would lose that fact")
        sql(
            conninfo,
            "INSERT INTO users (username, email, password_hash) VALUES "
            "('ada', 'ada@example.com', 'x')",
        )
        sql(
            conninfo,
            "INSERT INTO tracks (user_id, title, slug, file_path, storage_backend, storage_key) "
            "SELECT id, 'Night Drive', 'night-drive', 'uploads/ada/night-drive.flac', 's3', "
            "'tracks/1/night-drive.flac' FROM users",
        )
        banner("so the guard of 985's rollback refuses, and nothing changes")
        vezamig("down", "--to", "984", "--dry-run", env=env, expect=3)
        vezamig("down", "--to", "984", "--yes", env=env, expect=3)
        sql(conninfo, "SELECT title, storage_backend, storage_key FROM tracks")
        banner("move the track back to local storage: now the rollback is safe")
        sql(conninfo, "UPDATE tracks SET storage_backend = 'local', storage_key = NULL")
        vezamig("down", "--to", "984", "--yes", env=env)
        vezamig("status", env=env)
        vezamig("history", "--limit", "5", env=env)
        banner("prove that every down undoes its up, on a fresh database")
        sql(conninfo, "CREATE DATABASE roundtrip")
        vezamig("roundtrip", "-d", cluster.conninfo("roundtrip"), env=env)
        banner("stopping and removing the throwaway PostgreSQL")
    print(f"demo finished in {time.monotonic() - t0:.1f}s; the server is gone", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
