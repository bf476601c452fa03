"""content_hash and payload_hash: stable, order-independent where it should be, unambiguous."""

from __future__ import annotations

import hashlib

from qbatch.pipeline.content_hashing import canonical_json, content_hash, payload_hash


def test_content_hash_is_sha256_hex_and_stable():
    h = content_hash("text", '{"model":"m"}', 1024, None)
    assert len(h) == 64 and int(h, 16) >= 0
    assert h == content_hash("text", '{"model":"m"}', 1024, None)


def test_every_part_changes_the_hash():
    base = content_hash("text", "m", 1024, None)
    assert len({base, content_hash("text!", "m", 1024, None), content_hash("text", "m2", 1024, None),
                content_hash("text", "m", 512, None), content_hash("text", "m", 1024, "task")}) == 5


def test_parts_cannot_bleed_into_each_other():
    assert content_hash("ab", "c", 1, None) != content_hash("a", "bc", 1, None)
    assert content_hash("a", "m", 1, "") != content_hash("a", "m", 1, None)


def test_payload_hash_ignores_key_order():
    assert payload_hash({"a": 1, "b": [1, 2]}) == payload_hash({"b": [1, 2], "a": 1})
    assert payload_hash({"a": 1}) != payload_hash({"a": "1"})
    assert payload_hash({}) == hashlib.sha256(b"{}").hexdigest()
    assert canonical_json({"b": "é", "a": None}) == '{"a":null,"b":"é"}'


def test_hash_survives_lone_surrogates():
    assert content_hash("\ud800", "m", 1, None) != content_hash("\ud801", "m", 1, None)
