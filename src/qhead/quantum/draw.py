"""Text drawing of an ansatz circuit."""

from __future__ import annotations

from collections.abc import Sequence

from qhead.simulator import GATES, Op

__all__ = ["draw_circuit", "draw_ops"]


def _label(op: Op) -> str:
    if op.param is None:
        return op.name
    return f"{op.name}({','.join(str(i) for i in op.param)})"


def draw_ops(ops: Sequence[Op], n_wires: int, measured_wires: Sequence[int] | None = None) -> str:
    """Draws a gate list, one line per wire, gates placed as early as possible.

    ``RY(0,3)`` is an RY whose angle is ``weights[0, 3]``; two-qubit gates use their
    labels from the gate table (CNOT ``●``/``⊕`` control/target, CZ ``●``/``●``; ``│``
    marks wires they cross); ``⟨Z⟩`` marks measured wires.
    """
    measured = set(range(n_wires) if measured_wires is None else measured_wires)
    columns: list[dict[int, str]] = []
    level = [0] * n_wires  # first free column per wire
    for op in ops:
        if len(op.wires) == 1:
            span = list(op.wires)
            cells = {op.wires[0]: _label(op)}
        else:
            c, t = op.wires
            span = list(range(min(c, t), max(c, t) + 1))
            cells = {w: "│" for w in span}
            spec = GATES[op.name]
            cells[c], cells[t] = spec.label(0), spec.label(1)
        col = max(level[w] for w in span)
        while len(columns) <= col:
            columns.append({})
        columns[col].update(cells)
        for w in span:
            level[w] = col + 1
    widths = [max(len(s) for s in column.values()) for column in columns]
    lines = []
    tag = len(str(n_wires - 1))
    for w in range(n_wires):
        parts = []
        for column, width in zip(columns, widths, strict=True):
            cell = column.get(w, "")
            fill = "─" * (width - len(cell))
            parts.append("─" + cell + fill + "─" if cell else "─" * (width + 2))
        end = "┤ ⟨Z⟩" if w in measured else ""
        lines.append(f"{w:>{tag}}: " + "".join(parts) + end)
    return "\n".join(lines)


def draw_circuit(
    ansatz, layers: int, n_wires: int, measured_wires: Sequence[int] | None = None
) -> str:
    """Text drawing of an ansatz (registry name or instance) with D=``layers`` on ``n_wires``.

    Example::

        >>> print(draw_circuit("ansatz2", 1, 3))
        0: ─H──RY(0,0,0)──RZ(0,1,0)──●────┤ ⟨Z⟩
        1: ─H──RY(0,0,1)──RZ(0,1,1)──⊕──●─┤ ⟨Z⟩
        2: ─H──RY(0,0,2)──RZ(0,1,2)─────⊕─┤ ⟨Z⟩
    """
    from qhead.quantum.ansatz import build_ansatz, check_ops

    obj = build_ansatz(ansatz)
    return draw_ops(check_ops(obj, layers, n_wires), n_wires, measured_wires)
