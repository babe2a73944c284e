"""Streams equal arrays: one code path behind in-memory, streamed and on-disk data.

Two kinds of tests:

* pinned values: :func:`moebench.make_moe` output for fixed seeds, recorded from
  commit 032b10d (before ``make_moe`` and ``iter_moe_chunks`` were merged into one
  code path), so that committed results that depend on generated data keep
  regenerating. Tolerance ``rtol=1e-12`` (not exact equality) only so that another
  BLAS/CPU that rounds QR or a matrix product differently in the last bit still
  passes; any change to the order of random draws moves these values by O(1).
* a property test (hypothesis) that for every generator option the rows from
  ``make_moe`` (in memory), ``iter_moe_chunks`` (several chunk sizes) and
  ``make_moe(out=DIR)`` (``.npy`` memmaps) are equal bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory
from unittest import mock

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moebench import generator
from moebench.activations import available_activations
from moebench.generator import (
    BLOCK_ROWS,
    GATING_KINDS,
    INPUT_DISTRIBUTIONS,
    iter_moe_chunks,
    make_moe,
)

_COV = [[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]]
#: generator arguments of the pinned cases (k, d and every option that existed in 032b10d)
PINNED_CASES = {
    "default": dict(n=100, d=5, k=2, random_state=0),
    "sigmoid_generic_two_blocks": dict(
        n=70_000,
        d=6,
        k=3,
        activation="sigmoid",
        gating="generic",
        gating_scale=2.0,
        sigma=0.3,
        random_state=7,
    ),
    "relu_min_angle": dict(n=300, d=8, k=4, activation="relu", min_angle=60.0, random_state=123),
    "expert_and_gating_angle": dict(
        n=200, d=6, k=3, expert_angle=30.0, gating_angle=45.0, random_state=5
    ),
    "student_t_mean_cov": dict(
        n=150,
        d=3,
        k=2,
        mean=[1.0, -2.0, 0.5],
        cov=_COV,
        input_distribution="student_t",
        random_state=11,
    ),
    "uniform": dict(n=120, d=4, k=2, input_distribution="uniform", random_state=2),
    "laplace_orthonormal": dict(
        n=120, d=5, k=3, input_distribution="laplace", min_angle=90.0, random_state=3
    ),
}

#: values recorded from commit 032b10d
PINNED_VALUES = {
    "default": {
        "X_first": [
            0.6331977894361152,
            0.42382152394513306,
            0.1882184513395428,
            -0.10257701745934436,
            -1.640863594525337,
        ],
        "X_last": [
            0.4031761639740786,
            -1.4180816453351621,
            -0.7941842853902995,
            -0.47607459829747883,
            -0.9239671314334489,
        ],
        "y_head": [-0.2890056031486302, -0.8502758278425903, 0.36009932012482665],
        "y_tail": [0.30805825762288375, -1.6322031092796907, -1.7036922096241238],
        "X_sum": -2.686168409263349,
        "y_sum": -5.521755973166503,
        "z_counts": [55, 45],
        "expert0": [
            0.7080925840086401,
            -0.43943802479788946,
            0.36096697185474574,
            0.0028825343216454372,
            0.41856140655774277,
        ],
        "gating0": [
            -0.18019197439870538,
            -0.0951143117935033,
            -0.5175061354995136,
            -0.5117712706386219,
            0.6547989663428265,
        ],
    },
    "sigmoid_generic_two_blocks": {
        "X_first": [
            1.5726389232764795,
            -0.1529727204572689,
            0.20528006474400626,
            0.6238548258996592,
            -1.4874296676125482,
            -0.6937371208048974,
        ],
        "X_last": [
            0.1275386732005041,
            -0.638040611050289,
            0.29413903735560265,
            -0.629014481018164,
            1.4314164699420167,
            1.375382480644773,
        ],
        "y_head": [0.10256263330152238, 0.23353408728623162, 0.08317196495002621],
        "y_tail": [0.1442838806347168, 1.1606970298280248, 0.21919257130529735],
        "X_sum": 217.39440752837925,
        "y_sum": 29376.49895342456,
        "z_counts": [25732, 25817, 18451],
        "expert0": [
            -0.2145062542804729,
            0.4987872019412819,
            -0.14955691685141534,
            0.7273215804774475,
            0.3177966013565198,
            0.22986900925109444,
        ],
        "gating0": [
            0.8233284559487609,
            -1.7481057618564622,
            0.20776104985634702,
            -0.02808150134016263,
            0.2791440861100008,
            0.37997612243948997,
        ],
    },
    "relu_min_angle": {
        "X_first": [
            -2.2884665076080983,
            -0.5345186578645991,
            -1.206237172204317,
            0.8962650092216641,
            0.2493118270910576,
            -1.163491553380017,
            0.6734231381399516,
            1.8291588159977978,
        ],
        "X_last": [
            -0.4384326230601534,
            0.3729502577604994,
            -0.1679442565933946,
            3.0242278149980515,
            -1.3750201766037757,
            1.4770380328880566,
            -0.9076043568232547,
            -1.7995254738214208,
        ],
        "y_head": [-0.0759773115428407, 1.8276435331188674, 0.009646961558786098],
        "y_tail": [0.05193082255165812, 1.4907864602606684, 1.1244544586107137],
        "X_sum": 33.09417878845453,
        "y_sum": 109.46480912859538,
        "z_counts": [73, 78, 81, 68],
        "expert0": [
            0.500258896577947,
            -0.10083093128822306,
            0.6151106875152978,
            -0.4837094601898531,
            0.31223435353641116,
            -0.042154467947771425,
            0.1477812141220978,
            -0.07830441860968936,
        ],
        "gating0": [
            -0.059624158034533636,
            -0.28120441723132295,
            -0.10703241002535306,
            -0.017354729679483434,
            0.09611950178594816,
            0.8394023221867689,
            0.43788974919937823,
            0.005409482430715389,
        ],
    },
    "expert_and_gating_angle": {
        "X_first": [
            0.08166642729633847,
            -1.4632528070153206,
            -0.615653101684131,
            0.004767236646992412,
            -0.6801549978253336,
            -0.22061456004549457,
        ],
        "X_last": [
            0.2699043942865022,
            0.5859694574739108,
            -1.3790884749335657,
            0.869192902258579,
            -1.6388149320918795,
            -0.8308703421967282,
        ],
        "y_head": [-0.8029537349436697, 1.7578112979923495, 0.8172888391965636],
        "y_tail": [-0.17802823404499646, 2.3711949033212267, -0.2669348865138772],
        "X_sum": -36.04273226087233,
        "y_sum": 4.591489213812766,
        "z_counts": [56, 72, 72],
        "expert0": [
            0.7299536160668161,
            0.3443514984901641,
            0.5722225500514158,
            -0.005636835948814059,
            -0.028589481191700798,
            0.14248503337855728,
        ],
        "gating0": [
            0.18125796178974785,
            -0.01011682302907152,
            0.21622604797240555,
            -0.15521014930210247,
            0.7047766379940708,
            -0.6320515781558127,
        ],
    },
    "student_t_mean_cov": {
        "X_first": [0.7822596548107614, -2.240215692596589, 0.47205185439901187],
        "X_last": [1.0336972321681428, -2.5355683386831913, 0.7188844828075089],
        "y_head": [-0.05731052092970811, -0.9646288547084019, -0.9472521722455793],
        "y_tail": [1.4115989033157448, 0.8414629558475033, 0.5945493016148654],
        "X_sum": -25.975130322856142,
        "y_sum": 3.9315194626461096,
        "z_counts": [79, 71],
        "expert0": [-0.14467532750178833, -0.8955752210183552, 0.42073040430918984],
        "gating0": [0.15802744223407192, -0.4406590994133321, -0.8836554111219985],
    },
    "uniform": {
        "X_first": [
            -1.46512706285129,
            -0.1670000566320078,
            -0.25125863356473355,
            -0.8651288941553538,
        ],
        "X_last": [1.460052684634729, -1.6183667699711375, 0.06951198525059099, 0.1323977447043887],
        "y_head": [1.1529194444809423, 1.209049931650847, 0.56887349300792],
        "y_tail": [-0.17784034696404774, 1.5301510106012537, -0.6390520167147795],
        "X_sum": -51.73457949668857,
        "y_sum": 6.8007935564245,
        "z_counts": [60, 60],
        "expert0": [
            -0.4871259363797281,
            -0.09170347191531932,
            -0.22153411235150114,
            0.839774631915898,
        ],
        "gating0": [
            -0.04226616805908101,
            -0.7970752305066082,
            0.6005726039707101,
            0.04687424997031435,
        ],
    },
    "laplace_orthonormal": {
        "X_first": [
            0.3148272281239199,
            0.08976627534519949,
            0.676552769737043,
            -0.4016505897270538,
            -0.9923314218785605,
        ],
        "X_last": [
            -0.24459649040880646,
            0.11817778238343868,
            1.4613547371259739,
            0.06903875084712961,
            0.815011749060304,
        ],
        "y_head": [-0.3133411506388871, -0.15036381965487472, 0.17887803271447247],
        "y_tail": [-0.5790101702829152, 0.854999905930291, -0.5318979417201671],
        "X_sum": -4.1218834335866585,
        "y_sum": -4.5996345718773615,
        "z_counts": [54, 39, 27],
        "expert0": [
            -0.2791532394517424,
            -0.8010246767333027,
            -0.30083880880793346,
            -0.41536235667205473,
            0.1319206577559643,
        ],
        "gating0": [
            -0.5494787436346495,
            0.00787456490159475,
            0.42261658899893273,
            -0.17410675203141263,
            -0.6993519565435398,
        ],
    },
}


@pytest.mark.parametrize("name", sorted(PINNED_CASES))
def test_generated_data_is_unchanged_since_032b10d(name):
    kw = PINNED_CASES[name]
    want = PINNED_VALUES[name]
    data = make_moe(**kw)
    assert data.X.shape == (kw["n"], kw["d"])
    assert np.bincount(data.z, minlength=kw["k"]).tolist() == want["z_counts"]
    got = dict(
        X_first=data.X[0],
        X_last=data.X[-1],
        y_head=data.y[:3],
        y_tail=data.y[-3:],
        X_sum=data.X.sum(),
        y_sum=data.y.sum(),
        expert0=data.experts[0],
        gating0=data.gating[0],
    )
    for key, value in got.items():
        np.testing.assert_allclose(value, want[key], rtol=1e-12, atol=1e-13, err_msg=key)


# --------------------------------------------------------------------------- streams


def _three_ways(kwargs: dict, chunk_sizes: list[int], tmp: Path) -> None:
    """Assert in-memory, streamed (every chunk size) and on-disk rows are equal bit for bit."""
    mem = make_moe(**kwargs)
    n, d = kwargs["n"], kwargs["d"]
    assert mem.X.shape == (n, d) and mem.y.shape == (n,) and mem.z.shape == (n,)
    assert np.all(np.isfinite(mem.X)) and np.all(np.isfinite(mem.y))
    disk = make_moe(**kwargs, out=tmp)
    assert isinstance(disk.X, np.memmap) and isinstance(disk.y, np.memmap)
    assert np.array_equal(disk.X, mem.X) and np.array_equal(disk.y, mem.y)
    stream_kwargs = {key: v for key, v in kwargs.items()}
    for size in [None, *chunk_sizes]:
        model, chunks = iter_moe_chunks(**stream_kwargs, chunk_size=size)
        chunks = list(chunks)
        lengths = [len(X) for X, _ in chunks]
        if size is not None:  # every chunk full but the last
            assert all(length == size for length in lengths[:-1]) and 0 < lengths[-1] <= size
        assert all(len(X) == len(y) for X, y in chunks)
        X = np.concatenate([X for X, _ in chunks])
        y = np.concatenate([y for _, y in chunks])
        assert np.array_equal(X, mem.X), f"X differs with chunk_size={size}"
        assert np.array_equal(y, mem.y), f"y differs with chunk_size={size}"
        for a, b in ((model, mem.model), (disk.model, mem.model)):
            assert np.array_equal(a.experts, b.experts) and np.array_equal(a.gating, b.gating)
            assert a.sigma == b.sigma and a.activation.name == b.activation.name
    for got in (disk,):
        for attr in ("mean", "cov"):
            want = getattr(mem, attr)
            assert (getattr(got, attr) is None) == (want is None)
            if want is not None:
                assert np.array_equal(getattr(got, attr), want)


@st.composite
def generator_options(draw: st.DrawFn) -> dict:
    """Valid arguments of make_moe covering every option (and small blocks)."""
    k = draw(st.integers(2, 4))
    d = draw(st.integers(k, 6))
    room = d > k  # orthogonal gating, a gating angle and expert_angle < 90 need d > k
    kwargs: dict = dict(
        n=draw(st.integers(1, 120)),
        d=d,
        k=k,
        activation=draw(st.sampled_from(available_activations())),
        sigma=draw(st.floats(0.01, 2.0)),
        gating=draw(st.sampled_from(GATING_KINDS if room else ("generic",))),
        gating_scale=draw(st.floats(0.0, 8.0)),
        # "grid" needs d = 1 (tests/test_softmax_family.py checks its blocks and chunks)
        input_distribution=draw(st.sampled_from([x for x in INPUT_DISTRIBUTIONS
                                                 if x != "grid"])),
        random_state=draw(st.integers(0, 2**32 - 1)),
    )
    if room and draw(st.booleans()):
        kwargs["gating_angle"] = draw(st.floats(0.0, 90.0))
    angle = draw(st.sampled_from(["min_angle", "expert_angle", "orthonormal", "none"]))
    if angle == "min_angle":
        kwargs["min_angle"] = draw(st.floats(0.0, 40.0))
    elif angle == "orthonormal":
        kwargs["min_angle"] = 90.0
    elif angle == "expert_angle":
        kwargs["expert_angle"] = draw(st.floats(5.0, 90.0) if room else st.just(90.0))
    if draw(st.booleans()):
        kwargs["mean"] = np.array(draw(st.lists(st.floats(-5, 5), min_size=d, max_size=d)))
    if draw(st.booleans()):
        B = np.random.default_rng(draw(st.integers(0, 2**16))).standard_normal((d, d))
        kwargs["cov"] = B @ B.T + 0.1 * np.eye(d)
    return kwargs


@settings(max_examples=150, deadline=None)
@given(
    kwargs=generator_options(),
    block_rows=st.integers(1, 40),
    chunk_size=st.integers(1, 130),
)
def test_memory_stream_and_disk_are_equal_for_every_option(kwargs, block_rows, chunk_size):
    # Small blocks (instead of 65,536 rows) so that n crosses many block boundaries,
    # n is mostly not a multiple of the block size, and chunks straddle blocks.
    with mock.patch.object(generator, "BLOCK_ROWS", block_rows), TemporaryDirectory() as tmp:
        _three_ways(kwargs, [chunk_size, 1, block_rows, block_rows + 1], Path(tmp) / "ds")


@pytest.mark.parametrize(
    "options",
    [
        dict(activation="tanh", gating="generic", gating_scale=3.0, min_angle=30.0),
        dict(expert_angle=40.0, gating_angle=60.0, input_distribution="laplace", sigma=0.5,
             mean=[1.0, 2.0, -1.0, 0.0], cov=np.diag([1.0, 2.0, 3.0, 0.5])),
    ],
    ids=["tanh-generic-min_angle", "angles-laplace-mean-cov"],
)
def test_streams_equal_arrays_across_real_blocks(options, tmp_path):
    n = 2 * BLOCK_ROWS + 17  # three blocks of the real size, the last one short
    kwargs = dict(n=n, d=4, k=2, random_state=99, **options)
    _three_ways(kwargs, [10_000, BLOCK_ROWS, BLOCK_ROWS + 1, n], tmp_path / "ds")


def test_new_stream_options_change_the_rows():
    """iter_moe_chunks honours the options it used to lack (032b10d dropped them)."""
    base = dict(n=50, d=4, k=2, random_state=1)
    plain = make_moe(**base)
    variants = dict(expert_angle=30.0, gating_angle=60.0, input_distribution="uniform",
                    mean=np.ones(4), cov=np.diag([4.0, 1.0, 1.0, 1.0]))
    for key, value in variants.items():
        model, chunks = iter_moe_chunks(**base, **{key: value})
        X, y = (np.concatenate(parts) for parts in zip(*chunks))
        mem = make_moe(**base, **{key: value})
        assert np.array_equal(X, mem.X) and np.array_equal(y, mem.y), key
        assert np.array_equal(model.gating, mem.gating), key
        # the option took effect: rows (X, or y through the model) differ from the defaults
        assert not (np.array_equal(X, plain.X) and np.array_equal(y, plain.y)), key


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(expert_angle=120.0), "expert_angle"),
        (dict(gating_angle=-1.0), "gating_angle"),
        (dict(input_distribution="cauchy"), "input_distribution"),
        (dict(mean=[0.0, 1.0]), "mean"),
        (dict(cov=-np.eye(4)), "cov"),
        (dict(n=0), "n must be"),
    ],
    ids=["expert_angle", "gating_angle", "input_distribution", "mean", "cov", "n"],
)
def test_streams_reject_what_make_moe_rejects_at_the_call(options, match):
    kwargs = dict(n=10, d=4, k=2, random_state=0) | options
    with pytest.raises(ValueError, match=match):
        make_moe(**kwargs)
    with pytest.raises(ValueError, match=match):  # at the call, before any row is read
        iter_moe_chunks(**kwargs)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_chunk_size_is_checked(bad):
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1"):
        iter_moe_chunks(10, 4, 2, random_state=0, chunk_size=bad)
