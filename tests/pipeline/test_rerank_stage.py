from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from qbatch.pipeline.rerank_stage import instruction_sha, new_ranks


def test_ties_break_by_orig_rank_nulls_last_then_doc_id():
    scores = [0.5, 0.5, 0.5, 0.5, 0.9, 0.1]
    valid = [True, True, True, True, True, False]
    ranks = new_ranks(scores, valid, [None, 3, 2, None, 9, 1], ["b", "x", "y", "a", "z", "w"])
    assert ranks == [5, 3, 2, 4, 1, None]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([0.1, 0.5, 0.9]), st.booleans(), st.one_of(st.none(), st.integers(1, 5))),
                max_size=30))
def test_new_ranks_are_a_permutation_of_the_valid_rows(rows):
    scores, valid, orig = zip(*rows) if rows else ((), (), ())
    ranks = new_ranks(list(scores), list(valid), list(orig), [f"d{i}" for i in range(len(rows))])
    assert sorted(r for r in ranks if r is not None) == list(range(1, sum(valid) + 1))
    assert all((r is None) == (not v) for r, v in zip(ranks, valid))
    by_rank = sorted((r, s) for r, s in zip(ranks, scores) if r is not None)
    assert [s for _, s in by_rank] == sorted((s for s, v in zip(scores, valid) if v), reverse=True)


def test_instruction_sha_names_the_default_task():
    assert instruction_sha(None) == instruction_sha("Given a web search query, retrieve relevant passages that answer the query")
    assert instruction_sha("x") != instruction_sha(None)


def test_chunked_scores_equal_whole_query_scores_and_ranks_span_the_chunks(tiny_reranker_checkpoint, tmp_path,
                                                                           stdlib_pairs):
    import numpy as np
    import pyarrow as pa

    from qbatch.connectors.rerank_staging import RerankStaging
    from qbatch.pipeline.query_redaction import QueryRedactor
    from qbatch.pipeline.rerank_acks import ACK_SCHEMA
    from qbatch.pipeline.rerank_rows import PREPARED_SCHEMA
    from qbatch.pipeline.rerank_stage import RerankStage, score_in_chunks

    kwargs = {"name_or_path": str(tiny_reranker_checkpoint), "max_length": 160, "dtype": "float32"}
    staging = RerankStaging(str(tmp_path / "staging"), "r1")
    stage = RerankStage(kwargs, None, 1, staging, QueryRedactor(None), "tiny", "r1", candidates_per_chunk=3)
    docs = [p["document"][:200] for p in stdlib_pairs[:11]]
    query = stdlib_pairs[0]["query"]
    whole, valid = stage.reranker.score_candidates(query, docs)
    chunked, chunked_valid = score_in_chunks(stage.reranker, query, docs, None, 3)
    assert valid.all() and chunked_valid.all() and np.abs(whole - chunked).max() <= 1e-5
    n = len(docs)
    part = pa.table({"query_id": ["q1"] * n + ["q2"] * 2, "query": [query] * n + ["other", "other"],
                     "doc_id": [f"d{i}" for i in range(n)] + ["x", "y"], "text": docs + docs[:2],
                     "source": ["log"] * (n + 2), "orig_rank": list(range(1, n + 3)), "orig_score": [None] * (n + 2),
                     "label": [1.0] + [0.0] * (n + 1)}, schema=PREPARED_SCHEMA)
    staging.write_table("prepared/prep-u1.parquet", part)
    acks = stage(pa.table({"unit": ["prep-u1"]}))
    assert acks.schema == ACK_SCHEMA and acks.num_rows == 1
    ack = acks.to_pylist()[0]
    assert (ack["rows"], ack["pairs"], ack["queries"], ack["m_queries"], ack["m_labelled_queries"]) == (n + 2, n + 2, 2, 2, 1)
    result = staging.read_table("results/prep-u1.parquet").to_pandas()
    q1 = result[result["query_id"] == "q1"].sort_values("doc_id", key=lambda s: s.str[1:].astype(int))
    assert np.abs(q1["rerank_score"].to_numpy() - whole).max() <= 1e-5
    by_rank = q1.sort_values("new_rank")
    assert list(by_rank["new_rank"]) == list(range(1, n + 1))  # one ranking over all four chunks
    assert list(by_rank["rerank_score"]) == sorted(by_rank["rerank_score"], reverse=True)
    assert staging.exists("started/prep-u1")
