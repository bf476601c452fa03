from __future__ import annotations

import hashlib
import hmac

from qbatch.pipeline.query_redaction import QueryRedactor


def test_hmac_is_stable_keyed_and_standard():
    a, b = QueryRedactor(b"key-one"), QueryRedactor(b"key-two")
    assert a.redact("red shoes") == QueryRedactor(b"key-one").redact("red shoes")
    assert a.redact("red shoes") != b.redact("red shoes")
    assert a.redact("red shoes") == hmac.new(b"key-one", b"red shoes", hashlib.sha256).hexdigest()
    assert QueryRedactor(None).redact("red shoes") == "red shoes"
    assert "red shoes" not in a.raw_line('{"query": "red shoes"')
