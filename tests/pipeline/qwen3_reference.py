"""An independent reference for Qwen3-Embedding and Qwen3-Reranker, written from shared/QWEN3.md and
the official model-card snippets. It deliberately shares no code with `pipeline/`: one padded batch,
left padding, `hidden[:, -1]`, and full-vocabulary logits for the reranker."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

TASK = "Given a web search query, retrieve relevant passages that answer the query"
PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def query_text(query: str, task: str = TASK) -> str:
    return f"Instruct: {task}\nQuery:{query}"


def embed(model, tokenizer, texts: list[str], max_length: int, dim: int | None = None) -> np.ndarray:
    """Official embedding snippet: one left-padded batch; the tokenizer appends <|endoftext|>."""
    assert tokenizer.padding_side == "left"
    batch = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    assert (batch["input_ids"][:, -1] == 151643).all(), "the end token must be the last real token"
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state[:, -1]
    if dim is not None:
        hidden = hidden[:, :dim]
    return F.normalize(hidden.float(), p=2, dim=1).numpy()


def rerank(model, tokenizer, pairs: list[tuple[str, str]], max_length: int, instruction: str = TASK) -> np.ndarray:
    """Official reranker snippet: full-vocab logits at the last position, softmax over [no, yes]."""
    yes = tokenizer.convert_tokens_to_ids("yes")
    no = tokenizer.convert_tokens_to_ids("no")
    prefix = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix = tokenizer.encode(SUFFIX, add_special_tokens=False)
    texts = [f"<Instruct>: {instruction}\n<Query>: {q}\n<Document>: {d}" for q, d in pairs]
    enc = tokenizer(texts, padding=False, truncation="longest_first", return_attention_mask=False,
                    max_length=max_length - len(prefix) - len(suffix))
    enc["input_ids"] = [prefix + ids + suffix for ids in enc["input_ids"]]
    batch = tokenizer.pad(enc, padding=True, return_tensors="pt")
    with torch.no_grad():
        # Full-vocabulary logits, but only at the last position (`logits_to_keep=1`): the snippet's
        # every-position head would need gigabytes here and changes nothing at the scored position.
        logits = model(**batch, logits_to_keep=1).logits[:, -1, :]
    two = torch.stack([logits[:, no], logits[:, yes]], dim=1).float()
    return torch.log_softmax(two, dim=1)[:, 1].exp().numpy()
