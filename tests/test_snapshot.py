"""Schema snapshot and diff used by `vezamig roundtrip` (SPEC §7).

Most tests play a tiny round trip by hand: build a base schema, snapshot it,
run an "up", run a deliberately wrong "down", snapshot again, and check that
the difference is found and named the way a reviewer would want to read it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg.rows import dict_row

from vezamig.snapshot import Difference, Snapshot, diff_snapshots, summarize, take_snapshot

AFTER = "after down of 985"

BASE = """
CREATE TABLE artists (id bigint PRIMARY KEY, name text NOT NULL);
CREATE TABLE tracks (
    id bigserial PRIMARY KEY,
    artist_id bigint NOT NULL,
    title text NOT NULL,
    plays integer NOT NULL DEFAULT 0
);
CREATE INDEX idx_tracks_title ON tracks (title);
CREATE TYPE mood AS ENUM ('sad', 'ok');
CREATE FUNCTION answer() RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 41';
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE AGGREGATE summed(integer) (SFUNC = int4pl, STYPE = integer, INITCOND = '0');
CREATE TYPE artist_row AS (id bigint, name text);
"""


@pytest.fixture
def conn(postgresql: psycopg.Connection[Any]) -> psycopg.Connection[Any]:
    """The fresh test database, in autocommit like the runner's connection."""
    postgresql.autocommit = True
    postgresql.execute(BASE)
    return postgresql


def forgotten(conn: psycopg.Connection[Any], up: str, down: str = "") -> list[Difference]:
    """Differences between the schema before `up` and after `up` + `down`."""
    before = take_snapshot(conn)
    conn.execute(up)
    if down:
        conn.execute(down)
    return diff_snapshots(before, take_snapshot(conn))


def described(diffs: list[Difference]) -> list[str]:
    return [d.describe(AFTER) for d in diffs]


@dataclass(frozen=True)
class Case:
    up: str
    down: str
    message: str


LEFTOVER_CASES = {
    "event trigger": Case(
        "CREATE FUNCTION evf() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN END$$;"
        " CREATE EVENT TRIGGER et ON ddl_command_end EXECUTE FUNCTION evf()",
        "",
        "event trigger et still exists after down of 985",
    ),
    "index": Case(
        "CREATE INDEX idx_tracks_storage_backend_s3 ON tracks (title) WHERE plays > 0",
        "",
        "index idx_tracks_storage_backend_s3 still exists after down of 985",
    ),
    "column": Case(
        "ALTER TABLE tracks ADD COLUMN storage_key varchar(512)",
        "",
        "column tracks.storage_key still exists after down of 985",
    ),
    "check constraint": Case(
        "ALTER TABLE tracks ADD CONSTRAINT tracks_title_not_empty CHECK (title <> '')",
        "",
        "constraint tracks.tracks_title_not_empty still exists after down of 985",
    ),
    "foreign key": Case(
        "ALTER TABLE tracks ADD CONSTRAINT tracks_artist_fk"
        " FOREIGN KEY (artist_id) REFERENCES artists (id)",
        "",
        "constraint tracks.tracks_artist_fk still exists after down of 985",
    ),
    "unique constraint": Case(
        "ALTER TABLE tracks ADD CONSTRAINT tracks_title_key UNIQUE (title)",
        "",
        "constraint tracks.tracks_title_key still exists after down of 985",
    ),
    "trigger": Case(
        "CREATE TRIGGER tracks_touch BEFORE UPDATE ON tracks FOR EACH ROW EXECUTE FUNCTION touch()",
        "",
        "trigger tracks.tracks_touch still exists after down of 985",
    ),
    "function": Case(
        "CREATE FUNCTION track_count(artist bigint) RETURNS bigint LANGUAGE sql STABLE"
        " AS 'SELECT count(*) FROM tracks WHERE artist_id = artist'",
        "",
        "function track_count(artist bigint) still exists after down of 985",
    ),
    "procedure": Case(
        "CREATE PROCEDURE reset_plays() LANGUAGE sql AS 'UPDATE tracks SET plays = 0'",
        "",
        "procedure reset_plays() still exists after down of 985",
    ),
    "view": Case(
        "CREATE VIEW popular_tracks AS SELECT id, title FROM tracks WHERE plays > 100",
        "",
        "view popular_tracks still exists after down of 985",
    ),
    "materialized view": Case(
        "CREATE MATERIALIZED VIEW track_totals AS SELECT count(*) AS n FROM tracks",
        "",
        "materialized view track_totals still exists after down of 985",
    ),
    "sequence": Case(
        "CREATE SEQUENCE invoice_numbers START 1000",
        "",
        "sequence invoice_numbers still exists after down of 985",
    ),
    "enum type": Case(
        "CREATE TYPE storage_backend AS ENUM ('local', 's3')",
        "",
        "enum storage_backend still exists after down of 985",
    ),
    "domain": Case(
        "CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0)",
        "",
        "type positive_int still exists after down of 985",
    ),
    "schema": Case(
        "CREATE SCHEMA archive",
        "",
        "schema archive still exists after down of 985",
    ),
    "table that down forgot to drop": Case(
        "CREATE TABLE playlists (id serial PRIMARY KEY, name text)",
        "",
        "table playlists still exists after down of 985",
    ),
    "access method": Case(
        "CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler",
        "",
        "access method heap2 still exists after down of 985",
    ),
    "object in another schema": Case(
        "CREATE SCHEMA archive; CREATE TABLE archive.tracks (id int)",
        "DROP TABLE archive.tracks",
        "schema archive still exists after down of 985",
    ),
}


