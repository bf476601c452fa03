"""The query embedder in a Ray actor: the same vectors as the in-process Embedder, its resources given
back on close, and a bounded wait when its GPU is not there."""

from __future__ import annotations

import numpy as np
import pytest

from qbatch.common.errors import ResourcesUnavailableError
from qbatch.jobs.runtime.query_embedder import RemoteQueryEmbedder

QUERIES = ["wie lange hält der akku", "return policy for opened items", "🙂 emoji query", "x" * 300]


def test_remote_queries_equal_local_ones_and_close_gives_the_cpu_back(ray_session, tiny_embedding_checkpoint):
    from qbatch.pipeline.embedder import Embedder

    kwargs = {"name_or_path": str(tiny_embedding_checkpoint), "dim": 64, "max_length": 96, "device": "cpu"}
    local = Embedder.from_pretrained(**kwargs)
    free = ray_session.available_resources().get("CPU")
    with RemoteQueryEmbedder.start(kwargs, num_gpus=0, wait_field="embed.resources_wait_s", wait_s=60) as remote:
        assert remote.model_fingerprint == local.model_fingerprint and remote.dim == 64
        got = remote.embed_queries(QUERIES, instruction="Find the answer")
    want = local.embed_queries(QUERIES, instruction="Find the answer")
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert ray_session.available_resources().get("CPU") == free


def test_a_missing_gpu_ends_the_start_within_the_wait_naming_the_field(ray_session, tiny_embedding_checkpoint):
    kwargs = {"name_or_path": str(tiny_embedding_checkpoint), "device": "cpu"}
    with pytest.raises(ResourcesUnavailableError, match=r"query embedder: .*reranker\.resources_wait_s=1s.*GPU 0 of the 1"):
        RemoteQueryEmbedder.start(kwargs, num_gpus=1, wait_field="reranker.resources_wait_s", wait_s=1)
