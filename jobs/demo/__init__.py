"""`make demo`: the index job, search and the rerank job on the bundled examples, offline."""
