"""OpenQASM 2.0 export (``circuit_to_qasm``, ``qhead export``), re-read by an independent
reader (``qasm_reader``) and compared with qhead."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from qasm_reader import expval_z, run_qasm

from qhead.cli import main
from qhead.quantum import AEVQC
from qhead.quantum.qasm import ExportError, circuit_to_qasm
from qhead.simulator import Op, amplitude_encode

pytestmark = pytest.mark.filterwarnings("ignore::qhead.quantum.CircuitLintWarning")


@pytest.mark.parametrize(
    ("ansatz", "options", "features"),
    [
        ("ansatz1", {}, "relu"),
        ("ansatz2", {"gates": ("RZ", "RY"), "entangler": "ring"}, "signed"),
        ("ansatz2", {"gates": ("RX", "RY")}, "relu"),
        ("simplified-two-design", {}, "signed"),
        ("strongly-entangling", {}, "relu"),
    ],
)
def test_exported_full_circuit_reproduces_qheads_expectations(ansatz, options, features):
    torch.manual_seed(0)
    head = AEVQC(24, ansatz, layers=2, measured_wires=[3, 0, 2], **options).double()
    x = torch.randn(1, 24, dtype=torch.float64)
    if features == "relu":
        x = x.clamp(min=0)
    text = circuit_to_qasm(head.ops, head.weights, head.n_qubits, head.measured_wires,
                           features=x)
    assert text.startswith("OPENQASM 2.0;\ninclude \"qelib1.inc\";")
    state, measured = run_qasm(text)
    assert measured == [3, 0, 2]
    with torch.no_grad():
        expected = head(x)[0].numpy()
    np.testing.assert_allclose(expval_z(state, measured), expected, atol=1e-10)


def test_exported_ansatz_alone_acts_like_qheads_ansatz():
    torch.manual_seed(1)
    head = AEVQC(16, "ansatz2", layers=1, gates=("RZ", "RY")).double()
    x = torch.rand(1, 16, dtype=torch.float64)
    text = circuit_to_qasm(head.ops, head.weights, head.n_qubits, head.measured_wires)
    assert "measure" not in text and "creg" not in text
    encoded = amplitude_encode(x, head.n_qubits).reshape(-1).numpy()
    state, _ = run_qasm(text, initial=encoded)
    with torch.no_grad():
        expected = head(x)[0].numpy()
    np.testing.assert_allclose(expval_z(state, list(range(4))), expected, atol=1e-10)


def test_all_zero_map_is_the_basis_state():
    head = AEVQC(8, "ansatz1").double()
    text = circuit_to_qasm(head.ops, head.weights, 3, head.measured_wires,
                           features=torch.zeros(1, 8, dtype=torch.float64))
    state, wires = run_qasm(text)
    with torch.no_grad():
        expected = head(torch.zeros(1, 8, dtype=torch.float64))[0].numpy()
    np.testing.assert_allclose(expval_z(state, wires), expected, atol=1e-12)


def test_every_simulator_gate_is_exportable():
    from qhead.quantum.qasm import QASM_GATES
    from qhead.simulator import GATES

    assert set(GATES) <= set(QASM_GATES), sorted(set(GATES) - set(QASM_GATES))


def test_unexportable_circuits_are_refused():
    weights = torch.zeros(1, 2)
    with pytest.raises(ExportError, match=r"cannot export gate 'CRZ'.*exportable gates: H"):
        circuit_to_qasm([Op("CRZ", (0, 1), (0, 0))], weights, 2, [0])
    with pytest.raises(ExportError, match="no finite angle"):
        circuit_to_qasm([Op("RY", (0,), (0, 0))], torch.full((1, 2), float("nan")), 2, [0])
    with pytest.raises(ExportError, match="more than 2"):
        circuit_to_qasm([], weights, 2, [0], features=torch.ones(5))


TINY = [
    "data.name=digits", "model.backbone=small_cnn", "model.backbone_options.channels=[4,8,8]",
    "image_size=16", "data.max_per_class=2", "data.num_workers=0", "batch_size=8",
    "tensorboard=false", "plots=false", "epochs=1", "amp=off", "threads=1", "progress=false",
]  # fmt: skip


def test_cli_export_of_a_trained_checkpoint(tmp_path: Path, capsys) -> None:
    from PIL import Image

    from qhead.data import load_image
    from qhead.engine import load_checkpoint

    run = tmp_path / "q"
    assert main(["train", *TINY, "model.head=quantum", "model.head_options.ansatz=ansatz2",
                 "model.head_options.ansatz_options.gates=[RZ,RY]", "--out", str(run)]) == 0
    ckpt = run / "last.pt"
    image = tmp_path / "x.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(image)
    out = tmp_path / "full.qasm"
    assert main(["export", str(ckpt), "--image", str(image), "--out", str(out)]) == 0
    text = out.read_text()
    state, wires = run_qasm(text)
    loaded = load_checkpoint(ckpt)
    model = loaded.model.double()
    with torch.no_grad():
        expected = model.head.circuit(model.forward_features(load_image(image, 16)[None].double()))
    np.testing.assert_allclose(expval_z(state, wires), expected[0].numpy(), atol=1e-9)
    header = next(line for line in text.splitlines() if "qhead exact <Z>" in line)
    np.testing.assert_allclose([float(v) for v in header.split(":")[1].split()],
                               expected[0].numpy(), atol=1e-9)
    # the ansatz alone: the trained angles, no preparation, no measurement
    capsys.readouterr()
    assert main(["export", str(ckpt)]) == 0
    alone = capsys.readouterr().out
    assert "measure q" not in alone and "creg" not in alone
    weights = model.head.circuit.weights.detach()
    rotations = [line for line in alone.splitlines() if line.startswith(("rz(", "ry("))]
    assert len(rotations) == weights.numel()
    assert f"rz({float(weights[0, 0, 0]):.17g}) q[0];" in alone


def test_cli_export_errors(tmp_path: Path, capsys) -> None:
    run = tmp_path / "c"
    assert main(["train", *TINY, "model.head=classical", "--out", str(run)]) == 0
    assert main(["export", str(run / "last.pt")]) == 1
    err = capsys.readouterr().err.strip()
    assert "has no quantum head" in err and "Traceback" not in err
    assert main(["export", str(tmp_path / "missing.pt")]) == 1
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.slow
def test_a_15_qubit_busi_sized_circuit_round_trips() -> None:
    """The paper's BUSI head: 512×7×7 post-ReLU features, 15 qubits, 65,548 gates (~1 min)."""
    torch.manual_seed(2)
    head = AEVQC(512 * 7 * 7, "ansatz1").double()
    x = torch.randn(1, 512 * 7 * 7, dtype=torch.float64).clamp(min=0)
    text = circuit_to_qasm(head.ops, head.weights, head.n_qubits, head.measured_wires,
                           features=x)
    assert sum(line.startswith(("ry(", "cx ")) for line in text.splitlines()) == 65_548
    state, wires = run_qasm(text)
    with torch.no_grad():
        expected = head(x)[0].numpy()
    np.testing.assert_allclose(expval_z(state, wires), expected, atol=1e-9)
