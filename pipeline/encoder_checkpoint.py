"""Where a checkpoint lives, which layout it has, and a fingerprint that pins it.

Two layouts are served: Qwen3 (model_type "qwen3": instruction queries, end-token pooling) and a
sentence-transformers directory (modules.json + 1_Pooling) such as all-MiniLM-L6-v2.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

CheckpointLayout = Literal["qwen3", "sentence-transformers"]

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
_CONFIG_FILES = ("config.json", "modules.json", "1_Pooling/config.json", "sentence_bert_config.json")


@dataclass(frozen=True)
class EncoderLayout:
    """How to turn hidden states into an embedding for one checkpoint."""

    kind: CheckpointLayout
    pooling: str  # "lasttoken" | "mean" | "cls"
    normalize: bool
    max_seq_length: int | None  # from sentence_bert_config.json, when present


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else can only be a (missing) local path.
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or (os.sep != "/" and os.sep in name)


def resolve_checkpoint(name_or_path: str | os.PathLike[str]) -> Path:
    """A local directory for the checkpoint; a hub id is resolved through the local cache or the hub.

    Never substitutes another model: a name that cannot be found raises FileNotFoundError naming it.
    """
    name = os.fspath(name_or_path)
    local = Path(name).expanduser()
    if local.is_dir():
        if not (local / "config.json").is_file():
            raise FileNotFoundError(f"model directory {local} has no config.json; is it a checkpoint?")
        return local.resolve()
    if local.exists() or _looks_like_path(name):
        raise FileNotFoundError(f"model path {name!r} does not exist or is not a directory")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name))
    except Exception as error:  # offline, unknown repo, no access: all end the same way
        raise FileNotFoundError(
            f"model {name!r} is neither a local directory nor available from the hub cache/hub "
            f"({type(error).__name__}: {error}); pass a checkpoint directory or pre-download it"
        ) from error


_GENERIC_DIR_NAMES = frozenset({"model", "models", "checkpoint", "weights", "snapshot", "final", "latest"})


def display_name(name_or_path: str | os.PathLike[str]) -> str:
    """A hub id as given; a local directory by its last component (paths differ between machines), with
    the parent for generic names ("pkg/model"), and the hub id for a hub-cache snapshot."""
    name = os.fspath(name_or_path)
    local = Path(name).expanduser()
    if not local.is_dir():
        return name
    parts = local.resolve().parts
    for i, part in enumerate(parts[:-1]):
        if part.startswith("models--") and parts[i + 1] == "snapshots":
            return part[len("models--"):].replace("--", "/")
    if parts[-1].lower() in _GENERIC_DIR_NAMES and len(parts) > 1:
        return f"{parts[-2]}/{parts[-1]}"
    return parts[-1]


def read_layout(path: Path) -> EncoderLayout:
    """Qwen3 checkpoints always use last-token pooling + normalise, whatever else they ship."""
    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") == "qwen3":
        return EncoderLayout("qwen3", "lasttoken", True, None)
    modules_file = path / "modules.json"
    if not modules_file.is_file():
        raise ValueError(
            f"{path}: model_type {config.get('model_type')!r} is not qwen3 and there is no modules.json, "
            "so the pooling is unknown; only Qwen3 and sentence-transformers checkpoints are supported"
        )
    modules = json.loads(modules_file.read_text())
    types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    unsupported = sorted(set(types) - {"Transformer", "Pooling", "Normalize"})
    if unsupported:
        raise ValueError(f"{path}: sentence-transformers modules {unsupported} are not supported")
    pooling_path = next((m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")), None)
    if pooling_path is None:
        raise ValueError(f"{path}: modules.json lists no Pooling module")
    pooling = _pooling_mode(json.loads((path / pooling_path / "config.json").read_text()), path)
    sbert_file = path / "sentence_bert_config.json"
    max_seq = json.loads(sbert_file.read_text()).get("max_seq_length") if sbert_file.is_file() else None
    return EncoderLayout("sentence-transformers", pooling, "Normalize" in types, max_seq)


def _pooling_mode(config: dict, path: Path) -> str:
    modes = [name for key, name in (("pooling_mode_lasttoken", "lasttoken"), ("pooling_mode_mean_tokens", "mean"),
                                    ("pooling_mode_cls_token", "cls")) if config.get(key)]
    others = [k for k, v in config.items() if k.startswith("pooling_mode") and v and k not in (
        "pooling_mode_lasttoken", "pooling_mode_mean_tokens", "pooling_mode_cls_token")]
    if len(modes) != 1 or others:
        raise ValueError(f"{path}: pooling config {config} is not exactly one of lasttoken/mean/cls")
    return modes[0]


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """Load or save checkpoints without transformers' progress bars ("Loading weights"): `qbatch search`
    loads a model per query, and every actor of a batch job would print one into the job's log."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def checkpoint_digest(path: Path) -> str:
    """Short sha256 over the config files and the weight files' names and sizes (cheap, no weight reads)."""
    digest = hashlib.sha256()
    for name in _CONFIG_FILES:
        file = path / name
        if file.is_file():
            digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    for file in sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES):
        digest.update(f"{file.relative_to(path).as_posix()}:{file.stat().st_size}\n".encode())
    return digest.hexdigest()[:16]