@pytest.mark.parametrize("case", LEFTOVER_CASES.values(), ids=list(LEFTOVER_CASES))
def test_an_object_the_down_forgot_is_named_as_still_existing(
    conn: psycopg.Connection[Any], case: Case
) -> None:
    messages = described(forgotten(conn, case.up, case.down))
    assert case.message in messages


CHANGED_CASES = {
    "default": Case(
        "ALTER TABLE tracks ALTER COLUMN plays SET DEFAULT 1",
        "",
        "column tracks.plays changed after down of 985:"
        " was 'integer NOT NULL DEFAULT 0', now 'integer NOT NULL DEFAULT 1'",
    ),
    "nullability": Case(
        "ALTER TABLE tracks ALTER COLUMN title DROP NOT NULL",
        "",
        "column tracks.title changed after down of 985: was 'text NOT NULL', now 'text NULL'",
    ),
    "type": Case(
        "ALTER TABLE tracks ALTER COLUMN title TYPE varchar(200)",
        "",
        "column tracks.title changed after down of 985:"
        " was 'text NOT NULL', now 'character varying(200) NOT NULL'",
    ),
    "type restored with another length": Case(
        "ALTER TABLE tracks ALTER COLUMN title TYPE varchar(200)",
        "ALTER TABLE tracks ALTER COLUMN title TYPE varchar(100)",
        "column tracks.title changed after down of 985:"
        " was 'text NOT NULL', now 'character varying(100) NOT NULL'",
    ),
    "enum value": Case(
        "ALTER TYPE mood ADD VALUE 'happy'",
        "",
        "enum mood changed after down of 985:"
        " was \"ENUM ('sad', 'ok')\", now \"ENUM ('sad', 'ok', 'happy')\"",
    ),
    "function body": Case(
        "CREATE OR REPLACE FUNCTION answer() RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT 42'",
        "",
        "function answer() changed after down of 985:"
        " line 5 was 'AS $function$SELECT 41$function$', now 'AS $function$SELECT 42$function$'",
    ),
    "function volatility": Case(
        "ALTER FUNCTION answer() VOLATILE",  # VOLATILE is the default: its line goes away
        "",
        "function answer() changed after down of 985: line 4 ' IMMUTABLE' is gone",
    ),
    "index definition": Case(
        "DROP INDEX idx_tracks_title; CREATE INDEX idx_tracks_title ON tracks (lower(title))",
        "",
        "index idx_tracks_title changed after down of 985:"
        " was 'CREATE INDEX idx_tracks_title ON public.tracks USING btree (title)',"
        " now 'CREATE INDEX idx_tracks_title ON public.tracks USING btree (lower(title))'",
    ),
    "aggregate parallel safety": Case(
        "DROP AGGREGATE summed(integer);"
        " CREATE AGGREGATE summed(integer) (SFUNC = int4pl, STYPE = integer, INITCOND = '0',"
        " PARALLEL = SAFE)",
        "",
        "aggregate summed(integer) changed after down of 985:",
    ),
    "aggregate sort operator": Case(
        "DROP AGGREGATE summed(integer);"
        " CREATE AGGREGATE summed(integer) (SFUNC = int4pl, STYPE = integer, INITCOND = '0',"
        " SORTOP = >)",
        "",
        "aggregate summed(integer) changed after down of 985:",
    ),
    "aggregate moving-aggregate functions": Case(
        "DROP AGGREGATE summed(integer);"
        " CREATE AGGREGATE summed(integer) (SFUNC = int4pl, STYPE = integer, INITCOND = '0',"
        " MSFUNC = int4pl, MINVFUNC = int4mi, MSTYPE = integer, MINITCOND = '0')",
        "",
        "aggregate summed(integer) changed after down of 985:",
    ),
    "typed table": Case(
        "ALTER TABLE artists OF artist_row",
        "",
        "table artists changed after down of 985: was 'table', now 'table OF public.artist_row'",
    ),
    "table access method": Case(
        "CREATE ACCESS METHOD heap2 TYPE TABLE HANDLER heap_tableam_handler;"
        " ALTER TABLE artists SET ACCESS METHOD heap2",
        "",
        "table artists changed after down of 985: was 'table', now 'table USING heap2'",
    ),
    "sequence increment": Case(
        "ALTER SEQUENCE tracks_id_seq INCREMENT BY 10",
        "",
        "sequence tracks_id_seq changed after down of 985:",
    ),
}


