"""Where a run stands, at `{root}/runs/{run_id}/state.json` (the index job's root is
`{output_uri}/{alias}`), so rerunning a crashed job with the
same run id picks up after the last phase it finished instead of starting over.

Phases are ordered and each is safe to redo: a crash between finishing a phase's work and recording
it only means the next attempt does that phase again. A run id is bound to its config fingerprint;
resuming it with a different config would mix two indexes into one collection, so it is refused.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from qbatch.common.errors import ConfigError
from qbatch.connectors.object_store import join_uri, read_bytes, write_bytes
from qbatch.connectors.source_config import ObjectStoreOptions

Phase = Literal["started", "loaded", "gated", "switched", "manifest_committed", "cleaned"]
PHASES: tuple[str, ...] = get_args(Phase)


def phase_index(phase: str) -> int:
    """Position of a phase in the run's order; ValueError naming the known phases otherwise."""
    try:
        return PHASES.index(phase)
    except ValueError:
        raise ValueError(f"unknown run phase {phase!r}; expected one of {', '.join(PHASES)}") from None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


class RunState(BaseModel):
    """One run's progress record."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(..., description="the run this state belongs to")
    alias: str = Field(..., description="the alias the run builds or refreshes")
    mode: str = Field(..., description="rebuild or refresh, as the job names it")
    config_fingerprint: str = Field(..., description="sha256 of the canonical run-relevant config")
    collection: str = Field(..., description="the collection the run writes into; fixed at its first attempt")
    phase: Phase = Field("started", description="the last phase the run completed")
    attempts: int = Field(1, description="how many times the run was started, this one included")
    started_at: str = Field(default_factory=_now, description="UTC time of the first attempt")
    updated_at: str = Field(default_factory=_now, description="UTC time of the last change")
    details: dict[str, Any] = Field(default_factory=dict, description="free figures the phases record")

    def reached(self, phase: str) -> bool:
        """Whether the run has completed `phase` (or a later one)."""
        return phase_index(self.phase) >= phase_index(phase)


def run_state_uri(output_uri: str, run_id: str) -> str:
    """Where a run's state.json lives."""
    return join_uri(output_uri, "runs", run_id, "state.json")


class RunStateStore:
    """Reads and writes one run's state; every write replaces the whole object atomically."""

    def __init__(self, output_uri: str, run_id: str, storage: ObjectStoreOptions | None = None):
        self.uri = run_state_uri(output_uri, run_id)
        self.run_id = run_id
        self._storage = storage
        self._state: RunState | None = None

    def load(self) -> RunState | None:
        """The stored state, or None for a run that never began."""
        data = read_bytes(self.uri, self._storage)
        if data is None:
            return None
        try:
            self._state = RunState.model_validate_json(data)
        except ValueError as exc:
            raise ConfigError(f"run state {self.uri} is unreadable ({exc}); delete it to restart run "
                              f"{self.run_id} from scratch") from exc
        return self._state

    def begin(self, alias: str, mode: str, fingerprint: str, collection: str, **details: Any) -> RunState:
        """A new state (with `details`), or the stored one with one more attempt. On a resume the stored
        collection wins: the caller must write into `state.collection`, not a freshly generated name."""
        existing = self.load()
        if existing is None:
            state = RunState(run_id=self.run_id, alias=alias, mode=mode, config_fingerprint=fingerprint,
                             collection=collection, details=details)
        else:
            self._refuse_changed(existing, alias, mode, fingerprint)
            state = existing.model_copy(update={"attempts": existing.attempts + 1, "updated_at": _now()})
        self._save(state)
        return state

    def advance(self, phase: str, **details: Any) -> RunState:
        """Record that `phase` is done, with figures merged into `details`. Never moves backwards: a
        redone earlier phase only adds its figures."""
        current = self._state or self.load()
        if current is None:
            raise RuntimeError(f"run {self.run_id} has no state at {self.uri}; call begin() first")
        target = phase if phase_index(phase) > phase_index(current.phase) else current.phase
        state = current.model_copy(update={"phase": target, "updated_at": _now(),
                                           "details": {**current.details, **details}})
        self._save(state)
        return state

    def is_finished(self) -> bool:
        """Whether the run went all the way through (phase `cleaned`)."""
        state = self._state or self.load()
        return state is not None and state.phase == PHASES[-1]

    def _refuse_changed(self, existing: RunState, alias: str, mode: str, fingerprint: str) -> None:
        if existing.alias != alias or existing.mode != mode:
            raise ConfigError(
                f"run {self.run_id} was started for alias {existing.alias!r} in mode {existing.mode!r}, "
                f"not alias {alias!r} in mode {mode!r}; use another run id")
        if existing.config_fingerprint != fingerprint:
            raise ConfigError(
                f"resuming run {self.run_id} with a changed config is refused (fingerprint "
                f"{existing.config_fingerprint[:12]} stored, {fingerprint[:12]} now); run the new config "
                f"as run id {suggest_run_id(self.run_id, fingerprint)!r}, or restore the old config to resume")

    def _save(self, state: RunState) -> None:
        write_bytes(self.uri, state.model_dump_json(indent=1).encode(), self._storage)
        self._state = state


def list_run_states(root: str, storage: ObjectStoreOptions | None = None) -> list[RunState]:
    """Every run recorded under `{root}/runs/`, oldest change first (unreadable ones are skipped)."""
    import pyarrow.fs as pafs

    from qbatch.connectors.object_store import filesystem_for

    fs, path = filesystem_for(join_uri(root, "runs"), storage)
    states = []
    for info in fs.get_file_info(pafs.FileSelector(path, allow_not_found=True)):
        if info.type != pafs.FileType.Directory:
            continue
        data = read_bytes(run_state_uri(root, info.base_name), storage)
        if not data:
            continue
        try:
            states.append(RunState.model_validate_json(data))
        except ValueError:
            continue
    return sorted(states, key=lambda s: (s.updated_at, s.run_id))


def suggest_run_id(run_id: str, fingerprint: str) -> str:
    """A run id for a changed config: deterministic, so rerunning that config resumes the same run."""
    return f"{run_id}-{fingerprint[:8]}"
