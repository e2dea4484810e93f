"""Heads: exact structures, the twin against PennyLane, the twin containing Ansatz 1."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from qhead.errors import ConfigError
from qhead.models import HEADS, build_head, count_parameters, encoded_zx

SHAPE = (3, 2, 2)  # 12 values -> 4 qubits


@pytest.fixture(autouse=True)
def _quiet_lint():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        yield


def test_registry_has_all_heads():
    # ``classical`` is the config's name for the backbone's own head, not an entry
    assert set(HEADS.names()) == {
        "avg-linear",
        "max-linear",
        "flatten-linear",
        "maxvit-classical",
        "quantum",
        "twin",
    }


def test_avg_linear_is_gap_plus_linear():
    head = build_head("avg-linear", (512, 7, 7), 12, {})
    assert count_parameters(head) == 512 * 12 + 12
    f = torch.randn(2, 512, 7, 7)
    expected = head.fc(f.mean(dim=(2, 3)))
    torch.testing.assert_close(head(f), expected)
    torch.testing.assert_close(head(f, pre_logits=True), f.mean(dim=(2, 3)))


def test_max_and_flatten_linear():
    f = torch.randn(2, 8, 3, 3)
    mx = build_head("max-linear", (8, 3, 3), 4, {})
    torch.testing.assert_close(mx(f), mx.fc(f.amax(dim=(2, 3))))
    flat = build_head("flatten-linear", (8, 3, 3), 4, {})
    assert count_parameters(flat) == 8 * 9 * 4 + 4
    torch.testing.assert_close(flat(f), f.flatten(1) @ flat.fc.weight.T + flat.fc.bias)


def test_maxvit_classical_matches_torchvision_classifier():
    from torchvision.models import maxvit_t

    reference = maxvit_t(weights=None, num_classes=5).classifier
    head = build_head("maxvit-classical", (512, 7, 7), 5, {"last_bias": False})
    kinds = [type(m) for m in head.pre] + [type(head.fc)]
    assert kinds == [type(m) for m in reference]
    state = {}
    for key, value in reference.state_dict().items():
        index, rest = key.split(".", 1)
        state[f"pre.{index}.{rest}" if int(index) < 5 else f"fc.{rest}"] = value
    head.load_state_dict(state)
    f = torch.randn(2, 512, 7, 7)
    torch.testing.assert_close(head(f), reference(f))
    # the paper's count has a bias on the last Linear: LN 1024 + 262,656 + 512*C + C
    assert count_parameters(build_head("maxvit-classical", (512, 7, 7), 12, {})) == 269836


def test_fc_stack_hidden_and_activation():
    head = build_head("avg-linear", (6, 2, 2), 3, {"hidden": [5, 4], "activation": "relu"})
    linears = [m for m in head.pre if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(6, 5), (5, 4)]
    assert sum(isinstance(m, nn.ReLU) for m in head.pre) == 2
    assert (head.fc.in_features, head.fc.out_features) == (4, 3)


def _pennylane_zx(features: torch.Tensor, n: int) -> torch.Tensor:
    qml = pytest.importorskip("pennylane")
    dev = qml.device("default.qubit", wires=n)

    @qml.qnode(dev)
    def circuit(v):
        qml.AmplitudeEmbedding(v, wires=range(n), pad_with=0.0, normalize=True)
        return [qml.expval(qml.PauliZ(k)) for k in range(n)] + [
            qml.expval(qml.PauliX(k)) for k in range(n)
        ]

    rows = [torch.tensor([float(v) for v in circuit(row.numpy())]) for row in features.flatten(1)]
    return torch.stack(rows).double()


def _numpy_zx(features: torch.Tensor, n: int) -> torch.Tensor:
    """<Z_k>, <X_k> from the explicit state: P(bit k = 0) - P(1) and 2 sum psi_j psi_(j^k)."""
    v = features.flatten(1).numpy()
    v = np.pad(v, ((0, 0), (0, 2**n - v.shape[1])))
    psi = (v / np.linalg.norm(v, axis=1, keepdims=True)).reshape(-1, *([2] * n))
    z, x = [], []
    for k in range(n):
        a = np.moveaxis(psi, k + 1, 1).reshape(psi.shape[0], 2, -1)
        z.append((a[:, 0] ** 2).sum(1) - (a[:, 1] ** 2).sum(1))
        x.append(2 * (a[:, 0] * a[:, 1]).sum(1))
    return torch.from_numpy(np.stack(z + x, axis=1))


def test_twin_features_match_pennylane():
    torch.manual_seed(0)
    f = torch.randn(3, *SHAPE, dtype=torch.float64)
    z, x = encoded_zx(f, 4, [0, 1, 2, 3])
    # PennyLane's AmplitudeEmbedding path loses ~1e-8 (it normalises in single precision)
    torch.testing.assert_close(torch.cat([z, x], 1), _pennylane_zx(f, 4), rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.cat([z, x], 1), _numpy_zx(f, 4), rtol=0, atol=1e-12)


def test_twin_head_features_measured_subset_and_zero_map():
    head = build_head("twin", SHAPE, 2, {"measured_wires": [2, 0]})
    assert head.n_qubits == 4 and count_parameters(head) == 4 * 2 + 2
    f = torch.randn(2, *SHAPE, dtype=torch.float64)
    reference = _numpy_zx(f, 4)
    got = head.double()(f, pre_logits=True)
    torch.testing.assert_close(got, reference[:, [2, 0, 6, 4]], rtol=1e-10, atol=1e-10)
    # an all-zero map is encoded as |0...0>: <Z> = 1, <X> = 0, never NaN
    zero = head(torch.zeros(1, *SHAPE, dtype=torch.float64), pre_logits=True)
    torch.testing.assert_close(zero, torch.tensor([[1.0, 1.0, 0.0, 0.0]], dtype=torch.float64))


@pytest.mark.parametrize(("layers", "wires", "hidden"), [(1, None, []), (2, 3, [5])])
def test_twin_contains_ansatz1_model_class(layers, wires, hidden):
    """With W' = [W diag(cos θ), -W diag(sin θ)] the twin equals the Ansatz-1 model."""
    torch.manual_seed(1)
    options = {"ansatz": "ansatz1", "layers": layers, "measured_wires": wires, "hidden": hidden}
    quantum = build_head("quantum", SHAPE, 3, options).double()
    twin = build_head("twin", SHAPE, 3, options).double()  # quantum options accepted
    circuit = quantum.circuit
    theta = circuit.weights.detach().double().sum(0)[list(circuit.measured_wires)]
    with torch.no_grad():
        q_layers = [m for m in quantum.pre if isinstance(m, nn.Linear)] + [quantum.fc]
        t_layers = [m for m in twin.pre if isinstance(m, nn.Linear)] + [twin.fc]
        first_q, first_t = q_layers[0], t_layers[0]
        first_t.weight.copy_(
            torch.cat([first_q.weight * theta.cos(), -first_q.weight * theta.sin()], dim=1)
        )
        first_t.bias.copy_(first_q.bias)
        for a, b in zip(q_layers[1:], t_layers[1:], strict=True):
            b.load_state_dict(a.state_dict())
    f = torch.randn(4, *SHAPE, dtype=torch.float64)
    torch.testing.assert_close(twin(f), quantum(f), rtol=1e-10, atol=1e-10)


