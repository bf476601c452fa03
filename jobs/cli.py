"""`qbatch` command line. Each subcommand lives in its own jobs/ module with `add_arguments(parser)`
and `run(args) -> int`; modules are imported lazily-light (no torch/ray at import), so `--help` is instant."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from qbatch.common.errors import QBatchError
from qbatch.jobs.runtime.exit_codes import ExitCode, exit_code_for

# name -> (module, one-line help). Order is the order shown in --help.
COMMANDS: dict[str, tuple[str, str]] = {
    "index": ("qbatch.jobs.index.command", "embed a corpus into Qdrant (also: index status, index rollback)"),
    "search": ("qbatch.jobs.search.command", "embed a query and show the top hits of a collection or alias"),
    "rerank": ("qbatch.jobs.rerank.command", "re-score query logs with Qwen3-Reranker into Parquet tables"),
}

log = logging.getLogger("qbatch")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qbatch",
        description="Batch indexing and reranking with Qwen3-Embedding / Qwen3-Reranker on Ray and Qdrant.",
        epilog="Exit codes: " + ", ".join(f"{c.value}={c.name.lower()}" for c in ExitCode),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        sp = sub.add_parser(name, help=help_text, description=help_text,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(sp)
        sp.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args._module.run(args))
    except QBatchError as e:
        code = exit_code_for(e)
        print(f"qbatch {args.command}: {e}", file=sys.stderr)
        print(f"exit {code.value} ({code.name.lower()})", file=sys.stderr)
        return int(code)
    except KeyboardInterrupt:
        return int(ExitCode.INTERNAL_ERROR)
    except Exception as e:  # noqa: BLE001 - the last line of defence turns any crash into a code
        log.exception("internal error")
        print(f"qbatch {args.command}: internal error: {type(e).__name__}: {e}", file=sys.stderr)
        return int(ExitCode.INTERNAL_ERROR)


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
