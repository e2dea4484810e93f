"""Static checks of a circuit: parameters that cannot matter, layers that merge.

Two findings, each a :class:`LintWarning` with an explanation:

* **dead parameters** — angles that cannot change any measured ⟨Z⟩ whatever the
  input, so their gradient is exactly zero and training them is wasted work. Found
  by propagating the measured observables backwards (Heisenberg picture) through the
  gates, tracking per wire whether the observable acts there as the identity ("I"),
  only through I/Z ("D", diagonal) or arbitrarily ("F"). A gate on an "I" wire is
  outside the measured light cone; a diagonal gate (RZ) on a "D" wire commutes with
  the observable. CNOT(c, t) maps Z_t → Z_c Z_t and X_c → X_c X_t, so the target's
  support spreads a diagonal part to the control and the control's X part to the
  target. The analysis is sound (a flagged angle really is dead); it may miss some.
* **redundant rotations** — a rotation directly following a rotation about the same
  axis on the same wire (RY(a)·RY(b) = RY(a+b)): only the sum of the two angles
  matters, so the later layer adds parameters but no expressive power.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from qhead.simulator import GATES, Op
from qhead.simulator.ops import ANY, DIAGONAL, IDENTITY

__all__ = ["CircuitLintWarning", "LintWarning", "lint_circuit", "lint_ops"]

_I, _D, _F = IDENTITY, DIAGONAL, ANY


class CircuitLintWarning(UserWarning):
    """Category of the warnings :class:`qhead.quantum.AEVQC` emits for lint findings."""


@dataclass(frozen=True)
class LintWarning:
    """One lint finding.

    Attributes:
        kind: "dead-parameter" or "redundant-rotation".
        params: the weight indices concerned.
        message: explanation for the user.
    """

    kind: str
    params: tuple[tuple[int, ...], ...]
    message: str = field(compare=False)

    def __str__(self) -> str:
        return self.message


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] → "0..2, 5, 7..8"."""
    parts: list[str] = []
    start = prev = values[0]
    for v in [*values[1:], None]:
        if v is not None and v == prev + 1:
            prev = v
            continue
        parts.append(str(start) if start == prev else f"{start}..{prev}")
        if v is not None:
            start = prev = v
    return ", ".join(parts)


def _fmt_params(name: str, params: Sequence[tuple[int, ...]], pos: int | None = None) -> str:
    """``RZ angles weights[1, q, 2] for q in 0..3``: ``pos`` is the index that varies
    (the wire's, default the last); any other pattern is listed in full."""
    if not params:
        return ""
    pos = len(params[0]) - 1 if pos is None else pos
    rest = [p[:pos] + p[pos + 1 :] for p in params]
    if all(r == rest[0] for r in rest):
        var = "q" if len(params[0]) > 1 else "i"
        cells = [str(i) for i in params[0]]
        cells[pos] = var
        values = sorted(p[pos] for p in params)
        return f"{name} angles weights[{', '.join(cells)}] for {var} in {_ranges(values)}"
    return f"{name} angles at weights{[list(p) for p in params]}"


def _wire_position(ops: Sequence[Op]) -> int:
    """The index of ``Op.param`` that is the gate's wire for all these gates (the last
    such; the last index when none is), so that findings group one layer per line."""
    size = len(ops[0].param)
    matches = [i for i in range(size) if all(op.param[i] == op.wires[0] for op in ops)]
    return matches[-1] if matches else size - 1


def dead_parameters(
    ops: Sequence[Op], n_wires: int, measured_wires: Sequence[int]
) -> dict[tuple[int, ...], str]:
    """Weight indices whose angles cannot change the measured ⟨Z⟩s.

    Returns:
        index → reason, "light-cone" (no path to a measured wire) or "phase" (a
        diagonal gate seen only by diagonal observables).
    """
    status = [_I] * n_wires
    for w in measured_wires:
        status[w] = _D
    reasons: dict[tuple[int, ...], str] = {}
    live: set[tuple[int, ...]] = set()
    for op in reversed(ops):
        spec = GATES[op.name]
        if spec.n_wires == 1:
            (w,) = op.wires
            reason = None
            if status[w] == _I:
                reason = "light-cone"
            elif spec.diagonal and status[w] == _D:
                reason = "phase"
            elif not spec.diagonal and not (spec.permutation and status[w] == _D):
                status[w] = _F  # X Z X = −Z keeps a diagonal observable diagonal
            if op.param is not None:
                if reason is None:
                    live.add(op.param)
                else:
                    reasons.setdefault(op.param, reason)
        else:  # two-qubit gates carry their rule in the gate table
            a, b = op.wires
            status[a], status[b] = spec.lint(status[a], status[b])
    return {p: r for p, r in reasons.items() if p not in live}


