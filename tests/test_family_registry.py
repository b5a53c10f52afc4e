"""codes/family.py and decoder/plan.py: a new family plugs in without touching other modules;
the window plan is public, frozen and what both stream decoders are built from."""

from __future__ import annotations

import numpy as np
import pytest

from qecd.codes import build_experiment, parse_spec
from qecd.codes.experiment import circuit_experiment
from qecd.codes.family import _FAMILIES, Family, families, family, register
from qecd.codes.fields import int_field, prob_field
from qecd.codes.repetition import repetition_code_circuit
from qecd.decoder.plan import WindowPlan
from qecd.decoder.window import StreamDecoder
from qecd.errors import SpecError


@pytest.fixture
def toy_family():
    """A family defined here only: a repetition code named 'toyrep'."""
    def build(spec):
        circ = repetition_code_circuit(d=spec["d"], rounds=spec["r"], p=spec["p"])
        return circuit_experiment(spec, circ, name="toy", n=spec["d"], k=1, d=spec["d"])

    fam = register(Family(
        name="toyrep", fields={"d": (int_field("d", 2), None), "r": (int_field("r", 1), 3),
                               "p": (prob_field("p"), 0.01)},
        required=("d",), build=build, graph_like=True, derive=lambda values: None,
        window=lambda spec: (4, 2), catalog=("toyrep:d=3",)))
    yield fam
    del _FAMILIES["toyrep"]


def test_a_registered_family_parses_builds_and_streams(toy_family):
    assert "toyrep" in families()
    spec = parse_spec("toyrep:d=5")
    assert str(spec) == "toyrep:d=5,r=3,p=0.01"
    exp = build_experiment(spec)
    assert exp.graph_like and exp.layout.num_rounds == 4
    w, c = family("toyrep").default_window(spec)
    sd = StreamDecoder(exp.dem, exp.layout, "uf", window=w, commit=c)
    dets, obs = exp.sample(100, seed=1)
    assert np.array_equal(sd.decode_batch(dets), sd.compile().decode_batch(dets))


def test_an_unknown_family_names_the_registered_ones():
    with pytest.raises(SpecError, match="bb|hgp|repetition|surface"):
        parse_spec("toric:d=3")


def test_a_family_cannot_be_registered_twice_by_two_modules(toy_family):
    other = Family(name="toyrep", fields={}, required=(), build=parse_spec, graph_like=True,
                   derive=lambda v: None, window=lambda s: (1, 1))
    with pytest.raises(ValueError, match="registered twice"):
        register(other)


def test_the_plan_is_frozen_and_shared_by_both_stream_decoders():
    exp = build_experiment("surface:d=3,r=9,p=0.01")
    sd = StreamDecoder(exp.dem, exp.layout, "uf", window=4, commit=2)
    plan = sd.plan
    assert isinstance(plan, WindowPlan)
    for arr in (plan.round_offsets, plan.layout_pos, plan.round_of, plan.fault_first_round,
                plan.windows[0].det_ids, plan.windows[0].local_to_global):
        with pytest.raises(ValueError):
            arr[0] = 1
    with pytest.raises(AttributeError):
        plan.window = 7  # type: ignore[misc]
    assert [(w.start, w.stop, w.commit_stop) for w in plan.windows][:2] == [(0, 4, 2), (2, 6, 4)]
    assert plan.windows[-1].final and plan.windows[-1].stop == plan.num_rounds
    # every bulk window has the same problem text, so the backends share one instance
    assert len({w.template for w in plan.windows[1:-1]}) == 1
    assert sd.compile().plan is plan
    assert np.array_equal(plan.trigger_table(), sd.trigger_table())


def test_a_plan_is_the_same_whoever_builds_it():
    exp = build_experiment("repetition:d=5,r=8,p=0.02")
    a = WindowPlan.build(exp.dem, exp.layout, graph_like=True, window=4, commit=2)
    b = StreamDecoder(exp.dem, exp.layout, "pymatching", window=4, commit=2).plan
    assert [w.template for w in a.windows] == [w.template for w in b.windows]
    assert np.array_equal(a.fault_first_round, b.fault_first_round)


def test_a_last_window_without_faults_of_its_own_is_merged_into_the_one_before():
    # hgp's final slice (perfect data measurement) has no fault beginning in it: with
    # commit = window the last window would be that slice alone and explain nothing
    exp = build_experiment("hgp:seed=rep3,r=4,p=0.02")
    plan = WindowPlan.build(exp.dem, exp.layout, graph_like=False, window=2, commit=2)
    assert all(len(w.local_to_global) for w in plan.windows)
    assert plan.windows[-1].stop == plan.num_rounds and plan.windows[-1].final
    sd = StreamDecoder(exp.dem, exp.layout, "bp-cluster", window=2, commit=2)
    dets, _ = exp.sample(200, seed=4)
    sd.decode_batch(dets)  # raised "not explained by any set of faults" before
