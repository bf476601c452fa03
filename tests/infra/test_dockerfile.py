"""The image: CUDA torch pinned like the Makefile's CPU torch, flash-attn, a non-root user, qbatch as
the entrypoint, and the retry wrapper the RayJobs call."""

from __future__ import annotations

import json
import re

from tests.infra.manifest_files import DOCKERFILE, REPO, RETRY_SCRIPT, dockerfile_instructions


def _args() -> dict[str, str]:
    out = {}
    for word, rest in dockerfile_instructions():
        if word == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            out[name] = value.strip('"')
    return out


def test_multi_stage_cuda_build():
    froms = [rest for word, rest in dockerfile_instructions() if word == "FROM"]
    assert len(froms) == 2
    assert "cudnn-devel" in froms[0] and " AS builder" in froms[0]
    assert "cudnn-runtime" in froms[1]
    assert _args()["CUDA_VERSION"].startswith("12.")


def test_cuda_torch_is_pinned_to_the_makefiles_version():
    args = _args()
    makefile_pin = re.search(r"torch==([0-9.]+)", (REPO / "Makefile").read_text()).group(1)
    assert args["TORCH_VERSION"] == makefile_pin
    assert re.fullmatch(r"https://download\.pytorch\.org/whl/cu\d+", args["TORCH_INDEX"])
    runs = " ".join(rest for word, rest in dockerfile_instructions() if word == "RUN")
    assert 'pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX}"' in runs


def test_flash_attn_is_built_against_that_torch_and_installed():
    runs = [rest for word, rest in dockerfile_instructions() if word == "RUN"]
    assert any("--no-build-isolation" in r and "flash-attn==${FLASH_ATTN_VERSION}" in r for r in runs)
    assert any("pip install /tmp/wheels/flash_attn-*.whl" in r for r in runs)
    # A regular install: the image's site-packages holds the one `qbatch` package the driver ships.
    assert any('pip install -c /tmp/constraints.txt ".[gpu,iceberg]"' in r for r in runs)
    assert not any(" -e " in r for r in runs)


def test_runs_as_non_root_with_qbatch_as_entrypoint():
    instructions = dockerfile_instructions()
    users = [rest for word, rest in instructions if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    (entrypoint,) = [rest for word, rest in instructions if word == "ENTRYPOINT"]
    assert json.loads(entrypoint) == ["qbatch"]
    assert ("WORKDIR", "/app") in instructions  # manifests name configs under /app


def test_the_retry_wrapper_is_in_the_image_and_the_context():
    copies = [rest for word, rest in dockerfile_instructions() if word == "COPY"]
    assert any("infra/docker/qbatch-retry /usr/local/bin/qbatch-retry" in c for c in copies)
    ignore = (DOCKERFILE.parent / "Dockerfile.dockerignore").read_text().splitlines()
    assert "!infra/docker/qbatch-retry" in ignore and "!configs/" in ignore
    assert RETRY_SCRIPT.stat().st_mode & 0o111
