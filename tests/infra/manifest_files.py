"""Reading infra/ and configs/ for the infra tests: YAML documents, pod templates, and every
`qbatch ...` command that a manifest, the CronJob or the Airflow DAG runs."""

from __future__ import annotations

import importlib.util
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Iterator

import yaml

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
CONFIGS = REPO / "configs"
IMAGE_WORKDIR = "/app/"  # WORKDIR of infra/docker/Dockerfile

# Values a scheduler fills in at run time, as they would look on a real night.
SAMPLE_SHELL = {"$(date -u -d yesterday +%F)": "2026-11-27", "$(date -u +%Y%m%d)": "20261128"}
SAMPLE_JINJA = {
    "{{ run_id }}": "scheduled__2026-11-28T02:00:00+00:00",
    "{{ data_interval_start.strftime('%Y-%m-%d') }}": "2026-11-27",
}


def yaml_files() -> list[Path]:
    return sorted(INFRA.rglob("*.yaml")) + sorted(INFRA.rglob("*.yml"))


def documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def kuberay_documents(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [(p, d) for p in sorted((INFRA / "kuberay").glob("*.yaml")) for d in documents(p) if d.get("kind") == kind]


def pod_templates(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, pod template) of every pod a RayCluster, RayJob or CronJob creates."""
    spec = doc.get("spec", {})
    if doc["kind"] == "RayJob":
        spec = spec.get("rayClusterSpec") or {}
    if doc["kind"] in ("RayCluster", "RayJob") and spec:
        yield "headGroupSpec", spec["headGroupSpec"]["template"]
        for group in spec.get("workerGroupSpecs", []):
            yield f"workerGroupSpecs[{group['groupName']}]", group["template"]
    if doc["kind"] == "CronJob":
        yield "jobTemplate", spec["jobTemplate"]["spec"]["template"]


def load_dag() -> ModuleType:
    spec = importlib.util.spec_from_file_location("qbatch_dag_under_test", INFRA / "airflow" / "qbatch_dag.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass(frozen=True)
class QbatchCommand:
    source: str  # where the command was found, for test ids and messages
    argv: list[str]  # without the leading `qbatch`, scheduler values filled in
    wrapper: str | None  # e.g. "qbatch-retry"


def _fill(text: str, samples: dict[str, str]) -> str:
    for placeholder, value in samples.items():
        text = text.replace(placeholder, value)
    return text


def _split(source: str, words: list[str]) -> QbatchCommand:
    wrapper = None
    if words and words[0] != "qbatch":
        wrapper, words = words[0], words[1:]
    if not words or words[0] != "qbatch":
        raise AssertionError(f"{source}: expected a `qbatch ...` command, got {words!r}")
    return QbatchCommand(source, words[1:], wrapper)


def qbatch_commands() -> list[QbatchCommand]:
    found: list[QbatchCommand] = []
    for path, doc in kuberay_documents("RayJob"):
        entrypoint = _fill(doc["spec"]["entrypoint"], SAMPLE_SHELL)
        assert "$" not in entrypoint, f"{path.name}: unexpected shell expansion left in {entrypoint!r}"
        found.append(_split(path.name, shlex.split(entrypoint)))
    for path in sorted((INFRA / "k8s").glob("*.yaml")):
        for doc in documents(path):
            for where, template in pod_templates(doc):
                for container in template["spec"]["containers"]:
                    # The image's ENTRYPOINT is `qbatch`; args alone are its arguments.
                    words = list(container.get("command") or ["qbatch"]) + list(container.get("args") or [])
                    found.append(_split(f"{path.name}:{where}:{container['name']}", words))
    dag = load_dag()
    for task in dag.TASKS:
        argv = [_fill(word, SAMPLE_JINJA) for word in task["argv"]]
        assert not any("{{" in w for w in argv), f"DAG task {task['task_id']}: unknown template in {argv!r}"
        found.append(_split(f"qbatch_dag.py:{task['task_id']}", argv))
    return found


def repo_path(config_path: str) -> Path:
    """A config path as the image sees it (absolute under /app, or relative to it) -> this checkout."""
    relative = config_path[len(IMAGE_WORKDIR):] if config_path.startswith(IMAGE_WORKDIR) else config_path
    assert not Path(relative).is_absolute(), f"{config_path} is outside the image's {IMAGE_WORKDIR}"
    return REPO / relative


DOCKERFILE = INFRA / "docker" / "Dockerfile"
RETRY_SCRIPT = INFRA / "docker" / "qbatch-retry"


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out
