"""A FastAPI app: orders scheduled inside the request's transaction, a worker, the dashboard.

Run it:  PGQUEUE_DSN=postgresql://… uvicorn examples.fastapi_app:app
Then:    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
              -d '{"email": "ada@example.com", "sku": "tea", "quantity": 2}'
         curl localhost:8000/orders/1          # the order and its job's state
         open http://localhost:8000/jobs/      # pgqueue's dashboard

- The worker runs in the lifespan's task group beside the server: ``tg.start`` returns
  once it has registered. The lifespan migrates first, so a database that cannot be
  reached fails the startup there (a worker that loses its database later keeps
  retrying). The lifespan's exit shuts it down gracefully (running jobs finish, their
  results are written).
- ``POST /orders`` writes the order, schedules its confirmation with ``conn=`` and takes
  the stock, all in one transaction. The job is scheduled before the stock is taken on
  purpose: when the stock runs out, the rollback takes the order and the job back
  together, and no worker ever sees the job.
- The app talks to PostgreSQL through its own asyncpg pool, not SQLAlchemy: ``conn=``
  takes an asyncpg connection as it is, so the request's transaction needs no adapter
  (``examples/sqlalchemy_enqueue.py`` shows the SQLAlchemy way). The scheduler keeps a
  pool of its own for the worker's claims and LISTEN.
- The transaction is a dependency with ``scope="function"``: it commits before the
  response is sent, so a client that reads ``201`` can already read the order. (With
  FastAPI's default scope, the commit runs after the response has gone out.)
- The dashboard is mounted at ``/jobs``. It is open to whoever reaches the app here;
  give ``create_app`` a ``token=`` (or ``read_only=True``) before serving it publicly.

The tables live in pgqueue's schema (``PGQUEUE_SCHEMA``, through the pool's
``search_path``) so that one schema holds the whole example.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import anyio
import asyncpg
from asyncpg.pool import PoolConnectionProxy
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel, Field

from pgqueue import Job, LinearBackoff, Scheduler
from pgqueue.web import create_app

DSN = os.environ["PGQUEUE_DSN"]
SCHEMA = os.environ.get("PGQUEUE_SCHEMA", "pgqueue")

scheduler = Scheduler(DSN, schema=SCHEMA)
OUTBOX: list[str] = []  # stands in for an e-mail provider

CREATE_TABLES = """
CREATE TABLE IF NOT EXISTS products (
    sku text PRIMARY KEY,
    stock integer NOT NULL CHECK (stock >= 0)
);
CREATE TABLE IF NOT EXISTS orders (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email text NOT NULL,
    sku text NOT NULL REFERENCES products,
    quantity integer NOT NULL,
    job_id bigint
);
INSERT INTO products (sku, stock) VALUES ('tea', 100), ('teapot', 1) ON CONFLICT DO NOTHING;
"""
INSERT_ORDER = "INSERT INTO orders (email, sku, quantity) VALUES ($1, $2, $3) RETURNING id"
SET_ORDER_JOB = "UPDATE orders SET job_id = $2 WHERE id = $1"
TAKE_STOCK = "UPDATE products SET stock = stock - $2 WHERE sku = $1"
GET_ORDER = "SELECT id, email, sku, quantity, job_id FROM orders WHERE id = $1"


@scheduler.job("confirm_order", queue="orders", retry=LinearBackoff(max_retries=5, base_delay=2.0))
async def confirm_order(job: Job) -> dict[str, object]:
    OUTBOX.append(f"order {job.params['order_id']} confirmed to {job.params['email']}")
    return {"sent_to": job.params["email"]}


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    await scheduler.migrate()
    async with asyncpg.create_pool(DSN, min_size=1, server_settings={"search_path": SCHEMA}) as pool:
        await pool.execute(CREATE_TABLES)
        app.state.pool = pool
        worker = scheduler.worker(queues=["orders"], concurrency=10)
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            yield
            await worker.shutdown()
    await scheduler.close()


async def transaction(request: Request) -> AsyncIterator[PoolConnectionProxy]:
    """A pool connection inside a transaction: committed when the endpoint returns, else rolled back."""
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn, conn.transaction():
        yield conn


Transaction = Annotated[PoolConnectionProxy, Depends(transaction, scope="function")]


class NewOrder(BaseModel):
    email: str = Field(pattern=r"^[^@\s]+@[^@\s]+$")
    sku: str
    quantity: int = Field(gt=0)


class PlacedOrder(BaseModel):
    id: int
    job_id: int


class OrderView(BaseModel):
    id: int
    email: str
    sku: str
    quantity: int
    job_id: int
    job_state: str
    job_result: object


app = FastAPI(title="pgqueue FastAPI example", lifespan=lifespan)
app.mount("/jobs", create_app(scheduler))


@app.post("/orders", status_code=201)
async def place_order(order: NewOrder, conn: Transaction) -> PlacedOrder:
    try:
        order_id: int = await conn.fetchval(INSERT_ORDER, order.email, order.sku, order.quantity)
    except asyncpg.ForeignKeyViolationError:
        raise HTTPException(422, f"no product {order.sku!r}") from None
    job_id = await scheduler.schedule(
        "confirm_order", {"order_id": order_id, "email": order.email}, conn=conn
    )
    await conn.execute(SET_ORDER_JOB, order_id, job_id)
    try:
        await conn.execute(TAKE_STOCK, order.sku, order.quantity)
    except asyncpg.CheckViolationError:
        raise HTTPException(409, f"not enough {order.sku!r} in stock") from None
    return PlacedOrder(id=order_id, job_id=job_id)


@app.get("/orders/{order_id}")
async def get_order(order_id: int, request: Request) -> OrderView:
    pool: asyncpg.Pool = request.app.state.pool
    row = await pool.fetchrow(GET_ORDER, order_id)
    if row is None:
        raise HTTPException(404, f"no order {order_id}")
    job = await scheduler.get_job(row["job_id"])
    return OrderView(**dict(row), job_state=job.state, job_result=job.result)
