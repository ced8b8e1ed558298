"""Named SQL: the parser, the queries/*.sql files, schema substitution, and the package using every query."""

from __future__ import annotations

import ast
import importlib.resources
import re
from pathlib import Path

import pytest

import pgqueue
from pgqueue.store.postgres.queries import QUERIES, SCHEMA_TOKEN, Queries, parse_queries, quote_ident

PACKAGE_DIR = Path(pgqueue.__file__).resolve().parent
QUERY_FILES = sorted((PACKAGE_DIR / "store" / "postgres" / "queries").glob("*.sql"))
QUERIES_SQL = "\n".join(path.read_text(encoding="utf-8") for path in QUERY_FILES)


# -- parse_queries -----------------------------------------------------------------------


def test_parses_names_and_bodies() -> None:
    text = """\
-- file header, ignored before the first name
SELECT 'not a query';

-- name: thing_get
-- why: because
-- params: $1 id bigint
SELECT a, b
FROM t
WHERE id = $1;

--name:thing_delete_many
DELETE FROM t WHERE id = ANY($1::bigint[]);
"""
    assert parse_queries(text) == {
        "thing_get": "SELECT a, b\nFROM t\nWHERE id = $1",
        "thing_delete_many": "DELETE FROM t WHERE id = ANY($1::bigint[])",
    }


def test_drops_comment_lines_inside_a_body_but_keeps_code() -> None:
    text = """\
-- name: q
SELECT 1,
    -- an indented comment line
    2
-- a comment at the end
;
"""
    assert parse_queries(text) == {"q": "SELECT 1,\n    2"}


def test_strips_trailing_semicolons_and_whitespace() -> None:
    assert parse_queries("-- name: q\n  SELECT 1;;  \n\n") == {"q": "SELECT 1"}


def test_keeps_declaration_order() -> None:
    text = "-- name: b\nSELECT 2;\n-- name: a\nSELECT 1;\n-- name: c\nSELECT 3;\n"
    assert list(parse_queries(text)) == ["b", "a", "c"]


def test_empty_text_gives_no_queries() -> None:
    assert parse_queries("") == {}
    assert parse_queries("-- just a comment\n") == {}


@pytest.mark.parametrize(
    "text",
    [
        "-- name: q\nSELECT 1;\n-- name: q\nSELECT 2;\n",
        "-- name: q\nSELECT 1;\n-- name: other\nSELECT 2;\n-- name: q\nSELECT 3;\n",
    ],
)
def test_duplicate_name_raises(text: str) -> None:
    with pytest.raises(ValueError, match="duplicate"):
        parse_queries(text)


@pytest.mark.parametrize(
    "text",
    [
        "-- name: empty\n-- why: nothing below\n-- name: full\nSELECT 1;\n",
        "-- name: full\nSELECT 1;\n-- name: empty\n",
        "-- name: empty\n;\n",
        "-- name: empty\n   \n-- only comments\n",
    ],
)
def test_name_with_empty_body_raises(text: str) -> None:
    with pytest.raises(ValueError, match="'empty'"):
        parse_queries(text)


# -- QUERIES and the store ---------------------------------------------------------------


def test_every_name_line_in_queries_sql_is_a_query() -> None:
    """Looser than the parser on purpose: a ``-- name:`` line the parser does not take for a
    name (a dash or a typo in it) would silently glue its SQL onto the query above."""
    declared = re.findall(r"^\s*--\s*name\s*:\s*(.*?)\s*$", QUERIES_SQL, flags=re.MULTILINE)
    assert sorted(declared) == sorted(Queries.names())


def test_the_query_files_match_queries() -> None:
    parsed = [name for path in QUERY_FILES for name in parse_queries(path.read_text(encoding="utf-8"))]
    assert sorted(parsed) == sorted(Queries.names())  # each name once, in one file
    assert {path.stem for path in QUERY_FILES} == {
        "jobs",
        "runs",
        "workers",
        "listen",
        "maintenance",
        "migrations",
        "limits",
        "periodic",
        "retention",
        "pull",
    }


