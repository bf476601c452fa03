"""Inputs that have broken Qwen3 pipelines before: scripts, code, emoji, edge whitespace, long text."""

from __future__ import annotations

TEXTS = [
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "机器学习是人工智能的一个分支，研究计算机如何从数据中学习。",
    "Москва — столица России и крупнейший город страны.",
    "def add(a: int, b: int) -> int:\n    return a + b  # 🐍",
    "🎉🚀✨ emoji party 👩‍💻",
    "x",
    "   ",
    "apples are red",
    "2024 was a leap year",
    " leading space matters to BPE",
    "\nnewline first",
    "",
    # Longer than the tests' max_length of 48 tokens on both models, so truncation is exercised.
    "Batch systems turn corpora into indexes. " * 12,
    "长文本测试。" * 40,
]

QUERIES = ["what is machine learning", "столица России", "python add function", "7", " spaced query", "\nq"]
