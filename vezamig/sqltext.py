"""SQL text as PostgreSQL sees it: statements, comments, syntax errors, positions.

Everything here rests on pglast, i.e. PostgreSQL's own lexer and grammar, so a
semicolon inside a dollar-quoted body, an ``E'…'`` string or a nested ``/* */``
comment is never mistaken for a boundary. All offsets are *character* offsets
into the Python string (pglast converts libpg_query's byte offsets), which is
also what PostgreSQL reports in ``diag.statement_position`` (1-based).

``analyze`` does one scan and at most one parse per file; the smaller helpers
(``split_statements``, ``syntax_check``, ``header_and_body_comments``) are thin
views over it for callers that need only one answer. pglast is imported lazily
so the position helpers (used when a step fails) cost nothing at start-up.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

from vezamig.errors import LayoutError

if TYPE_CHECKING:
    from pglast.ast import RawStmt

__all__ = [
    "Comment",
    "FileComments",
    "LineIndex",
    "Piece",
    "Position",
    "SqlFile",
    "SqlSyntaxError",
    "Statement",
    "Word",
    "analyze",
    "analyze_pieces",
    "excerpt",
    "file_comments",
    "header_and_body_comments",
    "lexical_statements",
    "line_col",
    "line_text",
    "offset_from_server_position",
    "plain_header_comments",
    "split_statements",
    "statement_at",
    "syntax_check",
    "written_name",
]

_COMMENT_TOKENS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_MASKABLE = _COMMENT_TOKENS | {"SCONST", "USCONST"}
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_SEMICOLON = "ASCII_59"
_MENTION = re.compile("vezamig", re.I)
# From this size on, files are lexed and parsed in parts (directive_comments,
# analyze_pieces): a 10 MB seed file of 200,000 INSERTs is 3 million tokens and
# as many syntax-tree nodes, seconds and gigabytes of pglast objects at once.
LARGE_FILE = 64 * 1024
_PREFIX_SCAN = 4096
# A dollar-quote tag with a non-ASCII character: the ASCII copy the short cuts lex
# could close such a string elsewhere (`$é$ … $à$`), so those files take the long way.
_NON_ASCII_TAG = re.compile(r"\$(?:\w|[^\x00-\x7f])*[^\x00-\x7f](?:\w|[^\x00-\x7f])*\$")


_PLAIN_NAME = re.compile(r"[a-z_][a-z0-9_$]*")


def psql_hint(message: str) -> str | None:
    """What to do about a syntax error at a backslash: a psql meta-command."""
    if 'at or near "\\"' not in message:
        return None
    return (
        "a psql meta-command (\\i, \\set, \\echo, \\gset, …) is not SQL: vezamig sends "
        "each file to the server as it is, so write out what the command did"
    )


def written_name(name: str) -> str:
    """A name as SQL would write it, for messages: quoted only when it must be
    (`"Odd Sch"."My Tab""le"`)."""
    return name if _PLAIN_NAME.fullmatch(name) else '"' + name.replace('"', '""') + '"'


# --------------------------------------------------------------------------- positions


@dataclass(frozen=True)
class Position:
    """1-based line and column (columns count characters; a tab is one)."""

    line: int
    column: int


def line_col(text: str, offset: int) -> Position:
    """Map a character offset to a 1-based line/column.

    ``\\n``, ``\\r\\n`` and a lone ``\\r`` each end a line, as in PostgreSQL's lexer
    (a ``--`` comment stops at either) and in psql's error positions, so a CRLF
    or a classic-Mac (CR-only) file numbers its lines as an editor does. Offsets
    past the end are clamped, because PostgreSQL reports "at end of input" one
    character beyond the text.
    """
    if "\r" in text:  # rare: off the common path
        return LineIndex(text).position(offset)
    offset = max(0, min(offset, len(text)))
    line_start = text.rfind("\n", 0, offset) + 1
    return Position(text.count("\n", 0, offset) + 1, offset - line_start + 1)


def line_text(text: str, line: int) -> str:
    """The text of 1-based ``line`` without its line ending; "" when out of range."""
    if "\r" in text:
        return LineIndex(text).line_text(line)
    if line < 1:
        return ""
    start = 0
    for _ in range(line - 1):
        start = text.find("\n", start) + 1
        if start == 0:
            return ""
    end = text.find("\n", start)
    return text[start:] if end == -1 else text[start:end]


_LINE_END = re.compile(r"\r\n?|\n")


class LineIndex:
    """Line starts of one text, for many offset lookups at O(log n) each.
    Line ends as in ``line_col``."""

    __slots__ = ("_starts", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        starts = [0]
        if "\r" in text:
            starts += [m.end() for m in _LINE_END.finditer(text)]
        else:
            find = text.find
            i = find("\n")
            while i != -1:
                starts.append(i + 1)
                i = find("\n", i + 1)
        self._starts = starts

    def position(self, offset: int) -> Position:
        offset = max(0, min(offset, len(self.text)))
        line = bisect.bisect_right(self._starts, offset)
        return Position(line, offset - self._starts[line - 1] + 1)

    def line_text(self, line: int) -> str:
        if not 1 <= line <= len(self._starts):
            return ""
        start = self._starts[line - 1]
        if line == len(self._starts):
            return self.text[start:]
        row = self.text[start : self._starts[line]]
        return row[:-2] if row.endswith("\r\n") else row[:-1]

    @property
    def line_count(self) -> int:
        return len(self._starts)


_EXCERPT_WIDTH = 160


def excerpt(text: str, line: int, context: int = 2, *, column: int | None = None) -> list[str]:
    """Numbered lines around ``line``, the bad one marked with ``>``.

    Plain text, so it reads the same in a log, a terminal or a test::

          11 | ALTER TABLE users
        > 12 |   ADD COLUMN emial text NOT NULL;
             |              ^

    The caret line is added only when ``column`` is given.
    """
    index = LineIndex(text)
    last = index.line_count
    if text.endswith(("\n", "\r")) and last > 1:
        last -= 1  # the empty "line" after a final newline is not worth showing
    line = max(1, min(line, last))
    first, stop = max(1, line - context), min(last, line + context)
    width = len(str(stop))
    out: list[str] = []
    for n in range(first, stop + 1):
        row = index.line_text(n)
        if len(row) > _EXCERPT_WIDTH:
            # A generated 50 KB line must not turn an error into 100 KB of output:
            # keep a window around the column (or the start).
            start = max(0, (column or 1) - 1 - _EXCERPT_WIDTH // 2) if n == line else 0
            start = min(start, max(0, len(row) - _EXCERPT_WIDTH))  # a full window at the end
            shown = row[start : start + _EXCERPT_WIDTH]
            if n == line and column is not None:
                column -= start - (1 if start else 0)
            more = "…" if start + _EXCERPT_WIDTH < len(row) else ""
            row = ("…" if start else "") + shown + more
        out.append(f"{'>' if n == line else ' '} {n:>{width}} | {row}".rstrip())
        if n == line and column is not None:
            out.append(f"  {'':>{width}} | {_caret_lead(row[: max(column - 1, 0)])}^")
    return out


def _caret_lead(before: str) -> str:
    """What puts the caret under the character after ``before`` on a terminal: tabs
    kept, two cells for a wide (CJK) character, none for a combining mark."""
    import unicodedata

    if before.isascii():
        return "".join(c if c == "\t" else " " for c in before)
    cells = []
    for c in before:
        if c == "\t":
            cells.append(c)
        elif unicodedata.combining(c):
            continue
        else:
            cells.append("  " if unicodedata.east_asian_width(c) in "WF" else " ")
    return "".join(cells)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Statement:
    """One top-level statement. ``text == file[start:end]``, no trailing ``;``.

    ``text`` runs from the statement's first token to its last one, so leading
    and trailing comments are not part of it (comments inside it are).
    """

    text: str
    start: int
    end: int
    line: int
    column: int

    def file_offset(self, position: int) -> int:
        """File offset of a 1-based server position within this statement's text."""
        return self.start + max(position, 1) - 1


