"""Text formats and fixed token strings of Qwen3-Embedding and Qwen3-Reranker (see shared/QWEN3.md).

Everything here is a plain string or int, so the CPU tokenising stage can import it without torch.
"""

from __future__ import annotations

DEFAULT_TASK = "Given a web search query, retrieve relevant passages that answer the query"

# `<|endoftext|>`: the embedding's pooled token and the pad token. Not `tokenizer.eos_token` (151645).
END_TOKEN = "<|endoftext|>"
END_TOKEN_ID = 151643

# The 26 added tokens of the published Qwen3 tokenizers, in id order starting at END_TOKEN_ID.
ADDED_TOKENS: tuple[str, ...] = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>",
    "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",
    "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>", "<tool_call>", "</tool_call>",
    "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>", "<|fim_pad|>",
    "<|repo_name|>", "<|file_sep|>", "<tool_response>", "</tool_response>",
    "<think>", "</think>",
)
QWEN3_VOCAB_SIZE = END_TOKEN_ID + len(ADDED_TOKENS)  # 151669, as in the 0.6B checkpoints

# Strings whose ids the reranker reads from its own tokenizer; never hard-code their ids
# (TEI once returned a constant 0.7310586 that way).
YES_TOKEN = "yes"
NO_TOKEN = "no"

RERANK_PREFIX = (
    "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the "
    'Instruct provided. Note that the answer can only be "yes" or "no".<|im_end|>\n<|im_start|>user\n'
)
RERANK_SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"


def format_query(query: str, task: str | None = None) -> str:
    """Embedding query text: one newline, and no space after `Query:`."""
    return f"Instruct: {task if task is not None else DEFAULT_TASK}\nQuery:{query}"


def format_rerank_middle(query: str, document: str, instruction: str | None = None) -> str:
    """The part between the reranker's fixed prefix and suffix; the only part that is truncated."""
    return f"{format_rerank_head(query, instruction)} {document}"


def format_rerank_head(query: str, instruction: str | None = None) -> str:
    """The middle up to `<Document>:`, without the space that BPE merges into the document's first word."""
    task = instruction if instruction is not None else DEFAULT_TASK
    return f"<Instruct>: {task}\n<Query>: {query}\n<Document>:"
