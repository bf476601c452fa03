"""qbatch: batch indexing and reranking with Qwen3-Embedding and Qwen3-Reranker on Ray, Qdrant and
object storage. The library's public API, loaded lazily so `import qbatch` (and `qbatch --help`) never
imports torch, transformers or ray:

    from qbatch import Embedder, Reranker          # the Qwen3 model wrappers
    from qbatch import IndexConfig, RerankConfig   # the typed configs the jobs (and their CLI) take
    from qbatch import run_index, run_rerank       # run a job from Python: (config, argparse namespace)
    from qbatch import QBatchError                 # the base of every error a job raises on purpose

This file is the `qbatch` package itself; `pyproject.toml` maps the repository's `jobs/`, `pipeline/`,
`connectors/` and `common/` folders below it as `qbatch.jobs`, `qbatch.pipeline`, ... Its folder is not
named `qbatch`, so that `import qbatch` from the repository root never finds a package without them.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from qbatch.common.errors import QBatchError
    from qbatch.jobs.index.config import IndexConfig
    from qbatch.jobs.index.job import run_index
    from qbatch.jobs.rerank.config import RerankConfig
    from qbatch.jobs.rerank.job import run_rerank
    from qbatch.pipeline.embedder import Embedder
    from qbatch.pipeline.reranker import Reranker

__version__ = "0.1.0"

_LAZY = {
    "Embedder": "qbatch.pipeline.embedder",
    "Reranker": "qbatch.pipeline.reranker",
    "IndexConfig": "qbatch.jobs.index.config",
    "RerankConfig": "qbatch.jobs.rerank.config",
    "run_index": "qbatch.jobs.index.job",
    "run_rerank": "qbatch.jobs.rerank.job",
    "QBatchError": "qbatch.common.errors",
}

__all__ = [*_LAZY, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qbatch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