@dataclass(frozen=True)
class Comment:
    """One comment. ``text`` has no ``--`` / ``/* */`` markers and no surrounding
    whitespace; CRLF inside a block comment reads as LF. ``file[start:end]`` is
    the raw comment including its markers."""

    text: str
    start: int
    end: int
    line: int
    block: bool
    column: int = 1


class SqlSyntaxError(LayoutError):
    """PostgreSQL's parser rejected the file (a layout error, exit 2).

    ``message`` is the parser's own wording; ``offset`` is a character offset
    into the file; ``line_text`` is the offending line, for display.
    """

    def __init__(self, message: str, offset: int, line: int, column: int, line_text: str) -> None:
        super().__init__(message)
        self.offset = offset
        self.line = line
        self.column = column
        self.line_text = line_text

    @property
    def one_line(self) -> str:
        """The message on one line: the parser quotes the offending token, which may
        hold a line break (an unterminated string)."""
        return self.message.replace("\r", "").replace("\n", "\\n")

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.message, self.offset, self.line, self.column, self.line_text))


@dataclass(frozen=True)
class SqlFile:
    """Everything vezamig needs from one file, from one scan and one parse.

    ``nodes[i]`` is the pglast ``RawStmt`` of ``statements[i]`` (a ``Skipped``, whose
    ``stmt`` is None, for a DML statement of ``analyze(lean=True)``): use it for the
    tree's shape and names; its string constants may have non-ASCII characters
    blanked (see ``_mask_literals``), so take text from ``statements``.
    When ``error`` is set, ``statements`` and ``nodes`` are empty; ``header`` is
    still filled from the tokens before the error, ``body`` from those the lexer
    read.
    """

    text: str
    statements: tuple[Statement, ...]
    header: tuple[Comment, ...]
    body: tuple[Comment, ...]
    first_token: int | None
    error: SqlSyntaxError | None
    nodes: tuple[RawStmt | Skipped, ...] = field(default=(), repr=False)
    lines: LineIndex = field(default_factory=lambda: LineIndex(""), repr=False, compare=False)


