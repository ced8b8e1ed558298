"""Metrics without a database: the per-flush fold, histograms, outcome labels, sums over workers."""

from __future__ import annotations

import random
import time

import pytest
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Info, Summary, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY

from pgqueue import ConfigError, ErrorWithRetry, Job, Outcome
from pgqueue._config import WorkerConfig
from pgqueue.metrics import Metrics
from pgqueue.metrics._serve import accepts_text
from pgqueue.metrics._text import go_float, render
from pgqueue.worker.results import RunResult, new_result
from pgqueue.worker.tally import TIME_BUCKETS, Histogram, Tally, outcome_label


class View:
    """A worker as the collector reads it, with numbers a test sets."""

    def __init__(self) -> None:
        self.clock_offset = 0.0
        self.running = 0
        self.held = 0
        self.results_buffered = 0
        self.listener_connects = 1
        self.claim_failures = 0
        self.flush_failures = 0
        self.jobs_reaped = 0


def result(
    type_: str,
    outcome: Outcome = Outcome.SUCCEEDED,
    *,
    queue: str = "default",
    wait: float = 0.0,
    duration: float = 0.002,
    error: str | None = None,
    retry: bool = False,
) -> RunResult:
    started = time.time()
    run_at = started - wait
    job = Job._from_row((1, queue, type_, None, 0, 1, 0, None, run_at, run_at, None, False, 1, None))
    again = ErrorWithRetry(RuntimeError("again"), 0) if retry else None
    return new_result((job, outcome, started, started + duration, error, None, again, 0, None))


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.mark.parametrize(
    ("outcome", "error", "final", "label"),
    [
        (Outcome.SUCCEEDED, None, True, "succeeded"),
        (Outcome.SUCCEEDED, "skipped: dup", True, "skipped"),
        (Outcome.FAILED, "boom", True, "failed"),
        (Outcome.FAILED, "boom", False, "retried"),
        (Outcome.TIMEOUT, "slow", True, "timeout"),
        (Outcome.TIMEOUT, "slow", False, "retried"),
        (Outcome.CANCELLED, "cancelled", True, "cancelled"),
        (Outcome.INTERRUPTED, "stopped", False, "interrupted"),
        (Outcome.SNOOZED, "snoozed for 1 s", False, "snoozed"),
        (Outcome.SUSPENDED, "suspended", False, "suspended"),
    ],
)
def test_outcome_labels(outcome: Outcome, error: str | None, final: bool, label: str) -> None:
    assert outcome_label(outcome, error, final) == label


@pytest.mark.parametrize("shift", [0.0, 0.25, -0.003])
def test_a_sorted_batch_lands_in_the_same_buckets_as_one_value_at_a_time(shift: float) -> None:
    rng = random.Random(7)
    values = [rng.choice([0.0, *TIME_BUCKETS, 5000.0]) for _ in range(200)]  # bounds themselves too
    values += [rng.uniform(0, 100) for _ in range(300)]
    one, batch = Histogram(TIME_BUCKETS), Histogram(TIME_BUCKETS)
    for v in values:
        one.observe(v + shift)
    batch.observe_sorted(sorted(values), shift)
    assert batch.counts == one.counts
    assert sum(batch.counts) == len(values)
    assert batch.sum == pytest.approx(one.sum)
    many = Histogram(TIME_BUCKETS)
    many.observe_many(values, shift)
    assert many.counts == one.counts
    assert many.sum == pytest.approx(one.sum)


@pytest.mark.parametrize(
    "values",
    [[0.0002, 0.0009, -0.001], [0.002, 0.004, 0.003], [0.002, 7.0, 0.01], [0.001], [2.0, 2.0, 2.4]],
)
def test_a_flushs_values_in_one_bucket_are_counted_without_a_sort(values: list[float]) -> None:
    one, many = Histogram(TIME_BUCKETS), Histogram(TIME_BUCKETS)
    for v in values:
        one.observe(v)
    many.observe_many(list(values))
    assert many.counts == one.counts
    assert many.sum == pytest.approx(one.sum)


