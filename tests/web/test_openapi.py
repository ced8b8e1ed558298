"""The OpenAPI document: valid JSON of the 3.1 shape, and exactly the app's API routes.

Routes and document are written separately (see ``openapi.py``), so this test is what keeps
them together: every route and method of the app's ``/api`` mount is described, nothing
else is, every ``$ref`` resolves, and every path parameter is declared.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx2
import orjson
import pytest
from starlette.routing import Mount, Route

from pgqueue import Scheduler
from pgqueue.web import create_app
from pgqueue.web.openapi import ERROR_STATUSES, document

pytestmark = pytest.mark.pg

_METHODS = {"get", "post", "put", "patch", "delete"}


def _api_routes(scheduler: Scheduler) -> set[tuple[str, str]]:
    """(path relative to /api, method) of every route the app mounts under /api."""
    app = create_app(scheduler)
    mounts = [r for r in app.routes if isinstance(r, Mount) and r.path == "/api"]
    assert len(mounts) == 1
    found: set[tuple[str, str]] = set()
    for route in mounts[0].routes:
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":  # Starlette adds HEAD to every GET
                found.add((route.path, method.lower()))
    return found


def _expand(path: str) -> set[str]:
    """``/jobs/{job_id}/{action}`` is four documented paths, one per action."""
    if path.endswith("/{action}"):
        return {path.replace("{action}", a) for a in ("cancel", "retry", "suspend", "resume")}
    return {path}


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                assert isinstance(value, str)
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_every_api_route_and_method_is_documented_and_nothing_else(scheduler: Scheduler) -> None:
    routes = {(p, m) for path, m in _api_routes(scheduler) for p in _expand(path)}
    doc = document()
    documented = {(path, m) for path, ops in doc["paths"].items() for m in ops if m in _METHODS}
    assert documented == routes


def test_the_document_has_the_openapi_3_1_shape() -> None:
    doc = orjson.loads(orjson.dumps(document()))  # JSON through and through
    assert doc["openapi"].startswith("3.1.")
    assert doc["info"]["title"]
    assert doc["info"]["version"]
    op_ids: list[str] = []
    for path, ops in doc["paths"].items():
        assert path.startswith("/")
        declared = set(re.findall(r"{(\w+)}", path))
        for method, op in ops.items():
            assert method in _METHODS
            op_ids.append(op["operationId"])
            assert op["responses"], (path, method)
            assert all(re.fullmatch(r"[1-5]\d\d", status) for status in op["responses"])
            assert "401" in op["responses"]  # any route may meet a token
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == declared, (path, method)
            if method in {"post", "delete"}:
                assert {"403"} <= set(op["responses"]), (path, method)  # read-only
    assert len(op_ids) == len(set(op_ids))
    for ref in set(_refs(doc)):
        node: object = doc
        assert ref.startswith("#/")
        for part in ref[2:].split("/"):
            assert isinstance(node, dict)
            assert part in node, ref
            node = node[part]
    assert set(doc["components"]["responses"]) == {f"E{s}" for s in ERROR_STATUSES}


async def test_the_app_serves_it(client: httpx2.AsyncClient) -> None:
    r = await client.get("/api/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == orjson.loads(orjson.dumps(document("/api")))