# --------------------------------------------------------------------------- analysis


def _syntax_error(text: str, lines: LineIndex, message: str, index: int | None) -> SqlSyntaxError:
    # pglast gives None when PostgreSQL points one past the end ("at end of
    # input"); show that just after the last SQL character, not on an empty line.
    offset = len(text.rstrip()) if index is None else index
    pos = lines.position(offset)
    return SqlSyntaxError(message, offset, pos.line, pos.column, lines.line_text(pos.line))


def _ascii_copy(sql: str) -> str:
    """Same tokens at the same offsets, in ASCII: see _scan."""
    return sql if sql.isascii() else _NON_ASCII.sub("q", sql)


def _scan(sql: str, lines: LineIndex) -> tuple[list[Any], SqlSyntaxError | None]:
    """Tokens of ``sql``; on a lexer error, the tokens before it and the error.

    pglast maps each UTF-8 byte offset back to a character with a linear search,
    which makes scanning non-ASCII text quadratic (seconds for a seed-data file).
    PostgreSQL lexes every byte >= 0x80 as an identifier character, and inside
    strings and comments any character will do, so a copy with each non-ASCII
    character replaced by ``q`` has the same tokens at the same character offsets,
    and scans in linear time. ``q`` because it means nothing after a backslash in
    an ``E'…'`` string (``x`` would turn ``E'\\éab'`` into the escape ``\\xab``)
    nor before a quote (``x'…'`` is a bit string). The one way that copy could lex
    differently (a dollar-quote tag that the substitution makes match) is checked
    for.
    """
    from pglast.parser import ParseError, scan

    text = _ascii_copy(sql)
    try:
        tokens = list(scan(text))
    except ParseError as exc:
        if text is not sql and _NON_ASCII_TAG.search(sql):
            return _scan_exact(sql, lines)  # the copy closed a `$é$` string elsewhere
        error = _first_error(sql, lines, *_error_args(exc))
    else:
        if text is sql or _same_dollar_quotes(sql, tokens):
            return tokens, None
        return _scan_exact(sql, lines)
    # The lexer stops at the first bad token; what comes before it still lexes,
    # so the header comments (directives) can be read from a broken file.
    try:
        return list(scan(text[: error.offset])), error
    except ParseError:
        return [], error