@pytest.mark.parametrize("case", CHANGED_CASES.values(), ids=list(CHANGED_CASES))
def test_an_object_the_down_left_different_is_named_with_before_and_after(
    conn: psycopg.Connection[Any], case: Case
) -> None:
    messages = described(forgotten(conn, case.up, case.down))
    assert any(m.startswith(case.message) for m in messages), messages


def test_an_event_trigger_the_down_recreated_disabled_or_on_another_event_differs(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(
        "CREATE FUNCTION evf() RETURNS event_trigger LANGUAGE plpgsql AS $$BEGIN END$$;"
        " CREATE EVENT TRIGGER et ON ddl_command_end EXECUTE FUNCTION evf()"
    )
    for change, now in (
        ("ALTER EVENT TRIGGER et DISABLE", "-- DISABLED"),
        ("DROP EVENT TRIGGER et; CREATE EVENT TRIGGER et ON sql_drop EXECUTE FUNCTION evf()",
         "ON sql_drop"),
    ):  # fmt: skip
        messages = described(forgotten(conn, "SELECT 1", change))
        assert len(messages) == 1 and messages[0].startswith(
            "event trigger et changed after down of 985:"
        ), messages
        assert now in messages[0]
        conn.execute(
            "DROP EVENT TRIGGER et; CREATE EVENT TRIGGER et ON ddl_command_end"
            " EXECUTE FUNCTION evf()"
        )


def test_an_object_the_down_dropped_too_many_is_named_as_missing(
    conn: psycopg.Connection[Any],
) -> None:
    diffs = forgotten(
        conn,
        "ALTER TABLE tracks ADD COLUMN storage_key text",
        "ALTER TABLE tracks DROP COLUMN storage_key; DROP INDEX idx_tracks_title",
    )

    assert described(diffs) == ["index idx_tracks_title is missing after down of 985"]
    assert diffs[0].change == "missing"
    assert diffs[0].actual is None


def test_an_extension_the_down_forgot_is_named_with_its_version(
    conn: psycopg.Connection[Any],
) -> None:
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'"
    ).fetchone()
    if available is None:
        pytest.skip("contrib's pg_trgm is not installed on this server")

    diffs = forgotten(conn, "CREATE EXTENSION pg_trgm")

    # Only the extension: its hundreds of functions and operators are its own business.
    assert [(d.kind, d.name, d.change) for d in diffs] == [("extension", "pg_trgm", "extra")]
    assert diffs[0].actual is not None
    assert diffs[0].actual.startswith("version 1.")
    assert described(diffs) == ["extension pg_trgm still exists after down of 985"]


