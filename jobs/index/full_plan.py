"""Full mode's plan: which records repeat an id that appeared earlier in the corpus (file order, then
line order), decided by a hash-only scan before anything is embedded (jobs/index/corpus_scan.py).

The plan is persisted with the run (`{run folder}/plan/`, its marker `PLAN.json` written last), so a
resumed attempt embeds exactly what the first attempt planned and never scans again."""

from __future__ import annotations

import collections
import json
import logging
from dataclasses import asdict, dataclass

from jobs.index.corpus_scan import add_lines, first_occurrences, scan_corpus, write_line_plans

log = logging.getLogger("qbatch.index")

PLAN_MARKER = "PLAN.json"
SCAN_BUCKETS = 64


@dataclass
class DuplicatePlan:
    duplicate_lines: dict[str, str]  # file URI -> plan file of its records that repeat an earlier id
    duplicates: int
    scanned: int
    reused: bool = False  # read back from an earlier attempt


def plan_full(run) -> DuplicatePlan:
    """The run's duplicate plan: read back if an earlier attempt made one, else scanned and saved."""
    from connectors.object_store import join_uri, read_bytes, write_bytes

    marker = join_uri(run.run_folder, "plan", PLAN_MARKER)
    saved = read_bytes(marker, run.storage)
    if saved is not None:
        data = json.loads(saved)
        log.info("reusing the plan of an earlier attempt: %d duplicate records", data["duplicates"])
        return DuplicatePlan(data["duplicate_lines"], int(data["duplicates"]), int(data["scanned"]), reused=True)
    scan = scan_corpus(run.cfg, run.files, run.spec, run.pools, SCAN_BUCKETS, with_payloads=False)
    losers: dict[str, list[int]] = collections.defaultdict(list)
    try:
        for i in range(scan.spill.n_buckets):
            _, lost = first_occurrences(scan.spill.read(i))
            add_lines(losers, lost, scan.files)
    finally:
        scan.close()
    plan = DuplicatePlan(write_line_plans(run.run_folder, "duplicates", losers, run.storage),
                         sum(len(v) for v in losers.values()), scan.read)
    body = {k: v for k, v in asdict(plan).items() if k != "reused"}
    write_bytes(marker, json.dumps(body, sort_keys=True).encode(), run.storage)
    log.info("plan: %d records scanned, %d repeat an earlier id and are not embedded", plan.scanned, plan.duplicates)
    return plan