def test_a_flush_is_folded_by_type_queue_and_outcome() -> None:
    tally = Tally(View())
    tally.flushed(
        [
            result("a"),
            result("a", wait=0.3),
            result("a", Outcome.FAILED, error="boom", retry=True),
            result("a", Outcome.SUCCEEDED, error="skipped"),
            result("b", queue="q2", duration=2.0),
        ],
        0.01,
    )
    a, b = tally.jobs["a", "default"], tally.jobs["b", "q2"]
    assert a.outcomes == {"succeeded": 2, "retried": 1, "skipped": 1}
    assert b.outcomes == {"succeeded": 1}
    assert sum(a.run.counts) == sum(a.wait.counts) == 4
    assert a.wait.counts[TIME_BUCKETS.index(0.5)] == 1  # the 0.3 s wait
    assert b.run.counts[TIME_BUCKETS.index(2.5)] == 1
    assert tally.flush_sizes.sum == 5
    assert sum(tally.flush_sizes.counts) == sum(tally.flush_seconds.counts) == 1


def test_the_queue_wait_is_moved_onto_the_database_clock() -> None:
    view = View()
    view.clock_offset = 2.0  # the database's clock is 2 s ahead of the worker's
    tally = Tally(view)
    tally.flushed([result("a", wait=1.0)], 0.01)
    wait = tally.jobs["a", "default"].wait
    assert wait.sum == pytest.approx(3.0)
    assert wait.counts[TIME_BUCKETS.index(5.0)] == 1


def test_workers_are_summed_and_a_stopped_workers_counts_stay() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    one, two = View(), View()
    t1 = metrics.attach(one, object(), ["default"])
    t2 = metrics.attach(two, object(), ["default"])
    t1.flushed([result("a"), result("a")], 0.01)
    t2.flushed([result("a")], 0.01)
    t1.claimed(2)
    t2.claimed(0)
    one.running, two.running = 2, 1
    two.listener_connects = 3  # two reconnects
    name = "pgqueue_jobs_finished_total"
    assert sample(registry, name, type="a", queue="default", outcome="succeeded") == 3
    assert sample(registry, "pgqueue_jobs_running") == 3
    assert sample(registry, "pgqueue_listener_reconnects_total") == 2
    assert sample(registry, "pgqueue_claim_batch_size_bucket", le="0.0") == 1
    assert sample(registry, "pgqueue_claim_batch_size_count") == 2
    metrics.detach(t2)
    assert sample(registry, name, type="a", queue="default", outcome="succeeded") == 3  # kept
    assert sample(registry, "pgqueue_listener_reconnects_total") == 2
    assert sample(registry, "pgqueue_jobs_running") == 2  # a gauge: only workers that run
    metrics.detach(t1)
    assert sample(registry, "pgqueue_job_run_duration_seconds_count", type="a", queue="default") == 3
    assert sample(registry, "pgqueue_jobs_running") == 0


def test_scheduled_jobs_are_counted_by_type_and_queue() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    metrics.scheduled("a", "default", 1)
    metrics.scheduled("a", "default", 500)
    metrics.scheduled("a", "other", 2)
    assert sample(registry, "pgqueue_jobs_scheduled_total", type="a", queue="default") == 501
    assert sample(registry, "pgqueue_jobs_scheduled_total", type="a", queue="other") == 2


def test_every_family_is_named_and_rendered_without_any_worker() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    text = generate_latest(registry).decode()
    for name in (
        "pgqueue_jobs_scheduled_total",
        "pgqueue_jobs_finished_total",
        "pgqueue_job_run_duration_seconds",
        "pgqueue_job_queue_wait_seconds",
        "pgqueue_jobs_running",
        "pgqueue_jobs_held",
        "pgqueue_claim_batch_size",
        "pgqueue_flush_batch_size",
        "pgqueue_flush_duration_seconds",
        "pgqueue_result_buffer_size",
        "pgqueue_listener_reconnects_total",
        "pgqueue_claim_failures_total",
        "pgqueue_flush_failures_total",
        "pgqueue_jobs_reaped_total",
        "pgqueue_queue_depth",
    ):
        assert f"# TYPE {name} " in text, name
    assert "pgqueue_queue_depth{" not in text  # no worker, no source: the gauge has no sample
    assert render(registry).decode() == text


