"""Typed failures. Each maps to one process exit code in jobs/runtime/exit_codes.py, so schedulers can tell
transient failures (retry) from permanent ones (page a human)."""

from __future__ import annotations


class QBatchError(Exception):
    """Base class: a failure whose message is fit to show an operator as is."""


class ConfigError(QBatchError):
    """The configuration is invalid; nothing was read or written."""


class SourceError(QBatchError):
    """The source is empty or cannot be read."""


class SinkUnreachableError(QBatchError):
    """The vector store (or another sink) cannot be reached. Transient: a retry may succeed."""


class ResourcesUnavailableError(QBatchError):
    """The cluster could not place the actors a job needs (GPUs, CPUs) within the configured wait.
    Transient: the autoscaler or a later run may find them."""


class GateFailedError(QBatchError):
    """A validation gate or the collection guard refused the run; the live index is untouched."""


class RejectRatioExceededError(QBatchError):
    """More rows were rejected than `max_reject_ratio` allows."""


class LockHeldError(QBatchError):
    """Another run holds the lock for this alias or output."""


class NonFiniteOutputError(QBatchError, ValueError):
    """A model produced NaN/inf for some inputs; `indices` names them (positions in the caller's input)."""

    def __init__(self, message: str, indices: list[int]):
        super().__init__(message)
        self.indices = list(indices)


class SinkRejectedError(ConfigError):
    """The sink refused a request as invalid (HTTP 4xx): permanent, so it exits as a config error
    and schedulers do not retry it."""
