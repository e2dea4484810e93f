"""A small OpenQASM 2.0 reader and dense simulator, independent of qhead's code, for tests.

It reads the subset ``qhead export`` writes (qreg/creg, h x z rx ry rz cx cz, measure) and
returns the final state and the measured wires; q[0] is the most significant bit.
"""

from __future__ import annotations

import math
import re

import numpy as np

_ONE = {
    "h": lambda t: np.array([[1, 1], [1, -1]], dtype=complex) / math.sqrt(2),
    "x": lambda t: np.array([[0, 1], [1, 0]], dtype=complex),
    "z": lambda t: np.array([[1, 0], [0, -1]], dtype=complex),
    "rx": lambda t: np.array([[math.cos(t / 2), -1j * math.sin(t / 2)],
                              [-1j * math.sin(t / 2), math.cos(t / 2)]]),
    "ry": lambda t: np.array([[math.cos(t / 2), -math.sin(t / 2)],
                              [math.sin(t / 2), math.cos(t / 2)]], dtype=complex),
    "rz": lambda t: np.diag([np.exp(-0.5j * t), np.exp(0.5j * t)]),
}
_GATE = re.compile(r"^(\w+)(?:\(([^)]*)\))?\s+(.+);$")
_QUBIT = re.compile(r"q\[(\d+)\]")


def run_qasm(text: str, initial: np.ndarray | None = None) -> tuple[np.ndarray, list[int]]:
    """Simulates the text from |0…0⟩ (or ``initial``); returns (state [2^n], measured wires)."""
    state = None
    measured: dict[int, int] = {}
    n = 0
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line or line.startswith(("OPENQASM", "include", "creg")):
            continue
        if line.startswith("qreg"):
            n = int(re.search(r"\[(\d+)\]", line).group(1))
            state = np.zeros((2,) * n, dtype=complex)
            if initial is None:
                state[(0,) * n] = 1
            else:
                state = np.asarray(initial, dtype=complex).reshape((2,) * n)
            continue
        if line.startswith("measure"):
            q, c = re.match(r"measure q\[(\d+)\] -> c\[(\d+)\];", line).groups()
            measured[int(c)] = int(q)
            continue
        name, angle, args = _GATE.match(line).groups()
        wires = [int(w) for w in _QUBIT.findall(args)]
        if name == "cz":
            a, b = wires
            index = [slice(None)] * n
            index[a], index[b] = 1, 1
            state[tuple(index)] *= -1
            continue
        if name == "cx":
            c, t = wires
            index = [slice(None)] * n
            index[c] = 1
            sub = state[tuple(index)]
            state[tuple(index)] = np.flip(sub, axis=t if t < c else t - 1)
        else:
            matrix = _ONE[name](float(angle) if angle else 0.0)
            state = np.moveaxis(np.tensordot(matrix, state, axes=([1], [wires[0]])), 0, wires[0])
    return state.reshape(-1), [measured[i] for i in sorted(measured)]


def expval_z(state: np.ndarray, wires: list[int]) -> np.ndarray:
    """⟨Z_k⟩ of each wire k (wire 0 = most significant bit)."""
    n = int(math.log2(len(state)))
    probs = np.abs(state) ** 2
    index = np.arange(len(state))
    return np.array([np.sum(probs * (1 - 2 * ((index >> (n - 1 - k)) & 1))) for k in wires])