def _scan_exact(sql: str, lines: LineIndex) -> tuple[list[Any], SqlSyntaxError | None]:
    """Slow path: scan the original text (only for a substitution mismatch)."""
    from pglast.parser import ParseError, scan

    try:
        return list(scan(sql)), None
    except ParseError as exc:
        error = _first_error(sql, lines, *_error_args(exc))
    try:
        return list(scan(sql[: error.offset])), error
    except ParseError:
        return [], error


def _same_dollar_quotes(sql: str, tokens: list[Any]) -> bool:
    for tok in tokens:
        if tok.name == "SCONST" and sql[tok.start] == "$":
            seg = sql[tok.start : tok.end + 1]
            tag = seg[: seg.index("$", 1) + 1]
            if len(seg) < 2 * len(tag) or not seg.endswith(tag):
                return False
    return True


def _first_error(sql: str, lines: LineIndex, message: str, index: int | None) -> SqlSyntaxError:
    """The error PostgreSQL reports for ``sql``, worded from the original text.

    The parser is asked because a grammar error can come before a lexer error;
    a failing parse builds no nodes, so this is cheap. ``message``/``index`` is
    the fallback should the parser (unexpectedly) accept the text.
    """
    from pglast.parser import ParseError, parse_sql

    try:
        parse_sql(sql)
    except ParseError as exc:
        message, index = _error_args(exc)
    return _syntax_error(sql, lines, message, index)


def _mask_literals(sql: str, tokens: list[Any]) -> str:
    """``sql`` with non-ASCII characters in strings and comments blanked.

    Same length, same tokens, same tree shape, but (unless identifiers use
    non-ASCII letters) pure ASCII, so pglast's offset mapping stays linear.
    Dollar-quote tags are kept so the string still closes where it did.
    """
    pieces: list[str] = []
    pos = 0
    for tok in tokens:
        if tok.name not in _MASKABLE:
            continue
        start, end = tok.start, tok.end + 1
        seg = sql[start:end]
        if seg.isascii():
            continue
        if seg[0] == "$":
            n = seg.index("$", 1) + 1
            seg = seg[:n] + _NON_ASCII.sub(" ", seg[n:-n]) + seg[-n:]
        else:
            seg = _NON_ASCII.sub(" ", seg)
        pieces += (sql[pos:start], seg)
        pos = end
    pieces.append(sql[pos:])
    return "".join(pieces)


def _error_args(exc: Exception) -> tuple[str, int | None]:
    args = exc.args
    message = str(args[0]) if args else str(exc)
    index = args[1] if len(args) > 1 and isinstance(args[1], int) else None
    return message, index


def _comment(text: str, tok: Any, lines: LineIndex | _Lines) -> Comment:
    start, end = tok.start, tok.end + 1
    block = tok.name == "C_COMMENT"
    body = text[start + 2 : end - 2] if block else text[start + 2 : end]
    pos = lines.position(start)
    return Comment(body.replace("\r\n", "\n").strip(), start, end, pos.line, block, pos.column)


class _Tok(NamedTuple):
    start: int
    end: int  # exclusive
    semicolon: bool


def _classify(
    sql: str, tokens: list[Any], lines: LineIndex
) -> tuple[list[Comment], list[Comment], int | None, list[_Tok]]:
    """Header comments, body comments, first SQL token offset, SQL tokens.

    A stray ``;`` before the first statement does not end the header: it is
    an empty statement, not SQL.
    """
    header: list[Comment] = []
    body: list[Comment] = []
    first: int | None = None
    sql_tokens: list[_Tok] = []
    for tok in tokens:
        if tok.name in _COMMENT_TOKENS:
            (header if first is None else body).append(_comment(sql, tok, lines))
            continue
        semicolon = tok.name == _SEMICOLON
        if first is None and not semicolon:
            first = tok.start
        sql_tokens.append(_Tok(tok.start, tok.end + 1, semicolon))
    return header, body, first, sql_tokens


