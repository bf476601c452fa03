"""The embedding tokenizer, loaded and checked on a background thread while Ray starts, and shared.

The driver itself only needs the checkpoint's identity (name, digest, hidden size, layout), which
loads in milliseconds; the Hugging Face tokenizer takes seconds (it imports transformers and torch).
The driver loads it anyway, to prove before anything is written that it loads and that a Qwen3
tokenizer ends inputs as qbatch expects, and then shares it: the prep actors get its backend as a
snapshot (pipeline/backend_tokenizer.py) and never import transformers. A daemon thread, so a run
that stops early (already finished, locked) never waits for it."""

from __future__ import annotations

import threading

from qbatch.common.errors import ConfigError


class TokenizerCheck:
    """Starts loading `tokenizer.hf_tokenizer` at once; `result()` waits and raises ConfigError on failure."""

    def __init__(self, tokenizer, model: str):
        self._tokenizer, self._model = tokenizer, model
        self._error: BaseException | None = None
        self._snapshot: str | None = None
        self._thread = threading.Thread(target=self._load, name="qbatch-tokenizer-check", daemon=True)
        self._thread.start()

    def _load(self) -> None:
        from qbatch.pipeline.backend_tokenizer import snapshot_of

        try:
            self._snapshot = snapshot_of(self._tokenizer.hf_tokenizer)  # loads once, checks the end-token rule
        except BaseException as e:  # noqa: BLE001 - reported on the main thread by result()
            self._error = e

    def result(self) -> None:
        self._thread.join()
        if self._error is not None:
            raise ConfigError(f"embed.model {self._model!r}: its tokenizer does not load: "
                              f"{type(self._error).__name__}: {self._error}") from self._error

    def snapshot(self) -> str | None:
        """The checked tokenizer's backend for the prep actors; None for a tokenizer without one."""
        self.result()
        return self._snapshot
