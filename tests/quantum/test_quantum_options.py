"""One rule, one place, one message: CircuitOptions and the rules AEVQC and configs share."""

from __future__ import annotations

import warnings

import pytest

import qhead.quantum.module as module
import qhead.quantum.options as options
from qhead.errors import ConfigError
from qhead.quantum import AEVQC, CircuitOptions, RotationLayers
from qhead.simulator import MAX_QUBITS


@pytest.fixture(autouse=True)
def _quiet_lint():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=UserWarning)
        yield


# (arguments, the rule's message without its field prefix)
RULES = [
    ({"layers": 0}, "layers: expected an integer >= 1, got 0"),
    ({"layers": True}, "layers: expected an integer >= 1, got True"),
    ({"shots": 0}, "shots: expected null (exact expectations) or an integer >= 1, got 0"),
    ({"shots": 2.5}, "shots: expected null (exact expectations) or an integer >= 1, got 2.5"),
    (
        {"measured_wires": "ab"},
        "measured_wires: expected null (all wires), a positive integer m (wires 0..m-1) or a "
        "list of at least one wire index, got 'ab'",
    ),
    (
        {"measured_wires": []},
        "measured_wires: expected null (all wires), a positive integer m (wires 0..m-1) or a "
        "list of at least one wire index, got []",
    ),
    ({"ansatz": "nope"}, "ansatz: unknown ansatz 'nope'; allowed: ansatz1, ansatz2"),
    ({"ansatz_options": {"gate": "RW"}}, "ansatz_options: ansatz1.gate must be one of"),
    ({"ansatz_options": 3}, "ansatz_options: expected a mapping, got 3"),
    ({"backend": 5}, "backend: expected 'torch', 'pennylane' or 'pennylane:<device>', got 5"),
]


@pytest.mark.parametrize(("kwargs", "message"), RULES)
def test_each_rule_has_one_message_for_module_and_config(kwargs, message):
    from qhead.models import ModelConfig

    with pytest.raises(ConfigError) as by_options:
        CircuitOptions(**kwargs)
    assert str(by_options.value).startswith(message)
    with pytest.raises(ConfigError) as by_config:
        ModelConfig(backbone="small_cnn", image_size=32, head_options=kwargs)
    assert str(by_config.value).startswith("model.head_options." + message)
    ansatz_options = kwargs.get("ansatz_options", {})
    if not isinstance(ansatz_options, dict):
        return  # AEVQC takes ansatz options as keywords: there is no mapping to get wrong
    direct = {k: v for k, v in kwargs.items() if k != "ansatz_options"} | ansatz_options
    with pytest.raises(ConfigError) as by_module:
        AEVQC(8, **direct)
    assert str(by_module.value).startswith(message)


def test_shape_rules_have_one_message_for_module_and_head():
    from qhead.models import build_head

    wires = "measured_wires: m=5 but the feature map has 4 qubits; allowed: 1..4 or a list"
    with pytest.raises(ConfigError, match=r"^" + wires):
        AEVQC(12, measured_wires=5)
    with pytest.raises(ConfigError, match=r"^model\.head_options\." + wires):
        build_head("quantum", (3, 2, 2), 2, {"measured_wires": 5})
    with pytest.raises(ConfigError, match=r"^model\.head_options\." + wires):
        build_head("twin", (3, 2, 2), 2, {"measured_wires": 5})
    register = r"the feature map .* needs 4 qubits .*more than max_qubits=3; allowed: up to 3"
    with pytest.raises(ConfigError, match=r"^model\.head_options\.max_qubits: " + register):
        build_head("quantum", (3, 2, 2), 2, {"max_qubits": 3})
    too_big = rf"^in_features: the feature map of {2**MAX_QUBITS + 1} values needs"
    with pytest.raises(ConfigError, match=too_big):
        AEVQC(2**MAX_QUBITS + 1)