def redundant_rotations(ops: Sequence[Op]) -> list[tuple[Op, Op]]:
    """Pairs (earlier, later) of same-axis rotations adjacent on one wire."""
    previous: dict[int, Op] = {}
    pairs = []
    for op in ops:
        spec = GATES[op.name]
        if spec.n_wires == 1:
            before = previous.get(op.wires[0])
            if (
                spec.axis is not None
                and before is not None
                and GATES[before.name].axis == spec.axis
            ):
                pairs.append((before, op))
        for w in op.wires:
            previous[w] = op
    return pairs


_WHY = {
    "light-cone": (
        "cannot influence the measured wires {measured}: no later gate connects "
        "their wires to a measured wire"
    ),
    "phase": (
        "cannot influence the outputs: each is a diagonal (Z-axis) rotation seen only "
        "through CNOTs and diagonal gates by the Z measurement, so it only changes phases"
    ),
}


def lint_ops(
    ops: Sequence[Op], n_wires: int, measured_wires: Sequence[int]
) -> list[LintWarning]:
    """Lints a gate list (see the module docstring); one warning per group of angles."""
    findings: list[LintWarning] = []
    measured = sorted(set(measured_wires))
    dead = dead_parameters(ops, n_wires, measured)
    by_kind: dict[tuple, list[Op]] = {}
    for op in ops:
        if op.param is not None and op.param in dead:
            by_kind.setdefault((dead[op.param], op.name), []).append(op)
    groups: dict[tuple, tuple[int, list[tuple[int, ...]]]] = {}
    for (reason, name), kind_ops in by_kind.items():
        pos = _wire_position(kind_ops)
        for op in kind_ops:
            key = (reason, name, op.param[:pos] + op.param[pos + 1 :])
            params = groups.setdefault(key, (pos, []))[1]
            if op.param not in params:
                params.append(op.param)
    for (reason, name, _), (pos, params) in groups.items():
        why = _WHY[reason].format(measured=_ranges(measured))
        findings.append(
            LintWarning(
                "dead-parameter",
                tuple(params),
                f"dead parameters: {_fmt_params(name, params, pos)} ({len(params)}) {why}; "
                "their gradient is exactly zero, so they are trained for nothing",
            )
        )
    merged: dict[tuple, list[tuple[tuple[int, ...], tuple[int, ...]]]] = {}
    for before, after in redundant_rotations(ops):
        if before.param in dead or after.param in dead:
            continue
        key = (before.name, after.name, before.param[:-1], after.param[:-1])
        merged.setdefault(key, []).append((before.param, after.param))
    for (b_name, a_name, _, _), pairs in merged.items():
        later = [a for _, a in pairs]
        earlier = [b for b, _ in pairs]
        findings.append(
            LintWarning(
                "redundant-rotation",
                tuple(later),
                f"redundant rotations: {_fmt_params(a_name, later)} directly follow "
                f"{_fmt_params(b_name, earlier)} on the same wires; rotations about one axis "
                f"merge ({a_name}(a)·{b_name}(b) = {a_name}(a+b)), so only the sums matter and "
                f"these {len(later)} parameters add no expressive power",
            )
        )
    return findings


def lint_circuit(
    ansatz, layers: int, n_wires: int, measured_wires: Sequence[int] | None = None
) -> list[LintWarning]:
    """Lints an ansatz (registry name or :class:`~qhead.quantum.Ansatz`) at a given size.

    Args:
        ansatz: name in ``ANSATZES`` or an Ansatz instance.
        layers: D.
        n_wires: number of qubits n.
        measured_wires: measured wires (default all).

    Returns:
        The findings, possibly empty.
    """
    from qhead.quantum.ansatz import build_ansatz, check_ops

    obj = build_ansatz(ansatz)
    measured = list(range(n_wires)) if measured_wires is None else list(measured_wires)
    return lint_ops(check_ops(obj, layers, n_wires), n_wires, measured)
