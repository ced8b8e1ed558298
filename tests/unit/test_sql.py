"""Named SQL: the parser, the loaded QUERIES, schema substitution, and the store using every query."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest

import pgqueue._store
from pgqueue._sql import QUERIES, SCHEMA_TOKEN, Queries, parse_queries, quote_ident

STORE_SOURCE = Path(pgqueue._store.__file__).read_text(encoding="utf-8")


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


def test_queries_has_exactly_the_declared_names() -> None:
    assert isinstance(QUERIES, Queries)
    assert tuple(f.name for f in dataclasses.fields(QUERIES)) == Queries.names()
    assert len(set(Queries.names())) == len(Queries.names())
    for name in Queries.names():
        body = getattr(QUERIES, name)
        assert isinstance(body, str)
        assert body.strip(), name
        assert not body.rstrip().endswith(";"), name


def test_queries_sql_file_matches_queries() -> None:
    text = (Path(pgqueue._store.__file__).parent / "queries.sql").read_text(encoding="utf-8")
    assert tuple(parse_queries(text)) == Queries.names()


def _store_query_uses(source: str) -> set[str]:
    """Names read as ``self.q.<name>``, or ``q.<name>`` where ``q = self.q``."""
    tree = ast.parse(source)

    def is_self_q(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Attribute)
            and node.attr == "q"
            and isinstance(node.value, ast.Name)
            and node.value.id == "self"
        )

    aliases = {
        target.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and is_self_q(node.value)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    return {
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and (is_self_q(node.value) or (isinstance(node.value, ast.Name) and node.value.id in aliases))
    }


def test_store_uses_every_query() -> None:
    used = _store_query_uses(STORE_SOURCE)
    assert set(Queries.names()) - used == set()
    assert used - set(Queries.names()) == set()  # and nothing that is not a query


def test_query_use_finder_sees_both_spellings() -> None:
    src = "class S:\n    def f(self):\n        q = self.q\n        self.q.a\n        q.b\n        other.c\n"
    assert _store_query_uses(src) == {"a", "b"}


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