def test_a_correct_down_leaves_no_difference(conn: psycopg.Connection[Any]) -> None:
    diffs = forgotten(
        conn,
        """
        ALTER TABLE tracks ADD COLUMN storage_key varchar(512),
                           ADD COLUMN storage_backend text NOT NULL DEFAULT 'local';
        CREATE INDEX idx_tracks_storage_backend_s3 ON tracks (storage_key)
            WHERE storage_backend = 's3';
        CREATE TABLE playlists (id serial PRIMARY KEY, track_id bigint REFERENCES tracks (id));
        CREATE VIEW s3_tracks AS SELECT id FROM tracks WHERE storage_backend = 's3';
        CREATE TRIGGER tracks_touch BEFORE UPDATE ON tracks FOR EACH ROW EXECUTE FUNCTION touch();
        """,
        """
        DROP TRIGGER tracks_touch ON tracks;
        DROP VIEW s3_tracks;
        DROP TABLE playlists;
        DROP INDEX idx_tracks_storage_backend_s3;
        ALTER TABLE tracks DROP COLUMN storage_key, DROP COLUMN storage_backend;
        """,
    )

    assert diffs == []


def test_columns_are_compared_by_name_so_a_re_added_column_at_the_end_is_equal(
    conn: psycopg.Connection[Any],
) -> None:
    # DROP COLUMN + ADD COLUMN cannot restore a position; a correct down must still pass.
    diffs = forgotten(
        conn,
        "ALTER TABLE tracks DROP COLUMN title",
        "ALTER TABLE tracks ADD COLUMN title text NOT NULL DEFAULT ''; "
        "ALTER TABLE tracks ALTER COLUMN title DROP DEFAULT; "
        "CREATE INDEX idx_tracks_title ON tracks (title)",
    )

    assert diffs == []


def test_dropping_and_recreating_everything_gives_an_identical_snapshot(
    conn: psycopg.Connection[Any],
) -> None:
    schema = """
        CREATE TYPE status AS ENUM ('new', 'done');
        CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);
        CREATE TYPE pair AS (a integer, b text);
        CREATE TABLE jobs (
            id integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            artist_id bigint REFERENCES artists (id) ON DELETE CASCADE,
            status status NOT NULL DEFAULT 'new',
            tries positive_int,
            label text COLLATE "C" UNIQUE,
            doubled integer GENERATED ALWAYS AS (tries * 2) STORED,
            CHECK (label <> '')
        );
        CREATE INDEX jobs_open ON jobs (status) WHERE status = 'new';
        CREATE VIEW open_jobs AS SELECT id, label FROM jobs WHERE status = 'new';
        CREATE FUNCTION jobs_touch() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            NEW.tries := NEW.tries + 1;
            RETURN NEW;
        END $$;
        CREATE TRIGGER jobs_touch BEFORE UPDATE ON jobs
            FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status)
            EXECUTE FUNCTION jobs_touch();
        CREATE AGGREGATE total(integer) (SFUNC = int4pl, STYPE = integer, INITCOND = '0');
        CREATE SEQUENCE ticket START 10 INCREMENT 5 OWNED BY jobs.tries;
        CREATE TABLE events (at date NOT NULL, what text) PARTITION BY RANGE (at);
        CREATE TABLE events_2026 PARTITION OF events
            FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
        CREATE INDEX events_at ON events (at);
    """
    drop = """
        DROP TABLE events; DROP AGGREGATE total(integer); DROP VIEW open_jobs;
        DROP TABLE jobs; DROP FUNCTION jobs_touch(); DROP TYPE pair;
        DROP DOMAIN positive_int; DROP TYPE status;
    """
    conn.execute(schema)
    conn.execute("SELECT nextval('ticket'), nextval('ticket')")
    first = take_snapshot(conn)
    conn.execute(drop)
    conn.execute(schema)
    second = take_snapshot(conn)

    assert diff_snapshots(first, second) == []
    assert ("view", "public.open_jobs") in first.objects
    assert ("trigger", "public.jobs.jobs_touch") in first.objects
    assert ("aggregate", "public.total(integer)") in first.objects


