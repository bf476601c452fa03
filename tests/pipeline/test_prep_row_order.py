"""The prep stage's row order: every row exactly once, whole documents longest first with their chunks
together and in order, rejects and end-of-unit markers last; and slices of it pad less than input order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings, strategies as st

from qbatch.common.end_of_file import EOF_STAGE
from qbatch.pipeline.batch_planner import plan_padded_batches
from qbatch.pipeline.prep_row_order import length_order

# A block as the prep stage builds it: per record, a document (its chunks' token counts), a reject or a marker.
_record = st.one_of(st.lists(st.integers(1, 300), min_size=1, max_size=4), st.just("reject"), st.just("marker"))


def _block(records) -> dict[str, list]:
    out = {"doc_id": [], "chunk": [], "n_chunks": [], "n_tokens": [], "reject_reason": [], "reject_stage": []}
    for k, rec in enumerate(records):
        chunks = rec if isinstance(rec, list) else [0]
        for c, tokens in enumerate(chunks):
            out["doc_id"].append(f"d{k}")
            out["chunk"].append(c)
            out["n_chunks"].append(len(chunks) if isinstance(rec, list) else 0)
            out["n_tokens"].append(tokens)
            out["reject_reason"].append("missing_text" if rec == "reject" else None)
            out["reject_stage"].append(EOF_STAGE if rec == "marker" else ("prep" if rec == "reject" else None))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(_record, max_size=40))
def test_every_row_once_documents_whole_longest_first_then_rejects_then_markers(records):
    out = _block(records)
    order = length_order(out)
    assert sorted(order) == list(range(len(out["doc_id"])))
    kinds = ["marker" if out["reject_stage"][i] == EOF_STAGE else "reject" if out["reject_reason"][i] else "doc"
             for i in order]
    assert kinds == sorted(kinds, key=["doc", "reject", "marker"].index)
    docs = [i for i, kind in zip(order, kinds) if kind == "doc"]
    runs: list[list[int]] = []
    for i in docs:  # consecutive rows of one document form one run
        if runs and out["doc_id"][runs[-1][-1]] == out["doc_id"][i]:
            runs[-1].append(i)
        else:
            runs.append([i])
    assert len(runs) == len({out["doc_id"][i] for i in docs})  # no document split
    assert all([out["chunk"][i] for i in run] == list(range(len(run))) for run in runs)
    longest = [max(out["n_tokens"][i] for i in run) for run in runs]
    assert longest == sorted(longest, reverse=True)


def test_slices_of_the_ordered_block_pad_less_than_input_order():
    rng = np.random.default_rng(0)
    lengths = rng.integers(4, 60, size=2500).tolist()  # short catalog texts of many lengths
    out = _block([[n] for n in lengths])
    ordered = [lengths[i] for i in length_order(out)]

    def plan(rows):  # as the embed stage runs them: 1,024-row calls, each planned on its own
        batches = [b for k in range(0, len(rows), 1024)
                   for b in plan_padded_batches(rows[k:k + 1024], 8192, pass_cost_tokens=256)]
        return sum(b.real_tokens for b in batches) / sum(b.padded_tokens for b in batches), len(batches)

    (sorted_eff, sorted_passes), (input_eff, input_passes) = plan(ordered), plan(lengths)
    assert sorted_eff > input_eff + 0.02 and sorted_passes <= input_passes