def analyze(sql: str, *, lean: bool = False) -> SqlFile:
    """Scan and parse one file with PostgreSQL's lexer and grammar. Never raises
    for bad SQL: a syntax error is returned in ``SqlFile.error``.

    ``lean``: build no syntax tree for ``INSERT``, ``UPDATE`` and ``DELETE``
    statements (their ``nodes`` entry is a ``Skipped``), which no check of
    vezamig's looks into; for the pieces of large files, where building the trees
    of 200,000 seed-data INSERTs took most of ``verify``'s time. The grammar still
    checks every statement.
    """
    from pglast.parser import ParseError, parse_sql

    lines = LineIndex(sql)
    tokens, error = _scan(sql, lines)

    header, body, first_token, sql_tokens = _classify(sql, tokens, lines)

    nodes: tuple[RawStmt | Skipped, ...] = ()
    statements: tuple[Statement, ...] = ()
    if error is None and first_token is not None:
        text = sql if sql.isascii() else _mask_literals(sql, tokens)
        found = _lean_nodes(text, sql_tokens) if lean and text.isascii() else None
        try:
            nodes = parse_sql(text) if found is None else found
        except ParseError as exc:
            error = _first_error(sql, lines, *_error_args(exc))
        else:
            statements = _statements(sql, nodes, sql_tokens, lines)
    return SqlFile(sql, statements, tuple(header), tuple(body), first_token, error, nodes, lines)


class Skipped(NamedTuple):
    """A statement ``analyze(lean=True)`` parsed without keeping its tree."""

    stmt: None
    stmt_location: int
    stmt_len: int


# First words of statements whose tree is always an InsertStmt, UpdateStmt or
# DeleteStmt: nothing vezamig checks (transaction control, COPY, the lint's DDL).
_TREELESS = frozenset({"insert", "update", "delete"})


def _lean_nodes(text: str, tokens: list[_Tok]) -> tuple[RawStmt | Skipped, ...] | None:
    """``analyze``'s nodes of an ASCII text without the trees of ``_TREELESS``
    statements; None when the text does not parse (the caller then parses it
    whole, so the error reads as always)."""
    from pglast.parser import ParseError, parse_sql, split

    try:
        # libpg_query's parser checks the grammar in C; only the cut is kept.
        slices = split(text, only_slices=True)
    except ParseError:
        return None
    starts = [t.start for t in tokens]
    nodes: list[RawStmt | Skipped] = []
    for part in slices:
        i = bisect.bisect_left(starts, part.start)
        while i < len(tokens) and tokens[i].semicolon:
            i += 1
        word = text[tokens[i].start : tokens[i].end].lower() if i < len(tokens) else ""
        if word in _TREELESS:
            nodes.append(Skipped(None, part.start, part.stop - part.start))
            continue
        try:
            (node,) = parse_sql(text[part])
        except (ParseError, ValueError):
            return None
        node.stmt_location, node.stmt_len = part.start, part.stop - part.start
        nodes.append(node)
    return tuple(nodes)


def _statements(
    sql: str, nodes: Sequence[RawStmt | Skipped], tokens: list[_Tok], lines: LineIndex
) -> tuple[Statement, ...]:
    """Cut the file at the parser's statement ends, trimmed to first/last token.

    The parser gives each statement's end (its ``;``) exactly; trimming with the
    scanner's tokens drops surrounding comments, whitespace and the ``;`` itself
    (also ``;;``), while a ``;`` inside ``CREATE RULE … DO (a; b)`` stays.
    """
    starts = [t.start for t in tokens]
    result: list[Statement] = []
    region_start = 0
    for node in nodes:
        loc = node.stmt_location or 0
        length = node.stmt_len or 0
        region_end = loc + length if length > 0 else len(sql)
        lo = bisect.bisect_left(starts, region_start)
        hi = bisect.bisect_left(starts, region_end)
        while lo < hi and tokens[lo].semicolon:
            lo += 1
        while hi > lo and tokens[hi - 1].semicolon:
            hi -= 1
        if lo < hi:
            start, end = tokens[lo].start, tokens[hi - 1].end
            pos = lines.position(start)
            result.append(Statement(sql[start:end], start, end, pos.line, pos.column))
        region_start = region_end
    return tuple(result)


