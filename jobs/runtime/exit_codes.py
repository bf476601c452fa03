"""Process exit codes of every qbatch command, defined once. The README documents them, and schedulers
(Airflow DAG, RayJob backoff) retry only the transient ones."""

from __future__ import annotations

import enum

from qbatch.common.errors import (
    ConfigError,
    GateFailedError,
    LockHeldError,
    QBatchError,
    RejectRatioExceededError,
    ResourcesUnavailableError,
    SinkUnreachableError,
    SourceError,
)


class ExitCode(enum.IntEnum):
    OK = 0
    INTERNAL_ERROR = 1  # also what an uncaught Python exception gives
    CONFIG_ERROR = 2  # also argparse's usage error
    SOURCE_ERROR = 3  # source empty or unreadable
    SINK_UNREACHABLE = 4
    GATE_FAILED = 5  # validation gate or collection guard refused the run
    REJECT_RATIO_EXCEEDED = 6
    LOCKED = 7  # another run holds the lock
    RESOURCES_UNAVAILABLE = 8  # the cluster could not place the job's actors within resources_wait_s


TRANSIENT = frozenset({ExitCode.SINK_UNREACHABLE, ExitCode.INTERNAL_ERROR, ExitCode.RESOURCES_UNAVAILABLE})

_BY_ERROR: list[tuple[type[BaseException], ExitCode]] = [
    (ConfigError, ExitCode.CONFIG_ERROR),
    (SourceError, ExitCode.SOURCE_ERROR),
    (SinkUnreachableError, ExitCode.SINK_UNREACHABLE),
    (GateFailedError, ExitCode.GATE_FAILED),
    (RejectRatioExceededError, ExitCode.REJECT_RATIO_EXCEEDED),
    (LockHeldError, ExitCode.LOCKED),
    (ResourcesUnavailableError, ExitCode.RESOURCES_UNAVAILABLE),
]


def exit_code_for(error: BaseException) -> ExitCode:
    """The exit code for an exception; anything unexpected is an internal error."""
    for kind, code in _BY_ERROR:
        if isinstance(error, kind):
            return code
    return ExitCode.INTERNAL_ERROR


def is_transient(code: int) -> bool:
    return code in TRANSIENT


__all__ = ["ExitCode", "TRANSIENT", "exit_code_for", "is_transient", "QBatchError"]
