"""Full mode's plan: which records repeat an id that appeared earlier in the corpus (file order, then
line order), decided by a hash-only scan before anything is embedded (jobs/index/corpus_scan.py).

The plan is persisted with the run (connectors/run_plan_store.py: `{run folder}/plan/`, its marker
`PLAN.json` written last, with the listing it was made from), so a resumed attempt embeds exactly the
files and records the first attempt planned and never scans again."""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field

from qbatch.jobs.index.corpus_scan import add_lines, first_occurrences, scan_corpus

log = logging.getLogger("qbatch.index")

SCAN_BUCKETS = 64


@dataclass
class DuplicatePlan:
    duplicate_lines: dict[str, str]  # file URI -> plan file of its records that repeat an earlier id
    duplicates: int
    scanned: int
    files: list = field(default_factory=list)  # qbatch.connectors.corpus_listing.CorpusFile: what the plan covers
    reused: bool = False  # read back from an earlier attempt


def plan_full(run) -> DuplicatePlan:
    """The run's duplicate plan: read back if an earlier attempt made one, else scanned and saved."""
    from qbatch.connectors.run_plan_store import RunPlanStore, planned_files

    store = RunPlanStore(run.run_folder, run.storage)
    saved = store.load()
    if saved is not None:
        log.info("reusing the plan of an earlier attempt: %d duplicate records", saved["duplicates"])
        # A plan saved before plans kept their listing covers the files listed now.
        files = planned_files(saved["files"], run.files, run.run_id) if "files" in saved else list(run.files)
        return DuplicatePlan(saved["duplicate_lines"], int(saved["duplicates"]), int(saved["scanned"]), files,
                             reused=True)
    scan = scan_corpus(run.cfg, run.files, run.spec, run.pools, SCAN_BUCKETS, with_payloads=False)
    run.report["scan_s"] = scan.seconds
    losers: dict[str, list[int]] = collections.defaultdict(list)
    try:
        for i in range(scan.spill.n_buckets):
            _, lost = first_occurrences(scan.spill.read(i))
            add_lines(losers, lost, scan.files)
    finally:
        scan.close()
    plan = DuplicatePlan(store.write_line_plans("duplicates", losers), sum(len(v) for v in losers.values()),
                         scan.read, list(run.files))
    store.commit({"duplicate_lines": plan.duplicate_lines, "duplicates": plan.duplicates, "scanned": plan.scanned},
                 plan.files)
    log.info("plan: %d records scanned, %d repeat an earlier id and are not embedded", plan.scanned, plan.duplicates)
    return plan
