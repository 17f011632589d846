"""sqltext: statements, comments, syntax errors and positions, as PostgreSQL's parser sees them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pglast.parser import split

from vezamig.errors import EXIT_USAGE, LayoutError
from vezamig.sqltext import (
    LineIndex,
    Position,
    SqlSyntaxError,
    Statement,
    analyze,
    excerpt,
    header_and_body_comments,
    line_col,
    line_text,
    offset_from_server_position,
    split_statements,
    statement_at,
    syntax_check,
)

FUNCTION_FILE = """\
-- Roll out the audit trigger.
CREATE FUNCTION audit() RETURNS trigger LANGUAGE plpgsql AS $body$
BEGIN
    INSERT INTO audit_log VALUES (now(), 'x;y'); -- inner; comment
    RETURN NEW;
END
$body$;

SELECT 1;
"""


def texts(sql: str) -> list[str]:
    return [s.text for s in split_statements(sql)]


# --------------------------------------------------------------------------- splitting


def test_a_semicolon_inside_a_dollar_quoted_body_does_not_split_it() -> None:
    statements = split_statements(FUNCTION_FILE)
    assert len(statements) == 2
    assert statements[0].text.startswith("CREATE FUNCTION audit()")
    assert statements[0].text.endswith("$body$")
    assert "RETURN NEW;" in statements[0].text
    assert statements[1].text == "SELECT 1"


def test_statement_line_and_column_point_at_its_first_token() -> None:
    statements = split_statements(FUNCTION_FILE)
    assert (statements[0].line, statements[0].column) == (2, 1)
    assert (statements[1].line, statements[1].column) == (9, 1)
    two = split_statements("SELECT 1;   SELECT 2;\n\n  SELECT 3")
    assert [(s.line, s.column) for s in two] == [(1, 1), (1, 13), (3, 3)]


def test_statement_text_is_the_file_slice_without_the_semicolon() -> None:
    for statement in split_statements(FUNCTION_FILE):
        assert FUNCTION_FILE[statement.start : statement.end] == statement.text
        assert not statement.text.endswith(";")


def test_double_dashes_inside_a_string_are_not_a_comment() -> None:
    assert texts("SELECT '-- not a comment; really';SELECT 2") == [
        "SELECT '-- not a comment; really'",
        "SELECT 2",
    ]


def test_an_escaped_quote_in_an_e_string_does_not_end_it() -> None:
    sql = "SELECT E'it\\'s; fine';\nSELECT 'ok'"
    assert texts(sql) == ["SELECT E'it\\'s; fine'", "SELECT 'ok'"]


def test_offsets_count_characters_not_utf8_bytes() -> None:
    sql = "SELECT 'çà€😀';\nSELECT 'naïve' AS ü;"
    statements = split_statements(sql)
    assert [s.text for s in statements] == ["SELECT 'çà€😀'", "SELECT 'naïve' AS ü"]
    assert statements[1].start == sql.index("SELECT 'naïve'")
    assert sql[statements[1].start : statements[1].end] == statements[1].text


def test_comments_around_statements_are_not_part_of_them() -> None:
    sql = "/* lead */ SELECT 1 -- trail\n;\n-- between\nSELECT /* inside */ 2 -- last\n"
    assert texts(sql) == ["SELECT 1", "SELECT /* inside */ 2"]


def test_empty_statements_and_rule_actions_split_like_postgresql() -> None:
    sql = (
        ";SELECT 1;;\n"
        "CREATE RULE r AS ON INSERT TO t DO ALSO\n"
        "(INSERT INTO a VALUES (1); INSERT INTO b VALUES (2));"
    )
    assert texts(sql) == [
        "SELECT 1",
        "CREATE RULE r AS ON INSERT TO t DO ALSO\n"
        "(INSERT INTO a VALUES (1); INSERT INTO b VALUES (2))",
    ]


def test_splitting_agrees_with_pglast_split_when_no_comment_trails_a_statement() -> None:
    sql = FUNCTION_FILE + "SELECT E'\\n';\nCREATE TABLE t (a int);\n(SELECT 1) UNION SELECT 2;\n"
    expected = [sql[s] for s in split(sql, with_parser=True, only_slices=True)]
    assert texts(sql) == expected


def test_a_file_of_only_comments_has_no_statements() -> None:
    assert split_statements("-- nothing here\n/* still /* nothing */ */\n\n") == []
    assert split_statements("") == []


def test_split_statements_raises_the_syntax_error() -> None:
    with pytest.raises(SqlSyntaxError) as caught:
        split_statements("SELECT 1;\nSELEC 2;")
    assert (caught.value.line, caught.value.column) == (2, 1)


# --------------------------------------------------------------------------- syntax errors


def test_a_syntax_error_on_line_3_reports_line_column_and_the_line() -> None:
    sql = "CREATE TABLE a (id int);\n-- ü comment\nALTER TABLE a ADD COLUMN ;\nSELECT 1;\n"
    error = syntax_check(sql)
    assert error is not None
    assert error.message == 'syntax error at or near ";"'
    assert (error.line, error.column) == (3, 26)
    assert error.offset == sql.index(" ;") + 1
    assert error.line_text == "ALTER TABLE a ADD COLUMN ;"
    assert str(error) == 'line 3, column 26: syntax error at or near ";"'


def test_a_file_that_parses_has_no_syntax_error() -> None:
    assert syntax_check(FUNCTION_FILE) is None
    assert syntax_check("-- only a comment\n") is None


def test_an_unterminated_string_points_at_its_opening_quote() -> None:
    error = syntax_check("SELECT 1;\n\nSELECT 'abc;\n")
    assert error is not None
    assert error.message.startswith("unterminated quoted string")
    assert (error.line, error.column) == (3, 8)


def test_an_unterminated_block_comment_is_a_syntax_error() -> None:
    error = syntax_check("SELECT 1;\n/* /* nested */ never closed\n")
    assert error is not None
    assert error.message.startswith("unterminated /* comment")
    assert (error.line, error.column) == (2, 1)


def test_an_error_at_end_of_input_points_just_after_the_last_token() -> None:
    error = syntax_check("-- head\nSELECT 1 FROM\n\n\n")
    assert error is not None
    assert error.message == "syntax error at end of input"
    assert (error.line, error.column) == (2, 14)


def test_the_first_error_in_the_file_wins_over_a_later_lexer_error() -> None:
    error = syntax_check("SELEC 1;\nSELECT 'open")
    assert error is not None
    assert (error.line, error.column, error.message) == (1, 1, 'syntax error at or near "SELEC"')


def test_a_syntax_error_is_a_layout_error_with_exit_code_2() -> None:
    error = syntax_check("SELEC 1")
    assert isinstance(error, LayoutError)
    assert error.exit_code == EXIT_USAGE


def test_a_syntax_error_column_counts_characters_after_non_ascii_text() -> None:
    error = syntax_check("SELECT 'ééé' FROM WHERE;")
    assert error is not None
    assert (error.line, error.column) == (1, 19)


# --------------------------------------------------------------------------- comments


def test_header_comments_stop_at_the_first_statement() -> None:
    sql = (
        "-- Roll back 985.\n"
        "-- vezamig:lock tracks\n"
        "/* vezamig:guard SELECT NOT EXISTS (\n"
        "     SELECT 1 FROM tracks) */\n"
        "DROP INDEX i;\n"
        "-- vezamig:guard SELECT true\n"
        "SELECT 1; /* tail */\n"
    )
    header, body, first = header_and_body_comments(sql)
    assert [c.text for c in header] == [
        "Roll back 985.",
        "vezamig:lock tracks",
        "vezamig:guard SELECT NOT EXISTS (\n     SELECT 1 FROM tracks)",
    ]
    assert [(c.line, c.block) for c in header] == [(1, False), (2, False), (3, True)]
    assert [(c.text, c.line) for c in body] == [("vezamig:guard SELECT true", 6), ("tail", 7)]
    assert first == sql.index("DROP INDEX")


def test_comment_offsets_cover_the_raw_comment_with_its_markers() -> None:
    sql = "/* a /* b */ c */ -- d\nSELECT 1"
    header, _, _ = header_and_body_comments(sql)
    assert [sql[c.start : c.end] for c in header] == ["/* a /* b */ c */", "-- d"]
    assert header[0].text == "a /* b */ c"
    assert header[1].column == 19


def test_a_file_without_sql_has_only_header_comments() -> None:
    header, body, first = header_and_body_comments("-- one\r\n/* two\r\n */\r\n")
    assert [c.text for c in header] == ["one", "two"]
    assert body == []
    assert first is None


def test_header_comments_are_read_from_a_file_with_a_grammar_error() -> None:
    header, body, first = header_and_body_comments("-- vezamig:guard SELECT true\nSELEC 1;\n-- x")
    assert [c.text for c in header] == ["vezamig:guard SELECT true"]
    assert [c.text for c in body] == ["x"]
    assert first == 29


def test_a_lexer_error_raises_from_header_and_body_comments_but_analyze_keeps_the_header() -> None:
    sql = "-- vezamig:no-transaction\nSELECT 1;\nSELECT $$open\n"
    with pytest.raises(SqlSyntaxError) as caught:
        header_and_body_comments(sql)
    assert (caught.value.line, caught.value.column) == (3, 8)
    parsed = analyze(sql)
    assert parsed.error is not None
    assert [c.text for c in parsed.header] == ["vezamig:no-transaction"]
    assert parsed.statements == ()


def test_analyze_gives_statements_comments_and_parse_nodes_from_one_pass() -> None:
    parsed = analyze(FUNCTION_FILE)
    assert parsed.error is None
    assert [c.text for c in parsed.header] == ["Roll out the audit trigger."]
    assert parsed.body == ()  # "-- inner; comment" is inside the $body$ string
    assert len(parsed.nodes) == len(parsed.statements) == 2
    assert type(parsed.nodes[0].stmt).__name__ == "CreateFunctionStmt"


# --------------------------------------------------------------------------- positions


def test_line_col_is_one_based_and_counts_characters() -> None:
    text = "ab\nçd€\r\nxyz"
    assert line_col(text, 0) == Position(1, 1)
    assert line_col(text, 5) == Position(2, 3)
    assert line_col(text, text.index("x")) == Position(3, 1)
    assert line_col(text, 10_000) == Position(3, 4)


def test_line_text_strips_the_line_ending_and_is_empty_out_of_range() -> None:
    text = "one\r\ntwo\nthree"
    assert [line_text(text, n) for n in (0, 1, 2, 3, 4)] == ["", "one", "two", "three", ""]


def test_a_lone_carriage_return_ends_a_line_as_in_postgresqls_lexer() -> None:
    # A classic-Mac file: PostgreSQL ends a `--` comment at a lone CR, psql counts it
    # as a new line in its error positions, and so does vezamig.
    text = "-- one\rSELECT 1;\r\nSELEC 2;\rlast"
    assert line_col(text, text.index("SELECT")) == Position(2, 1)
    assert line_col(text, text.index("SELEC 2") + 2) == Position(3, 3)
    assert line_col(text, text.index("last")) == Position(4, 1)
    assert [line_text(text, n) for n in range(1, 6)] == [
        "-- one",
        "SELECT 1;",
        "SELEC 2;",
        "last",
        "",
    ]
    assert excerpt(text, 3, context=1) == ["  2 | SELECT 1;", "> 3 | SELEC 2;", "  4 | last"]


@given(st.text(alphabet="ab\n\r€ ", max_size=60), st.integers(min_value=-2, max_value=70))
def test_line_index_agrees_with_line_col(text: str, offset: int) -> None:
    index = LineIndex(text)
    assert index.position(offset) == line_col(text, offset)
    line = index.position(offset).line
    assert index.line_text(line) == line_text(text, line)


def test_excerpt_numbers_the_lines_and_marks_the_bad_one() -> None:
    text = "".join(f"line {n}\n" for n in range(1, 16))
    assert excerpt(text, 12) == [
        "  10 | line 10",
        "  11 | line 11",
        "> 12 | line 12",
        "  13 | line 13",
        "  14 | line 14",
    ]


def test_excerpt_clamps_at_the_edges_and_can_show_a_caret() -> None:
    text = "SELECT 1;\n\tSELEC 2;\n"
    assert excerpt(text, 2, column=2) == [
        "  1 | SELECT 1;",
        "> 2 | \tSELEC 2;",
        "    | \t^",
    ]
    assert excerpt(text, 99, context=0) == ["> 2 | \tSELEC 2;"]


def test_statement_at_maps_a_file_offset_back_to_its_statement() -> None:
    statements = split_statements(FUNCTION_FILE)
    inside = FUNCTION_FILE.index("RETURN NEW")
    assert statement_at(statements, inside) == statements[0]
    assert statement_at(statements, len(FUNCTION_FILE)) == statements[1]
    assert statement_at(statements, 0) is None


def test_a_server_position_maps_to_a_file_offset_for_a_file_or_a_statement() -> None:
    sql = "-- c\nSELECT 1;\n  SELECT nope FROM t;\n"
    assert offset_from_server_position("6") == 5
    second = split_statements(sql)[1]
    offset = offset_from_server_position("8", statement=second)
    assert offset is not None
    assert line_col(sql, offset) == Position(3, 10)
    assert offset_from_server_position(None) is None
    assert offset_from_server_position("") is None
    assert offset_from_server_position("0") is None


def test_a_statement_offset_inside_it_maps_through_file_offset() -> None:
    statement = Statement("SELECT 1", 10, 18, 2, 1)
    assert statement.file_offset(1) == 10
    assert statement.file_offset(8) == 17


# --------------------------------------------------------------------------- non-ASCII fast path


def test_a_large_non_ascii_file_splits_and_comments_exactly() -> None:
    rows = "".join(
        f"INSERT INTO t VALUES ('Zürich {n} ✓', $q$ça; ü $q$); -- ü{n}\n" for n in range(300)
    )
    sql = "-- Données de départ ✓\n" + rows
    parsed = analyze(sql)
    assert parsed.error is None
    assert len(parsed.statements) == 300
    for statement in parsed.statements:
        assert sql[statement.start : statement.end] == statement.text
    assert parsed.statements[299].text == "INSERT INTO t VALUES ('Zürich 299 ✓', $q$ça; ü $q$)"
    assert parsed.statements[299].line == 301
    assert [c.text for c in parsed.header] == ["Données de départ ✓"]
    assert parsed.body[-1].text == "ü299"
    assert texts(sql) == [sql[s] for s in split(sql, with_parser=True, only_slices=True)]


def test_a_dollar_tag_that_only_matches_after_substitution_still_splits_right() -> None:
    sql = "SELECT $x$ a $ü$ b $x$;\nSELECT $ü$ c $x$ d $ü$;\nSELECT 'é'"
    assert texts(sql) == ["SELECT $x$ a $ü$ b $x$", "SELECT $ü$ c $x$ d $ü$", "SELECT 'é'"]


def test_identifiers_keep_their_non_ascii_letters_in_the_parse_tree() -> None:
    parsed = analyze("CREATE TABLE café (prénom text DEFAULT 'é');")
    relation = parsed.nodes[0].stmt.relation  # type: ignore[union-attr]
    assert relation.relname == "café"


def test_a_syntax_error_message_quotes_the_original_non_ascii_text() -> None:
    error = syntax_check("SELECT 'ü';\nSELECT 'ö' 'ä' FROM;\n")
    assert error is not None
    assert error.message == "syntax error at or near \"'ä'\""
    assert (error.line, error.column) == (2, 12)
    lexer = syntax_check("SELECT 1;\nSELECT 'ünterminated\n")
    assert lexer is not None
    assert lexer.message == 'unterminated quoted string at or near "\'ünterminated\n"'
    assert (lexer.line, lexer.column) == (2, 8)


def test_excerpt_keeps_a_window_of_a_huge_line_around_the_error_column() -> None:
    text = "SELECT 1;\n" + "x" * 5000 + "BAD" + "y" * 5000 + "\nSELECT 2;\n"
    lines = excerpt(text, 2, column=5001)
    assert all(len(line) < 200 for line in lines)
    marked = next(line for line in lines if line.startswith(">"))
    caret = next(line for line in lines if line.rstrip().endswith("^"))
    assert marked[caret.index("^")] == "B"


# ---- the directive reader's short cut for large files ----------------------------------

_PIECES = st.sampled_from(
    [
        "SELECT 1",
        ";",
        " ",
        "\n",
        "\r",
        "-- vezamig:guard SELECT true\n",
        "-- VEZAMIg:lock t\n",
        "-- plain\n",
        "/* vezamig:lock t */",
        "/* a /* nested vezamig: */ b */",
        "/*\n * vezamig:guard x\n */",
        "'vezamig: in a string'",
        "'it''s; -- no'",
        "$$ vezamig:guard ; $$",
        "$t$ ; -- $$ ; $t$",
        "E'\\' ; '",
        "é",
        '"vezamig"',
        "CREATE RULE r AS ON INSERT TO t DO (SELECT 1; SELECT 2)",
        "COPY t FROM stdin",
    ]
)


@given(st.lists(_PIECES, max_size=25))
def test_the_large_file_short_cut_finds_what_lexing_the_whole_file_finds(pieces: list[str]) -> None:
    from vezamig.sqltext import _directive_comments_quick, file_comments

    sql = "".join(pieces)
    quick = _directive_comments_quick(sql)
    if quick is None:
        return  # it declined: the long way answers
    full = file_comments(sql)
    assert full.error is None  # the short cut never hides a lexer error
    assert quick.header == full.header
    assert quick.first == full.first
    mentions = [c for c in full.body if "vezamig" in sql[c.start : c.end].lower()]
    assert quick.body == mentions


def test_a_large_seed_file_is_read_for_directives_without_lexing_every_row() -> None:
    from vezamig.sqltext import LARGE_FILE, directive_comments, file_comments

    rows = "".join(f"INSERT INTO t VALUES ({i}, 'start', 'é');\n" for i in range(3000))
    sql = (
        "-- seed\n-- vezamig:lock t\nCREATE TABLE t (id int, a text, b text);\n"
        + rows
        + "/* vezamig:guard SELECT true */\nSELECT 1;\n-- tail, no mention\n"
    )
    assert len(sql) > LARGE_FILE
    quick = directive_comments(sql)
    full = file_comments(sql)
    assert quick.header == full.header and quick.first == full.first
    assert [c.text for c in quick.body] == ["vezamig:guard SELECT true"]
    assert quick.body[0].line == 3004


# ---- the pre-filter in front of the parser for statements a step cannot run ------------

_BODY_PIECES = st.sampled_from(
    [
        "COMMIT",
        "begin",
        "START TRANSACTION",
        "end",
        "ABORT",
        "ROLLBACK",
        "PREPARE TRANSACTION 'x'",
        "COPY t FROM stdin",
        "COPY t TO STDOUT",
        "SELECT 'commit'",
        "SELECT 1 AS end",
        "INSERT INTO t VALUES ('start')",
        "-- c\n",
        "-- c\r",
        "/* c */",
        "/* a /* b */ c */",
        ";",
        " ",
        "\t",
        "\n",
        "\r\n",
        "\f",
        "SELECT 1",
        "$$ ; $$",
    ]
)


@given(st.lists(_BODY_PIECES, max_size=12))
def test_the_run_words_pre_filter_never_hides_a_statement_a_step_cannot_run(
    pieces: list[str],
) -> None:
    """The regular expression spares the parser for bodies that cannot hold such a
    statement (issue 7: a seed file with `'start'` in its rows took 20 s); it must
    never skip one that does."""
    import vezamig.runnable as runnable

    text = "".join(pieces)
    if runnable.may_hold_run_words(text):
        return
    for no_transaction in (False, True):
        assert (
            runnable.parsed_run_problems(analyze(text), "f.sql", no_transaction=no_transaction)
            == []
        )


# ---- large files analysed in pieces (verify, and up's check of a body) ------------------

_STATEMENTS = st.sampled_from(
    [
        "SELECT 1;\n",
        "CREATE TABLE t (id int);\n",
        "CREATE INDEX i ON t (id);\n",
        "ALTER TABLE t ADD COLUMN c int NOT NULL;\n",
        "INSERT INTO t VALUES (1, 'é;');\n",
        "-- a comment\n",
        "/* a block\n comment; */\n",
        ";\n",
        "COMMIT;\n",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql\n"
        "BEGIN ATOMIC\n SELECT 1;\n SELECT 2;\nEND;\n",
        "CREATE RULE r AS ON INSERT TO t DO (SELECT 1;\n SELECT 2);\n",
        "SELECT 'a\nb;';\n",
        "SELECT 1; SELECT 2;\n",
        "SELEC 1;\n",
        "SELECT $$ ;\n $$;\n",
        "SELECT 1;\r",
        "DROP TABLE t; -- trailing\n",
        "UPDATE t SET id = 2;\n",
        "delete FROM t;\n",
        "/* c */ Insert INTO t VALUES (2); COMMIT;\n",
        "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x;\n",
        "SELECT 1 INTO t2;\n",
        "COPY t FROM STDIN;\n",
    ]
)


@given(st.lists(_STATEMENTS, max_size=20))
def test_a_lean_analysis_differs_only_by_the_trees_of_dml_statements(parts: list[str]) -> None:
    """analyze(lean=True) (the pieces of large files) skips the trees no check
    looks into, and nothing else: same statements, same error, same other trees."""
    from pglast import ast

    from vezamig.sqltext import Skipped

    sql = "".join(parts)
    full, lean = analyze(sql), analyze(sql, lean=True)
    assert lean.statements == full.statements
    assert (lean.error and lean.error.one_line) == (full.error and full.error.one_line)
    assert len(lean.nodes) == len(full.nodes)
    for got, want in zip(lean.nodes, full.nodes, strict=True):
        if isinstance(got, Skipped):
            assert isinstance(want.stmt, ast.InsertStmt | ast.UpdateStmt | ast.DeleteStmt)
        else:
            assert got.stmt == want.stmt  # pglast compares trees without positions


@given(st.lists(_STATEMENTS, max_size=20), st.integers(min_value=1, max_value=80))
def test_analysing_in_pieces_finds_what_analysing_the_whole_file_finds(
    parts: list[str], size: int
) -> None:
    from vezamig.lint import Linter, lint_file
    from vezamig.runnable import parsed_run_problems
    from vezamig.sqltext import analyze_pieces

    sql = "".join(parts)
    whole = analyze(sql)
    pieces = list(analyze_pieces(sql, size=size))
    if pieces[-1].whole:
        # one piece, or a piece that did not parse: the whole file, analysed at once
        error = pieces[-1].parsed.error
        assert error is whole.error is None or (
            error is not None
            and whole.error is not None
            and (error.message, error.line, error.column)
            == (whole.error.message, whole.error.line, whole.error.column)
        )
        assert pieces[-1].parsed.statements == whole.statements
        return
    assert whole.error is None
    assert all(not p.whole and p.parsed.error is None for p in pieces)
    got = [(s.text, s.line + p.line_base, s.column) for p in pieces for s in p.parsed.statements]
    assert got == [(s.text, s.line, s.column) for s in whole.statements]
    linter = Linter(direction="up", has_guard=False, no_transaction=False)
    found = [f for p in pieces for f in linter.feed(p.parsed, p.line_base)]
    assert found == lint_file(whole, direction="up", has_guard=False, no_transaction=False)
    run = [
        r
        for p in pieces
        for r in parsed_run_problems(p.parsed, "f", no_transaction=False, line_base=p.line_base)
    ]
    assert run == parsed_run_problems(whole, "f", no_transaction=False)


# ---- the plain header, read without the lexer (`status`) --------------------------------

_HEADER_PIECES = st.sampled_from(
    [
        "-- plain\n",
        "--\n",
        "  -- vezamig:no-transaction\n",
        "\t-- vezamig:guard SELECT true  \n",
        "-- a /* not a block */ b\n",
        "-- ünïcode, and a no-break\u00a0space\n",
        "-- vezamig: lookalike; 'quote\n",
        " \t\n",
        "\n",
        "\r\n",
        "\f\n",
        "/* block */\n",
        ";\n",
        "-- no newline at the end",
        "- minus\n",
    ]
)
_FIRST_PIECES = st.sampled_from(
    ["SELECT 1;", "CREATE INDEX CONCURRENTLY i ON t (a);", "E'x';", "U&'d';", "x'1f';", "1;", ""]
)


@settings(max_examples=500)  # about one file in ten has a plain header
@given(st.lists(_HEADER_PIECES, max_size=8), _FIRST_PIECES, st.lists(_PIECES, max_size=10))
def test_a_plain_header_reads_as_the_lexer_reads_it(
    header: list[str], first: str, body: list[str]
) -> None:
    from vezamig.sqltext import directive_comments, plain_header_comments

    sql = "".join(header) + first + "".join(body)
    quick = plain_header_comments(sql)
    if quick is None:
        return  # it declined: the lexer answers
    full = directive_comments(sql)
    # A syntax error, if the file has one, is at its first SQL token or after it.
    assert quick.header == full.header
    assert full.body == []  # no directive or look-alike after the header
    if full.error is None:  # the one difference: the body is not lexed
        assert quick == full


@pytest.mark.parametrize(
    "sql",
    [
        "/* vezamig:no-transaction */\nSELECT 1;",  # a block comment
        "-- vezamig:lock t\n;\nSELECT 1;",  # a stray semicolon
        "-- vezamig:lock t\r\nSELECT 1;",  # a carriage return
        "-- vezamig:lock t\n",  # no SQL
        "-- note\nSELECT 1; -- vezamig:guard SELECT true\n",  # a directive in the body
        "-- note\nSELECT 'VEZAMIG:lock';\n",  # a mention the lexer must place
        "-- vezamig:lock t\n1;",  # not a letter
    ],
)
def test_a_header_that_is_not_plain_is_left_to_the_lexer(sql: str) -> None:
    from vezamig.sqltext import plain_header_comments

    assert plain_header_comments(sql) is None


def test_a_plain_header_is_read_without_loading_pglast() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from vezamig.sqltext import plain_header_comments as q\n"
        "assert q('-- vezamig:no-transaction\\nCREATE INDEX CONCURRENTLY i ON t (a);\\n')\n"
        "print('pglast' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"
