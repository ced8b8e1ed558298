"""``pgqueue limits list|set|remove``, in this process through ``main()``."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from pgqueue.cli.limits import parse_rate
from tests.integration._cli import main_env, run_main

pytestmark = pytest.mark.pg

__all__ = ["main_env"]  # the fixture, imported for the tests below


def test_set_list_and_remove(main_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_main(capsys, "limits", "list") == (0, "no queue limits\n", "")
    code, out, err = run_main(
        capsys, "limits", "set", "emails", "--concurrency", "3", "--per-key", "1", "--key", "customer_id",
        "--rate", "100/1m",
    )  # fmt: skip
    assert (code, err) == (0, "")
    assert out == "queue 'emails' limited: concurrency 3, 1 per customer_id, rate 100/60s\n"
    assert run_main(capsys, "limits", "set", "sms", "--rate", "10/500ms", "--json")[0] == 0
    code, out, _ = run_main(capsys, "limits", "list", "--json")
    listed = json.loads(out)
    assert [(x["queue"], x["concurrency"], x["per_key"], x["key"], x["rate"]) for x in listed] == [
        ("emails", 3, 1, "customer_id", {"count": 100, "per_s": 60.0}),
        ("sms", None, None, None, {"count": 10, "per_s": 0.5}),
    ]
    code, out, _ = run_main(capsys, "limits", "list")
    assert code == 0
    assert "emails" in out
    assert "100/60s" in out
    assert "10/0.5s" in out
    assert run_main(capsys, "limits", "remove", "emails") == (0, "queue 'emails': limits removed\n", "")
    assert run_main(capsys, "limits", "remove", "emails") == (0, "queue 'emails': had no limits\n", "")
    assert json.loads(run_main(capsys, "limits", "remove", "sms", "--json")[1]) == {
        "queue": "sms",
        "removed": True,
    }


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["limits", "set", "q"], 1, "error: give at least one of concurrency="),
        (["limits", "set", "q", "--per-key", "1"], 1, "error: per_key and key go together"),
        (["limits", "set", "q", "--concurrency", "0"], 1, "error: concurrency must be an integer from 1"),
        (["limits", "set", "q", "--rate", "5"], 2, "expected COUNT/PERIOD"),
        (["limits", "set", "q", "--rate", "5/"], 2, "the period is missing"),
        (["limits", "set", "q", "--rate", "0/1s"], 1, "error: rate count must be an integer from 1"),
        (["limits", "set", "q", "--concurrency", "x"], 2, "Invalid value for '--concurrency'"),
    ],
)
def test_bad_values_are_one_line_and_write_nothing(
    main_env: None, capsys: pytest.CaptureFixture[str], args: list[str], code: int, message: str
) -> None:
    got, _, err = run_main(capsys, *args)
    assert got == code, err
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err
    assert run_main(capsys, "limits", "list") == (0, "no queue limits\n", "")


@pytest.mark.parametrize(
    ("text", "count", "seconds"),
    [("100/60", 100, 60), ("100/1m", 100, 60), ("10/500ms", 10, 0.5), ("5/h", 5, 3600), ("7/1.5s", 7, 1.5)],
)
def test_parse_rate(text: str, count: int, seconds: float) -> None:
    assert parse_rate(text) == (count, dt.timedelta(seconds=seconds))
