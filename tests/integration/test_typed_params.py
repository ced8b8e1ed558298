"""Typed params: validated at schedule time (nothing written when refused), a model in the handler."""

from __future__ import annotations

import dataclasses

import asyncpg
import pydantic
import pytest

from pgqueue import ConfigError, Job, ParamsValidationError, Scheduler
from tests._support import Counter, hot_count, running, wait

pytestmark = pytest.mark.pg


class Email(pydantic.BaseModel):
    to: str
    subject: str = "hello"
    retries: int = 0


@dataclasses.dataclass
class Resize:
    width: int
    height: int


async def test_the_column_holds_the_validated_form_of_a_pydantic_model(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    """Defaults filled in, "2" made an int, as JSON text. The model in the handler, on both
    backends: tests/contract/test_schedule_contract.py."""
    scheduler.register("send", lambda job: None, params=Email)
    first = await scheduler.schedule("send", {"to": "ada@example.com", "retries": "2"})
    stored = await db.fetchval(f'SELECT params::text FROM "{scheduler.schema}".jobs WHERE id = $1', first)
    assert stored == '{"to":"ada@example.com","subject":"hello","retries":2}'


async def test_invalid_params_are_refused_and_nothing_is_written(
    scheduler: Scheduler, db: asyncpg.Connection
) -> None:
    scheduler.register("send", lambda job: None, params=Email)
    scheduler.register("resize", lambda job: None, params=Resize)
    with pytest.raises(ParamsValidationError, match="to: Field required") as info:
        await scheduler.schedule("send", {"subject": "no recipient"})
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value.__cause__, pydantic.ValidationError)
    with pytest.raises(ParamsValidationError, match="width"):
        await scheduler.schedule("resize", {"width": "wide", "height": 3})
    with pytest.raises(ParamsValidationError, match=r"params for job type 'resize'"):
        await scheduler.schedule_many("resize", [{"width": 1, "height": 2}, {"height": 2}])
    assert await hot_count(db, scheduler.schema) == 0


async def test_a_dataclass_model_reaches_the_handler_as_a_dataclass(scheduler: Scheduler) -> None:
    got = Counter(1)

    @scheduler.job("resize", params=Resize)
    def resize(job: Job) -> None:
        got.hit(job.params)

    await scheduler.schedule("resize", Resize(640, 480))
    async with running(scheduler.worker(poll_interval=60)):
        await wait(got.done)
    assert got.calls == [Resize(640, 480)]


def test_job_types_lists_options_and_the_params_schema() -> None:
    s = Scheduler("postgresql://unused")
    s.register("send", lambda job: None, params=Email, queue="mail", timeout=5)
    s.register("plain", lambda job: None)
    plain, send = s.job_types()
    assert (plain.name, plain.params_schema) == ("plain", None)
    assert (send.name, send.queue, send.timeout, send.max_attempts) == ("send", "mail", 5.0, 25)
    assert send.params_schema is not None
    assert send.params_schema["required"] == ["to"]
    assert set(send.params_schema["properties"]) == {"to", "subject", "retries"}


@pytest.mark.parametrize("model", [dict, 42, Email(to="x")])
def test_params_must_be_a_model_class(model: object) -> None:
    with pytest.raises(ConfigError, match="pydantic model class or a dataclass"):
        Scheduler("postgresql://unused").register("t", lambda job: None, params=model)  # type: ignore[arg-type]
