#!/usr/bin/env bash
# Plain-install smoke test: what a user gets from `pip install .` with no extras (plus the CPU torch).
# A fresh venv installs this checkout non-editable; then, from a folder outside the checkout, with
# PYTHONPATH unset and no model hub, `qbatch index`, `search`, `index status` and `rerank` run on a
# small corpus and query log and must exit 0 and write their reports. That folder holds decoy `jobs`,
# `pipeline`, `connectors` and `common` packages that raise when imported, and site-packages must gain
# `qbatch` and none of those names. Catches a runtime import that
# only the dev extras provide, and code that works only from the source tree.
#
# The tiny random Qwen3 models are built by the dev environment (.venv, created by `make test`), which
# has the dev extras that building them needs. Usage: bash .ci/plain_install_smoke.sh
# (QBATCH_DEV_PYTHON overrides the dev interpreter; QBATCH_SMOKE_KEEP=1 keeps the work folder.)
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
DEV_PY="${QBATCH_DEV_PYTHON:-$REPO/.venv/bin/python}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/qbatch-plain-install.XXXXXX")"
STARTED=$SECONDS
STEP="setup"

finish() {
  local code=$?
  if [ "$code" -eq 0 ]; then
    echo "plain-install smoke: PASS ($((SECONDS - STARTED)) s)"
  else
    echo "plain-install smoke: FAIL at step '$STEP' (exit $code, $((SECONDS - STARTED)) s); logs in $WORK/logs" >&2
  fi
  if [ "$code" -eq 0 ] && [ -z "${QBATCH_SMOKE_KEEP:-}" ]; then rm -rf "$WORK"; fi
}
trap finish EXIT

fail() { echo "plain-install smoke: $*" >&2; exit 1; }

# step NAME CMD...: run CMD with its output in logs/NAME.log; on failure show the log's tail.
step() {
  STEP="$1"; shift
  local t0=$SECONDS
  if ! "$@" >"$WORK/logs/$STEP.log" 2>&1; then
    tail -n 40 "$WORK/logs/$STEP.log" >&2
    fail "'$STEP' failed: $*"
  fi
  echo "plain-install smoke: $STEP ok ($((SECONDS - t0)) s)"
}

mkdir -p "$WORK/logs" "$WORK/src" "$WORK/data/corpus" "$WORK/models" "$WORK/outside"
[ -x "$DEV_PY" ] || fail "no dev interpreter at $DEV_PY (run \`make test\` first, or set QBATCH_DEV_PYTHON)"

# The checkout's files minus git-ignored ones (.venv, build/, caches): what a clean clone holds. A
# stale build/ in the checkout would otherwise leak deleted modules into the wheel.
copy_checkout() {
  if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
      | while IFS= read -r -d '' f; do [ -f "$f" ] && printf '%s\0' "$f"; done \
      | tar --null -T - -cf -) | tar -xf - -C "$WORK/src"
  else
    cp -R "$REPO/." "$WORK/src" && rm -rf "$WORK/src/.venv" "$WORK/src/build"
  fi
}
step copy-checkout copy_checkout

# Same Python as the dev venv, so the CPU torch wheel on disk fits.
step venv "$DEV_PY" -m venv "$WORK/venv"
VENV_BIN="$WORK/venv/bin"
# The CPU build first: an open torch range would pull a multi-GB CUDA build.
step install-torch "$VENV_BIN/pip" install -q torch==2.13.0
step install-qbatch "$VENV_BIN/pip" install -q "$WORK/src"

build_models() {
  cd "$REPO" && "$DEV_PY" -c '
import sys
from qbatch.pipeline.random_qwen3 import build_random_qwen3
build_random_qwen3(sys.argv[1], kind="embedding", initializer_range=0.3, seed=0)
build_random_qwen3(sys.argv[2], kind="reranker", initializer_range=0.3, seed=1)
' "$WORK/models/embedding" "$WORK/models/reranker"
}
step build-models build_models

cp "$REPO/examples/sample_catalog.jsonl" "$WORK/data/corpus/catalog.jsonl"
# The sample log plus two queries logged without candidates: rerank retrieves theirs from the index.
{ cat "$REPO/examples/sample_query_log.jsonl"
  echo '{"query_id": "q-retrieve-1", "query": "waterproof hiking boots"}'
  echo '{"query_id": "q-retrieve-2", "query": "espresso machine with milk frother"}'
} >"$WORK/data/query_log.jsonl"

