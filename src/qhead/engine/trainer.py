"""``train(cfg) -> run dir``: the training loop, checkpoints, logs and plots.

The run dir's files and their keys are defined in :mod:`qhead.engine.record` (only rank 0
writes): ``config.yaml``, ``metrics.csv`` (one row per epoch), ``last.pt`` (after every
epoch, atomic), ``best.pt`` (best epoch by ``select_metric``, atomic), ``final.json``
(last epoch's metrics, Params*, confusion matrix, versions), ``curves.png`` and ``tb/``.

Resuming (``resume=True``) reloads ``last.pt`` and restarts the epoch that was running
when the process died from its beginning. Shuffling, augmentation and the per-epoch
RNG seeds are functions of ``(seed, epoch, …)``, so in deterministic mode a resumed run
ends with the same weights and metrics as an uninterrupted one.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qhead.engine import record
from qhead.engine.checkpoint import (
    atomic_save,
    make_checkpoint,
    read_checkpoint,
    restore_rng_state,
)
from qhead.engine.config import (
    RESUMABLE_KEYS,
    TrainConfig,
    config_to_dict,
    resume_conflicts,
    save_config,
)
from qhead.engine.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    broadcast_buffers,
    cleanup_distributed,
    gather_eval,
    init_distributed,
)
from qhead.engine.loader import make_loader
from qhead.engine.metrics import (
    classification_metrics,
    missing_class_warnings,
    plot_learning_curves,
    read_metrics,
    truncate_metrics,
    write_metrics_row,
)
from qhead.engine.runtime import (
    StepContext,
    derive_seed,
    make_step_context,
    prepare_model,
    resolve_device,
    seed_everything,
    set_deterministic,
    train_step,
)
from qhead.errors import CheckpointError, ConfigError, QheadError

__all__ = ["build_optimizer", "build_scheduler", "evaluate_model", "train"]

HIGHER_IS_BETTER = {"test_macro_f1": True, "test_acc": True, "test_loss": False}


def plural(count: int, noun: str) -> str:
    """``"1 epoch"``, ``"2 epochs"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def log(message: str, info: DistInfo | None = None) -> None:
    """Prints on rank 0 only (stdout, flushed so logs of subprocess runs stay in order)."""
    if info is None or info.is_main:
        print(message, flush=True)


def build_optimizer(cfg: TrainConfig, params: Any) -> torch.optim.Optimizer:
    """Adam (paper), AdamW or SGD over the trainable parameters."""
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def build_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer
) -> torch.optim.lr_scheduler.LRScheduler | None:
    """``cosine``: cosine annealing per epoch over ``epochs``; ``none``: constant lr."""
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    return None


@torch.no_grad()
def evaluate_model(
    model: nn.Module,
    loader: Any,
    ctx: StepContext,
    classes: list[str],
    info: DistInfo | None = None,
) -> dict[str, Any]:
    """Metrics of ``model`` over every sample of ``loader`` (sharded over ranks).

    The loader yields ``(images [B,3,S,S], labels [B], indices [B])``; outputs of all
    ranks are gathered and de-duplicated by index, so the metrics are those a single
    process would compute on the whole split.
    """
    info = info or DistInfo()
    was_training = model.training
    model.eval()
    outs, ys, ids = [], [], []
    for images, labels, indices in loader:
        with ctx.autocast():
            logits = model(ctx.to_device(images))
        outs.append(logits.float().cpu())
        ys.append(labels)
        ids.append(indices)
    model.train(was_training)
    n_classes = len(classes)
    logits = torch.cat(outs) if outs else torch.zeros(0, n_classes)
    labels = torch.cat(ys) if ys else torch.zeros(0, dtype=torch.long)
    indices = torch.cat(ids) if ids else torch.zeros(0, dtype=torch.long)
    logits, labels = gather_eval(logits, labels, indices, info)
    return classification_metrics(logits, labels, classes)


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _progress_bar(total: int, desc: str, enabled: bool) -> Any:
    from tqdm.auto import tqdm

    # disable=None: on only when stderr is a terminal (no \r-spam in log files)
    return tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True,
                disable=None if enabled else True, file=sys.stderr)


