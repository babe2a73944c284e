import json
import subprocess
import sys

import numpy as np
import pytest

from moebench.cli import main

VERBS = ["list", "generate", "run", "plot", "report"]


def test_list_shows_algorithms_and_activations(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("tensor_em", "joint_em", "sgd", "alt_min", "linear", "relu", "leaky_relu"):
        assert name in out


@pytest.mark.parametrize("verb", VERBS)
def test_help_on_every_verb(verb, capsys):
    with pytest.raises(SystemExit) as exc:
        main([verb, "--help"])
    assert exc.value.code == 0
    assert "usage: moebench " + verb in capsys.readouterr().out


def test_generate_npz_round_trip(tmp_path):
    out = tmp_path / "set.npz"
    assert main(["generate", "--n", "500", "--d", "6", "--k", "3", "--activation", "relu",
                 "--seed", "4", "--out", str(out)]) == 0
    f = np.load(out)
    assert f["X"].shape == (500, 6) and f["experts"].shape == (3, 6)
    assert str(f["activation"]) == "relu"
    assert not list(tmp_path.glob("*.partial")) and not list(tmp_path.glob(".tmp-*"))


def test_generate_directory_streams_memmaps(tmp_path):
    out = tmp_path / "big"
    assert main(["generate", "--n", "1000", "--d", "4", "--k", "2", "--out", str(out)]) == 0
    meta = json.loads((out / "params.json").read_text())
    assert np.load(out / "X.npy", mmap_mode="r").shape == (1000, 4)
    assert np.array(meta["experts"]).shape == (2, 4)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["generate", "--n", "10", "--d", "3", "--k", "5", "--out", "x.npz"], "exceeds"),
        (["generate", "--n", "10", "--d", "3", "--k", "2", "--out", "x.txt"], "--out must end"),
        (["generate", "--n", "10", "--d", "3", "--k", "2", "--activation", "swish",
          "--out", "x.npz"], "invalid choice"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_non_zero_with_one_line(argv, message, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "moebench.cli", *argv], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], proc.stderr