class Word(NamedTuple):
    """A token of ``lexical_statements``: pglast's name for it (``COMMIT``, ``BEGIN_P``,
    ``IDENT``, ``SCONST``…) and its offset in the file."""

    name: str
    start: int


def lexical_statements(sql: str) -> list[list[Word]] | None:
    """The file's statements as PostgreSQL's lexer sees them: their tokens without
    comments, split at every `;`. For a file the grammar cannot parse (pglast's is
    newer than the server's: `system_user` is reserved in PostgreSQL 18, not 15), so
    a COMMIT in it is still found. None when the lexer rejects the file too (then so
    does the server's, and nothing in the file runs)."""
    from pglast.parser import ParseError, scan

    copy = _ascii_copy(sql)
    try:
        tokens = scan(copy)
    except ParseError:
        if copy is sql or not _NON_ASCII_TAG.search(sql):
            return None
        try:
            tokens = scan(sql)  # the copy closed a `$é$` string elsewhere: the slow way
        except ParseError:
            return None
    statements: list[list[Word]] = [[]]
    atomic = 0  # inside `BEGIN ATOMIC … END`: its `;` end no statement (CASE … END nests)
    previous = ""
    for tok in tokens:
        name = tok.name
        if name in _COMMENT_TOKENS:
            continue
        if atomic:
            atomic += 1 if name == "CASE" else -1 if name == "END_P" else 0
        elif name == "ATOMIC" and previous == "BEGIN_P":
            atomic = 1
        previous = name
        if name == _SEMICOLON and not atomic:
            if statements[-1]:
                statements.append([])
            continue
        statements[-1].append(Word(name, tok.start))
    return [words for words in statements if words]


class Piece(NamedTuple):
    """Part of a file, analysed: its statements' lines are ``line_base`` lines into the
    file (columns are the file's: a piece starts at the start of a line). ``whole``:
    the file analysed at once, which supersedes every piece before it."""

    line_base: int
    parsed: SqlFile
    whole: bool = False


def analyze_pieces(sql: str, size: int = LARGE_FILE) -> Iterator[Piece]:
    """``analyze`` in pieces of about ``size`` characters, for bounded memory: a 10 MB
    seed file's tokens and syntax trees take gigabytes at once.

    The pieces are cut at line starts between statements, where libpg_query's
    splitter ends one, so each is lexed and parsed exactly as within the file. When a
    piece does not parse (a syntax error, or a cut the grammar does not agree with,
    such as inside `BEGIN ATOMIC … END`), the whole file is analysed and yielded
    instead, with ``whole`` set: its error is the file's first, worded as always.
    A file smaller than ``size`` is one piece.
    """
    cuts = _cuts(sql, size) if len(sql) >= size else []
    if not cuts:
        yield Piece(0, analyze(sql), whole=True)
        return
    base = 0
    for start, stop in zip([0, *cuts], [*cuts, len(sql)], strict=True):
        parsed = analyze(sql[start:stop], lean=True)
        if parsed.error is not None:
            yield Piece(0, analyze(sql), whole=True)
            return
        yield Piece(base, parsed)
        base += parsed.lines.line_count - 1  # every piece but the last ends with "\n"


def _scanner_slices(sql: str) -> tuple[str, tuple[slice, ...]] | None:
    """The ASCII copy (see _scan) and libpg_query's scanner-based statement slices of
    it, for the large-file short cuts; None when in doubt (a non-ASCII dollar tag, a
    lexer error): the callers then take the long way."""
    from pglast.parser import ParseError, split

    if not sql.isascii() and _NON_ASCII_TAG.search(sql):
        return None
    text = _ascii_copy(sql)
    try:
        return text, tuple(split(text, with_parser=False, only_slices=True))
    except ParseError:
        return None