cat >"$WORK/outside/index.toml" <<EOF
[source]
uri = "$WORK/data/corpus"
[columns]
id = "id"
text_template = "{title}\\n{brand}\\n{description}"
payload = ["category", "brand", "price"]
lang = "lang"
[embed]
model = "$WORK/models/embedding"
max_length = 256
[qdrant]
path = "$WORK/qdrant"
collection = "smoke_catalog"
[run]
output_uri = "$WORK/out/index"
run_id = "smoke-1"
mode = "full"
progress = false
EOF

cat >"$WORK/outside/rerank.toml" <<EOF
[queries]
uri = "$WORK/data/query_log.jsonl"
format = "jsonl"
[documents]
source = "qdrant"
[candidates]
retrieve_top_k = 3
embed_model = "$WORK/models/embedding"
[reranker]
model = "$WORK/models/reranker"
max_length = 256
[qdrant]
path = "$WORK/qdrant"
collection = "smoke_catalog"
[output]
uri = "$WORK/out/rerank"
run_date = "2026-01-01"
[run]
run_id = "smoke-rerank-1"
progress = false
EOF

# Outside the checkout, nothing but the venv: no PYTHONPATH, no source tree on sys.path, no hub.
cd "$WORK/outside"
# A plain `ray.init()` joins the Ray that another process on this host started last; a Ray temp dir
# of our own makes each command start its own local Ray, as on a laptop with nothing else running.
unset PYTHONPATH RAY_ADDRESS VIRTUAL_ENV
export PATH="$VENV_BIN:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
  RAY_TMPDIR="$WORK/ray"
mkdir -p "$RAY_TMPDIR"

# site-packages gains the one `qbatch` package and no generic top-level names.
step site-packages "$VENV_BIN/python" -c '
import os, sys, sysconfig
site = sysconfig.get_paths()["purelib"]
bare = [n for n in ("jobs", "pipeline", "connectors", "common") if os.path.exists(os.path.join(site, n))]
sys.exit(f"site-packages holds bare top-level packages: {bare}" if bare else
         0 if os.path.isfile(os.path.join(site, "qbatch", "jobs", "cli.py")) else "no qbatch package in site-packages")
'
# A user folder with generic package names, each raising on import: every command below runs beside them
# (the current folder is on sys.path for `python -c` and for Ray's workers).
for bare in jobs pipeline connectors common; do
  mkdir -p "$WORK/outside/$bare"
  echo "raise ImportError('the decoy $bare package was imported')" >"$WORK/outside/$bare/__init__.py"
done
step import-location "$VENV_BIN/python" -c '
import sys, sysconfig
import qbatch, qbatch.jobs, qbatch.pipeline, qbatch.connectors, qbatch.common
from qbatch import Embedder, Reranker
site = sysconfig.get_paths()["purelib"]
mods = (qbatch, qbatch.jobs, qbatch.pipeline, qbatch.connectors, qbatch.common)
wrong = [m.__file__ for m in mods if not m.__file__.startswith(site)]
sys.exit(f"imported from outside {site}: {wrong}" if wrong else 0)
'
step help "$VENV_BIN/qbatch" --help
grep -q "index" "$WORK/logs/help.log" || fail "qbatch --help lists no index command"
step index "$VENV_BIN/qbatch" index --config index.toml
step search "$VENV_BIN/qbatch" search "noise cancelling headphones" --config index.toml --k 3
grep -q "p0" "$WORK/logs/search.log" || fail "search printed no hit (see $WORK/logs/search.log)"
step index-status "$VENV_BIN/qbatch" index status --config index.toml
grep -q "smoke_catalog__" "$WORK/logs/index-status.log" || fail "index status lists no collection"
step rerank "$VENV_BIN/qbatch" rerank --config rerank.toml

# The run layout is {output_uri}/.../runs/{run_id}/: search for the reports rather than assume it.
STEP="reports"
for job in index rerank; do
  report="$(find "$WORK/out/$job" -name report.json -path "*runs*" | head -n 1)"
  [ -n "$report" ] || fail "qbatch $job wrote no report.json under $WORK/out/$job"
  [ -f "$(dirname "$report")/report.md" ] || fail "qbatch $job wrote no report.md next to $report"
done
step rerank-output "$VENV_BIN/python" -c '
import glob, sys
import pyarrow.parquet as pq
files = glob.glob(sys.argv[1] + "/**/run_date=2026-01-01/*.parquet", recursive=True)
rows = pq.ParquetDataset(files).read().to_pylist() if files else []
retrieved = {r["query_id"] for r in rows if r["source"] == "retrieved"}
sys.exit(0 if rows and retrieved == {"q-retrieve-1", "q-retrieve-2"} else
         f"rerank partition: {len(rows)} rows in {files}; retrieved for {sorted(retrieved)}")
' "$WORK/out/rerank"
