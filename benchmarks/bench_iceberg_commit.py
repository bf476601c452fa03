"""The Iceberg commit of one rerank day: the driver's time and memory to commit a day of F data files
into a results table that already holds D days, on the embedded SQLite catalog and local files (what
`output.format = "iceberg"` does with no catalog configured). The data files are real Parquet files of
the result contract, written here as the scoring workers would; the commit reads their footers only.
Not a pass/fail test.

    python benchmarks/bench_iceberg_commit.py [--files 1000] [--days 30] [--files-per-day 40] [--rows 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def rss_mb(field: str = "VmRSS") -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_files(results, run_date: dt.date, run_id: str, n: int, rows: int) -> list[str]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from qbatch.connectors.iceberg_tables import RESULTS_SCHEMA

    base = results.data_base(run_id, "bench")
    folder = base[len("file://"):]
    os.makedirs(folder, exist_ok=True)
    table = pa.table({
        "query_id": [f"q{i}" for i in range(rows)], "query": ["a query"] * rows,
        "doc_id": [f"d{i}" for i in range(rows)], "source": ["log"] * rows, "orig_rank": list(range(rows)),
        "orig_score": [0.5] * rows, "rerank_score": pa.array([0.25] * rows, pa.float32()),
        "new_rank": pa.array(list(range(1, rows + 1)), pa.int32()), "model": ["m"] * rows,
        "instruction_sha": ["s"] * rows, "run_id": [run_id] * rows,
        "run_date": pa.array([run_date] * rows, pa.date32())}, schema=RESULTS_SCHEMA)
    uris = []
    for i in range(n):
        pq.write_table(table, f"{folder}/part-{i:05d}.parquet", compression="zstd")
        uris.append(f"{base}/part-{i:05d}.parquet")
    return uris


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000, help="data files of the day committed")
    parser.add_argument("--days", type=int, default=30, help="days the table already holds")
    parser.add_argument("--files-per-day", type=int, default=40, help="data files of each earlier day")
    parser.add_argument("--rows", type=int, default=200, help="rows per data file")
    args = parser.parse_args()

    from qbatch.connectors.iceberg_tables import IcebergResults

    out = tempfile.mkdtemp(prefix="bench-iceberg-")
    results = IcebergResults(None, out, None)
    start = dt.date(2026, 10, 1)
    for d in range(args.days):
        day = start + dt.timedelta(days=d)
        results.commit_day(day, write_files(results, day, f"day{d}", args.files_per_day, args.rows), f"day{d}", "bench")
    target = start + dt.timedelta(days=args.days)
    files = write_files(results, target, "target", args.files, args.rows)
    for label, day, name in (("new day", target, "target"), ("rerun of that day", target, "rerun")):
        if name == "rerun":
            files = write_files(results, day, name, args.files, args.rows)
        before, t = rss_mb(), time.perf_counter()
        snapshot = results.commit_day(day, files, name, "bench")
        seconds, after = time.perf_counter() - t, rss_mb()
        print(f"{label}: {len(files)} data files into a table of {args.days} days x {args.files_per_day} files: "
              f"commit {seconds:.2f} s ({seconds / len(files) * 1000:.2f} ms per file), driver RSS "
              f"{before:.0f} -> {after:.0f} MB (peak {rss_mb('VmHWM'):.0f} MB), snapshot {snapshot}")
    check = results.read_day(target)
    print(f"read back: {check.num_rows} rows of {target} (expected {args.files * args.rows})")


if __name__ == "__main__":
    main()
