"""A pgqueue worker in plain Python over the HTTP pull API: an HTTP client and nothing else.

It imports no pgqueue: it is the model for a worker in another language, on another host.
The loop is four calls of the dashboard's JSON API (README, "The pull API over HTTP"):

    POST /api/dequeue                  long-poll for a job: 200 {"leases": [...]}, or 204
    POST /api/leases/{token}/heartbeat keep the lease while the work takes long
    POST /api/leases/{token}/finish    {"result": ...}: the job succeeded
    POST /api/leases/{token}/fail      {"error": "..."}: the job's retry policy decides

A 409 from finish or fail means the lease was lost (it expired and the job went to someone
else, or the job was cancelled): the work does not count, and the worker moves on.

Run it against ``pgqueue dashboard --token ... --app yourapp:scheduler`` (the served
scheduler declares the job types: ``scheduler.declare("add")``, or registers handlers):

    PGQUEUE_URL=http://127.0.0.1:8080 PGQUEUE_TOKEN=... python examples/http_worker.py

The HTTP client is httpx2, httpx's maintained fork with the same API (pgqueue's tests
install it); with httpx installed, ``import httpx`` works unchanged.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import httpx2 as httpx

JSON = Any  # decoded JSON: a dict, list, str, number, bool or None
Lease = dict[str, Any]  # {"token", "id", "type", "queue", "params", "attempt", "expires_at", ...}
Handler = Callable[[JSON], JSON]
"""A job's code: its params in, its result out."""

WAIT_S = 30.0  # the server's long-poll per dequeue (60 at most)
LEASE_S = 30.0  # the lease lasts this long without a heartbeat...
BEAT_S = LEASE_S / 3  # ...and is renewed this often while a handler runs
RETRY_S = 3.0  # after a transport or server error
JSON_BODY = {"Content-Type": "application/json"}


def connect(url: str, token: str | None) -> httpx.Client:
    """A client on the dashboard at ``url``, its read timeout longer than a long-poll."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = httpx.Timeout(10.0, read=WAIT_S + 10.0)
    return httpx.Client(base_url=url.rstrip("/") + "/api", headers=headers, timeout=timeout)


def dequeue(
    client: httpx.Client, types: Sequence[str], queues: Sequence[str] | None, wait: float
) -> Lease | None:
    """One lease of one of ``types``, waiting up to ``wait`` seconds; None when none came."""
    body = {"types": list(types), "queues": queues, "timeout": wait, "lease": LEASE_S}
    r = client.post("/dequeue", json=body)
    if r.status_code == httpx.codes.NO_CONTENT:
        return None
    r.raise_for_status()
    lease: Lease = r.json()["leases"][0]
    return lease


@contextlib.contextmanager
def heartbeating(client: httpx.Client, token: str) -> Iterator[None]:
    """Renew the lease every ``BEAT_S`` in a thread while the block runs (short jobs: never)."""
    done = threading.Event()

    def beat() -> None:
        while not done.wait(BEAT_S):
            try:
                r = client.post(f"/leases/{token}/heartbeat", json={"lease": LEASE_S})
            except httpx.TransportError:
                continue  # the next beat may get through before the lease ends
            if r.status_code == httpx.codes.CONFLICT:  # lost, or cancelled: finish/fail will say
                return

    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def run_one(client: httpx.Client, lease: Lease, handlers: Mapping[str, Handler]) -> str:
    """Run one leased job and report it: ``succeeded``, ``failed``, or the 409's error code."""
    token = lease["token"]
    with heartbeating(client, token):
        try:
            body = json.dumps({"result": handlers[lease["type"]](lease["params"])})
        except Exception as exc:  # noqa: BLE001 - any error of the job (or of its result) is its failure
            r = client.post(f"/leases/{token}/fail", json={"error": f"{type(exc).__name__}: {exc}"})
            outcome = "failed"
        else:
            r = client.post(f"/leases/{token}/finish", content=body, headers=JSON_BODY)
            outcome = "succeeded"
    if r.status_code == httpx.codes.CONFLICT:
        return str(r.json()["error"])  # lease_lost or job_cancelled: the work does not count
    r.raise_for_status()
    return outcome


def work(
    client: httpx.Client,
    handlers: Mapping[str, Handler],
    *,
    queues: Sequence[str] | None = None,
    wait: float = WAIT_S,
    stop: threading.Event | None = None,
) -> None:
    """Dequeue and run jobs of the ``handlers``' types until ``stop`` is set.

    A set ``stop`` is seen between jobs and after a long-poll, so the loop ends within
    ``wait`` seconds. A server that cannot be reached, or answers with a server error (503
    while its database is down), is retried every few seconds; a lease in hand then expires
    and its job runs again.
    """
    stop = stop or threading.Event()
    types = sorted(handlers)
    while not stop.is_set():
        try:
            lease = dequeue(client, types, queues, wait)
            if lease is not None:
                print(f"job {lease['id']} ({lease['type']}): {run_one(client, lease, handlers)}")
        except httpx.TransportError as exc:
            print(f"server unreachable ({exc}); trying again")
            stop.wait(RETRY_S)
        except httpx.HTTPStatusError as exc:
            if exc.response.status_code < httpx.codes.INTERNAL_SERVER_ERROR:
                raise  # a 4xx is this worker's mistake (a bad token, a bad body): stop and say so
            print(f"server error {exc.response.status_code}; trying again")
            stop.wait(RETRY_S)


def add(params: JSON) -> JSON:
    """An example job: the sum of ``params["a"]`` and ``params["b"]``."""
    return params["a"] + params["b"]


def slow(params: JSON) -> JSON:
    """An example job that outlasts its lease: the heartbeats keep it."""
    time.sleep(float(params["seconds"]))
    return {"slept": params["seconds"]}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default=os.environ.get("PGQUEUE_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--token", default=os.environ.get("PGQUEUE_TOKEN"), help="or PGQUEUE_TOKEN")
    parser.add_argument("--queue", action="append", dest="queues", help="a queue to take jobs from (repeat)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # finish the job in hand, then exit
    # Ctrl-C: a lease in hand expires, and its job runs again elsewhere.
    with connect(args.url, args.token) as client, contextlib.suppress(KeyboardInterrupt):
        work(client, {"add": add, "slow": slow}, queues=args.queues, stop=stop)


if __name__ == "__main__":
    main()
