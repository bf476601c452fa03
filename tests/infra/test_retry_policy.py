"""Schedulers retry only the transient exit codes: the RayJob wrapper script and the Airflow DAG.
(The CronJob's podFailurePolicy is checked in test_manifests.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from types import SimpleNamespace

import pytest

from qbatch.jobs.runtime.exit_codes import TRANSIENT, ExitCode
from tests.infra.manifest_files import RETRY_SCRIPT, load_dag

PERMANENT = [c for c in ExitCode if c not in TRANSIENT and c != ExitCode.OK]


def run_wrapper(tmp_path, codes: list[int], attempts: int = 3):
    """Run qbatch-retry around a fake qbatch that exits with `codes` in turn; return (rc, calls)."""
    (tmp_path / "codes").write_text("\n".join(map(str, codes)) + "\n")
    fake = tmp_path / "qbatch"
    fake.write_text(f"#!{sys.executable}\nimport pathlib\n"
                    f"p = pathlib.Path({str(tmp_path)!r})\n"
                    "calls = p / 'calls'; n = len(calls.read_text().splitlines()) if calls.exists() else 0\n"
                    "calls.write_text(calls.read_text() + 'x\\n' if calls.exists() else 'x\\n')\n"
                    "codes = (p / 'codes').read_text().split()\n"
                    "raise SystemExit(int(codes[min(n, len(codes) - 1)]))\n")
    fake.chmod(0o755)
    env = {**os.environ, "QBATCH_RETRY_ATTEMPTS": str(attempts), "QBATCH_RETRY_DELAY_S": "0"}
    out = subprocess.run(["sh", str(RETRY_SCRIPT), str(fake), "index"], env=env, capture_output=True, text=True, timeout=30)
    return out.returncode, len((tmp_path / "calls").read_text().splitlines())


def test_resources_unavailable_is_among_the_retried_codes():
    assert ExitCode.RESOURCES_UNAVAILABLE in TRANSIENT  # a GPU that arrives late is worth another try


@pytest.mark.parametrize("code", sorted(int(c) for c in TRANSIENT))
def test_wrapper_retries_a_transient_code_until_success(tmp_path, code):
    assert run_wrapper(tmp_path, [code, code, 0]) == (0, 3)


@pytest.mark.parametrize("code", [int(c) for c in PERMANENT] + [137])
def test_wrapper_never_retries_a_permanent_code(tmp_path, code):
    assert run_wrapper(tmp_path, [code, 0]) == (code, 1)


@pytest.mark.parametrize("codes", [[4, 1, 4, 0], [8, 8, 8, 0]])
def test_wrapper_gives_up_after_its_attempts_with_the_last_code(tmp_path, codes):
    assert run_wrapper(tmp_path, codes, attempts=3) == (codes[2], 3)


def test_dag_imports_without_airflow_and_exposes_its_tasks():
    dag = load_dag()
    assert dag.DAG is None  # Airflow is not installed here; the module still imports
    tasks = {t["task_id"]: t for t in dag.TASKS}
    assert tasks["rerank_daily"]["upstream"] == ["index_catalog_incremental"]
    for task in dag.TASKS:
        assert set(task["upstream"]) <= set(tasks)
        assert task["argv"][0] == "qbatch" and task["retries"] >= 1
        assert set(task["retry_exit_codes"]) == {int(c) for c in TRANSIENT}
    assert dag.TRANSIENT_EXIT_CODES == {int(c) for c in TRANSIENT}


def test_dag_fails_permanent_codes_and_retries_transient_ones():
    dag = load_dag()
    dag.raise_for_exit_code(0, "index")
    for code in PERMANENT:
        assert not dag.should_retry(code)
        with pytest.raises(dag.PermanentQbatchFailure, match=f"exited {int(code)}"):
            dag.raise_for_exit_code(int(code), "index")
    for code in TRANSIENT:
        with pytest.raises(dag.TransientQbatchFailure):
            dag.raise_for_exit_code(int(code), "index")


class FakeJobsApi:
    """The part of ray.job_submission.JobSubmissionClient the DAG uses."""

    def __init__(self, statuses: list[str], exit_code: int | None, running: dict[str, str] | None = None):
        self.statuses, self.exit_code, self.known = list(statuses), exit_code, dict(running or {})
        self.submitted: list[tuple[str, str]] = []

    def submit_job(self, entrypoint, submission_id):
        self.submitted.append((submission_id, entrypoint))
        self.known[submission_id] = "PENDING"
        return submission_id

    def get_job_status(self, job_id):
        if job_id not in self.known:
            raise RuntimeError(f"job {job_id} does not exist")
        if self.statuses:
            self.known[job_id] = self.statuses.pop(0)
        return SimpleNamespace(value=self.known[job_id])

    def get_job_info(self, job_id):
        return SimpleNamespace(driver_exit_code=self.exit_code)


def _run(dag, api, try_number=1):
    return dag.run_on_ray(api, ["qbatch", "index", "--set", "run.run_id=x y"], "index", "scheduled__2026", try_number,
                          poll_s=0, sleep=lambda s: None)


def test_dag_reads_the_drivers_exit_code_from_ray():
    dag = load_dag()
    api = FakeJobsApi(["PENDING", "RUNNING", "FAILED"], exit_code=5)
    assert _run(dag, api) == 5
    ((job_id, entrypoint),) = api.submitted
    assert entrypoint == "qbatch index --set 'run.run_id=x y'" and job_id.endswith("-try1")
    assert _run(dag, FakeJobsApi(["RUNNING", "SUCCEEDED"], exit_code=0)) == 0
    assert _run(dag, FakeJobsApi(["FAILED"], exit_code=None)) == 1  # driver lost: transient
    assert not dag.should_retry(_run(dag, FakeJobsApi(["STOPPED"], exit_code=None)))


def test_a_retry_waits_for_the_earlier_try_instead_of_racing_it():
    dag = load_dag()
    earlier = dag.submission_id("index", "scheduled__2026", 1)
    api = FakeJobsApi([], exit_code=None, running={earlier: "RUNNING"})
    api.statuses = ["RUNNING", "RUNNING", "SUCCEEDED"]
    assert _run(dag, api, try_number=2) == 0
    assert api.submitted == []