def test_quantum_head_params_and_freeze_circuit():
    head = build_head("quantum", (512, 7, 7), 3, {"ansatz": "ansatz1"})
    assert head.n_qubits == 15 and count_parameters(head) == 15 + 15 * 3 + 3
    frozen = build_head("quantum", SHAPE, 3, {"freeze_circuit": True, "hidden": [4]})
    assert count_parameters(frozen) == 4 * 4 + 4 + 4 * 3 + 3
    assert count_parameters(frozen, trainable_only=False) == count_parameters(frozen) + 4
    before = frozen.circuit.weights.detach().clone()
    opt = torch.optim.SGD(frozen.parameters(), lr=1.0)
    frozen(torch.randn(2, *SHAPE)).sum().backward()
    opt.step()
    assert frozen.circuit.weights.grad is None
    torch.testing.assert_close(frozen.circuit.weights, before, rtol=0, atol=0)


def test_quantum_head_outputs_in_range_and_ansatz1_closed_form():
    head = build_head("quantum", SHAPE, 2, {"ansatz": "ansatz1", "measured_wires": 3}).double()
    f = torch.randn(5, *SHAPE, dtype=torch.float64)
    expvals = head.circuit(f)
    assert expvals.shape == (5, 3) and expvals.abs().max() <= 1 + 1e-12
    reference = _numpy_zx(f, 4)
    theta = head.circuit.weights.detach().double().sum(0)[:3]
    expected = theta.cos() * reference[:, :3] - theta.sin() * reference[:, 4:7]
    torch.testing.assert_close(expvals, expected, rtol=1e-10, atol=1e-10)


