"""A trained head on a PennyLane device: ``load_checkpoint(path, backend=...)``, the
``--backend`` option of evaluate/predict/shots, and the ``head.circuit = other`` route."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from engine_helpers import tiny_config

from qhead.cli import main
from qhead.engine import load_checkpoint, set_backend, train
from qhead.errors import ConfigError
from qhead.quantum import AEVQC
from qhead.quantum.pennylane_backend import PennyLaneCircuit

pytest.importorskip("pennylane")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """small_cnn at 16 px: an 8×2×2 map on 5 qubits, Ansatz 2 (RZ, RY) so every angle and
    the entangler matter, trained for one epoch."""
    out = tmp_path_factory.mktemp("backend") / "q"
    cfg = tiny_config(
        out, "epochs=1", "amp=off", "model.head_options.ansatz=ansatz2",
        "model.head_options.ansatz_options.gates=[RZ,RY]", head="quantum",
    )
    return train(cfg) / "last.pt"


@pytest.fixture
def pennylane_calls(monkeypatch) -> list[int]:
    """Counts the rows PennyLane actually executed (so a silently ignored backend fails)."""
    calls: list[int] = []
    original = PennyLaneCircuit.__call__

    def spy(self, features, weights):
        calls.append(int(features.shape[0]))
        return original(self, features, weights)

    monkeypatch.setattr(PennyLaneCircuit, "__call__", spy)
    return calls


def _probabilities(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return torch.softmax(model.double()(images.double()), dim=1)


def test_default_qubit_gives_the_simulators_probabilities(checkpoint, pennylane_calls) -> None:
    images = torch.randn(6, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    ours = load_checkpoint(checkpoint)
    theirs = load_checkpoint(checkpoint, backend="pennylane:default.qubit")
    assert theirs.model.head.circuit.backend == "pennylane:default.qubit"
    # the loaded angles are the trained ones, not a fresh initialisation
    assert torch.equal(theirs.model.head.circuit.weights, ours.model.head.circuit.weights)
    p_ours = _probabilities(ours.model, images)
    assert pennylane_calls == []
    p_theirs = _probabilities(theirs.model, images)
    assert pennylane_calls == [6]
    torch.testing.assert_close(p_theirs, p_ours, atol=1e-6, rtol=0)
    assert not torch.allclose(p_ours, p_ours.mean(0), atol=1e-3)  # the inputs matter


def test_assigning_a_circuit_changes_what_runs(checkpoint, pennylane_calls) -> None:
    model = load_checkpoint(checkpoint).model
    head = model.head.circuit
    pl = AEVQC(head.in_features, "ansatz2", measured_wires=list(head.measured_wires),
               backend="pennylane", gates=("RZ", "RY"))
    pl.load_state_dict(head.state_dict())
    images = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    expected = _probabilities(model, images)
    model.head.circuit = pl
    assert model.head.pre[0] is pl
    torch.testing.assert_close(_probabilities(model, images), expected, atol=1e-6, rtol=0)
    assert pennylane_calls == [3]


def test_bad_backends_are_refused_clearly(checkpoint) -> None:
    with pytest.raises(ConfigError, match=r"'torch', 'pennylane' or 'pennylane:<device>'.*qiskit"):
        load_checkpoint(checkpoint, backend="qiskit")
    with pytest.raises(ConfigError, match=r"cannot create PennyLane device .no\.such\.device."):
        load_checkpoint(checkpoint, backend="pennylane:no.such.device")
    with pytest.raises(ConfigError, match="has no quantum circuit"):
        set_backend(torch.nn.Linear(2, 2), "pennylane")


def test_cli_evaluate_and_predict_on_pennylane(checkpoint, tmp_path, capsys) -> None:
    from PIL import Image

    assert main(["evaluate", str(checkpoint), "--out", str(tmp_path), "--json"]) == 0
    ours = json.loads(capsys.readouterr().out)
    assert main(["evaluate", str(checkpoint), "--out", str(tmp_path), "--json",
                 "--backend", "pennylane"]) == 0
    theirs = json.loads(capsys.readouterr().out)
    assert ours["backend"] == "torch" and theirs["backend"] == "pennylane"
    assert theirs["accuracy"] == ours["accuracy"]
    assert theirs["loss"] == pytest.approx(ours["loss"], abs=1e-5)
    assert (tmp_path / "last.eval.pennylane.json").is_file()

    image = tmp_path / "x.png"
    Image.new("RGB", (16, 16), (200, 30, 90)).save(image)
    rows = {}
    for backend in ([], ["--backend", "pennylane:default.qubit"]):
        out = tmp_path / f"p{len(backend)}.csv"
        assert main(["predict", str(checkpoint), str(image), "--out", str(out), *backend]) == 0
        rows[len(backend)] = out.read_text().splitlines()[1].split(",")
    assert rows[0][2] == rows[2][2]  # predicted class
    assert [float(v) for v in rows[0][3:-1]] == pytest.approx(
        [float(v) for v in rows[2][3:-1]], abs=1e-5)

    assert main(["evaluate", str(checkpoint), "--backend", "cirq"]) == 1
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "'cirq'" in err and "pennylane:<device>" in err


def test_cli_shots_on_pennylane(checkpoint, tmp_path, pennylane_calls) -> None:
    import csv

    for name, backend in (("ours", []), ("theirs", ["--backend", "pennylane"])):
        assert main(["shots", str(checkpoint), "--shots", "exact", "--sampling-seeds", "1",
                     "--no-plot", "--out", str(tmp_path / name), *backend]) == 0
    ours, theirs = (list(csv.DictReader((tmp_path / n / "shots.csv").open()))
                    for n in ("ours", "theirs"))
    assert pennylane_calls  # the second study really ran on PennyLane
    assert theirs[0]["acc_mean"] == ours[0]["acc_mean"]
    assert theirs[0]["f1_mean"] == ours[0]["f1_mean"]
