"""``qhead list``, ``qhead params`` and ``qhead describe`` (run through the dispatcher)."""

from __future__ import annotations

import re

import pytest
import yaml

from qhead.cli import main


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_list_shows_every_registry(capsys):
    code, out, _ = _run(capsys, "list")
    assert code == 0
    for section in ("backbones:", "heads:", "ansatze:", "datasets:", "presets:"):
        assert section in out
    for name in (
        "maxvit_t",
        "small_cnn",
        "timm:<name>",
        "twin",
        "flatten-linear",
        "ansatz2",
        "resnet18_q/apples-or-tomatoes",
    ):
        assert re.search(rf"^\s+{re.escape(name)}\s", out, re.M), name
    code, out, _ = _run(capsys, "list", "heads")
    assert code == 0 and "quantum" in out and "presets:" not in out


def _rows(out: str) -> dict[str, list[str]]:
    """The table's rows by model name, cells cut at the columns of the dashed rule."""
    lines = out.splitlines()
    rule = next(i for i, line in enumerate(lines) if line.startswith("---"))
    spans = [m.span() for m in re.finditer(r"-+", lines[rule])]
    rows = {}
    for line in lines[rule + 1 :]:
        if not line.strip():
            break
        cells = [line[a:b].strip() for a, b in spans]
        rows[cells[0]] = cells
    return rows


def test_params_single_preset_and_paper_column(capsys):
    code, out, _ = _run(capsys, "params", "--preset", "resnet18_q/apples-or-tomatoes")
    assert code == 0
    row = _rows(out)["resnet18_q/apples-or-tomatoes"]
    assert row[1:6] == ["quantum", "2", "15", "41", "41"]


@pytest.mark.slow
def test_params_all_presets_match_paper(capsys):
    code, out, _ = _run(capsys, "params")
    assert code == 0 and "differ" not in out
    rows = _rows(out)
    assert len(rows) == 16 and all(r[4] == r[5] for r in rows.values())
    assert rows["maxvit_t_q/apples-or-tomatoes"][1:6] == ["quantum", "2", "15", "107", "107"]


def test_params_custom_model_from_flags(capsys):
    code, out, _ = _run(
        capsys,
        "params",
        "--backbone",
        "small_cnn",
        "--image-size",
        "32",
        "--head",
        "quantum",
        "--num-classes",
        "10",
        "--head-option",
        "measured_wires=4",
        "--head-option",
        "hidden=[3]",
    )
    assert code == 0
    row = _rows(out)["(model)"]
    # 64x4x4 = 1024 -> 10 qubits; ansatz1 D=1: 10 angles + Linear(4,3) 15 + Linear(3,10) 40
    assert row[1:5] == ["quantum", "10", "10", "65"]


def test_params_override_on_preset_drops_paper_number(capsys):
    code, out, _ = _run(capsys, "params", "--preset", "resnet18_q/busi", "--head", "twin")
    assert code == 0
    row = _rows(out)["resnet18_q/busi"]
    # twin: 30 features -> Linear(30, 3); the paper has no such model
    assert row[1:7] == ["twin", "3", "15", "93", "", "11,176,512"]


def test_params_from_config_file_with_model_section(capsys, tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {
                    "backbone": "small_cnn",
                    "head": "flatten-linear",
                    "image_size": 32,
                    "num_classes": 5,
                },
                "epochs": 3,
            }
        )
    )
    code, out, _ = _run(capsys, "params", "-c", str(path))
    assert code == 0
    # empty qubits cell (classical head): 64*4*4*5 + 5 = 5,125
    assert _rows(out)["(model)"][1:6] == ["flatten-linear", "5", "", "5,125", ""]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["params", "--preset", "nope/busi"], "unknown preset 'nope/busi'"),
        (["params", "--head", "transformer"], "model.head: unknown head 'transformer'; allowed:"),
        (
            [
                "params",
                "--backbone",
                "small_cnn",
                "--image-size",
                "32",
                "--head-option",
                "measured_wires=11",
            ],
            "m=11 but the feature map has 10 qubits",
        ),
        (["describe", "--head-option", "noequals"], "expected KEY=VALUE"),
        (["params", "-c", "/no/such.yaml"], "no such config file"),
    ],
)
def test_bad_model_arguments_are_one_line_errors(capsys, argv, message):
    code, _out, err = _run(capsys, *argv)
    assert code == 1
    assert message in err and "Traceback" not in err


def test_describe_quantum_model_shows_shape_qubits_circuit_counts_lint(capsys):
    code, out, _ = _run(
        capsys,
        "describe",
        "--backbone",
        "small_cnn",
        "--image-size",
        "32",
        "--head",
        "quantum",
        "--head-option",
        "ansatz=ansatz2",
        "--head-option",
        "measured_wires=3",
        "--num-classes",
        "4",
    )
    assert code == 0
    assert "feature map: 64x4x4 = 1,024 values" in out
    assert "qubits: 10" in out and "measured wires: 3 [0, 1, 2]" in out
    assert "head.circuit: 20" in out and "head total (Params*): 36" in out
    assert "circuit:" in out and "●" in out and "⊕" in out  # the text drawing (CNOT chain)
    assert "lint warnings:" in out and "dead parameters" in out


def test_describe_classical_preset(capsys):
    code, out, _ = _run(capsys, "describe", "--preset", "resnet18/busi")
    assert code == 0
    assert "head: avg-linear" in out and "feature map: 512x7x7" in out
    assert "head total (Params*): 1,539" in out and "qubits" not in out