def _cuts(sql: str, size: int) -> list[int]:
    """Offsets just after a line end that follows a statement's end (and nothing but
    `;`, blanks or a line comment), about ``size`` apart; [] when in doubt."""
    found = _scanner_slices(sql)
    if found is None:
        return []
    text, slices = found
    cuts: list[int] = []
    last = 0
    for prev, nxt in itertools.pairwise(slices):
        if prev.stop - last < size:
            continue
        newline = text.find("\n", prev.stop, nxt.start)
        if newline == -1 or "/*" in text[prev.stop : newline]:
            continue  # same line as the next statement, or inside a block comment
        last = newline + 1
        cuts.append(last)
    return cuts


# --------------------------------------------------------------------------- views


def split_statements(sql: str) -> list[Statement]:
    """The file's statements, split by PostgreSQL's grammar; raises SqlSyntaxError."""
    parsed = analyze(sql)
    if parsed.error is not None:
        raise parsed.error
    return list(parsed.statements)


def syntax_check(sql: str) -> SqlSyntaxError | None:
    """PostgreSQL's parser's verdict on the whole file (None when it parses)."""
    return analyze(sql).error


class FileComments(NamedTuple):
    """Comments before the first SQL token (the header, where directives live),
    comments after it, that token's offset (None for a file without SQL), and a
    lexer error (unterminated quote or comment), with the comments before it."""

    header: list[Comment]
    body: list[Comment]
    first: int | None
    error: SqlSyntaxError | None


def file_comments(sql: str) -> FileComments:
    """Works on files with grammar errors (only the lexer is needed), and up to the
    error on a file the lexer rejects, so one run reports both."""
    lines = LineIndex(sql)
    tokens, error = _scan(sql, lines)
    header, body, first, _ = _classify(sql, tokens, lines)
    return FileComments(header, body, first, error)


# A header as most files write it: blank lines and lines of `--` comments, then a line
# that starts (after spaces or tabs) with a letter. Before any SQL, a `--` can only
# start a comment, which ends at the line break, and a letter can only start SQL (a
# keyword, a name, or a prefixed string such as E'…'): PostgreSQL's lexer reads such
# a header into the same comments, so reading it needs no lexer.
_PLAIN_HEADER_LINE = re.compile(r"([ \t]*)(?:--([^\n\r]*))?\n")
_BLANKS = re.compile(r"[ \t]*")


def plain_header_comments(sql: str) -> FileComments | None:
    """``directive_comments`` of a file whose header is plain (above) and whose body does
    not mention vezamig, without pglast (≈ 30 ms to import); None for any other file.

    The body is not lexed, so a lexer error in it (an unterminated string) is not
    seen: only for `status`, which runs nothing; the commands that run or check
    SQL read every file with the lexer.
    """
    header: list[Comment] = []
    pos, line = 0, 1
    match = _PLAIN_HEADER_LINE.match
    while (m := match(sql, pos)) is not None:
        if m.group(2) is not None:
            start = m.end(1)
            header.append(
                Comment(m.group(2).strip(), start, m.end() - 1, line, False, start - pos + 1)
            )
        pos, line = m.end(), line + 1
    blanks = _BLANKS.match(sql, pos)
    assert blanks is not None  # it matches the empty string
    first = blanks.end()
    if first >= len(sql) or not (sql[first].isascii() and sql[first].isalpha()):
        return None  # a block comment, a stray `;`, a CR, no SQL at all: the lexer decides
    if _MENTION.search(sql, first) is not None:
        return None  # a directive, or a look-alike, may sit in the body
    return FileComments(header, [], first, None)