def test_reset_classifier():
    head = build_head("quantum", SHAPE, 3, {"hidden": [6]})
    head.reset_classifier(7)
    assert head(torch.randn(2, *SHAPE)).shape == (2, 7)


@pytest.mark.parametrize(
    ("name", "options", "match"),
    [
        (
            "quantum",
            {"measured_wires": 5},
            r"measured_wires: m=5 but the feature map has 4 qubits; allowed: 1..4",
        ),
        ("twin", {"measured_wires": [0, 4]}, r"measured_wires: \[0, 4\].*wires in 0..3"),
        ("quantum", {"measured_wires": [1, 1]}, r"measured_wires.*distinct"),
        ("quantum", {"max_qubits": 3}, r"max_qubits: .*needs 4 qubits.*allowed: up to 3"),
        (
            "quantum",
            {"ansatz": "nope"},
            r"model.head_options.ansatz: unknown ansatz 'nope'; allowed: ansatz1",
        ),
        ("quantum", {"ansatz_options": {"gate": "RW"}}, r"model.head_options.ansatz_options: .*RX"),
        (
            "quantum",
            {"ansatz_options": {"depth": 2}},
            r"model.head_options.ansatz_options: .*depth",
        ),
        ("classical", {}, r"model.head: 'classical' depends on the backbone"),
    ],
)
def test_bad_head_options(name, options, match):
    with pytest.raises(ConfigError, match=match):
        build_head(name, SHAPE, 2, options)


def test_default_qubit_limit_protects_memory():
    with pytest.raises(
        ConfigError, match=r"512x64x64 = 2097152 values needs 21 qubits.*max_qubits=20"
    ):
        build_head("quantum", (512, 64, 64), 2, {})
    with pytest.raises(ConfigError, match=r"needs 21 qubits"):
        build_head("twin", (512, 64, 64), 2, {})
    assert math.prod((512, 32, 32)) == 2**19  # 19 qubits still allowed


