"""Schedule a job inside a SQLAlchemy 2 async transaction: the order and its job commit together.

Run it:  PGQUEUE_DSN=postgresql://… python -m examples.sqlalchemy_enqueue

``schedule(conn=)`` takes an asyncpg connection, and SQLAlchemy's ``postgresql+asyncpg``
dialect runs every statement on one: :func:`asyncpg_connection` reaches the connection
under an ``AsyncConnection`` (``session.connection()`` gives one for an ``AsyncSession``),
so the job's INSERT runs in the same transaction as SQLAlchemy's statements. On commit
the order and its job both exist, and the workers are woken then (PostgreSQL delivers
``NOTIFY`` on commit only); on rollback neither exists and no worker hears of the job.

The ``orders`` table lives in pgqueue's schema (``PGQUEUE_SCHEMA``) so that one schema holds
the whole example; an application keeps its tables wherever it likes.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import cast

import anyio
import asyncpg
from sqlalchemy import BigInteger, Boolean, Column, Identity, Integer, MetaData, Table, Text, false
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from pgqueue import Job, JobNotFound, Scheduler

DSN = os.environ.get("PGQUEUE_DSN", "postgresql://localhost/postgres")
SCHEMA = os.environ.get("PGQUEUE_SCHEMA", "pgqueue_sqlalchemy")

scheduler = Scheduler(DSN, schema=SCHEMA)
# The same server through SQLAlchemy's asyncpg dialect; it connects on first use.
engine = create_async_engine(make_url(DSN).set(drivername="postgresql+asyncpg"))

metadata = MetaData(schema=SCHEMA)
orders = Table(
    "orders",
    metadata,
    Column("id", BigInteger, Identity(), primary_key=True),
    Column("email", Text, nullable=False),
    Column("total_cents", Integer, nullable=False),
    Column("confirmed", Boolean, nullable=False, server_default=false()),
)


class PaymentDeclinedError(Exception):
    """Stands in for whatever makes an application give up an order half-way."""


async def asyncpg_connection(conn: AsyncConnection) -> asyncpg.Connection:
    """The asyncpg connection under ``conn``, with SQLAlchemy's transaction begun on it.

    SQLAlchemy's asyncpg dialect sends ``BEGIN`` lazily, with the first statement of the
    block: a job scheduled before any statement would otherwise commit on its own. A
    no-op statement through SQLAlchemy makes it send ``BEGIN`` now; it costs a round trip
    only when the block has run nothing yet.
    """
    raw = await conn.get_raw_connection()
    driver = cast("asyncpg.Connection", raw.driver_connection)
    if not driver.is_in_transaction():
        await conn.exec_driver_sql("SELECT 1")
    return driver


@scheduler.job("confirm_order", queue="orders")
async def confirm_order(job: Job) -> int:
    """Mark the order confirmed (a real shop would also send the e-mail here)."""
    order_id = int(job.params["order_id"])
    async with engine.begin() as conn:
        await conn.execute(sa_update(orders).where(orders.c.id == order_id).values(confirmed=True))
    return order_id


async def place_order(conn: AsyncConnection, email: str, total_cents: int) -> tuple[int, int]:
    """Write the order and schedule its confirmation inside the caller's transaction.

    Returns ``(order_id, job_id)``; both are real only once the caller's block commits.
    """
    inserted = await conn.execute(
        sa_insert(orders).values(email=email, total_cents=total_cents).returning(orders.c.id)
    )
    order_id = inserted.scalar_one()
    job_id = await scheduler.schedule(
        "confirm_order", {"order_id": order_id}, conn=await asyncpg_connection(conn)
    )
    return order_id, job_id


async def setup() -> None:
    """Create pgqueue's tables and the ``orders`` table (both idempotent)."""
    await scheduler.migrate()
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)


async def job_exists(job_id: int) -> bool:
    try:
        await scheduler.get_job(job_id)
    except JobNotFound:
        return False
    return True


async def main() -> int:
    await setup()
    async with engine.begin() as conn:
        order_id, job_id = await place_order(conn, "ada@example.com", 4200)
    print(f"Committed order {order_id} with its job {job_id}.")

    try:
        async with engine.begin() as conn:
            declined_order, declined_job = await place_order(conn, "bob@example.com", 990_000)
            raise PaymentDeclinedError(declined_order)  # noqa: TRY301 - the block's exit rolls back
    except PaymentDeclinedError:
        print(f"Rolled back order {declined_order} and its job {declined_job}.")

    worker = scheduler.worker(queues=["orders"], concurrency=2)
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run)
        done = await scheduler.wait(job_id, timeout=30)
        await worker.shutdown()
    declined_exists = await job_exists(declined_job)
    print(f"Job {declined_job} exists: {declined_exists}.")
    async with engine.connect() as conn:
        rows = (await conn.execute(sa_select(orders.c.id, orders.c.confirmed).order_by(orders.c.id))).all()
    await engine.dispose()
    await scheduler.close()

    mine = {row.id: row.confirmed for row in rows if row.id in (order_id, declined_order)}
    print(f"Job {job_id}: {done.state}; orders stored (id: confirmed): {mine}.")
    ok = done.state == "succeeded" and mine == {order_id: True} and not declined_exists
    print("Example finished." if ok else "Something is off.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
