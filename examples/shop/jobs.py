"""The shop's background jobs: an order sends a confirmation, then ships once it has been sent.

The application owns one Scheduler, built from its settings and used everywhere; its
tests swap the backend under it (``tests/conftest.py``), so this module never changes for
them. The pool connects on first use, so importing the module needs no database.
"""

from __future__ import annotations

import os

from pydantic import BaseModel

from pgqueue import Cancel, Job, LinearBackoff, Scheduler

scheduler = Scheduler(os.environ.get("SHOP_DSN", "postgresql://localhost/shop"), schema="shop")

OUTBOX: list[str] = []  # what the confirmation "sends"


def deliver(line: str) -> None:
    """Send a mail (a real shop calls its mail API here; tests replace it)."""
    OUTBOX.append(line)


class Confirmation(BaseModel):
    order_id: int
    email: str


@scheduler.job("send_confirmation", queue="mail", params=Confirmation, retry=LinearBackoff(3, 30.0))
async def send_confirmation(job: Job) -> str:
    confirmation: Confirmation = job.params
    if confirmation.email.endswith(".invalid"):
        raise Cancel(f"no mailbox for order {confirmation.order_id}")
    deliver(f"order {confirmation.order_id} confirmed to {confirmation.email}")
    return "sent"


@scheduler.job("ship", queue="warehouse")
async def ship(job: Job) -> dict[str, object]:
    await job.set_progress(0.5, "packed")
    return {"shipped": job.params["order_id"]}


async def place_order(order_id: int, email: str) -> tuple[int, int]:
    """What the checkout endpoint calls: the confirmation, and the shipping that waits for it."""
    confirm = await scheduler.schedule("send_confirmation", {"order_id": order_id, "email": email})
    shipping = await scheduler.schedule("ship", {"order_id": order_id}, depends_on=[confirm])
    return confirm, shipping
