"""Split a text into overlapping windows of tokens and return each window as a character span, so
a chunk's text is a plain slice of the document and can be shown, hashed and re-tokenised.

Spans tile the text: the first starts at 0, the last ends at len(text), and each span reaches to
where the next window's first unshared token begins, so whitespace between tokens is never lost.
"""

from __future__ import annotations

from typing import Any


def token_offsets(text: str, hf_tokenizer: Any) -> list[tuple[int, int]]:
    """Character offsets of the text's tokens, without special tokens."""
    enc = hf_tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                       return_attention_mask=False, return_token_type_ids=False)
    return [(int(a), int(b)) for a, b in enc["offset_mapping"]]


def window_starts(n_tokens: int, max_tokens: int, overlap: int) -> list[int]:
    """First token index of each window; the last window ends exactly at n_tokens."""
    if max_tokens < 1 or not 0 <= overlap < max_tokens:
        raise ValueError(f"need max_tokens >= 1 and 0 <= overlap < max_tokens, got {max_tokens}, {overlap}")
    if n_tokens <= max_tokens:
        return [0]
    stride = max_tokens - overlap
    starts = [0]
    while starts[-1] + max_tokens < n_tokens:
        starts.append(starts[-1] + stride)
    return starts


def spans_from_offsets(offsets: list[tuple[int, int]], text_length: int, max_tokens: int,
                       overlap: int) -> list[tuple[int, int]]:
    """Character spans [start, end) of the token windows over `offsets`."""
    starts = window_starts(len(offsets), max_tokens, overlap)
    if len(starts) == 1:
        return [(0, text_length)]
    spans = []
    for i, s in enumerate(starts):
        e = min(s + max_tokens, len(offsets))  # token index one past the window
        start = 0 if i == 0 else offsets[s][0]
        if i == len(starts) - 1:
            end = text_length  # trailing whitespace belongs to the last chunk
        else:
            # Up to the next token, so the gap before it stays inside this chunk; never cut a token
            # whose bytes share a character with the next one (byte-level BPE).
            end = max(offsets[e][0], offsets[e - 1][1])
        spans.append((start, end))
    return spans


def chunk_spans(text: str, hf_tokenizer: Any, max_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Windows of `max_tokens` tokens sharing `overlap` tokens, as character spans of `text`.
    `max_tokens` is net of special/end tokens; a text that fits is one span (0, len(text))."""
    return spans_from_offsets(token_offsets(text, hf_tokenizer), len(text), max_tokens, overlap)