def test_the_same_schema_in_two_databases_gives_no_difference(
    conn: psycopg.Connection[Any], make_database: Callable[[], str]
) -> None:
    with psycopg.connect(make_database(), autocommit=True) as other:
        other.execute(BASE)
        other.execute("SELECT nextval('tracks_id_seq')")  # data, not schema
        other_snapshot = take_snapshot(other)

    assert diff_snapshots(take_snapshot(conn), other_snapshot) == []


def test_a_column_definition_reads_like_sql(conn: psycopg.Connection[Any]) -> None:
    conn.execute("ALTER TABLE tracks ADD COLUMN storage_key varchar(512)")

    objects = take_snapshot(conn).objects

    assert objects[("column", "public.tracks.storage_key")] == "character varying(512) NULL"
    assert objects[("column", "public.tracks.plays")] == "integer NOT NULL DEFAULT 0"
    assert objects[("column", "public.tracks.id")] == (
        "bigint NOT NULL DEFAULT nextval('public.tracks_id_seq'::regclass)"
    )
    assert objects[("enum", "public.mood")] == "ENUM ('sad', 'ok')"
    assert objects[("sequence", "public.tracks_id_seq")] == (
        "bigint START 1 INCREMENT 1 MINVALUE 1 MAXVALUE 9223372036854775807 CACHE 1"
        " NO CYCLE OWNED BY public.tracks.id"
    )


def test_a_sequence_that_advanced_is_not_a_difference(conn: psycopg.Connection[Any]) -> None:
    diffs = forgotten(conn, "INSERT INTO tracks (artist_id, title) VALUES (1, 'a'), (1, 'b')")

    assert diffs == []


TRACKING = """
CREATE TABLE {t} (version bigint PRIMARY KEY, name text NOT NULL, dirty boolean NOT NULL
                  DEFAULT false);
CREATE TABLE {t}_history (id bigserial PRIMARY KEY, version bigint NOT NULL, message text);
CREATE INDEX ON {t}_history (version);
"""


@pytest.mark.parametrize(
    "names",
    [
        ["schema_migrations", "schema_migrations_history"],
        ["public.schema_migrations", "public.schema_migrations_history"],
    ],
)
def test_the_tracking_tables_and_everything_they_own_are_left_out(
    conn: psycopg.Connection[Any], names: list[str]
) -> None:
    before = take_snapshot(conn, exclude_tables=names)
    conn.execute(TRACKING.format(t="schema_migrations"))
    conn.execute("INSERT INTO schema_migrations_history (version) VALUES (985)")
    after = take_snapshot(conn, exclude_tables=names)

    assert diff_snapshots(before, after) == []
    assert not [key for key in after.objects if "schema_migrations" in key[1]]


