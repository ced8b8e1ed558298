"""``pgqueue periodic``: the table, --json, --app, and ``periodic remove``."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pytest

from pgqueue import Scheduler
from tests.integration._cli import run_main
from tests.integration._periodic_app import scheduler as app

pytestmark = pytest.mark.pg

APP = "tests.integration._periodic_app:scheduler"


def next_new_year() -> str:
    return dt.datetime(dt.datetime.now(dt.UTC).year + 1, 1, 1, tzinfo=dt.UTC).isoformat()


def app_round(dsn: str, schema: str, now: dt.datetime) -> int:
    """One round of the application's declarations on the test's schema."""

    async def go() -> int:
        async with Scheduler(dsn, schema=schema) as target:
            with app.using(target):
                return await app.enqueue_due_periodic(now)

    return asyncio.run(go())


def test_periodic_lists_the_database_rows_and_with_app_the_declarations(
    main_env: None, capsys: pytest.CaptureFixture[str], dsn: str, schema_name: str
) -> None:
    code, out, err = run_main(capsys, "periodic")
    assert (code, out.strip(), err) == (0, "no periodic declarations in the database (try --app)", "")

    code, out, _ = run_main(capsys, "periodic", "--app", APP, "--json")
    assert code == 0
    declared = json.loads(out)
    assert [(p["name"], p["schedule"], p["type"], p["queue"], p["declared"]) for p in declared] == [
        ("hourly_report", "every 1h", "report", "default", True),
        ("new_year", "0 0 1 1 *", "new_year", "yearly", True),
    ]
    assert declared[1]["next_fire_at"] == next_new_year()
    assert [p["last_tick"] for p in declared] == [None, None]

    tick = dt.datetime(2030, 6, 1, 12, tzinfo=dt.UTC)
    assert app_round(dsn, schema_name, tick + dt.timedelta(seconds=5)) == 1  # hourly_report's tick

    code, out, _ = run_main(capsys, "periodic")  # no --app: the rows, as the database has them
    assert code == 0
    assert "hourly_report" in out
    assert "every 1h" in out
    assert "2030-06-01 12:00:00" in out
    assert "scheduled" in out  # the job is due at its tick, in 2030
    assert "new_year" in out  # its row was written by the round, without a tick yet
    rows = json.loads(run_main(capsys, "periodic", "--json")[1])
    assert [(p["name"], p["declared"], p["last_outcome"]) for p in rows] == [
        ("hourly_report", False, "scheduled"),
        ("new_year", False, None),
    ]
    assert rows[0]["last_tick"] == tick.isoformat()
    assert isinstance(rows[0]["last_job_id"], int)

    code, out, _ = run_main(capsys, "periodic", "--app", APP)
    assert code == 0
    assert "(not declared)" not in out
    assert "yearly" in out


def test_periodic_remove_forgets_a_row_and_says_when_there_is_none(
    main_env: None, capsys: pytest.CaptureFixture[str], dsn: str, schema_name: str
) -> None:
    app_round(dsn, schema_name, dt.datetime(2030, 6, 1, 12, 0, 5, tzinfo=dt.UTC))
    code, out, _ = run_main(capsys, "periodic", "remove", "hourly_report")
    assert (code, out.strip()) == (0, "periodic 'hourly_report' removed")
    assert [p["name"] for p in json.loads(run_main(capsys, "periodic", "--json")[1])] == ["new_year"]
    code, out, err = run_main(capsys, "periodic", "remove", "hourly_report")
    assert (code, out, err.strip()) == (
        1,
        "",
        "error: no periodic 'hourly_report' in the database: nothing to remove",
    )
    code, out, _ = run_main(capsys, "periodic", "remove", "new_year", "--json")
    assert (code, json.loads(out)) == (0, {"name": "new_year", "removed": True})


def test_rows_the_application_does_not_declare_are_marked(
    main_env: None, capsys: pytest.CaptureFixture[str], dsn: str, schema_name: str
) -> None:
    async def other_app() -> None:
        async with Scheduler(dsn, schema=schema_name) as other:
            other.register("legacy", lambda job: None)
            other.add_periodic("legacy_cleanup", "*/5 * * * *", job="legacy")
            await other.enqueue_due_periodic(dt.datetime(2030, 6, 1, 12, 0, 1, tzinfo=dt.UTC))

    asyncio.run(other_app())
    code, out, _ = run_main(capsys, "periodic", "--app", APP)
    assert code == 0
    assert "legacy_cleanup (not declared)" in out
    listed = json.loads(run_main(capsys, "periodic", "--app", APP, "--json")[1])
    assert [(p["name"], p["declared"]) for p in listed] == [
        ("hourly_report", True),
        ("legacy_cleanup", False),
        ("new_year", True),
    ]


def test_a_bad_app_target_is_a_usage_error(main_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_main(capsys, "periodic", "--app", "tests.integration._periodic_app:nothing")
    assert code == 2
    assert err.startswith("error: ")
    assert len(err.strip().splitlines()) == 1
