"""Session-wide fixtures. Fixture modules live in tests/fixtures/ and are loaded as plugins here."""

from __future__ import annotations

import os

# Tests never reach a model hub; everything they load is built locally or shipped in a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [
    "tests.fixtures.ray_session",
    "tests.fixtures.model_checkpoints",
    "tests.fixtures.moto_s3",
    "tests.fixtures.stdlib_docstrings",
    "tests.fixtures.cpu_capabilities",
    "tests.fixtures.bare_modules",
]
