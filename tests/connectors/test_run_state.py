from __future__ import annotations

import json

import pytest

from qbatch.common.errors import ConfigError
from qbatch.connectors.run_state import PHASES, RunStateStore, run_state_uri

FP = "a" * 64


def test_round_trip_through_the_state_file(tmp_path):
    out = str(tmp_path)
    store = RunStateStore(out, "run-1")
    assert store.load() is None
    store.begin("catalog", "rebuild", FP, "catalog-20261101")
    store.advance("loaded", points=120, docs=40)
    on_disk = json.loads((tmp_path / "runs" / "run-1" / "state.json").read_text())
    assert on_disk["phase"] == "loaded" and on_disk["details"] == {"points": 120, "docs": 40}
    again = RunStateStore(out, "run-1").load()
    assert again is not None
    assert (again.run_id, again.alias, again.mode, again.collection, again.attempts) == (
        "run-1", "catalog", "rebuild", "catalog-20261101", 1)
    assert again.details == {"points": 120, "docs": 40}
    assert run_state_uri(out, "run-1").endswith("runs/run-1/state.json")


def test_phases_never_move_backwards_but_details_merge(tmp_path):
    store = RunStateStore(str(tmp_path), "run-1")
    store.begin("catalog", "refresh", FP, "c1")
    assert store.advance("switched", new_alias_target="c1").phase == "switched"
    redone = store.advance("loaded", points=7)
    assert redone.phase == "switched"
    assert redone.details == {"new_alias_target": "c1", "points": 7}
    assert RunStateStore(str(tmp_path), "run-1").load().phase == "switched"
    assert redone.reached("gated") and not redone.reached("manifest_committed")


def test_finished_only_after_cleaned(tmp_path):
    store = RunStateStore(str(tmp_path), "run-1")
    store.begin("catalog", "rebuild", FP, "c1")
    for phase in PHASES[:-1]:
        store.advance(phase)
        assert not store.is_finished()
    store.advance("cleaned")
    assert RunStateStore(str(tmp_path), "run-1").is_finished()


def test_changed_fingerprint_is_refused_and_names_a_run_id(tmp_path):
    store = RunStateStore(str(tmp_path), "run-1")
    store.begin("catalog", "rebuild", FP, "c1")
    with pytest.raises(ConfigError) as err:
        RunStateStore(str(tmp_path), "run-1").begin("catalog", "rebuild", "b" * 64, "c2")
    assert "resuming run run-1 with a changed config is refused" in str(err.value)
    assert "'run-1-bbbbbbbb'" in str(err.value)
    assert RunStateStore(str(tmp_path), "run-1").load().config_fingerprint == FP


def test_changed_alias_is_refused(tmp_path):
    RunStateStore(str(tmp_path), "run-1").begin("catalog", "rebuild", FP, "c1")
    with pytest.raises(ConfigError, match="'faq'"):
        RunStateStore(str(tmp_path), "run-1").begin("faq", "rebuild", FP, "c1")


def test_attempts_are_counted_and_the_first_collection_is_kept(tmp_path):
    out = str(tmp_path)
    first = RunStateStore(out, "run-1").begin("catalog", "rebuild", FP, "catalog-0300")
    RunStateStore(out, "run-1").advance("loaded")
    resumed = RunStateStore(out, "run-1").begin("catalog", "rebuild", FP, "catalog-0315")
    third = RunStateStore(out, "run-1").begin("catalog", "rebuild", FP, "catalog-0330")
    assert (first.attempts, resumed.attempts, third.attempts) == (1, 2, 3)
    assert third.collection == "catalog-0300" and third.phase == "loaded"
    assert third.started_at == first.started_at


def test_unknown_phase_and_advance_before_begin_fail_clearly(tmp_path):
    store = RunStateStore(str(tmp_path), "run-1")
    with pytest.raises(RuntimeError, match="begin"):
        store.advance("loaded")
    store.begin("catalog", "rebuild", FP, "c1")
    with pytest.raises(ValueError, match="'indexed'"):
        store.advance("indexed")


def test_corrupt_state_names_the_file(tmp_path):
    path = tmp_path / "runs" / "run-1" / "state.json"
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="state.json"):
        RunStateStore(str(tmp_path), "run-1").load()
