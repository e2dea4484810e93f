"""Evaluating and applying trained checkpoints (``qhead evaluate``, ``qhead predict``)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from qhead.engine import record
from qhead.engine.checkpoint import LoadedCheckpoint, load_checkpoint
from qhead.engine.loader import make_loader
from qhead.engine.metrics import missing_class_warnings, plot_confusion, write_confusion_csv
from qhead.engine.record import evaluation_files
from qhead.engine.runtime import make_step_context, prepare_model, resolve_device
from qhead.engine.trainer import evaluate_model
from qhead.errors import ConfigError, DataError
from qhead.quantum import check_shots

__all__ = ["PreparedEvaluation", "evaluate", "predict", "set_shots"]


def set_shots(model: torch.nn.Module, shots: int | None, seed: int, device: torch.device) -> int:
    """Sets ``shots`` on every AE-VQC circuit of ``model``; returns how many were set.

    Each circuit gets its own generator (PennyLane backends: device seed) seeded from
    ``seed`` so that a finite-shot evaluation is reproducible.
    """
    from qhead.quantum import AEVQC

    count = 0
    for i, module in enumerate(m for m in model.modules() if isinstance(m, AEVQC)):
        module.shots = shots
        generator = torch.Generator(device=device)
        generator.manual_seed(seed * 1000 + i)
        module.generator = generator
        if module.backend_name == "pennylane" and shots is not None:
            module.seed = seed * 1000 + i
            module.backend = module.backend  # rebuild the device with its sampling seed
        count += 1
    return count


def _data_config(loaded: LoadedCheckpoint, overrides: Mapping[str, Any] | Sequence[str] | None,
                 data_root: str | None) -> Any:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from qhead.data import DataConfig
    from qhead.engine.config import omegaconf_error
    from qhead.overrides import nest, parse_overrides

    base = dataclasses.asdict(loaded.config.data)
    try:
        node = OmegaConf.merge(OmegaConf.structured(DataConfig), OmegaConf.create(base))
        if overrides:
            if isinstance(overrides, Mapping):
                extra = OmegaConf.create(dict(overrides))
            else:
                items = [o[len("data."):] if o.startswith("data.") else o for o in overrides]
                extra = OmegaConf.create(
                    nest(parse_overrides(items, what="--data", example="(e.g. root=DIR)"))
                )
            node = OmegaConf.merge(node, extra)
        if data_root is not None:
            node.root = data_root
        plain = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as error:
        message = str(omegaconf_error(error))
        raise ConfigError(message.replace("config key '", "data key '")) from None
    assert isinstance(plain, dict)
    size = loaded.config.model.image_size
    if plain.get("image_size") != size:
        raise ConfigError(
            f"data.image_size={plain.get('image_size')}: the checkpoint's model takes "
            f"{size}x{size} images; leave data.image_size unset"
        )
    return DataConfig(**plain)


def _check_classes(loaded: LoadedCheckpoint, classes: list[str], where: str) -> None:
    expected = loaded.classes
    if len(classes) != len(expected):
        raise DataError(
            f"checkpoint {loaded.path} predicts {len(expected)} classes ({', '.join(expected)}) "
            f"but {where} has {len(classes)} classes ({', '.join(classes[:12])}"
            f"{', …' if len(classes) > 12 else ''}); evaluate on data with the same classes"
        )
    if list(classes) != list(expected):
        raise DataError(
            f"checkpoint {loaded.path} was trained on classes {expected} but {where} has "
            f"classes {classes}; labels would be misread, use data with the same class names"
        )


class PreparedEvaluation:
    """A checkpoint and one split of its data, loaded once; :meth:`run` evaluates it at any
    shot count and sampling seed with exactly the numbers of :func:`evaluate` (same batches,
    autocast and sampler seeding).

    With ``cache_features=True`` the backbone runs once, on the first :meth:`run`, and
    later runs re-use its feature maps (``[N, C, h, w]`` in the autocast dtype, held in
    memory) and run the head alone: a shot study of 13 evaluations costs one backbone pass
    instead of 13. Without, every run streams the images (memory O(batch)).

    Arguments as :func:`evaluate`. Raises CheckpointError, DataError, ConfigError.
    """

    def __init__(
        self,
        checkpoint: str | Path,
        *,
        data: Mapping[str, Any] | Sequence[str] | None = None,
        data_root: str | None = None,
        split: str = "test",
        batch_size: int = 64,
        device: str = "auto",
        amp: str = "auto",
        backend: str | None = None,
        cache_features: bool = False,
    ):
        from qhead.data import build_datasets

        if split not in ("test", "train"):
            raise ConfigError(f"split: {split!r} is not allowed; allowed: test, train")
        self.checkpoint, self.split, self.backend = Path(checkpoint), split, backend
        loaded = load_checkpoint(checkpoint, backend=backend)
        data_cfg = _data_config(loaded, data, data_root)
        data_cfg.hflip = False
        if (data_cfg.root and data_root is None and not Path(data_cfg.root).is_absolute()
                and not Path(data_cfg.root).expanduser().exists()):
            # checkpoints written before data.root was stored absolute
            raise DataError(
                f"data.root {data_cfg.root!r} stored in {checkpoint} is relative to the "
                f"directory the run was trained from and does not exist from {Path.cwd()}; "
                "run from there or pass --data-root DIR"
            )
        splits = build_datasets(data_cfg)
        where = f"dataset {data_cfg.name!r}" + (f" at {data_cfg.root}" if data_cfg.root else "")
        _check_classes(loaded, list(splits.classes), where)
        self.device = resolve_device(device)
        self.loaded, self.data_cfg, self.model = loaded, data_cfg, loaded.model
        self.ctx = make_step_context(self.model, self.device, amp, loaded.config.channels_last)
        prepare_model(self.model, self.ctx)
        dataset = splits.test if split == "test" else splits.train
        for message in missing_class_warnings({split: getattr(dataset, "labels", None)},
                                              loaded.classes):
            print(f"qhead evaluate: warning: {message}", file=sys.stderr)
        if split == "train" and hasattr(dataset, "train"):
            dataset.train = False  # no augmentation when measuring
        self.dataset, self.batch_size = dataset, batch_size
        self.cache_features = cache_features
        self._features: list[tuple[torch.Tensor, Any, Any]] | None = None

    def _loader(self, seed: int):
        loader, _ = make_loader(self.dataset, batch_size=self.batch_size, shuffle=False,
                                seed=seed, num_workers=0,
                                pin_memory=self.device.type == "cuda")
        return loader

    def _batches(self, seed: int):
        """(loader, forward) for one run: cached feature maps and the head, or images and
        the whole model."""
        if not self.cache_features:
            return self._loader(seed), None
        if self._features is None:
            self.model.eval()
            features = []
            with torch.no_grad():
                for images, labels, indices in self._loader(seed):
                    with self.ctx.autocast():
                        maps = self.model.forward_features(self.ctx.to_device(images))
                    features.append((maps, labels, indices))
            self._features = features
        return self._features, self.model.forward_head

    def run(self, shots: int | None = None, shots_seed: int = 0) -> dict[str, Any]:
        """Metrics at ``shots`` (None: exact) with sampler seed ``shots_seed``; the dict of
        :func:`evaluate` without ``files``."""
        check_shots(shots)
        loaded, model = self.loaded, self.model
        n_circuits = set_shots(model, shots, shots_seed, self.device)
        if shots is not None and n_circuits == 0:
            raise ConfigError(
                f"--shots {shots}: checkpoint {self.checkpoint} has no quantum head (head "
                f"{loaded.config.model.head!r}); shots apply to AE-VQC heads only"
            )
        batches, forward = self._batches(shots_seed)
        torch.manual_seed(shots_seed)
        with torch.no_grad():
            metrics = evaluate_model(model, batches, self.ctx, loaded.classes, forward=forward)
        return {
            record.ACCURACY: metrics["accuracy"],
            record.MACRO_F1: metrics["macro_f1"],
            "loss": metrics["loss"],
            "n": metrics["n"],
            "per_class": metrics["per_class"],
            record.CONFUSION: metrics["confusion_matrix"],
            record.CLASSES: loaded.classes,
            "checkpoint": str(self.checkpoint),
            "epoch": loaded.epoch,
            "dataset": self.data_cfg.name,
            "data_root": self.data_cfg.root,
            "split": self.split,
            "shots": shots,
            "shots_seed": shots_seed if shots is not None else None,
            "backend": self.backend or _checkpoint_backend(loaded),
        }


def evaluate(
    checkpoint: str | Path,
    *,
    data: Mapping[str, Any] | Sequence[str] | None = None,
    data_root: str | None = None,
    split: str = "test",
    shots: int | None = None,
    shots_seed: int = 0,
    batch_size: int = 64,
    device: str = "auto",
    amp: str = "auto",
    out: str | Path | None = None,
    write: bool = True,
    backend: str | None = None,
) -> dict[str, Any]:
    """Evaluates a checkpoint on a split of its dataset (or of other data).

    Args:
        checkpoint: a ``best.pt``/``last.pt`` written by ``qhead train``.
        data: overrides of the checkpoint's data config (``["root=/data/x"]`` or a dict).
        data_root: shortcut for ``data.root``.
        split: ``test`` or ``train`` (evaluated without augmentation).
        shots: finite shots for the quantum head (``None``: exact expectations).
        shots_seed: seed of the shot sampling.
        batch_size: evaluation batch size.
        device: ``auto``, ``cpu``, ``cuda``…
        amp: as in :class:`~qhead.engine.TrainConfig`.
        out: folder for the result files (default: beside the checkpoint).
        write: write ``<stem>.eval[.shotsS].json`` + confusion CSV/PNG.
        backend: run the quantum head on ``"pennylane[:device]"`` instead of qhead's
            simulator (``None``: the checkpoint's own, normally ``"torch"``).

    Returns:
        ``{"accuracy", "macro_f1", "loss", "n", "per_class", "confusion_matrix",
        "classes", "checkpoint", "epoch", "split", "shots", "shots_seed", "files"}``.

    Raises:
        CheckpointError, DataError (e.g. class mismatch), ConfigError.
    """
    check_shots(shots)  # before loading anything; the same rule as the circuit's
    prepared = PreparedEvaluation(
        checkpoint, data=data, data_root=data_root, split=split, batch_size=batch_size,
        device=device, amp=amp, backend=backend,
    )
    result = prepared.run(shots, shots_seed)
    if write:
        folder = Path(out) if out is not None else Path(checkpoint).parent
        folder.mkdir(parents=True, exist_ok=True)
        files = evaluation_files(folder, checkpoint, split, shots, backend)
        result["files"] = {k: str(v) for k, v in files.items()}
        confusion, classes = result[record.CONFUSION], result[record.CLASSES]
        write_confusion_csv(files["confusion_csv"], confusion, classes)
        title = (f"{Path(checkpoint).name}: acc {result[record.ACCURACY]:.3f}, "
                 f"macro-F1 {result[record.MACRO_F1]:.3f}")
        plot_confusion(files["confusion_png"], confusion, classes, title)
        files["json"].write_text(json.dumps(result, indent=2))
    return result


def _checkpoint_backend(loaded: LoadedCheckpoint) -> str | None:
    """The backend the checkpoint's circuit runs on (None without a quantum head)."""
    from qhead.quantum import AEVQC

    for module in loaded.model.modules():
        if isinstance(module, AEVQC):
            return module.backend
    return None


def _expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    from qhead.data.loading import is_image_file

    paths: list[Path] = []
    empty: list[str] = []
    missing: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_file(p))
            if not found:
                empty.append(str(path))
            paths.extend(found)
        else:
            if not path.exists():
                missing.append(str(path))
            paths.append(path)  # missing/bad files are reported per row, not fatal
    if missing and len(missing) == len(paths):
        # nothing to predict at all: a mistyped path, not a file that failed among others
        raise DataError(f"no such file or folder: {', '.join(missing)}")
    if not paths:
        where = f": {', '.join(empty)} hold(s) no image files" if empty else ""
        raise DataError(f"no input images{where}")
    for folder in empty:
        print(f"qhead predict: warning: no image files in {folder}", file=sys.stderr)
    return paths


