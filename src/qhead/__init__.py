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

import os as _os
import sys as _sys

# torch's OpenMP workers busy-wait for milliseconds after every parallel op by default;
# that steals a core from the simulator's CPU kernel threads (qhead.simulator.kernels)
# and halves their speed on a small machine. Sleeping workers cost torch nothing
# measurable (a ResNet-18 step is as fast). This only takes effect when qhead is
# imported before torch (as by the ``qhead`` command) and the user has not chosen.
# When torch came first with the variable unset, its OpenMP runtime has already read the
# (missing) policy: qhead.simulator.kernels warns once, with the fix, when the kernels
# first run on several threads.
TORCH_IMPORTED_FIRST = "torch" in _sys.modules
if not TORCH_IMPORTED_FIRST:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
