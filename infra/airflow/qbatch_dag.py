"""Airflow DAG: nightly incremental catalog index, then the daily rerank of yesterday's query log.

Each task submits one `qbatch` command to the KubeRay cluster through the Ray Jobs API. The driver
runs on the Ray head, in the qbatch image, so an Airflow worker restart does not kill it. The task
waits for the driver's exit code and maps it to Airflow's retry semantics:

- 0 succeeds.
- 1 (internal error), 4 (sink unreachable) and 8 (resources unavailable: no GPU node arrived within
  resources_wait_s) are transient. The task raises AirflowException, and Airflow retries it up to
  `retries` times.
- 2 config, 3 source, 5 gate, 6 reject ratio, 7 locked, and any other code, are permanent. The task
  raises AirflowFailException, which Airflow never retries. A failed gate therefore fails the index
  task once, and the rerank task ends `upstream_failed` without running.

The module imports without Airflow. `TASKS` holds the structure and the commands as plain data,
which tests/infra reads. The Airflow workers need the `ray` package (same minor version as the
cluster) for `ray.job_submission`; they need neither qbatch nor a GPU.
"""

from __future__ import annotations

import os
import re
import shlex
import time
from typing import Any, Callable

DAG_ID = "qbatch_catalog_nightly"
SCHEDULE = "0 2 * * *"  # 02:00 UTC; the data interval [yesterday 02:00, today 02:00) names the log day
RAY_DASHBOARD = os.environ.get("QBATCH_RAY_DASHBOARD", "http://qbatch-head-svc.qbatch.svc:8265")
POLL_S = 30.0

# jobs/runtime/exit_codes.py TRANSIENT, repeated because Airflow workers do not install qbatch;
# tests/infra checks that the two agree.
TRANSIENT_EXIT_CODES = frozenset({1, 4, 8})

# The day whose query log the rerank reads: the start of this run's data interval.
LOG_DAY = "{{ data_interval_start.strftime('%Y-%m-%d') }}"

TASKS: list[dict[str, Any]] = [
    {
        "task_id": "index_catalog_incremental",
        # A retry of the same DAG run reuses the same qbatch run id (Airflow's run_id, normalised by qbatch).
        "argv": ["qbatch", "index", "run", "--config", "/app/configs/catalog-nightly.toml",
                 "--set", "run.run_id={{ run_id }}", "--log-format", "json"],
        "upstream": [],
        "retry_exit_codes": sorted(TRANSIENT_EXIT_CODES),
        "retries": 3,
        "retry_delay_s": 600,
        "timeout_s": 6 * 3600,
    },
    {
        "task_id": "rerank_daily",
        "argv": ["qbatch", "rerank", "--config", "/app/configs/rerank-daily.toml",
                 "--set", f"queries.glob=dt={LOG_DAY}/*.parquet", "--set", f"output.run_date={LOG_DAY}",
                 "--log-format", "json"],
        "upstream": ["index_catalog_incremental"],
        "retry_exit_codes": sorted(TRANSIENT_EXIT_CODES),
        "retries": 3,
        "retry_delay_s": 600,
        "timeout_s": 6 * 3600,
    },
]


class TransientQbatchFailure(RuntimeError):
    """A qbatch run ended with a transient exit code; retrying may succeed."""


class PermanentQbatchFailure(RuntimeError):
    """A qbatch run ended with an exit code that a retry cannot fix."""


def should_retry(exit_code: int) -> bool:
    return exit_code in TRANSIENT_EXIT_CODES


def raise_for_exit_code(exit_code: int, what: str,
                        retry_exc: Callable[[str], BaseException] = TransientQbatchFailure,
                        fail_exc: Callable[[str], BaseException] = PermanentQbatchFailure) -> None:
    """Return on 0. Raise `retry_exc` on a transient code, and `fail_exc` on any other code."""
    if exit_code == 0:
        return
    if should_retry(exit_code):
        raise retry_exc(f"{what} exited {exit_code} (transient); Airflow will retry")
    raise fail_exc(f"{what} exited {exit_code} (permanent: see jobs/runtime/exit_codes.py); not retrying")


def submission_id(task_id: str, run_id: str, try_number: int) -> str:
    """Ray submission id of one try. Ids are deterministic, so a new try can find the earlier ones."""
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", f"qbatch-{task_id}-{run_id}").strip("-")
    return f"{safe}-try{try_number}"


