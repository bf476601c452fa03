"""Reranker: (query, document) pairs -> P("yes") with Qwen3-Reranker semantics (shared/QWEN3.md).

Only the two LM-head rows that matter are used: score = sigmoid(h_last . (W[yes] - W[no])), which
equals softmax([logit_no, logit_yes])[1] without computing the 151669-way head.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from qbatch.common.errors import NonFiniteOutputError
from qbatch.pipeline.batch_counters import BatchCounters
from qbatch.pipeline.batch_planner import MicroBatch, plan_padded_batches
from qbatch.pipeline.encoder_checkpoint import checkpoint_digest, display_name, no_progress_bars, resolve_checkpoint
from qbatch.pipeline.micro_batch_runner import run_micro_batches
from qbatch.pipeline.model_inputs import check_id_lists, check_pairs, check_texts, pad_ids
from qbatch.pipeline.qwen3_templates import (END_TOKEN_ID, NO_TOKEN, RERANK_PREFIX, RERANK_SUFFIX, YES_TOKEN,
                                      format_rerank_middle)
from qbatch.pipeline.reranker_prefix_sharing import plan_shared, score_shared_tails
from qbatch.pipeline.torch_devices import (attention_implementation, default_max_batch_tokens, precision_name,
                                    resolve_device, resolve_dtype)

if TYPE_CHECKING:  # pragma: no cover
    import torch


class Reranker:
    """A loaded Qwen3-Reranker; build it with `Reranker.from_pretrained`."""

    def __init__(self, model: Any, tokenizer: Any, *, name: str, digest: str, max_length: int,
                 device: "torch.device", max_batch_tokens: int) -> None:
        import torch

        self.model = model
        self.base = model.get_decoder()  # hidden states only; the full LM head is never run
        self.tokenizer = tokenizer
        self.model_name = name
        self.model_fingerprint = {"name": name, "sha": digest, "kind": "qwen3-reranker"}
        self.precision = precision_name(model.dtype)  # bf16 or fp32 on CPU: see torch_devices.resolve_dtype
        self.max_length = int(max_length)
        self.device = device
        self.max_batch_tokens = int(max_batch_tokens)
        self.counters = BatchCounters()
        self.yes_id, self.no_id = _single_token_id(tokenizer, YES_TOKEN), _single_token_id(tokenizer, NO_TOKEN)
        head = model.get_output_embeddings()
        with torch.no_grad():
            self._direction = (head.weight[self.yes_id] - head.weight[self.no_id]).float().to(device)
            bias = getattr(head, "bias", None)
            self._bias = float(bias[self.yes_id] - bias[self.no_id]) if bias is not None else 0.0
        self.prefix_ids = tokenizer(RERANK_PREFIX, add_special_tokens=False)["input_ids"]
        self.suffix_ids = tokenizer(RERANK_SUFFIX, add_special_tokens=False)["input_ids"]
        self.middle_budget = self.max_length - len(self.prefix_ids) - len(self.suffix_ids)
        if self.middle_budget < 1:
            raise ValueError(f"max_length={max_length} leaves no room for the query and document: the fixed "
                             f"template takes {len(self.prefix_ids) + len(self.suffix_ids)} tokens")
        self._pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else END_TOKEN_ID

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike[str], max_length: int = 8192,
                        device: "str | torch.device | None" = None, dtype: "str | torch.dtype | None" = None,
                        max_batch_tokens: int | None = None) -> "Reranker":
        """Load a Qwen3-Reranker (causal LM) checkpoint from a directory or hub id."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve_checkpoint(name_or_path)
        dev = resolve_device(device)
        with no_progress_bars():
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=resolve_dtype(dtype, dev), attn_implementation=attention_implementation(dev)).to(dev).eval()
        tokenizer = AutoTokenizer.from_pretrained(path)
        return cls(model, tokenizer, name=display_name(name_or_path), digest=checkpoint_digest(path), max_length=max_length,
                   device=dev, max_batch_tokens=max_batch_tokens or default_max_batch_tokens(dev))

    def reset_counters(self) -> None:
        self.counters = BatchCounters()

    def tokenize_pairs(self, pairs: Sequence[tuple[str, str]], instruction: str | None = None) -> list[list[int]]:
        """`prefix + middle + suffix` ids; the middle is cut at its tail to fit `max_length`."""
        pairs = check_pairs(pairs)
        if not pairs:
            return []
        middles = self.tokenizer([format_rerank_middle(q, d, instruction) for q, d in pairs],
                                 add_special_tokens=False)["input_ids"]
        self.counters.truncated += sum(len(m) > self.middle_budget for m in middles)
        return [self.prefix_ids + list(m[:self.middle_budget]) + self.suffix_ids for m in middles]

    def score_token_ids(self, id_lists: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
        """`(scores (n,) float32, valid mask)`; non-finite scores are 0.0 and False, never raised."""
        ids = check_id_lists(id_lists)
        if not ids:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=bool)
        n_suffix = len(self.suffix_ids)
        bad = [i for i, seq in enumerate(ids) if seq[-n_suffix:] != self.suffix_ids]
        if bad:
            raise ValueError(f"inputs {bad[:10]} do not end with the reranker suffix; "
                             "tokenise them with Reranker.tokenize_pairs")
        batches = plan_padded_batches([len(seq) for seq in ids], self.max_batch_tokens)
        scores = run_micro_batches(batches, lambda b: self._run_padded(b, ids), self.device)
        return _mask_invalid(scores)

    def score(self, pairs: Sequence[tuple[str, str]], instruction: str | None = None) -> np.ndarray:
        """P(yes) in [0, 1] per pair; raises NonFiniteOutputError naming the bad pairs."""
        scores, valid = self.score_token_ids(self.tokenize_pairs(pairs, instruction))
        return self._checked(scores, valid)

    def score_candidates(self, query: str, documents: Sequence[str],
                         instruction: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Scores of one query's candidates, running the shared prefix once; `(scores, valid mask)`."""
        if not isinstance(query, str):
            raise TypeError(f"query is {type(query).__name__}, expected str")
        documents = check_texts(documents, "documents")
        if not documents:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=bool)
        plan = plan_shared(self.tokenizer, self.prefix_ids, self.suffix_ids, self.middle_budget,
                           query, documents, instruction)
        self.counters.truncated += plan.truncated
        scores = np.zeros(len(documents), dtype=np.float32)
        if plan.tails:
            order = sorted(plan.tails)
            scores[order] = score_shared_tails(
                self.base, plan.head, [plan.tails[i] for i in order], self._to_scores, pad_id=self._pad_id,
                max_batch_tokens=self.max_batch_tokens, device=self.device, counters=self.counters)
        if plan.unshared:
            order = sorted(plan.unshared)
            part, part_valid = self.score_token_ids([plan.unshared[i] for i in order])
            scores[order] = np.where(part_valid, part, np.nan)  # validity is re-derived below
        return _mask_invalid(scores)

    def _checked(self, scores: np.ndarray, valid: np.ndarray) -> np.ndarray:
        if not valid.all():
            bad = np.flatnonzero(~valid).tolist()
            raise NonFiniteOutputError(f"{self.model_name} produced non-finite scores for pairs {bad[:20]}"
                                       f"{' ...' if len(bad) > 20 else ''}", bad)
        return scores

    def _to_scores(self, hidden_last: "torch.Tensor") -> np.ndarray:
        import torch

        logit_diff = hidden_last.float() @ self._direction + self._bias
        return torch.sigmoid(logit_diff).cpu().numpy().astype(np.float32)

    def _run_padded(self, batch: MicroBatch, ids: list[list[int]]) -> np.ndarray:
        import torch

        input_ids, attention_mask = pad_ids([ids[i] for i in batch.indices], self._pad_id, left=True,
                                            device=self.device)
        with torch.inference_mode():
            hidden = self.base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).last_hidden_state
            scores = self._to_scores(hidden[:, -1])
        self.counters.real_tokens += batch.real_tokens
        self.counters.computed_tokens += batch.padded_tokens
        self.counters.micro_batches += 1
        return scores


def _mask_invalid(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = np.isfinite(scores)
    return np.where(valid, scores, 0.0).astype(np.float32), valid


def _single_token_id(tokenizer: Any, token: str) -> int:
    """The id of a word that must be one token in this vocabulary (looked up, never hard-coded)."""
    ids = tokenizer(token, add_special_tokens=False)["input_ids"]
    token_id = tokenizer.convert_tokens_to_ids(token)
    if ids != [token_id]:
        raise ValueError(f"{token!r} is not a single token in this tokenizer ({ids}); not a Qwen3-Reranker vocabulary")
    return int(token_id)
