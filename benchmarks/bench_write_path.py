"""CPU cost of the Qdrant write path: everything on the driver (old path) against writes spread over Ray
writer actors, and what that means in H200 GPUs kept busy. Not a pass/fail test; it prints figures and
ratios measured in the same run.

    python benchmarks/bench_write_path.py [--points 20000] [--dims 1024,384] [--batch-size 256] [--skip-grpc]

Qdrant is the STAND-IN server of benchmarks/standin_qdrant_server.py (not Qdrant: no real Qdrant server
can be installed where this runs), started as a separate process so that its CPU is not counted as the
client's. Only the client side is measured; the stand-in's own speed says nothing about Qdrant's.

- old path: this process plays the driver and writes every point with `qbatch.connectors.qdrant_writer.PointWriter`
  (`write` in 1,024-row pieces, then `flush`), over REST and over gRPC (`prefer_grpc=True`), at each
  dim. CPU is this process's `time.process_time()` (all threads), per 10k points, plus points/s.
- writer actors: local Ray (2 CPUs); 1 then 2 actors, each with its own client + PointWriter, write
  disjoint shares of the points at the first dim. Each actor reports its own process CPU seconds for the
  write; the driver's CPU while it waits is measured too.
- new path: `new_path_driver_cpu` runs `qbatch.connectors.qdrant_writer_stage.QdrantWriterStage` in Ray Data
  `map_batches` (2 writer actors) on rows shaped like the embed stage's output, with the driver doing
  what `qbatch index` does with the acknowledgements (`AckBook`, checkpoints included), and measures
  the driver's CPU per 10k points, checkpointing every --unit-rows rows (run.checkpoint_rows' default),
  at --points and at --marginal-scale times as many: the difference
  is the driver's cost per extra point, apart from Ray Data's fixed executor start.
- projection: GPUs (H200 at 350,000 tokens/s, 150 tokens and one point per doc => ~2,333 points/s per
  GPU) the write path keeps up with, for N writers of one core each: N * (1 / writer CPU s per point)
  / 2,333; and the old path's cap: 1 / driver CPU s per point / 2,333.

Vectors are random float32, payloads the index sink's fields (doc_id, chunk, span, lang, content_hash,
payload_hash, indexed_at, run_id), ids `qbatch.connectors.point_ids.point_id(doc_id, 0)` UUID strings. Data is
built before each timed section; the timed section is the write alone. On a machine with few cores the
stand-in server competes with the writers for CPU, so points/s is a floor; CPU seconds per point are
the figure to compare.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.standin_qdrant_server import StandinProcess  # noqa: E402
from qbatch.connectors.point_ids import point_id  # noqa: E402
from qbatch.connectors.qdrant_writer import PointWriter  # noqa: E402
from qbatch.jobs.index.config import RunConfig  # noqa: E402

TOKENS_PER_S_PER_GPU = 350_000
TOKENS_PER_DOC = 150
POINTS_PER_S_PER_GPU = TOKENS_PER_S_PER_GPU / TOKENS_PER_DOC  # one point per doc: ~2,333
FEED_ROWS = 1024  # rows per PointWriter.write call, like one embedded batch reaching the sink
RUN_ID = "bench-write-path"
INDEXED_AT = "2025-01-01T00:00:00+00:00"


def make_points(lo: int, hi: int, dim: int, seed: int) -> tuple[list[str], np.ndarray, list[dict]]:
    """Points lo..hi-1: ids, random float32 vectors (unit length, like an embedder's), sink-like payloads."""
    rng = np.random.default_rng([seed, lo, dim])
    vectors = rng.standard_normal((hi - lo, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids, payloads = [], []
    for i in range(lo, hi):
        doc_id = f"doc-{i:09d}"
        content_hash = hashlib.sha256(doc_id.encode()).hexdigest()
        ids.append(point_id(doc_id, 0))
        payloads.append({"doc_id": doc_id, "chunk": 0, "span": [0, 600 + i % 400], "lang": "en",
                         "content_hash": content_hash, "payload_hash": content_hash[:16],
                         "indexed_at": INDEXED_AT, "run_id": RUN_ID})
    return ids, vectors, payloads


def open_client(url: str, grpc_port: int, proto: str):
    from qdrant_client import QdrantClient
    return QdrantClient(url=url, grpc_port=grpc_port, prefer_grpc=proto == "grpc", timeout=120,
                        check_compatibility=False)


def create_collection(client, name: str, dim: int) -> None:
    from qdrant_client.http import models
    if client.collection_exists(name):
        client.delete_collection(name)
    client.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))


def write_all(writer: PointWriter, ids: list[str], vectors: np.ndarray, payloads: list[dict]) -> None:
    for lo in range(0, len(ids), FEED_ROWS):
        writer.write(ids[lo:lo + FEED_ROWS], vectors[lo:lo + FEED_ROWS], payloads[lo:lo + FEED_ROWS])
    writer.flush()


class WriterActor:
    """One writer: its own client and PointWriter, writing its share of the points (a Ray actor)."""

    def __init__(self, url: str, grpc_port: int, batch_size: int):
        self.url, self.grpc_port, self.batch_size = url, grpc_port, batch_size
        self.clients: dict = {}
        self.data = None

    def _client(self, proto: str):
        if proto not in self.clients:
            self.clients[proto] = open_client(self.url, self.grpc_port, proto)
        return self.clients[proto]

    def prepare(self, lo: int, hi: int, dim: int, seed: int) -> int:
        self.data = make_points(lo, hi, dim, seed)
        return hi - lo

    def warm_up(self, proto: str, collection: str) -> None:
        """Connect and write the first batch once (idempotent: the timed write rewrites it)."""
        ids, vectors, payloads = self.data
        n = min(self.batch_size, len(ids))
        write_all(PointWriter(self._client(proto), collection, self.batch_size), ids[:n], vectors[:n], payloads[:n])

    def write(self, proto: str, collection: str) -> dict:
        writer = PointWriter(self._client(proto), collection, self.batch_size)
        cpu0, t0 = time.process_time(), time.time()
        write_all(writer, *self.data)
        return {"cpu_s": time.process_time() - cpu0, "start": t0, "end": time.time(),
                "points": writer.counters.points_written, "pid": os.getpid()}


def old_path(server: StandinProcess, proto: str, dim: int, n: int, batch_size: int, seed: int) -> dict:
    """Every point written from this process, as the driver does today."""
    ids, vectors, payloads = make_points(0, n, dim, seed)
    client = open_client(server.url, server.grpc_port, proto)
    collection = f"old_{proto}_{dim}"
    create_collection(client, collection, dim)
    k = min(batch_size, n)
    write_all(PointWriter(client, collection, batch_size), ids[:k], vectors[:k], payloads[:k])  # warm-up
    writer = PointWriter(client, collection, batch_size)
    srv0, cpu0, t0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
    write_all(writer, ids, vectors, payloads)
    wall, cpu, srv = time.perf_counter() - t0, time.process_time() - cpu0, server.cpu_seconds() - srv0
    count = client.count(collection).count
    if count != n:
        raise SystemExit(f"old path {proto} dim {dim}: the server holds {count} points, expected {n}")
    client.delete_collection(collection)
    client.close()
    return {"path": "old (driver)", "proto": proto, "dim": dim, "writers": 1, "points": n, "wall_s": wall,
            "cpu_s": cpu, "who": "driver", "driver_cpu_s": cpu, "server_cpu_s": srv}


def actor_phase(server: StandinProcess, protos: list[str], dim: int, n: int, batch_size: int, seed: int,
                writer_counts: tuple[int, ...] = (1, 2)) -> list[dict]:
    """1 then 2 writer actors, each writing a disjoint share; writer CPU from the actors, driver CPU here."""
    import ray

    remote_writer = ray.remote(num_cpus=1)(WriterActor)
    actors = [remote_writer.remote(server.url, server.grpc_port, batch_size) for _ in range(max(writer_counts))]
    client = open_client(server.url, server.grpc_port, "rest")
    rows = []
    for proto in protos:
        for w in writer_counts:
            collection = f"actors_{proto}_{w}_{dim}"
            create_collection(client, collection, dim)
            bounds = [(n * j // w, n * (j + 1) // w) for j in range(w)]
            ray.get([a.prepare.remote(lo, hi, dim, seed) for a, (lo, hi) in zip(actors, bounds)])
            ray.get([a.warm_up.remote(proto, collection) for a in actors[:w]])
            srv0, cpu0, t0 = server.cpu_seconds(), time.process_time(), time.perf_counter()
            results = ray.get([a.write.remote(proto, collection) for a in actors[:w]])
            driver_wall, driver_cpu = time.perf_counter() - t0, time.process_time() - cpu0
            srv = server.cpu_seconds() - srv0
            count = client.count(collection).count
            if count != n or sum(r["points"] for r in results) != n:
                raise SystemExit(f"actors {proto} x{w}: the server holds {count} points, expected {n}")
            client.delete_collection(collection)
            wall = max(r["end"] for r in results) - min(r["start"] for r in results)
            rows.append({"path": "writer actors", "proto": proto, "dim": dim, "writers": w, "points": n,
                         "wall_s": wall, "cpu_s": sum(r["cpu_s"] for r in results), "who": "writers",
                         "per_writer_cpu_s": [round(r["cpu_s"], 3) for r in results], "driver_cpu_s": driver_cpu,
                         "driver_wall_s": driver_wall, "server_cpu_s": srv})
    for a in actors:
        ray.kill(a)
    client.close()
    return rows


def bench_blocks(n: int, dim: int, seed: int, unit_rows: int, block_bytes: int) -> list:
    """Embed-stage output blocks of about `block_bytes` each (Ray Data cuts the job's blocks at
    run.block_bytes), in checkpoint units of `unit_rows` rows, the last block of each unit carrying the
    unit's end marker."""
    from benchmarks.write_path_rows import embedded_rows
    from qbatch.common.end_of_file import UnitEnd

    block_rows = max(1, block_bytes // max(1, embedded_rows(0, 256, dim, seed).nbytes // 256))
    blocks = []
    for unit_lo in range(0, n, unit_rows):
        unit_hi = min(n, unit_lo + unit_rows)
        for lo in range(unit_lo, unit_hi, block_rows):
            hi = min(unit_hi, lo + block_rows)
            end = UnitEnd(unit_lo // unit_rows, unit_hi - unit_lo) if hi == unit_hi else None
            blocks.append(embedded_rows(lo, hi - lo, dim, seed, end_unit=end))
    return blocks


def new_path_driver_cpu(server: StandinProcess, proto: str, dim: int, n: int, batch_size: int, seed: int,
                        unit_rows: int, block_bytes: int, writers: int = 2) -> dict | None:
    """Driver CPU when Ray Data runs the writes in `QdrantWriterStage` actors and the driver only keeps the
    books (`qbatch.jobs.index.ack_book.AckBook`, checkpointing every `unit_rows` rows), as `qbatch index` does."""
    import tempfile

    import ray

    from qbatch.connectors.file_progress import FileProgressStore
    from qbatch.connectors.qdrant_config import QdrantConfig
    from qbatch.connectors.qdrant_lease import writer_config
    from qbatch.connectors.qdrant_writer_stage import QdrantWriterStage
    from qbatch.jobs.index.ack_book import AckBook

    collection = f"new_{proto}_{dim}"
    client = open_client(server.url, server.grpc_port, "rest")
    create_collection(client, collection, dim)
    cfg = writer_config(QdrantConfig(url=server.url, grpc_port=server.grpc_port, prefer_grpc=proto == "grpc",
                                     upsert_batch_size=batch_size, parallel_writers=writers, timeout_s=120))
    blocks = bench_blocks(n, dim, seed, unit_rows, block_bytes)
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    ds = ray.data.from_arrow(blocks).map_batches(
        QdrantWriterStage, fn_constructor_args=(cfg, collection, RUN_ID, INDEXED_AT, []), batch_size=None,
        batch_format="pyarrow", compute=ray.data.ActorPoolStrategy(size=writers), num_cpus=0.25)
    with tempfile.TemporaryDirectory() as out:
        book = AckBook(FileProgressStore(out, RUN_ID), RUN_ID, unit_rows)
        cpu0, t0 = time.process_time(), time.perf_counter()
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            book.consume(batch)
        book.close()
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - t0
    count = client.count(collection).count
    client.delete_collection(collection)
    client.close()
    if count != n or book.counters.totals["points_upserted"] != n:
        print(f"new path {proto}: the server holds {count} points, the books {book.counters.totals['points_upserted']}; "
              f"expected {n}")
    print(f"new path   {proto:4} dim {dim:4} x{writers}: driver CPU {per10k(cpu, n):.3f} s/10k points "
          f"(of which the books and checkpoints {per10k(book.counters.sink_seconds, n):.3f}; the rest is Ray Data's "
          f"executor and object transfers), {n / wall:8,.0f} points/s; "
          f"{book.counters.ack_bytes / n:.0f} bytes of acks per point reached the driver; "
          f"{book.counters.units_done} checkpoint units of up to {unit_rows:,} rows, {len(blocks)} blocks of "
          f"up to {block_bytes / 2 ** 20:g} MiB")
    return {"path": "new (Ray Data)", "proto": proto, "dim": dim, "writers": writers, "points": n,
            "wall_s": wall, "cpu_s": cpu, "who": "driver", "driver_cpu_s": cpu, "server_cpu_s": float("nan"),
            "ack_bytes": book.counters.ack_bytes}


def per10k(cpu_s: float, n: int) -> float:
    return cpu_s / max(n, 1) * 10_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=20_000, help="points per measurement")
    parser.add_argument("--dims", default="1024,384", help="vector sizes for the old path; actors use the first")
    parser.add_argument("--batch-size", type=int, default=256, help="PointWriter batch_size (points per upsert)")
    parser.add_argument("--skip-grpc", action="store_true", help="REST only")
    parser.add_argument("--skip-actors", action="store_true", help="old path only (no Ray)")
    parser.add_argument("--marginal-scale", type=int, default=5,
                        help="the new path also runs at this multiple of --points; the difference gives the "
                             "driver's CPU per extra point, apart from Ray Data's fixed start")
    parser.add_argument("--unit-rows", type=int, default=RunConfig.model_fields["checkpoint_rows"].default,
                        help="rows per checkpoint unit on the new path (default: run.checkpoint_rows' default)")
    parser.add_argument("--block-bytes", type=int, default=RunConfig.model_fields["block_bytes"].default,
                        help="Ray Data block size on the new path (default: run.block_bytes' default)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    dims = [int(d) for d in args.dims.split(",")]
    protos = ["rest"] if args.skip_grpc else ["rest", "grpc"]
    n, bs = args.points, args.batch_size

    rows = []
    with StandinProcess(seed=args.seed, quiet=True) as server:
        print(f"Qdrant STAND-IN (not Qdrant) pid {server.pid}: REST :{server.rest_port}, gRPC :{server.grpc_port}; "
              f"{n:,} points, batch_size {bs}, {os.cpu_count()} CPUs here")
        for proto in protos:
            for dim in dims:
                r = old_path(server, proto, dim, n, bs, args.seed)
                rows.append(r)
                print(f"old path   {proto:4} dim {dim:4}: driver CPU {per10k(r['cpu_s'], n):6.2f} s/10k points, "
                      f"{n / r['wall_s']:8,.0f} points/s  (stand-in server CPU {per10k(r['server_cpu_s'], n):.2f} s/10k)")
        new = []
        if not args.skip_actors:
            import ray
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, object_store_memory=256 * 1024 ** 2)
            try:
                for r in actor_phase(server, protos, dims[0], n, bs, args.seed):
                    rows.append(r)
                    print(f"actors     {r['proto']:4} dim {r['dim']:4} x{r['writers']}: writer CPU "
                          f"{per10k(r['cpu_s'], n):6.2f} s/10k points (per writer {r['per_writer_cpu_s']}), "
                          f"{n / r['wall_s']:8,.0f} points/s aggregate; driver CPU {per10k(r['driver_cpu_s'], n):.3f} "
                          f"s/10k while waiting")
                for proto in protos:
                    r = new_path_driver_cpu(server, proto, dims[0], n, bs, args.seed, args.unit_rows, args.block_bytes)
                    big = new_path_driver_cpu(server, proto, dims[0], n * args.marginal_scale, bs, args.seed,
                                              args.unit_rows, args.block_bytes)
                    if r is not None and big is not None:
                        # Ray Data's executor costs the driver a fixed start and a poll per unit of time; the
                        # cost per point that grows with the corpus is the difference between the two sizes.
                        marginal = (big["cpu_s"] - r["cpu_s"]) / (big["points"] - r["points"])
                        r.update(marginal_cpu_per_point=marginal, fixed_cpu_s=r["cpu_s"] - marginal * r["points"])
                        print(f"new path   {proto:4} dim {dims[0]:4}: driver CPU per extra point between {n:,} and "
                              f"{big['points']:,} points: {marginal * 10_000:.3f} s/10k; fixed (executor start) "
                              f"{r['fixed_cpu_s']:.2f} s")
                        new.append(r)
                        rows.append(r)
            finally:
                ray.shutdown()

    print(f"\n{'path':<15} {'proto':<5} {'dim':>5} {'writers':>7} {'points':>7} {'CPU s/10k':>10} {'whose CPU':<9} "
          f"{'points/s':>9} {'driver CPU s/10k':>17}")
    for r in rows:
        print(f"{r['path']:<15} {r['proto']:<5} {r['dim']:>5} {r['writers']:>7} {r['points']:>7} "
              f"{per10k(r['cpu_s'], r['points']):>10.3f} {r['who']:<9} {r['points'] / r['wall_s']:>9,.0f} "
              f"{per10k(r['driver_cpu_s'], r['points']):>17.3f}")

    dim = dims[0]
    print(f"\nprojection at dim {dim}: H200 GPUs the write path keeps up with ({TOKENS_PER_S_PER_GPU:,} tokens/s per GPU, "
          f"{TOKENS_PER_DOC} tokens and one point per doc => {POINTS_PER_S_PER_GPU:,.0f} points/s per GPU)")
    for proto in protos:
        old = next(r for r in rows if r["path"].startswith("old") and r["proto"] == proto and r["dim"] == dim)
        old_cap = 1 / (old["cpu_s"] / n)
        print(f"  {proto}: old path (one driver process): {old_cap:,.0f} points/s of driver CPU => "
              f"{old_cap / POINTS_PER_S_PER_GPU:.2f} GPUs")
        one = next((r for r in rows if r["path"] == "writer actors" and r["proto"] == proto and r["writers"] == 1), None)
        if one is None:
            continue
        cap = 1 / (one["cpu_s"] / n)
        gpus = "  ".join(f"N={w}: {w * cap / POINTS_PER_S_PER_GPU:.1f}" for w in (1, 2, 4, 8, 16))
        print(f"  {proto}: writer actors, one core each, {cap:,.0f} points/s per writer => GPUs {gpus}")
    for r in new:
        old = next(o for o in rows if o["path"].startswith("old") and o["proto"] == r["proto"] and o["dim"] == r["dim"])
        print(f"  {r['proto']}: driver CPU old / new, at {n:,} points with the executor's start: "
              f"{per10k(old['cpu_s'], n):.3f} / {per10k(r['cpu_s'], r['points']):.3f} = "
              f"{(old['cpu_s'] / n) / max(r['cpu_s'] / r['points'], 1e-12):.1f}x; per extra point: "
              f"{per10k(old['cpu_s'], n):.3f} / {r['marginal_cpu_per_point'] * 10_000:.3f} = "
              f"{(old['cpu_s'] / n) / max(r['marginal_cpu_per_point'], 1e-12):.1f}x")


if __name__ == "__main__":
    main()