def test_without_exclusion_the_tracking_tables_are_part_of_the_snapshot(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(TRACKING.format(t="schema_migrations"))

    objects = take_snapshot(conn).objects

    assert ("table", "public.schema_migrations") in objects
    assert ("sequence", "public.schema_migrations_history_id_seq") in objects
    assert ("index", "public.schema_migrations_history_version_idx") in objects


def test_a_tracking_table_in_its_own_schema_is_excluded_by_qualified_name(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("CREATE SCHEMA ops")
    before = take_snapshot(conn)
    conn.execute(TRACKING.format(t="ops.migrations"))
    after = take_snapshot(conn, exclude_tables=["ops.migrations", "ops.migrations_history"])

    assert diff_snapshots(before, after) == []


def test_a_same_named_table_in_another_schema_is_not_excluded(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("CREATE SCHEMA ops; CREATE TABLE ops.schema_migrations (version bigint)")
    conn.execute(TRACKING.format(t="schema_migrations"))

    objects = take_snapshot(conn, exclude_tables=["schema_migrations"]).objects

    assert ("table", "ops.schema_migrations") in objects
    assert ("table", "public.schema_migrations") not in objects


def test_naming_a_tracking_table_that_does_not_exist_yet_is_fine(
    conn: psycopg.Connection[Any],
) -> None:
    snapshot = take_snapshot(conn, exclude_tables=["schema_migrations", "nowhere.at_all"])

    assert ("table", "public.tracks") in snapshot.objects


def test_odd_identifiers_are_quoted_in_names(conn: psycopg.Connection[Any]) -> None:
    conn.execute('CREATE TABLE "Odd.Table" ("My Column" int)')

    objects = take_snapshot(conn).objects

    assert ("column", 'public."Odd.Table"."My Column"') in objects


def test_taking_a_snapshot_leaves_the_search_path_alone(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE SCHEMA app; SET search_path = app, public")
    take_snapshot(conn)
    assert conn.execute("SHOW search_path").fetchone() == ("app, public",)

    with conn.transaction():
        conn.execute("SET LOCAL search_path = public")
        take_snapshot(conn)
        assert conn.execute("SHOW search_path").fetchone() == ("public",)
    assert conn.execute("SHOW search_path").fetchone() == ("app, public",)


def test_a_snapshot_inside_an_open_transaction_sees_uncommitted_ddl(
    postgresql: psycopg.Connection[Any],
) -> None:
    # Not autocommit: the caller's transaction stays open and usable.
    postgresql.execute("CREATE TABLE drafts (id int)")
    snapshot = take_snapshot(postgresql)
    postgresql.execute("SELECT 1")

    assert ("table", "public.drafts") in snapshot.objects
    assert postgresql.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    postgresql.rollback()


def test_a_leftover_table_is_summarized_on_one_line_with_its_contents(
    conn: psycopg.Connection[Any],
) -> None:
    diffs = forgotten(
        conn,
        """
        CREATE TABLE playlists (id serial PRIMARY KEY, name text UNIQUE, owner text);
        CREATE INDEX playlists_owner ON playlists (owner);
        ALTER TABLE tracks ADD COLUMN storage_key text;
        """,
    )

    assert summarize(diffs, AFTER) == [
        "table playlists still exists after down of 985"
        " (with 3 columns, 2 constraints, 1 index, 1 sequence)",
        "column tracks.storage_key still exists after down of 985",
    ]


def test_a_summary_is_cut_at_the_limit_and_says_how_many_more() -> None:
    diffs = [
        Difference("index", f"public.idx_{n:02}", "extra", None, "CREATE INDEX …")
        for n in range(25)
    ]

    lines = summarize(diffs, AFTER, limit=20)

    assert len(lines) == 21
    assert lines[0] == "index idx_00 still exists after down of 985"
    assert lines[-1] == "… and 5 more differences"


def test_a_long_single_line_change_shows_the_region_that_differs() -> None:
    head = "CHECK (" + " AND ".join(f"c{n} > 0" for n in range(40))
    diff = Difference("constraint", "public.t.big", "changed", head + ")", head + " AND x)")

    text = diff.describe(AFTER)

    assert text.startswith("constraint t.big changed after down of 985: was '…")
    assert "c39 > 0)'" in text
    assert "c39 > 0 AND x)'" in text
    assert len(text) < 300


def test_a_line_replaced_by_two_shows_both_so_the_real_change_is_not_hidden(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute("CREATE VIEW totals AS SELECT id, plays FROM tracks")

    messages = described(
        forgotten(
            conn, "CREATE OR REPLACE VIEW totals AS SELECT id, plays FROM tracks WHERE plays > 0"
        )
    )

    assert messages == [
        "view totals changed after down of 985: line 3 was '   FROM public.tracks;',"
        " now '   FROM public.tracks\\n  WHERE tracks.plays > 0;'"
    ]


def test_names_outside_public_keep_their_schema() -> None:
    diff = Difference("table", "archive.tracks", "missing", "table", None)

    assert diff.describe("after down of 940") == "table archive.tracks is missing after down of 940"


def test_differences_come_containers_first_then_by_name() -> None:
    expected = Snapshot(objects={})
    actual = Snapshot(
        objects={
            ("trigger", "public.t.a"): "x",
            ("column", "public.t.b"): "x",
            ("table", "public.t"): "x",
            ("column", "public.t.a"): "x",
        }
    )

    keys = [(d.kind, d.name) for d in diff_snapshots(expected, actual)]

    assert keys == [
        ("table", "public.t"),
        ("column", "public.t.a"),
        ("column", "public.t.b"),
        ("trigger", "public.t.a"),
    ]


def test_a_connection_with_another_row_factory_works_and_keeps_it(
    conn: psycopg.Connection[Any],
) -> None:
    conn.row_factory = dict_row

    snapshot = take_snapshot(conn)

    assert ("table", "public.tracks") in snapshot.objects
    assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