def directive_comments(sql: str) -> FileComments:
    """What the directive reader needs: ``file_comments``, but of the body only the
    comments that mention vezamig (in any case; the others cannot be a directive or
    look like one).

    A large file is not lexed whole: the header is lexed from a prefix, and of the
    body only the statements (and the gaps between them) that mention vezamig,
    found with libpg_query's own statement splitter. Any doubt (a lexer error, a
    non-ASCII dollar-quote tag) takes the long way, whose answer is the same.
    """
    if len(sql) >= LARGE_FILE:
        quick = _directive_comments_quick(sql)
        if quick is not None:
            return quick
    found = file_comments(sql)
    body = [c for c in found.body if _MENTION.search(sql, c.start, c.end)]
    return found._replace(body=body)


class _Lines:
    """``LineIndex.position`` for a few offsets, without indexing a whole large file."""

    def __init__(self, text: str) -> None:
        self.text = text

    def position(self, offset: int) -> Position:
        return line_col(self.text, offset)


def _directive_comments_quick(sql: str) -> FileComments | None:
    from pglast.parser import ParseError, scan

    found = _scanner_slices(sql)
    if found is None:
        return None  # reported (a lexer error, with its position) by the long way
    text, slices = found
    lines = _Lines(sql)
    if not slices:
        return None  # comments only: small enough to lex whole in any case

    # The header: the comments before the first SQL token, lexed from a prefix long
    # enough that the first SQL token is not its (maybe cut) last token.
    header: list[Comment] = []
    first: int | None = None
    n = _PREFIX_SCAN
    while first is None:
        end = min(len(text), slices[0].start + n)
        try:
            tokens = scan(text[:end])
        except ParseError:
            tokens = []  # cut inside a string or comment: lex more
        sql_at = [  # a stray `;` does not end the header (see _classify)
            i for i, t in enumerate(tokens) if t.name not in _COMMENT_TOKENS | {_SEMICOLON}
        ]
        if sql_at and (sql_at[0] < len(tokens) - 1 or end == len(text)):
            first = tokens[sql_at[0]].start
            header = [
                _comment(sql, t, lines) for t in tokens[: sql_at[0]] if t.name in _COMMENT_TOKENS
            ]
        elif end == len(text):
            return None
        n *= 4

    # The body: each statement, and each gap between statements (empty statements,
    # trailing comments), is lexically whole; lex those that mention vezamig.
    body: list[Comment] = []
    regions: list[tuple[int, int]] = []
    pos = first
    for piece in slices:
        if piece.start > pos:
            regions.append((pos, piece.start))
        regions.append((max(pos, piece.start), piece.stop))
        pos = piece.stop
    regions.append((pos, len(text)))
    for start, stop in regions:
        if stop > start and _MENTION.search(sql, start, stop):
            for tok in scan(text[start:stop]):
                if tok.name in _COMMENT_TOKENS:
                    shifted = _Tok2(tok.start + start, tok.end + start, tok.name)
                    if _MENTION.search(sql, shifted.start, shifted.end + 1):
                        body.append(_comment(sql, shifted, lines))
    return FileComments(header, body, first, None)


class _Tok2(NamedTuple):
    """A pglast token moved to its offset in the whole file (``end`` inclusive)."""

    start: int
    end: int
    name: str


def header_and_body_comments(sql: str) -> tuple[list[Comment], list[Comment], int | None]:
    """``file_comments`` without the error: a lexer error raises SqlSyntaxError."""
    header, body, first, error = file_comments(sql)
    if error is not None:
        raise error
    return header, body, first


def statement_at(statements: Sequence[Statement], offset: int) -> Statement | None:
    """The statement a file offset falls in (or the last one starting before it,
    for an offset in trailing comments or at end of input); None before the first."""
    i = bisect.bisect_right([s.start for s in statements], offset)
    return statements[i - 1] if i else None


def offset_from_server_position(
    position: int | str | None, *, statement: Statement | None = None
) -> int | None:
    """Turn ``diag.statement_position`` (1-based characters, a string in psycopg)
    into a file offset: of the whole file when the file was sent as one query,
    or within ``statement`` when only that statement was sent."""
    if position is None or position == "":
        return None
    try:
        pos = int(position)
    except ValueError:
        return None
    if pos < 1:
        return None
    return statement.file_offset(pos) if statement is not None else pos - 1
