"""Self-describing, atomically written checkpoints.

A checkpoint is a plain dict of tensors and builtin types (no pickled classes), so
``torch.load(path, weights_only=True)`` reads it::

    {
      "format": "qhead-checkpoint", "version": 1, "qhead_version": "0.1.0",
      "model": state_dict, "optimizer": state_dict, "scheduler": state_dict | None,
      "scaler": state_dict | None,
      "epoch": completed epochs, "best_metric": float | None, "best_epoch": int | None,
      "seconds": training seconds so far, "metrics": last epoch's metrics,
      "classes": [class names], "config": resolved TrainConfig as a plain dict,
      "rng": {"torch": uint8 tensor, "cuda": [uint8 tensors], "numpy": {...},
              "python": {...}},
    }

Files are written to a temporary file in the same directory, flushed and fsync'ed,
then ``os.replace``'d over the target: a reader (or a resumed run) sees either the old
or the new complete file, never a partial one, whenever the writer is killed.
"""

from __future__ import annotations

import os
import random
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from qhead import __version__
from qhead.errors import CheckpointError, ConfigError

__all__ = [
    "FORMAT",
    "LoadedCheckpoint",
    "atomic_save",
    "capture_rng_state",
    "load_checkpoint",
    "read_checkpoint",
    "restore_rng_state",
    "set_backend",
]

FORMAT = "qhead-checkpoint"
VERSION = 1


def capture_rng_state() -> dict[str, Any]:
    """The state of every RNG (torch CPU/CUDA, NumPy, Python) as tensors and builtins."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": int(version), "internal": list(internal), "gauss": gauss},
    }
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Restores what :func:`capture_rng_state` captured."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
         n["cached_gaussian"])
    )
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss"]))


def atomic_save(obj: dict[str, Any], path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress_oserror():
            os.unlink(tmp)
        raise
    # the rename itself must reach the disk for the new file to survive a power cut
    with _suppress_oserror():
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


class _suppress_oserror:
    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> bool:
        return kind is not None and issubclass(kind, OSError)


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Loads a checkpoint dict with ``weights_only=True`` and checks its format.

    Raises:
        CheckpointError: missing, truncated/corrupt, or not a qhead checkpoint.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.is_dir():
        raise CheckpointError(f"checkpoint {path} is a directory; give best.pt or last.pt in it")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt and cannot be loaded ({reason}); "
            "use another checkpoint (best.pt / last.pt) or retrain"
        ) from None
    except Exception as error:  # weights_only unpickler: anything not plain data
        raise CheckpointError(
            f"checkpoint {path} is not a plain qhead checkpoint "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a qhead checkpoint (no format={FORMAT!r} key); qhead reads only "
            "checkpoints written by `qhead train`"
        )
    if int(data.get("version", 0)) > VERSION:
        raise CheckpointError(
            f"checkpoint {path} has format version {data.get('version')}, newer than this "
            f"qhead ({VERSION}); upgrade qhead"
        )
    for key in ("model", "config", "classes"):
        if key not in data:
            raise CheckpointError(f"checkpoint {path} lacks the {key!r} entry")
    return data


@dataclass
class LoadedCheckpoint:
    """A checkpoint with its model rebuilt.

    Attributes:
        model: the :class:`qhead.models.Classifier`, weights loaded, in eval mode, on CPU.
        config: the resolved :class:`qhead.engine.TrainConfig` it was trained with.
        classes: class names, indexed by label.
        epoch: completed training epochs.
        metrics: the metrics of the last completed epoch.
        path: where it was read from.
        raw: the whole checkpoint dict.
    """

    model: torch.nn.Module
    config: Any
    classes: list[str]
    epoch: int
    metrics: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


def load_checkpoint(path: str | Path, backend: str | None = None) -> LoadedCheckpoint:
    """Reads a checkpoint and rebuilds its model from the stored config alone.

    Args:
        path: a ``best.pt``/``last.pt`` written by ``qhead train``.
        backend: where the quantum head's circuit runs: ``None`` keeps the checkpoint's
            (normally qhead's simulator, ``"torch"``); ``"pennylane"`` (``default.qubit``)
            or ``"pennylane:<device>"`` runs the trained circuit through that PennyLane
            device, with the trained angles (see :func:`set_backend`).

    Raises:
        CheckpointError: missing/corrupt file, or a config/state that no longer builds.
        ConfigError: a bad ``backend`` string, PennyLane missing, an unknown device, or a
            ``backend`` for a checkpoint without a quantum head.
    """
    from qhead.engine.config import config_from_dict
    from qhead.models import build_model

    data = read_checkpoint(path)
    try:
        config = config_from_dict(data["config"])
    except ConfigError as error:
        raise CheckpointError(f"checkpoint {path}: its stored config is invalid: {error}") from None
    model = build_model(config.model)
    try:
        model.load_state_dict(data["model"])
    except RuntimeError as error:
        first = str(error).strip().splitlines()
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit the model its config describes "
            f"({' '.join(first[:2])})"
        ) from None
    model.eval()
    if backend is not None:
        set_backend(model, backend, where=f"checkpoint {path} (head {config.model.head!r})")
    return LoadedCheckpoint(
        model=model,
        config=config,
        classes=[str(c) for c in data["classes"]],
        epoch=int(data.get("epoch", 0)),
        metrics=dict(data.get("metrics") or {}),
        path=Path(path),
        raw=data,
    )


def set_backend(model: torch.nn.Module, backend: str, where: str = "the model") -> int:
    """Runs every AE-VQC circuit of ``model`` on ``backend``; returns how many there are.

    The weights stay as they are; only the executor changes (``AEVQC.backend``), so a
    trained head gives the same outputs on any exact backend.

    Args:
        model: a model holding :class:`qhead.quantum.AEVQC` modules.
        backend: ``"torch"``, ``"pennylane"`` or ``"pennylane:<device>"``.
        where: how to name the model in the error message.

    Raises:
        ConfigError: a bad backend string, PennyLane missing, an unknown device, or a model
            without an AE-VQC circuit.
    """
    from qhead.quantum import AEVQC

    circuits = [m for m in model.modules() if isinstance(m, AEVQC)]
    if not circuits:
        raise ConfigError(
            f"backend {backend!r}: {where} has no quantum circuit (AE-VQC head); backends "
            "apply to quantum heads only"
        )
    for circuit in circuits:
        circuit.backend = backend
    return len(circuits)


def make_checkpoint(
    *,
    model_state: dict[str, Any],
    optimizer_state: dict[str, Any] | None,
    scheduler_state: dict[str, Any] | None,
    scaler_state: dict[str, Any] | None,
    epoch: int,
    best_metric: float | None,
    best_epoch: int | None,
    seconds: float,
    metrics: dict[str, Any],
    classes: list[str],
    config: dict[str, Any],
) -> dict[str, Any]:
    """Assembles the checkpoint dict (see the module docstring)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "qhead_version": __version__,
        "model": model_state,
        "optimizer": optimizer_state,
        "scheduler": scheduler_state,
        "scaler": scaler_state,
        "epoch": int(epoch),
        "best_metric": None if best_metric is None else float(best_metric),
        "best_epoch": None if best_epoch is None else int(best_epoch),
        "seconds": float(seconds),
        "metrics": {k: _builtin(v) for k, v in metrics.items()},
        "classes": [str(c) for c in classes],
        "config": config,
        "rng": capture_rng_state(),
    }


def _builtin(value: Any) -> Any:
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    return value