def run_on_ray(client: Any, argv: list[str], task_id: str, run_id: str, try_number: int,
               poll_s: float = POLL_S, sleep: Callable[[float], None] = time.sleep,
               on_job: Callable[[str], None] = lambda job_id: None) -> int:
    """Run `argv` as a Ray job and return the driver's exit code.

    If an earlier try's job is still running, the task waits for that job instead of starting a
    second one, because a second run would only find the run lock held (exit 7).
    """
    job_id = None
    for earlier in range(1, try_number):
        candidate = submission_id(task_id, run_id, earlier)
        if _status(client, candidate) in ("PENDING", "RUNNING"):
            job_id = candidate
            break
    if job_id is None:
        job_id = client.submit_job(entrypoint=shlex.join(argv),
                                   submission_id=submission_id(task_id, run_id, try_number))
    on_job(job_id)
    while True:
        status = _status(client, job_id)
        if status == "SUCCEEDED":
            return 0
        if status == "STOPPED":  # someone stopped it on purpose: do not start it again
            return 2
        if status == "FAILED":
            code = getattr(client.get_job_info(job_id), "driver_exit_code", None)
            # No exit code means the driver never finished (head restarted, node lost): transient.
            return 1 if code is None else int(code)
        sleep(poll_s)


def _status(client: Any, job_id: str) -> str | None:
    try:
        status = client.get_job_status(job_id)
    except RuntimeError:  # the Jobs API answers an unknown submission id with a RuntimeError
        return None
    return getattr(status, "value", str(status))


try:
    import pendulum
    from airflow import DAG
    from airflow.exceptions import AirflowException, AirflowFailException

    try:
        from airflow.sdk import BaseOperator
    except ImportError:  # Airflow 2
        from airflow.models import BaseOperator
    try:
        from airflow.timetables.interval import CronDataIntervalTimetable
    except ImportError:  # pragma: no cover
        CronDataIntervalTimetable = None
except ImportError:  # Airflow is not installed: the plain data above is all this module offers.
    DAG = None

if DAG is not None:
    import datetime as _dt

    class QbatchRayJobOperator(BaseOperator):
        """Submit one templated qbatch command to Ray and fail or retry on its exit code."""

        template_fields = ("argv",)

        def __init__(self, *, argv: list[str], dashboard: str = RAY_DASHBOARD, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.argv = argv
            self.dashboard = dashboard
            self._client = None
            self._job_id: str | None = None

        def execute(self, context: Any) -> None:
            from ray.job_submission import JobSubmissionClient

            self._client = JobSubmissionClient(self.dashboard)
            self.log.info("qbatch: %s", shlex.join(self.argv))
            code = run_on_ray(self._client, self.argv, self.task_id, context["run_id"], context["ti"].try_number,
                              on_job=self._remember)
            raise_for_exit_code(code, f"{self.task_id} ({self.argv[1]})",
                                retry_exc=AirflowException, fail_exc=AirflowFailException)

        def _remember(self, job_id: str) -> None:
            self._job_id = job_id
            self.log.info("Ray job %s on %s", job_id, self.dashboard)

        def on_kill(self) -> None:
            if self._client is not None and self._job_id is not None:
                self._client.stop_job(self._job_id)

    # An explicit interval timetable: data_interval_start is the previous day on Airflow 2 and 3 alike.
    _schedule = CronDataIntervalTimetable(SCHEDULE, timezone="UTC") if CronDataIntervalTimetable else SCHEDULE
    with DAG(
        dag_id=DAG_ID,
        schedule=_schedule,
        start_date=pendulum.datetime(2026, 11, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
        tags=["qbatch"],
    ) as dag:
        _ops = {
            spec["task_id"]: QbatchRayJobOperator(
                task_id=spec["task_id"],
                argv=spec["argv"],
                retries=spec["retries"],
                retry_delay=_dt.timedelta(seconds=spec["retry_delay_s"]),
                retry_exponential_backoff=True,
                execution_timeout=_dt.timedelta(seconds=spec["timeout_s"]),
            )
            for spec in TASKS
        }
        for spec in TASKS:
            for upstream in spec["upstream"]:
                _ops[upstream] >> _ops[spec["task_id"]]