def test_max_qubits_is_one_limit_everywhere():
    """A max_qubits the simulator cannot honour fails at construction, for every head."""
    from qhead.models import ModelConfig, build_head

    allowed = rf"model\.head_options\.max_qubits: expected an integer in 1\.\.{MAX_QUBITS}"
    for head in ("quantum", "twin"):
        with pytest.raises(ConfigError, match=allowed):
            ModelConfig(head=head, head_options={"max_qubits": MAX_QUBITS + 4})
        with pytest.raises(ConfigError, match=allowed):
            ModelConfig(head=head, head_options={"max_qubits": 0})
        ModelConfig(head=head, head_options={"max_qubits": MAX_QUBITS})  # the limit itself
    # the register check at the limit: 2^MAX_QUBITS values fit, one more does not, for the
    # module and both heads alike
    fits, over = (2**MAX_QUBITS, 1, 1), (2**MAX_QUBITS + 1, 1, 1)
    assert options.check_register(fits) == MAX_QUBITS
    for head in ("quantum", "twin"):
        with pytest.raises(ConfigError, match=rf"needs {MAX_QUBITS + 1} qubits"):
            build_head(head, over, 2, {})
    with pytest.raises(ConfigError, match=rf"needs {MAX_QUBITS + 1} qubits"):
        AEVQC(2**MAX_QUBITS + 1)


def test_options_replace_the_arguments_and_are_not_mixed():
    circuit = CircuitOptions("ansatz1", 2, 3, ansatz_options={"gate": "RX"})
    assert isinstance(circuit.ansatz, RotationLayers) and circuit.ansatz.gate == "RX"
    layer = AEVQC(16, options=circuit)
    assert (layer.layers, layer.measured_wires, layer.ansatz.gate) == (2, (0, 1, 2), "RX")
    assert layer.config() == AEVQC(16, "ansatz1", 2, 3, gate="RX").config()
    with pytest.raises(ConfigError, match=r"either as options=.* not both"):
        AEVQC(16, layers=3, options=circuit)


def _counting(monkeypatch, owner, name):
    calls = []
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def test_config_path_checks_every_rule_once_and_builds_the_ansatz_once(monkeypatch):
    import qhead.models.heads as heads
    from qhead.models import ModelConfig, build_model
    from qhead.models.summary import summarize

    ansatz = _counting(monkeypatch, options, "build_ansatz")
    shots = _counting(monkeypatch, options, "check_shots")
    layers = _counting(monkeypatch, options, "check_layers")
    wires = _counting(monkeypatch, module, "wires_in_range")
    register = [
        *[_counting(monkeypatch, owner, "check_register") for owner in (module, heads)]
    ]
    cfg = ModelConfig(
        backbone="small_cnn",
        image_size=32,
        head="quantum",
        head_options={"ansatz": "ansatz2", "layers": 2, "measured_wires": 3, "shots": 100},
    )
    model = build_model(cfg)
    summarize(cfg)  # builds the head again, from the same checked spec
    assert model.head.circuit.shots == 100 and model.head.circuit.layers == 2
    assert len(ansatz) == len(shots) == len(layers) == 1
    assert len(wires) == 2 and sum(map(len, register)) == 2  # one per head built
    # a config changed after construction is checked again, once, when next built
    cfg.head_options["layers"] = 0
    with pytest.raises(ConfigError, match=r"model\.head_options\.layers: expected an integer"):
        build_model(cfg)
    assert len(layers) == 2


def test_module_path_checks_every_rule_once(monkeypatch):
    ansatz = _counting(monkeypatch, options, "build_ansatz")
    shots = _counting(monkeypatch, options, "check_shots")
    wires = _counting(monkeypatch, module, "wires_in_range")
    register = _counting(monkeypatch, module, "check_register")
    AEVQC(16, "ansatz2", 1, measured_wires=[0, 2], shots=10)
    assert len(ansatz) == len(shots) == len(wires) == len(register) == 1


def test_evaluate_uses_the_same_shots_rule_before_loading_anything(tmp_path):
    from qhead.engine import evaluate

    with pytest.raises(ConfigError, match=r"^shots: expected null \(exact expectations\)"):
        evaluate(tmp_path / "missing.pt", shots=0)  # the rule fires before the missing file
