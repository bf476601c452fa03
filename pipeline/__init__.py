"""What happens to rows: text prep, chunking, batching, model wrappers, stages.

`Embedder` and `Reranker` load lazily, so `import pipeline` does not import torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pipeline.embedder import Embedder
    from pipeline.reranker import Reranker

__all__ = ["Embedder", "Reranker"]

_LAZY = {"Embedder": "pipeline.embedder", "Reranker": "pipeline.reranker"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")
