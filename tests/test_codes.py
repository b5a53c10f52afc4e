"""codes/: spec strings, circuits, noise models, round layouts."""

import numpy as np
import pytest
import stim
from hypothesis import given, settings
from hypothesis import strategies as st

from qecd.codes import RoundLayout, build_experiment, parse_spec
from qecd.codes.noise import si1000
from qecd.errors import DemError, SpecError


# -- spec strings ----------------------------------------------------------------------------
@given(
    d=st.sampled_from([3, 5, 7, 9]),
    r=st.integers(1, 40),
    p=st.floats(0, 0.499, allow_nan=False),
    noise=st.sampled_from(["uniform", "si1000"]),
    basis=st.sampled_from(["x", "z"]),
)
def test_surface_spec_strings_round_trip(d, r, p, noise, basis):
    s = parse_spec(f"surface:basis={basis},p={p!r},d={d},noise={noise},r={r}")
    assert parse_spec(str(s)) == s
    assert str(parse_spec(str(s))) == str(s)
    assert (s["d"], s["r"], s["p"], s["noise"], s["basis"]) == (d, r, p, noise, basis)


@pytest.mark.parametrize("text", ["bb:n=144,r=12,p=0.003", "hgp:seed=hamming7,p=0.01",
                                  "repetition:d=4", "surface:d=5"])
def test_every_family_round_trips(text):
    s = parse_spec(text)
    assert parse_spec(str(s)) == s


def test_spec_defaults_fill_in_rounds_and_q():
    s = parse_spec("bb:n=144,p=0.003")
    assert s["r"] == 12 and s["q"] == 0.003
    assert parse_spec("surface:d=7")["r"] == 7


@pytest.mark.parametrize(
    "text, field",
    [
        ("surface:d=4", "d"),
        ("surface:d=five", "d"),
        ("surface:d=5,p=0.7", "p"),
        ("surface:d=5,noise=pink", "noise"),
        ("surface:d=5,basis=y", "basis"),
        ("surface:d=5,colour=red", "colour"),
        ("surface:d=5,d=7", "d"),
        ("surface:p=0.1", "d"),
        ("torus:d=5", "family"),
        ("bb:n=100", "n"),
        ("surface:d=5,r", "spec"),
        ("surface:d=5,r=0", "r"),
    ],
)
def test_bad_specs_name_the_bad_field(text, field):
    with pytest.raises(SpecError) as e:
        parse_spec(text)
    assert e.value.field == field
    assert field in str(e.value) and "expected" in str(e.value)


@given(st.text(max_size=40))
@settings(max_examples=200)
def test_arbitrary_text_parses_or_raises_spec_error(text):
    try:
        parse_spec(text)
    except SpecError:
        pass


# -- circuits and DEMs -----------------------------------------------------------------------
@pytest.mark.parametrize("noise", ["uniform", "si1000"])
@pytest.mark.parametrize("basis", ["x", "z"])
def test_surface_dems_decompose_to_graph_like(noise, basis):
    exp = build_experiment(f"surface:d=5,r=3,p=0.002,noise={noise},basis={basis}")
    for inst in exp.dem.flattened():
        if inst.type != "error":
            continue
        comp = 0
        for t in inst.targets_copy():
            if t.is_separator():
                assert comp <= 2
                comp = 0
            elif t.is_relative_detector_id():
                comp += 1
        assert comp <= 2


def test_si1000_adds_the_model_s_channels_with_their_strengths():
    c = si1000(stim.Circuit.generated("surface_code:rotated_memory_z", distance=3, rounds=2), 0.001)
    probs = {}
    for inst in c.flattened():
        if inst.name in ("X_ERROR", "DEPOLARIZE1", "DEPOLARIZE2", "Z_ERROR"):
            probs.setdefault(inst.name, set()).add(round(inst.gate_args_copy()[0], 9))
    assert probs["DEPOLARIZE2"] == {0.001}
    assert probs["X_ERROR"] == {0.002, 0.005}  # resets 2p, measurements 5p
    assert probs["DEPOLARIZE1"] == {0.0001, 0.002}  # gates / idles p/10, measure-idle 2p


def test_si1000_is_noisier_than_uniform_at_the_same_p():
    a = build_experiment("surface:d=3,r=3,p=0.001,noise=uniform")
    b = build_experiment("surface:d=3,r=3,p=0.001,noise=si1000")
    pa = sum(i.args_copy()[0] for i in a.dem.flattened() if i.type == "error")
    pb = sum(i.args_copy()[0] for i in b.dem.flattened() if i.type == "error")
    assert pb > pa


# -- layouts ---------------------------------------------------------------------------------
SPECS = [
    "surface:d=3,r=3,p=0.001",
    "surface:d=5,r=5,p=0.001,noise=si1000,basis=x",
    "repetition:d=5,r=4,p=0.01",
    "bb:n=72,r=3,p=0.003",
    "hgp:seed=hamming7,r=2,p=0.01",
]


@pytest.mark.parametrize("spec", SPECS)
def test_layout_partitions_every_detector_exactly_once(spec):
    exp = build_experiment(spec)
    ids = np.concatenate(exp.layout.detectors)
    assert sorted(ids.tolist()) == list(range(exp.dem.num_detectors))
    assert exp.layout.num_observables == exp.dem.num_observables


@pytest.mark.parametrize("spec", SPECS)
def test_layout_from_dem_text_equals_built_layout(spec):
    exp = build_experiment(spec)
    client_dem = stim.DetectorErrorModel(str(exp.dem))  # what a client would send
    assert RoundLayout.from_dem(client_dem) == exp.layout


def test_surface_layout_has_half_size_first_and_final_rounds():
    lay = build_experiment("surface:d=5,r=5").layout
    assert lay.num_rounds == 6
    assert lay.round_sizes == (12, 24, 24, 24, 24, 12)
    assert lay.bulk_size == 24


def test_layout_time_coordinate_can_be_first():
    dem = stim.DetectorErrorModel(
        "error(0.1) D0 D1\nerror(0.1) D1 D2\n"
        "detector(0, 5) D0\ndetector(1, 5) D1\ndetector(1, 9) D2"
    )
    assert RoundLayout.from_dem(dem, time_coord=0).round_sizes == (1, 2)
    assert RoundLayout.from_dem(dem).round_sizes == (2, 1)


def test_layout_refuses_a_dem_without_coordinates():
    with pytest.raises(DemError, match="no coordinates"):
        RoundLayout.from_dem(stim.DetectorErrorModel("error(0.1) D0 D1"))


@pytest.mark.parametrize("spec", ["surface:d=3,r=3,p=0.01", "bb:n=72,r=2,p=0.01"])
def test_seeded_sampling_is_reproducible(spec):
    exp = build_experiment(spec)
    a = exp.sample(50, seed=11)
    b = exp.sample(50, seed=11)
    c = exp.sample(50, seed=12)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


def test_bit_packed_sampling_matches_unpacked():
    exp = build_experiment("surface:d=3,r=3,p=0.02")
    d, o = exp.sample(20, seed=5)
    dp, op = exp.sample(20, seed=5, bit_packed=True)
    assert np.array_equal(np.packbits(d, axis=1, bitorder="little"), dp)