def test_two_metrics_cannot_share_a_registry_until_one_is_closed() -> None:
    registry = CollectorRegistry()
    first = Metrics(registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Metrics(registry)
    first.close()
    Metrics(registry)


def test_the_default_registry_is_prometheus_clients() -> None:
    metrics = Metrics()
    try:
        assert metrics.registry is REGISTRY
        assert REGISTRY.get_sample_value("pgqueue_jobs_running") == 0
    finally:
        metrics.close()


@pytest.mark.parametrize(
    "kwargs",
    [{"time_buckets": ()}, {"time_buckets": (1.0, 0.5)}, {"time_buckets": (1.0, float("inf"))},
     {"depth_ttl": 0}, {"depth_timeout": -1}, {"depth_ttl": True}],
)  # fmt: skip
def test_bad_options_are_config_errors(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        Metrics(CollectorRegistry(), **kwargs)  # type: ignore[arg-type]


def test_a_worker_takes_only_a_metrics_object() -> None:
    with pytest.raises(ConfigError, match=r"metrics must be a pgqueue\.metrics\.Metrics"):
        WorkerConfig.build(["q"], metrics=CollectorRegistry())
    metrics = Metrics(CollectorRegistry())
    assert WorkerConfig.build(["q"], metrics=metrics).metrics is metrics


def test_render_writes_the_bytes_prometheus_client_writes() -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    view = View()
    tally = metrics.attach(view, object(), ["default"])
    odd = 'a "quoted" \\ back\nslashed ünïcode queue'
    tally.flushed([result("a"), result("b", Outcome.FAILED, queue=odd, error="x", wait=12345.678)], 0.004)
    tally.claimed(3)
    metrics.scheduled("a", odd, 10**7)  # a value Go writes with an exponent
    Counter("app_requests", "Requests,\nwith a \\ in its help.", ["path"], registry=registry).labels(
        "/x"
    ).inc()
    Summary("app_latency_seconds", "Latency.", registry=registry).observe(0.2)
    Gauge("app_temperature", "Temperature.", registry=registry).set(float("-inf"))
    Info("app_build", "Build.", registry=registry).info({"version": "1.2"})
    Enum("app_state", "State.", states=["up", "down"], registry=registry).state("up")
    assert render(registry) == generate_latest(registry)
    frozen = CollectorRegistry()  # the process and platform collectors, as read once
    frozen.register(_Fixed(list(REGISTRY.collect())))
    assert render(frozen) == generate_latest(frozen)


class _Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


class _Utf8Names:
    def collect(self) -> list[Metric]:
        family = GaugeMetricFamily("app.temperature", "A name the legacy character set refuses.")
        family.add_metric([], 1.0)
        return [family]


def test_render_leaves_names_outside_the_legacy_character_set_to_prometheus_client() -> None:
    registry = CollectorRegistry()
    registry.register(_Utf8Names())
    assert render(registry) == generate_latest(registry)


@pytest.mark.parametrize(
    "value",
    [0, 1, -3, 999_999, 1_000_000, 10**7, 0.005, 1e-7, 123456.0, 1234567.0, 2.5e20, -3.0, float("nan")],
)
def test_go_float_is_prometheus_clients_float_to_go_string(value: float) -> None:
    from prometheus_client.utils import floatToGoString

    assert go_float(value) == floatToGoString(value)  # type: ignore[no-untyped-call]


PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


@pytest.mark.parametrize(
    ("accept", "text"),
    [
        ("", True),
        (PROMETHEUS_ACCEPT, True),
        ("text/plain", True),
        ("application/openmetrics-text; version=1.0.0", False),
        ("application/openmetrics-text, text/plain;q=0", False),
        ("application/openmetrics-text, text/plain; q=0.0", False),
        ("application/openmetrics-text, */*;q=0.1", True),
    ],
)
def test_the_loop_server_answers_in_text_when_the_scraper_takes_it(accept: str, text: bool) -> None:
    assert accepts_text(accept) is text
