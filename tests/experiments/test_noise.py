"""The noise study (features once, head re-run per strength, exact and trajectory rows) and
``qhead resources`` of a trained checkpoint."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch

from qhead.cli import main
from qhead.engine import evaluate, train
from qhead.errors import ConfigError
from qhead.experiments.noise import compute_test_features, noise_study, parse_strengths

TINY = [
    "data.name=digits", "model.backbone=small_cnn", "model.backbone_options.channels=[4,8,8]",
    "image_size=16", "data.max_per_class=3", "data.num_workers=0", "batch_size=8",
    "tensorboard=false", "plots=false", "epochs=1", "amp=off", "threads=1", "progress=false",
]  # fmt: skip

pytestmark = pytest.mark.filterwarnings("ignore::qhead.quantum.CircuitLintWarning")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    from qhead.engine import load_config

    root = tmp_path_factory.mktemp("noise")
    out = {}
    for name, extra in (("a1", []), ("a2", ["model.head_options.ansatz=ansatz2"]),
                        ("classical", [])):
        head = "classical" if name == "classical" else "quantum"
        cfg = load_config(overrides=[*TINY, f"model.head={head}", *extra, f"out={root / name}"])
        out[name] = train(cfg) / "last.pt"
    return out


def test_noiseless_rows_equal_the_full_evaluation(runs) -> None:
    tf = compute_test_features(runs["a1"])
    rows = noise_study([tf], "depolarizing", [0.0, 0.2])
    reference = evaluate(runs["a1"], write=False, amp="off")
    assert rows[0].method == "exact" and rows[0].accuracy.n == 1
    assert rows[0].accuracy.mean == pytest.approx(reference["accuracy"])
    assert rows[0].macro_f1.mean == pytest.approx(reference["macro_f1"])


def test_readout_one_half_erases_every_expectation(runs) -> None:
    # ⟨Z⟩ → (1 − 2·0.5)⟨Z⟩ = 0: every image gets the logits of z = 0, one class
    tf = compute_test_features(runs["a1"])
    row = noise_study([tf], "readout", [0.5])[0]
    with torch.no_grad():
        logits = tf.head.fc(tf.head.pre[1:](torch.zeros(1, tf.circuit.out_features)))
    predicted = int(logits.argmax())
    assert row.accuracy.mean == pytest.approx(float((tf.labels == predicted).float().mean()))


def test_entangling_heads_use_trajectories(runs) -> None:
    tf = compute_test_features(runs["a2"])
    rows = noise_study([tf], "bit_flip", [0.0, 0.05], trajectories=20, noise_seeds=2)
    assert rows[0].method == "exact" and rows[0].z_stderr == 0
    assert rows[1].method == "trajectories" and rows[1].accuracy.n == 2
    assert rows[1].trajectories == 20 and rows[1].z_stderr > 0


def test_cli_noise_writes_the_report(runs, tmp_path: Path) -> None:
    out = tmp_path / "study"
    assert main(["noise", str(runs["a2"]), "--channel", "depolarizing", "--strengths",
                 "0,0.05", "--trajectories", "10", "--noise-seeds", "2", "--readout", "0.01",
                 "--out", str(out)]) == 0
    rows = list(csv.DictReader((out / "noise.csv").open()))
    assert [float(r["strength"]) for r in rows] == [0.0, 0.05]
    assert "'readout': 0.01" in rows[1]["noise"]
    assert "| checkpoint | strength |" in (out / "noise.md").read_text()
    assert (out / "noise.png").stat().st_size > 1000


def test_noise_errors(runs, capsys) -> None:
    with pytest.raises(ConfigError, match="not a probability"):
        parse_strengths("0,1.5")
    assert main(["noise", str(runs["classical"]), "--strengths", "0"]) == 1
    assert "has no quantum head" in capsys.readouterr().err
    tf = compute_test_features(runs["a1"])
    with pytest.raises(ConfigError, match="allowed: depolarizing"):
        noise_study([tf], "amplitude_damping", [0.1])


def test_resources_of_a_trained_checkpoint(runs, capsys) -> None:
    import json

    assert main(["resources", str(runs["a2"]), "--json", "--train-images", "100"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_qubits"] == 5 and out["ansatz"]["two_qubit"] == 4  # ansatz2: CNOT chain
    assert out["trainable_angles"] == 10 and out["dead_angles"] == 5  # RZ dead at D=1
    assert out["training"]["steps_per_epoch"] == 13  # ceil(100 / 8), the run's batch size
    assert main(["resources", str(runs["classical"])]) == 1
    assert "has no quantum head" in capsys.readouterr().err
    assert main(["resources", str(runs["a1"]), "model.head=twin"]) == 1
    assert "not both" in capsys.readouterr().err


def test_noise_report_pools_checkpoints_per_strength(tmp_path):
    from qhead.experiments.noise import NoiseRow, write_noise_report
    from qhead.experiments.stats import summarize

    def row(checkpoint, strength, acc):
        return NoiseRow(Path(checkpoint), "depolarizing", strength, {}, "exact",
                        summarize([acc]), summarize([acc - 0.1]), 0.0, 0, None, [0], 0.0)

    rows = [row("a.pt", 0.0, 0.8), row("a.pt", 0.1, 0.6),
            row("b.pt", 0.0, 0.6), row("b.pt", 0.1, 0.4)]
    md = (tmp_path / "noise.md")
    write_noise_report(rows, tmp_path, plot=False)
    text = md.read_text()
    assert "Pooled over 2 checkpoints" in text
    pooled_lines = [line for line in text.splitlines() if line.startswith("| 0")]
    # one pooled line per strength, in first-seen order, mean of the checkpoints' means
    assert [line.split("|")[1].strip() for line in pooled_lines] == ["0", "0.1"]
    assert summarize([0.8, 0.6]).format() in pooled_lines[0]
    assert summarize([0.6, 0.4]).format() in pooled_lines[1]
