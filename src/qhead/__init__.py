"""qhead: hybrid quantum-classical image classification.

Layout (one folder per layer, each depending only on the ones above it):

* :mod:`qhead.simulator` — pure functions over torch tensors: amplitude encoding,
  gates, exact and finite-shot Pauli-Z expectations.
* :mod:`qhead.quantum` — ansatz registry, circuit lint, the :class:`~qhead.quantum.AEVQC`
  module and the PennyLane backend.
* :mod:`qhead.models` — backbone and head registries, the paper presets.
* :mod:`qhead.data` — dataset registry, preparers for the paper's datasets, loading, audit.
* :mod:`qhead.engine` — configs, training, evaluation, prediction, checkpoints.
* :mod:`qhead.experiments` — multi-seed grids, reports, the shot-noise study.
* :mod:`qhead.cli` — the ``qhead`` command.
"""

__version__ = "0.1.0"
