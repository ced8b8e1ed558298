"""The shop's own tests, once on the in-memory backend and once on a real PostgreSQL."""

from __future__ import annotations

import pytest

from examples.shop import jobs
from pgqueue import JobState, Outcome, ParamsValidationError, Scheduler
from pgqueue.testing import advance, assert_scheduled, drain, refute_scheduled, run_job


@pytest.fixture(params=["memory", "postgres"])
def shop(request: pytest.FixtureRequest) -> Scheduler:
    """The shop's scheduler on each backend: the same tests, both ways."""
    name = "pgqueue_scheduler" if request.param == "memory" else "pgqueue_pg_scheduler"
    scheduler: Scheduler = request.getfixturevalue(name)
    return scheduler


async def test_placing_an_order_schedules_the_confirmation_and_the_shipping(shop: Scheduler) -> None:
    assert shop is jobs.scheduler
    confirm, shipping = await jobs.place_order(7, "ann@example.com")
    await assert_scheduled(shop, type="send_confirmation", params={"order_id": 7}, queue="mail", count=1)
    [waiting] = await assert_scheduled(shop, type="ship", params={"order_id": 7})
    assert (waiting.id, waiting.state, waiting.depends_on) == (shipping, JobState.WAITING, (confirm,))
    await refute_scheduled(shop, type="ship", params={"order_id": 8})


async def test_an_order_is_confirmed_then_shipped(shop: Scheduler) -> None:
    confirm, shipping = await jobs.place_order(1, "bob@example.com")
    runs = await drain(shop)
    assert [(r.job_id, r.outcome) for r in runs] == [
        (confirm, Outcome.SUCCEEDED),
        (shipping, Outcome.SUCCEEDED),
    ]
    assert jobs.OUTBOX == ["order 1 confirmed to bob@example.com"]
    assert (await shop.get_job(shipping)).result == {"shipped": 1}


async def test_an_unreachable_customer_cancels_the_shipping_too(shop: Scheduler) -> None:
    confirm, shipping = await jobs.place_order(2, "eve@example.invalid")
    await drain(shop)
    assert (await shop.get_job(confirm)).state is JobState.CANCELLED
    shipped = await shop.get_job(shipping)
    assert shipped.state is JobState.CANCELLED
    assert shipped.runs[-1].error == f"dependency {confirm} was cancelled"
    assert jobs.OUTBOX == []


async def test_bad_order_params_are_refused_before_anything_is_stored(shop: Scheduler) -> None:
    with pytest.raises(ParamsValidationError, match="order_id"):
        await shop.schedule("send_confirmation", {"order_id": "seven", "email": "x@example.com"})
    await refute_scheduled(shop)


async def test_a_failed_send_is_retried_after_its_backoff(
    pgqueue_scheduler: Scheduler, monkeypatch: pytest.MonkeyPatch
) -> None:
    """In memory only: the test moves the backend's clock past the 30 s backoff."""
    attempts: list[str] = []

    def mail_server_down_once(line: str) -> None:
        attempts.append(line)
        if len(attempts) == 1:
            raise ConnectionError("mail server down")
        jobs.OUTBOX.append(line)

    monkeypatch.setattr(jobs, "deliver", mail_server_down_once)
    confirm, _ = await jobs.place_order(3, "cy@example.com")
    first = await drain(pgqueue_scheduler)
    assert [(r.outcome, r.again) for r in first] == [(Outcome.FAILED, True)]
    assert (await pgqueue_scheduler.get_job(confirm)).state is JobState.SCHEDULED
    assert await drain(pgqueue_scheduler) == []  # not due yet
    advance(pgqueue_scheduler, 30)
    second = await drain(pgqueue_scheduler)
    assert [r.outcome for r in second] == [Outcome.SUCCEEDED, Outcome.SUCCEEDED]
    assert jobs.OUTBOX == ["order 3 confirmed to cy@example.com"]


async def test_the_handler_alone_with_run_job() -> None:
    outcome = await run_job(jobs.ship, {"order_id": 9})
    assert (outcome.outcome, outcome.result) == (Outcome.SUCCEEDED, {"shipped": 9})
    assert outcome.progress == ((0.5, "packed"),)
    params = {"order_id": 1, "email": "z@a.invalid"}
    refused = await run_job("send_confirmation", params, scheduler=jobs.scheduler)
    assert (refused.outcome, refused.error) == (Outcome.CANCELLED, "no mailbox for order 1")
