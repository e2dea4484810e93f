"""Pure-function state-vector simulator for amplitude-encoded variational circuits.

Everything works on batched torch tensors (CPU or CUDA, float32 or float64) and is
differentiable with autograd. Conventions follow PennyLane: wire 0 is the most
significant bit of the basis index, ``R_P(θ) = exp(−iθP/2)``, ⟨Z_k⟩ = P(0) − P(1).
A state is a tensor ``[B] + [2] * n``.
"""

from qhead.simulator.backends import SIMULATOR_NAMES, SIMULATORS
from qhead.simulator.circuit import (
    GATES,
    GateSpec,
    Op,
    ansatz1_closed_form,
    product_expval_z,
    run_circuit,
    run_encoded_circuit,
    validate_ops,
    z_and_x,
)
from qhead.simulator.encoding import MAX_QUBITS, amplitude_encode, check_finite_rows, num_qubits
from qhead.simulator.gates import (
    apply_matrix,
    apply_permutation,
    cnot,
    cnot_permutation,
    complex_dtype,
    cz,
    hadamard,
    hadamard_matrix,
    rotation_matrix,
    rx,
    rx_matrix,
    ry,
    ry_matrix,
    rz,
    rz_matrix,
)
from qhead.simulator.measure import expval_z, probabilities, sample_expval_z, z_signs

__all__ = [
    "GATES",
    "MAX_QUBITS",
    "SIMULATORS",
    "SIMULATOR_NAMES",
    "GateSpec",
    "Op",
    "amplitude_encode",
    "ansatz1_closed_form",
    "apply_matrix",
    "apply_permutation",
    "check_finite_rows",
    "cnot",
    "cnot_permutation",
    "complex_dtype",
    "cz",
    "expval_z",
    "hadamard",
    "hadamard_matrix",
    "num_qubits",
    "probabilities",
    "product_expval_z",
    "rotation_matrix",
    "run_circuit",
    "run_encoded_circuit",
    "rx",
    "rx_matrix",
    "ry",
    "ry_matrix",
    "rz",
    "rz_matrix",
    "sample_expval_z",
    "validate_ops",
    "z_and_x",
    "z_signs",
]
