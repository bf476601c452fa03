"""What happens to rows: text prep, chunking, batching, model wrappers, stages.

`Embedder` and `Reranker` load lazily, so `import qbatch.pipeline` does not import torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from qbatch.pipeline.embedder import Embedder
    from qbatch.pipeline.reranker import Reranker

__all__ = ["Embedder", "Reranker"]

_LAZY = {"Embedder": "qbatch.pipeline.embedder", "Reranker": "qbatch.pipeline.reranker"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'qbatch.pipeline' has no attribute {name!r}")