def test_a_name_defined_in_two_files_fails_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgqueue.store.postgres import queries

    (tmp_path / "queries").mkdir()
    for name in ("a.sql", "b.sql"):
        (tmp_path / "queries" / name).write_text("-- name: job_insert\n-- why: x\nSELECT 1;\n")
    monkeypatch.setattr(importlib.resources, "files", lambda _package: tmp_path)
    with pytest.raises(ValueError, match="defined in two files"):
        queries.load_files()


def test_every_query_says_why_right_after_its_name() -> None:
    lines = QUERIES_SQL.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^--\s*name:", line):
            assert re.match(r"^--\s*why:\s*\S", lines[i + 1]), line


@pytest.mark.parametrize("name", Queries.names())
def test_each_query_is_one_statement(name: str) -> None:
    """One statement per name: asyncpg prepares each with its parameters, which a second
    statement in the same string would break (a lost ``-- name:`` line glues two together)."""
    body = getattr(QUERIES, name)
    code = re.sub(r"'(?:[^']|'')*'", "''", body)  # a ';' inside a string literal is text
    assert ";" not in code, name


def _query_uses(source: str) -> set[str]:
    """Names read as ``<x>.q.<name>`` (``self.q``, ``store.q``...), or ``q.<name>`` where ``q = <x>.q``."""
    tree = ast.parse(source)

    def is_q(node: ast.AST) -> bool:
        return isinstance(node, ast.Attribute) and node.attr == "q"

    aliases = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and is_q(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and (is_q(node.value) or (isinstance(node.value, ast.Name) and node.value.id in aliases))
    }


def _query_readers() -> dict[str, set[str]]:
    """Every module under pgqueue/ that reads queries off a ``.q`` attribute, with what it reads.

    Found by content, not by name, so the test follows the store wherever it moves.
    """
    readers: dict[str, set[str]] = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        used = _query_uses(path.read_text(encoding="utf-8"))
        if used:
            readers[str(path.relative_to(PACKAGE_DIR))] = used
    return readers


def test_the_package_uses_every_query_and_nothing_else() -> None:
    readers = _query_readers()
    assert readers, "no module under pgqueue/ reads a query through `.q.`"
    used = set().union(*readers.values())
    assert set(Queries.names()) - used == set()  # no query left unused
    assert used - set(Queries.names()) == set(), readers  # and nothing read that is not a query


def test_query_use_finder_sees_every_spelling() -> None:
    src = (
        "class S:\n    def f(self, store):\n        q = self.q\n        self.q.a\n        q.b\n"
        "        store.q.c\n        other.d\n"
    )
    assert _query_uses(src) == {"a", "b", "c"}


# -- schema substitution -----------------------------------------------------------------


def test_for_schema_replaces_the_token_with_a_quoted_identifier() -> None:
    q = QUERIES.for_schema("my_schema")
    assert any(SCHEMA_TOKEN in getattr(QUERIES, n) for n in Queries.names())
    for name in Queries.names():
        body = getattr(q, name)
        assert "{schema}" not in body, name
        assert body == getattr(QUERIES, name).replace("{schema}", '"my_schema"')
    assert '"my_schema".jobs' in q.job_claim_many


def test_for_schema_quotes_awkward_names() -> None:
    q = QUERIES.for_schema('we"ird Name')
    assert '"we""ird Name".jobs' in q.job_claim_many
    assert "{schema}" not in q.job_claim_many


def test_for_schema_leaves_the_original_alone() -> None:
    before = QUERIES.job_claim_many
    QUERIES.for_schema("x")
    assert QUERIES.job_claim_many == before
    assert "{schema}" in before


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("plain", '"plain"'),
        ("Mixed Case", '"Mixed Case"'),
        ('a"b', '"a""b"'),
        ('""', '""""""'),
        ("ünï", '"ünï"'),
    ],
)
def test_quote_ident(name: str, quoted: str) -> None:
    assert quote_ident(name) == quoted


@pytest.mark.parametrize("name", ["", "a\x00b", "\x00"])
def test_quote_ident_rejects_empty_and_nul(name: str) -> None:
    with pytest.raises(ValueError, match="invalid SQL identifier"):
        quote_ident(name)