def _quantum_arm_zx(f: torch.Tensor, wires: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """⟨Z_k⟩₀ and ⟨X_k⟩₀ as the quantum head computes them: its Ansatz-1 circuit
    (⟨Z_k⟩ = cos θ_k ⟨Z_k⟩₀ − sin θ_k ⟨X_k⟩₀) at θ = 0 and at θ = −π/2."""
    from qhead.quantum import AEVQC

    circuit = AEVQC(math.prod(f.shape[1:]), "ansatz1", 1, measured_wires=wires).double()
    with torch.no_grad():
        circuit.weights.zero_()
    z = circuit(f)
    with torch.no_grad():
        circuit.weights.fill_(-math.pi / 2)
    return z, circuit(f) - math.cos(-math.pi / 2) * z


@pytest.mark.parametrize("kernels_on", [True, False])
def test_twin_features_are_the_quantum_arms_values_and_gradients(kernels_on):
    """Same encoding, same ⟨Z⟩₀/⟨X⟩₀ code: equal values and feature gradients (float64)."""
    from qhead.simulator import kernels

    previous = kernels.set_enabled(kernels_on and kernels.available())
    try:
        torch.manual_seed(2)
        shape, wires = (4, 3, 3), [0, 2, 5]  # 36 values -> 6 qubits
        head = build_head("twin", shape, 2, {"measured_wires": wires}).double()
        f = torch.randn(3, *shape, dtype=torch.float64, requires_grad=True)
        weights = torch.randn(2 * len(wires), dtype=torch.float64)
        twin = head.encoder(f)
        (twin_grad,) = torch.autograd.grad((twin @ weights).sum(), f)
        z, x = _quantum_arm_zx(f, wires)
        arm = torch.cat([z, x], dim=1)
        (arm_grad,) = torch.autograd.grad((arm @ weights).sum(), f)
        torch.testing.assert_close(twin, arm, rtol=0, atol=1e-12)
        torch.testing.assert_close(twin_grad, arm_grad, rtol=0, atol=1e-12)
        reference = _numpy_zx(f.detach(), 6)
        torch.testing.assert_close(
            twin.detach(), reference[:, wires + [6 + w for w in wires]], rtol=0, atol=1e-12
        )
    finally:
        kernels.set_enabled(previous)


def test_twin_feature_gradients_match_finite_differences():
    from qhead.models.heads import TwinFeatures

    torch.manual_seed(3)
    features = TwinFeatures(4, [3, 1])
    f = torch.randn(2, *SHAPE, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(features, (f,), eps=1e-6, atol=1e-8)


def test_twin_under_autocast_computes_in_float32_like_the_quantum_head():
    head = build_head("twin", SHAPE, 2, {})
    f = torch.randn(4, *SHAPE)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head.encoder(f.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, head.encoder(f.bfloat16().float()))


def test_twin_takes_the_circuit_it_controls_and_refuses_simulator_options():
    from qhead.models import ModelConfig, get_preset

    fish = get_preset("resnet18_q/croatian-fish")  # ansatz2: not contained in the twin
    head = build_head("twin", (512, 7, 7), 12, fish.head_options)
    assert head.twin_of == ("ansatz2", 1, {"gates": ["RY", "RZ"], "entangler": "chain"})
    assert head.contains_circuit is False
    busi = build_head("twin", (512, 7, 7), 3, get_preset("resnet18_q/busi").head_options)
    assert busi.twin_of == ("ansatz1", 1, {"gate": "RY"}) and busi.contains_circuit
    # the circuit options it takes are checked like the quantum head's, not ignored
    with pytest.raises(ConfigError, match=r"model\.head_options\.layers: expected an integer"):
        ModelConfig(head="twin", head_options={"layers": 0})
    for option, value in (("shots", 100), ("backend", "pennylane"), ("freeze_circuit", True)):
        with pytest.raises(
            ConfigError,
            match=rf"head 'twin'\): unknown option\(s\) {option}; allowed: measured_wires, ",
        ):
            ModelConfig(head="twin", head_options={option: value})


def test_classical_is_resolved_in_one_place():
    from qhead.models import CLASSICAL, HeadSpec, validate_head
    from qhead.models.heads import head_names

    assert CLASSICAL not in HEADS.names() and CLASSICAL in head_names()
    spec = validate_head("classical", {})
    assert spec.resolve("maxvit-classical") == HeadSpec("maxvit-classical")
    head = spec.build((512, 7, 7), 3, classical_head="avg-linear")
    assert count_parameters(head) == 1539
    with pytest.raises(ConfigError, match=r"model\.head: unknown head 'x'; allowed: .*classical"):
        validate_head("x", {})