def predict(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    batch_size: int = 32,
    device: str = "auto",
    backend: str | None = None,
) -> list[dict[str, Any]]:
    """Predicts the class of image files (folders are searched recursively).

    Unreadable (or missing) files do not stop the others: their row has
    ``status="error"`` and the reason, and the reason is printed on stderr. If no input
    exists at all, that is an error (:class:`DataError`), not a CSV of error rows.

    Args:
        checkpoint: a checkpoint written by ``qhead train``.
        inputs: image files and/or folders.
        out: CSV file to write (``None``: no file).
        batch_size: images per forward pass.
        device: ``auto``, ``cpu``, ``cuda``…
        backend: run the quantum head on ``"pennylane[:device]"`` (``None``: the
            checkpoint's own, normally qhead's simulator).

    Returns:
        one dict per file: ``path``, ``status`` (``ok``/``error``), ``error``,
        ``predicted`` (class name), ``confidence``, ``prob_<class>`` per class.
    """
    from qhead.data import load_image

    loaded = load_checkpoint(checkpoint, backend=backend)
    paths = _expand_inputs(inputs)
    dev = resolve_device(device)
    model = loaded.model
    ctx = make_step_context(model, dev, "auto", loaded.config.channels_last)
    prepare_model(model, ctx)
    from qhead.data.prepare import crop_bottom_for

    size, normalize = loaded.config.model.image_size, loaded.config.data.normalize
    # raw files of a dataset whose preparer crops (aircraft737's banner) get the same crop
    crop = crop_bottom_for(loaded.config.data.name)
    rows: list[dict[str, Any]] = []
    batch: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if not batch:
            return
        images = torch.stack([b[1] for b in batch])
        with torch.no_grad(), ctx.autocast():
            probs = torch.softmax(model(ctx.to_device(images)).float(), dim=1).cpu()
        for (row_index, _), p in zip(batch, probs, strict=True):
            k = int(p.argmax())
            rows[row_index].update(predicted=loaded.classes[k], confidence=float(p[k]))
            for name, value in zip(loaded.classes, p.tolist(), strict=True):
                rows[row_index][f"prob_{name}"] = value
        batch.clear()

    for path in paths:
        row: dict[str, Any] = {"path": str(path), "status": "ok", "error": ""}
        rows.append(row)
        try:
            image = load_image(path, size, normalize, crop_bottom=crop)
        except (DataError, OSError) as error:
            row.update(status="error", error=str(error))
            print(f"qhead predict: skipped {path}: {error}", file=sys.stderr)
            continue
        batch.append((len(rows) - 1, image))
        if len(batch) >= batch_size:
            flush()
    flush()
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(predictions_csv(rows, loaded.classes))
    return rows


def predictions_csv(rows: list[dict[str, Any]], classes: list[str]) -> str:
    """The CSV text of :func:`predict`'s rows (probabilities with 6 decimals)."""
    columns = ["path", "status", "predicted", "confidence", *[f"prob_{c}" for c in classes],
               "error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})
    return buffer.getvalue()
