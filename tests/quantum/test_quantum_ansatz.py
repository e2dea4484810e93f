import pytest
import torch

from qhead.errors import ConfigError
from qhead.quantum import (
    AEVQC,
    ANSATZES,
    Ansatz,
    EntanglingLayers,
    RotationLayers,
    build_ansatz,
    draw_circuit,
)
from qhead.registry import UnknownNameError
from qhead.simulator import Op


def test_registry_lists_the_paper_ansatze():
    assert {"ansatz1", "ansatz2"} <= set(ANSATZES.names())
    assert isinstance(build_ansatz("ansatz1"), RotationLayers)
    assert isinstance(build_ansatz("ansatz2", entangler="ring"), EntanglingLayers)
    with pytest.raises(UnknownNameError, match=r"allowed: .*ansatz1"):
        build_ansatz("nope")


@pytest.mark.parametrize(("layers", "a1", "a2"), [(1, 15, 30), (3, 45, 90)])
def test_shapes_and_parameter_counts_match_the_paper(layers, a1, a2):
    one, two = build_ansatz("ansatz1"), build_ansatz("ansatz2")
    assert one.shape(layers, 15) == (layers, 15)
    assert two.shape(layers, 15) == (layers, 2, 15)
    assert one.num_params(layers, 15) == a1
    assert two.num_params(layers, 15) == a2


def test_ansatz2_gate_list_order_and_entanglers():
    ops = build_ansatz("ansatz2", gates=("RZ", "RY")).ops(1, 3)
    assert [op.name for op in ops[:3]] == ["H"] * 3
    assert ops[3] == Op("RZ", (0,), (0, 0, 0))
    assert ops[6] == Op("RY", (0,), (0, 1, 0))
    assert [op.wires for op in ops if op.name == "CNOT"] == [(0, 1), (1, 2)]
    ring = build_ansatz("ansatz2", entangler="ring")
    assert ring.cnot_pairs(4) == [(0, 1), (1, 2), (2, 3), (3, 0)]
    assert ring.cnot_pairs(2) == [(0, 1)]  # PennyLane's ring for two wires
    assert ring.cnot_pairs(1) == []


@pytest.mark.parametrize(
    ("name", "options", "field"),
    [
        ("ansatz1", {"gate": "RW"}, "ansatz1.gate"),
        ("ansatz2", {"gates": ("RY",)}, "ansatz2.gates"),
        ("ansatz2", {"gates": ("RY", "H")}, "ansatz2.gates"),
        ("ansatz2", {"entangler": "all"}, "ansatz2.entangler"),
        ("ansatz1", {"colour": "red"}, "bad options"),
    ],
)
def test_bad_options_raise_config_error_naming_the_field(name, options, field):
    with pytest.raises(ConfigError, match=field):
        build_ansatz(name, **options)


class RxRy(Ansatz):
    """RX then RY on every qubit, per layer."""

    def shape(self, layers, n_wires):
        return (layers, 2, n_wires)

    def ops(self, layers, n_wires):
        return [
            Op(g, (q,), (d, i, q))
            for d in range(layers)
            for i, g in enumerate(("RX", "RY"))
            for q in range(n_wires)
        ]


def test_user_ansatz_registers_in_a_few_lines_and_runs():
    if "test-rx-ry" not in ANSATZES:
        ANSATZES.register("test-rx-ry")(RxRy)
    layer = AEVQC(6, ansatz="test-rx-ry", layers=2)
    assert layer.ansatz.name == "test-rx-ry"
    assert layer.weights.shape == (2, 2, 3)
    out = layer(torch.randn(4, 6))
    assert out.shape == (4, 3) and torch.isfinite(out).all()


def test_user_ansatz_with_unknown_gate_is_rejected():
    class Bad(RxRy):
        def ops(self, layers, n_wires):
            return [Op("T", (0,))]

    with pytest.raises(ConfigError, match="uses gate 'T'"):
        AEVQC(4, ansatz=Bad())


def test_draw_circuit():
    text = draw_circuit("ansatz2", 1, 3, measured_wires=[0, 1])
    lines = text.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("0: ─H──RY(0,0,0)──RZ(0,1,0)──●")
    assert "⊕" in lines[1] and "●" in lines[1] and lines[1].endswith("┤ ⟨Z⟩")
    assert not lines[2].endswith("⟨Z⟩")