def _tensorboard(cfg: TrainConfig, out: Path, info: DistInfo) -> Any:
    if not (cfg.tensorboard and info.is_main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(log_dir=str(out / record.TENSORBOARD_DIR))


def _oom_error(cfg: TrainConfig, device: torch.device, error: BaseException) -> QheadError:
    smaller = max(1, cfg.batch_size // 2)
    return QheadError(
        f"out of memory on {device} at batch_size={cfg.batch_size} (image_size="
        f"{cfg.model.image_size}); try batch_size={smaller}, a smaller image_size, or "
        f"amp=bf16 on a GPU ({str(error).strip().splitlines()[0][:120]})"
    )


def _is_cpu_oom(error: RuntimeError) -> bool:
    text = str(error)
    return "DefaultCPUAllocator" in text or "not enough memory" in text


def train(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Trains ``cfg`` and returns the run dir (see the module docstring for its content).

    Args:
        cfg: the resolved config (``cfg.model.num_classes`` is set from the data).
        resume: continue from ``<run dir>/last.pt`` if it exists (else start fresh).

    Raises:
        ConfigError, DataError, CheckpointError: bad config, data or checkpoint.
        QheadError: out of memory (naming the batch size to try).
    """
    wants_cuda = cfg.device.startswith("cuda") or (
        cfg.device == "auto" and torch.cuda.is_available()
    )
    info = init_distributed("cuda" if wants_cuda else "cpu")
    try:
        return _train(cfg, info, resume)
    finally:
        cleanup_distributed(info)


def _train(cfg: TrainConfig, info: DistInfo, resume: bool) -> Path:
    from qhead.data import build_datasets
    from qhead.models import build_model, count_parameters

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    set_deterministic(cfg.deterministic)
    device = resolve_device(cfg.device, info.local_rank if info.enabled else None)
    out = cfg.run_dir
    last_path, best_path = out / record.LAST_CHECKPOINT, out / record.BEST_CHECKPOINT

    if cfg.data.root is not None:
        # absolute, so that the saved config (and evaluate) work from any directory
        cfg.data.root = str(Path(cfg.data.root).expanduser().resolve())
    checkpoint: dict[str, Any] | None = None
    if resume and last_path.exists():
        checkpoint = read_checkpoint(last_path)
        conflicts = resume_conflicts(checkpoint["config"], cfg)
        if conflicts:
            raise ConfigError(
                f"cannot resume {out} with another {'; '.join(conflicts)}: that changes the "
                "model, the data or the optimisation of the run. A resume may change only "
                f"{', '.join(RESUMABLE_KEYS)}; train another configuration in a new --out"
            )
    elif resume:
        log(f"resume: no {last_path} yet, starting from epoch 1", info)
    elif last_path.exists():
        raise ConfigError(
            f"{out} already holds a run ({record.LAST_CHECKPOINT}); pass --resume to continue "
            "it, or choose another --out (or delete the folder) to start again"
        )

    splits = build_datasets(cfg.data)
    for message in splits.skipped:
        log(f"warning: skipped {message}", info)
    classes = list(splits.classes)
    if cfg.model.num_classes != len(classes):
        if cfg.preset is not None or checkpoint is not None:
            log(f"note: model.num_classes {cfg.model.num_classes} -> {len(classes)} "
                f"(the dataset {cfg.data.name!r} has {len(classes)} classes)", info)
        cfg.model.num_classes = len(classes)
    if checkpoint is not None and list(checkpoint["classes"]) != classes:
        raise CheckpointError(
            f"{last_path} was trained on classes {list(checkpoint['classes'])} but the data "
            f"now has {classes}; resume with the same data or start a new run"
        )
    if len(splits.train) == 0 or len(splits.test) == 0:  # type: ignore[arg-type]
        raise QheadError(f"dataset {cfg.data.name!r}: the train or test split is empty")
    for message in missing_class_warnings(
        {"train": getattr(splits.train, "labels", None),
         "test": getattr(splits.test, "labels", None)}, classes,
    ):
        log(f"warning: {message}", info)

    seed_everything(cfg.seed)
    model = build_model(cfg.model)
    params_head = count_parameters(model.head)
    params_total = count_parameters(model)
    ctx = make_step_context(model, device, cfg.amp, cfg.channels_last, cfg.grad_clip,
                            cfg.label_smoothing, cfg.model.image_size)
    prepare_model(model, ctx)
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler = build_scheduler(cfg, optimizer)

    start_epoch, best_metric, best_epoch, seconds = 0, None, None, 0.0
    last_metrics: dict[str, Any] = {}
    if checkpoint is not None:
        try:
            model.load_state_dict(checkpoint["model"])
            optimizer.load_state_dict(checkpoint["optimizer"])
            if scheduler is not None and checkpoint.get("scheduler"):
                scheduler.load_state_dict(checkpoint["scheduler"])
            if ctx.scaler is not None and checkpoint.get("scaler"):
                ctx.scaler.load_state_dict(checkpoint["scaler"])
        except (RuntimeError, ValueError, KeyError) as error:
            raise CheckpointError(
                f"{last_path} does not match this config (model or optimizer differ: "
                f"{str(error).splitlines()[0][:160]}); resume with the run's own config"
            ) from None
        restore_rng_state(checkpoint["rng"])
        start_epoch = int(checkpoint["epoch"])
        best_metric, best_epoch = checkpoint.get("best_metric"), checkpoint.get("best_epoch")
        seconds = float(checkpoint.get("seconds", 0.0))
        last_metrics = dict(checkpoint.get("metrics") or {})
        log(f"resumed from {last_path} after epoch {start_epoch}", info)

    train_model: nn.Module = model
    if info.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    if cfg.compile:
        train_model = torch.compile(train_model)  # type: ignore[assignment]

    pin = device.type == "cuda"
    workers = cfg.data.num_workers
    train_loader, train_sampler = make_loader(
        splits.train, batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed,
        num_workers=workers, pin_memory=pin, dist=info,
    )
    test_loader, _ = make_loader(
        splits.test, batch_size=cfg.eval_batch_size or 2 * cfg.batch_size, shuffle=False,
        seed=cfg.seed, num_workers=workers, pin_memory=pin, dist=info,
    )
    steps = len(train_loader)
    if cfg.max_steps_per_epoch is not None:
        steps = min(steps, cfg.max_steps_per_epoch)

    metrics_path = out / record.METRICS_FILE
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / record.CONFIG_FILE)
        if checkpoint is not None:
            truncate_metrics(metrics_path, start_epoch)
        elif metrics_path.exists():
            metrics_path.unlink()
    writer = _tensorboard(cfg, out, info)
    if start_epoch == 0:
        log(
            f"qhead train: {cfg.model.backbone} + {cfg.model.head} head on {cfg.data.name} "
            f"({len(classes)} classes, {len(splits.train)} train / "  # type: ignore[arg-type]
            f"{len(splits.test)} test, {cfg.model.image_size}px); Params* {params_head:,} "  # type: ignore[arg-type]
            f"of {params_total:,}; {ctx.describe()}"
            + (f", {info.world_size} processes" if info.enabled else "")
            + f"; run dir {out}",
            info,
        )

    config_dict = config_to_dict(cfg)
    try:
        for epoch in range(start_epoch, cfg.epochs):
            t0 = time.perf_counter()
            # per-epoch seeds: model-side randomness restarts identically on resume
            seed_everything(derive_seed(cfg.seed, 3, epoch, info.rank) % 2**63)
            train_sampler.set_epoch(epoch)
            lr = float(optimizer.param_groups[0]["lr"])
            train_model.train()
            sums = torch.zeros(3, dtype=torch.float64)  # loss·n, correct, n
            bar = _progress_bar(steps, f"epoch {epoch + 1}/{cfg.epochs}",
                                cfg.progress and info.is_main)
            for step, (images, labels, _idx) in enumerate(train_loader):
                if step >= steps:
                    break
                loss, logits = train_step(train_model, images, labels, optimizer, ctx)
                n = labels.shape[0]
                sums += torch.tensor([loss.item() * n,
                                      (logits.argmax(1).cpu() == labels).sum().item(), n],
                                     dtype=torch.float64)
                elapsed = time.perf_counter() - t0
                bar.set_postfix(loss=f"{sums[0] / sums[2]:.4f}",
                                img_s=f"{sums[2] * info.world_size / max(elapsed, 1e-9):.1f}")
                bar.update(1)
            bar.close()
            if scheduler is not None:
                scheduler.step()
            totals = all_reduce_sum(sums, info)
            row: dict[str, Any] = {
                "epoch": epoch + 1,
                "train_loss": float(totals[0] / totals[2]),
                "train_acc": float(totals[1] / totals[2]),
                "lr": lr,
            }
            evaluated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
            if evaluated:
                broadcast_buffers(model, info)
                metrics = evaluate_model(model, test_loader, ctx, classes, info)
                row.update(test_loss=metrics["loss"], test_acc=metrics["accuracy"],
                           test_macro_f1=metrics["macro_f1"])
                last_metrics = {**row, **metrics}
            epoch_seconds = time.perf_counter() - t0
            seconds += epoch_seconds
            row["seconds"] = epoch_seconds
            if info.is_main:
                _end_of_epoch(cfg, row, evaluated, totals, epoch_seconds, info, writer)
                write_metrics_row(metrics_path, row)
                improved = False
                if evaluated:
                    value = float(row[cfg.select_metric])
                    higher = HIGHER_IS_BETTER[cfg.select_metric]
                    improved = best_metric is None or (
                        value > best_metric if higher else value < best_metric
                    )
                    if improved:
                        best_metric, best_epoch = value, epoch + 1
                ckpt = make_checkpoint(
                    model_state=model.state_dict(),
                    optimizer_state=optimizer.state_dict(),
                    scheduler_state=scheduler.state_dict() if scheduler is not None else None,
                    scaler_state=ctx.scaler.state_dict() if ctx.scaler is not None else None,
                    epoch=epoch + 1, best_metric=best_metric, best_epoch=best_epoch,
                    seconds=seconds, metrics=last_metrics, classes=classes, config=config_dict,
                )
                if improved:
                    atomic_save(ckpt, best_path)
                atomic_save(ckpt, last_path)
            barrier(info)
    except torch.OutOfMemoryError as error:
        raise _oom_error(cfg, device, error) from None
    except RuntimeError as error:
        if _is_cpu_oom(error):
            raise _oom_error(cfg, device, error) from None
        raise
    finally:
        if writer is not None:
            writer.close()

    if info.is_main:
        final = record.final_summary(
            cfg, last_metrics, classes=classes, params_head=params_head,
            params_total=params_total, seconds=seconds, best_metric=best_metric,
            best_epoch=best_epoch, device=str(ctx.device), precision=ctx.describe(),
            world_size=info.world_size,
        )
        record.write_final(out, final)
        if cfg.plots:
            try:
                plot_learning_curves(
                    out / record.CURVES_FILE, {cfg.model.head: read_metrics(metrics_path)},
                    title=f"{cfg.model.backbone} + {cfg.model.head} on {cfg.data.name}",
                )
            except Exception as error:  # a plot must never lose a finished run
                log(f"warning: could not write {record.CURVES_FILE} ({error})", info)
        log(
            f"done: accuracy {final['accuracy']:.4f}, macro-F1 {final['macro_f1']:.4f} "
            f"after {plural(final['epochs'], 'epoch')} in {seconds:.1f} s; run dir {out}",
            info,
        )
    barrier(info)
    return out


def _end_of_epoch(
    cfg: TrainConfig,
    row: dict[str, Any],
    evaluated: bool,
    totals: torch.Tensor,
    epoch_seconds: float,
    info: DistInfo,
    writer: Any,
) -> None:
    width = len(str(cfg.epochs))
    text = (
        f"epoch {row['epoch']:>{width}}/{cfg.epochs}  train loss {row['train_loss']:.4f} "
        f"acc {row['train_acc']:.4f}"
    )
    if evaluated:
        text += (
            f" | test loss {row['test_loss']:.4f} acc {row['test_acc']:.4f} "
            f"macro-F1 {row['test_macro_f1']:.4f}"
        )
    rate = float(totals[2]) / epoch_seconds
    text += f" | lr {row['lr']:.3g} | {epoch_seconds:.1f} s ({rate:.0f} img/s)"
    log(text, info)
    if writer is not None:
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "test_macro_f1", "lr"):
            if key in row and row[key] is not None and not (
                isinstance(row[key], float) and math.isnan(row[key])
            ):
                writer.add_scalar(key, row[key], row["epoch"])
        writer.flush()

