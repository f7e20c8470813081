"""Items 2 and 3: what N Jobs cost while they wait, kbatch versus the official operator, under
the deployment's scheduler and triggerer.

N mapped task instances of one stage each, deferred at once; every container waits until the
benchmark creates its release file. Once all N are deferred and all N pods run, the benchmark
reads the API server's ``/metrics`` over a window of ``--window`` seconds:
``apiserver_request_total`` deltas by verb over Jobs, pods, ConfigMaps and events, less the
background rate of the same counters measured before (the controllers, the node), per waiting
Job per minute; and the ``apiserver_longrunning_requests`` WATCH gauge. The triggerer's
memory is the RSS of its process tree, peak during the window minus just before the run. Then
the release file appears, all N containers exit within a fraction of a second, and the event
latency is each container's own exit timestamp -> its task instance's ``end_date``
(p50 / p99 over the N).

    python benchmarks/run.py --only waiting --jobs 1,100 --window 60
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.harness import (
    OPERATORS,
    Ground,
    PodRecorder,
    delta,
    open_watches,
    percentile,
    requests_by_verb,
    rss_mib,
    scrape,
    table,
)


@dataclass
class WaitingResult:
    operator: str
    jobs: int
    waiting: float  # task instances deferred during the window (all ``jobs`` unless the machine was too slow)
    window: float
    per_job_minute: dict[str, float]  # by verb, background removed
    watches: float  # WATCH requests the waits opened on the resources (most seen, less the background)
    rss_before: float
    rss_peak: float
    defer_seconds: float  # trigger -> all N deferred with their pods running
    latencies: list[float]
    state: str

    @property
    def total(self) -> float:
        return sum(self.per_job_minute.values()) if self.per_job_minute else float("nan")

    @property
    def growth(self) -> float:
        return self.rss_peak - self.rss_before


RECORDER_WATCHES = 2  # the benchmark's own pod and Job watches of the namespace


NONE = WaitingResult(
    operator="-",
    jobs=1,
    waiting=float("nan"),
    window=float("nan"),
    per_job_minute={},
    watches=float("nan"),
    rss_before=float("nan"),
    rss_peak=float("nan"),
    defer_seconds=float("nan"),
    latencies=[],
    state="not run",
)  # an operator left out (--waiting-operators): dashes in its column


def background(ground: Ground, seconds: float) -> tuple[dict[str, float], float]:
    """Requests per second by verb, and open WATCH requests, with no benchmark Job waiting."""
    first = scrape(ground.api)
    time.sleep(seconds)
    last = scrape(ground.api)
    rate = {
        verb: count / seconds
        for verb, count in delta(requests_by_verb(last), requests_by_verb(first)).items()
    }
    return rate, min(open_watches(first), open_watches(last))


@dataclass
class Window:
    """What the API server counted and the waiting process held during a measuring window."""

    counted: dict[str, float]  # apiserver_request_total deltas by verb
    seconds: float
    watches: float  # open WATCH requests, the most seen at either end
    peak: float  # the process tree's peak RSS, MiB

    def per_job_minute(self, rate: Mapping[str, float], jobs: float) -> dict[str, float]:
        """Requests per waiting Job per minute by verb, less the background ``rate`` (per second)."""
        return {
            verb: max(0.0, self.counted.get(verb, 0.0) - rate.get(verb, 0.0) * self.seconds)
            / jobs
            / (self.seconds / 60)
            for verb in sorted(set(self.counted) | set(rate))
        }


def measure_window(ground: Ground, pid: int, window: float, *, step: float) -> Window:
    """Scrape ``/metrics``, sample ``pid``'s RSS every ``step`` seconds for ``window`` seconds,
    scrape again."""
    first = scrape(ground.api)
    watches, peak = open_watches(first), rss_mib(pid)
    t0 = time.monotonic()
    while time.monotonic() - t0 < window:
        time.sleep(min(step, max(0.0, window - (time.monotonic() - t0))))
        peak = max(peak, rss_mib(pid))
    last = scrape(ground.api)
    seconds = time.monotonic() - t0
    return Window(
        counted=delta(requests_by_verb(last), requests_by_verb(first)),
        seconds=seconds,
        watches=max(watches, open_watches(last)),
        peak=peak,
    )


def running_pods(ground: Ground, namespace: str) -> int:
    from kubernetes import client

    pods = client.CoreV1Api(ground.api).list_namespaced_pod(namespace).items
    return sum(1 for p in pods if p.status.phase == "Running")


def _deferred(ground: Ground, operator: str, run_id: str) -> int:
    return len(ground.deployed_tasks(operator, run_id, state="deferred"))


def _wait_all_deferred(
    ground: Ground, operator: str, run_id: str, namespace: str, jobs: int, timeout: float
) -> int:
    """Wait until all ``jobs`` task instances are deferred with their pods running, at most
    ``timeout`` seconds; the number deferred then (on a loaded machine not all may be)."""
    deadline = time.monotonic() + timeout
    deferred = 0
    while time.monotonic() < deadline:
        ground.deployment.assert_running()
        found = ground.deployed_run(operator, run_id)
        if found and found[0] in ("success", "failed"):
            raise RuntimeError(f"{operator} run {run_id} ended {found[0]} before its Jobs were released")
        deferred = _deferred(ground, operator, run_id)
        if deferred >= jobs and running_pods(ground, namespace) >= jobs:
            return deferred
        time.sleep(1)
    if not deferred:
        raise TimeoutError(f"{operator}: none of {jobs} task instances deferred in {timeout:.0f}s")
    print(f"{operator}: {deferred} of {jobs} task instances deferred after {timeout:.0f}s; measuring those")
    return deferred


def measure(
    ground: Ground,
    operator: str,
    *,
    jobs: int,
    window: float,
    rate: dict[str, float],
    watches0: float,
    defer_timeout: float | None = None,
) -> WaitingResult:
    namespace = ground.namespace(operator)
    release = ground.scratch / f"{namespace}.release"
    triggerer = ground.deployment.pids["triggerer"]
    conf = {"namespace": namespace, "width": jobs, "release": str(release)}
    with PodRecorder(ground.api, namespace) as pods:
        rss_before = rss_mib(triggerer)
        started = time.monotonic()
        run_id = ground.trigger(operator, conf)
        timeout = 300 + 6 * jobs if defer_timeout is None else defer_timeout
        deferred0 = _wait_all_deferred(ground, operator, run_id, namespace, jobs, timeout)
        defer_seconds = time.monotonic() - started
        time.sleep(5)  # let the last deferrals' first calls pass
        measured = measure_window(ground, triggerer, window, step=5.0)
        waiting = (deferred0 + _deferred(ground, operator, run_id)) / 2  # Jobs waiting, on average
        release.touch()
        run = ground.wait_deployed(operator, run_id, timeout=600 + 3 * jobs)
        time.sleep(1)
    run.pods, run.jobs_done = pods.records(), dict(pods.jobs_done)
    ground.drop(namespace)
    return WaitingResult(
        operator=operator,
        jobs=jobs,
        waiting=waiting,
        window=measured.seconds,
        per_job_minute=measured.per_job_minute(rate, waiting),
        watches=measured.watches - watches0 - RECORDER_WATCHES,
        rss_before=rss_before,
        rss_peak=measured.peak,
        defer_seconds=defer_seconds,
        latencies=run.exit_to_end(),
        state=run.state,
    )


def request_rows(k: Mapping[str, float], o: Mapping[str, float]) -> list[tuple[str, Any, Any]]:
    """The requests per waiting Job per minute of kbatch (``k``) and the official operator
    (``o``), by verb: the total, then each verb either counted."""
    out: list[tuple[str, Any, Any]] = [
        ("API requests per waiting Job per minute", sum(k.values()) if k else float("nan"),
         sum(o.values()) if o else float("nan"))
    ]  # fmt: skip
    for verb in sorted(set(k) | set(o)):
        if k.get(verb) or o.get(verb):
            out.append((f"  of which {verb}", k.get(verb, 0.0), o.get(verb, 0.0)))
    return out


def rows(found: dict[str, WaitingResult]) -> list[tuple[str, Any, Any]]:
    k, o = found.get("kbatch", NONE), found.get("official", NONE)
    out = request_rows(k.per_job_minute, o.per_job_minute)
    out += [
        ("open WATCH requests added (jobs/pods/configmaps/events)", k.watches, o.watches),
        ("triggerer RSS growth, MiB", k.growth, o.growth),
        ("triggerer RSS growth per Job, MiB", k.growth / k.jobs, o.growth / o.jobs),
        ("Jobs waiting (deferred) in the window", k.waiting, o.waiting),
        (
            "event latency p50, s (container exit -> task end)",
            percentile(k.latencies, 50),
            percentile(o.latencies, 50),
        ),
        ("event latency p99, s", percentile(k.latencies, 99), percentile(o.latencies, 99)),
        ("trigger -> all deferred and running, s", k.defer_seconds, o.defer_seconds),
        ("task instances measured", len(k.latencies), len(o.latencies)),
    ]
    return out


def main(
    ground: Ground,
    *,
    jobs: Sequence[int],
    window: float,
    baseline: float = 30.0,
    operators: Sequence[str] = OPERATORS,
    defer_timeout: float | None = None,
) -> dict[int, dict[str, WaitingResult]]:
    rate, watches0 = background(ground, baseline)
    results: dict[int, dict[str, WaitingResult]] = {}
    for i, n in enumerate(jobs):
        sequence = tuple(operators) if i % 2 == 0 else tuple(reversed(operators))
        found = {
            op: measure(
                ground, op, jobs=n, window=window, rate=rate, watches0=watches0, defer_timeout=defer_timeout
            )
            for op in sequence
        }
        results[n] = found
        table(f"{n} Jobs waiting (deferred), {window:.0f} s window", rows(found))
    return results
