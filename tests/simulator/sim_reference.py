"""Dense-matrix reference simulator (numpy, complex128), independent of qhead's code.

Wire 0 is the most significant bit; a gate on wire w is kron(I_{2^w}, U, I_{2^(n-w-1)}).
"""

from __future__ import annotations

import numpy as np
import torch

H = np.array([[1, 1], [1, -1]], dtype=complex) / np.sqrt(2)
X = np.array([[0, 1], [1, 0]], dtype=complex)
Z = np.array([[1, 0], [0, -1]], dtype=complex)


def rx(t):
    c, s = np.cos(t / 2), np.sin(t / 2)
    return np.array([[c, -1j * s], [-1j * s, c]])


def ry(t):
    c, s = np.cos(t / 2), np.sin(t / 2)
    return np.array([[c, -s], [s, c]], dtype=complex)


def rz(t):
    return np.diag([np.exp(-0.5j * t), np.exp(0.5j * t)])


def one_qubit(u, wire, n):
    return np.kron(np.kron(np.eye(2**wire), u), np.eye(2 ** (n - wire - 1)))


def cnot(control, target, n):
    dim = 2**n
    m = np.zeros((dim, dim), dtype=complex)
    for j in range(dim):
        bit = (j >> (n - 1 - control)) & 1
        k = j ^ (1 << (n - 1 - target)) if bit else j
        m[k, j] = 1
    return m


def two_qubit(u, wires, n):
    """The 4×4 matrix ``u`` (first wire = most significant bit) on ``wires`` of n."""
    dim = 2**n
    m = np.zeros((dim, dim), complex)
    a, b = wires
    for j in range(dim):
        ba, bb = (j >> (n - 1 - a)) & 1, (j >> (n - 1 - b)) & 1
        for out_bits in range(4):
            amp = u[out_bits, 2 * ba + bb]
            if amp:
                k = j & ~(1 << (n - 1 - a)) & ~(1 << (n - 1 - b))
                k |= ((out_bits >> 1) << (n - 1 - a)) | ((out_bits & 1) << (n - 1 - b))
                m[k, j] += amp
    return m


def expval_z(psi, wires, n):
    probs = np.abs(psi) ** 2
    out = []
    for w in wires:
        signs = np.array([1 - 2 * ((j >> (n - 1 - w)) & 1) for j in range(2**n)])
        out.append(float(probs @ signs))
    return np.array(out)


def encode(x, n):
    v = np.zeros(2**n, dtype=complex)
    v[: len(x)] = x
    return v / np.linalg.norm(v)


def random_state(batch, n, seed=0, complex_=False):
    """A random normalised state ``[batch] + [2] * n`` in float64 / complex128."""
    g = torch.Generator().manual_seed(seed)
    re = torch.randn(batch, 2**n, generator=g, dtype=torch.float64)
    if complex_:
        re = torch.complex(re, torch.randn(batch, 2**n, generator=g, dtype=torch.float64))
    return (re / re.abs().square().sum(1, keepdim=True).sqrt()).reshape([batch] + [2] * n)
