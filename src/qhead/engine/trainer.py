"""``train(cfg) -> run dir``: the training loop, checkpoints, logs and plots.

The run dir's files and their keys are defined in :mod:`qhead.engine.record` (only rank 0
writes): ``config.yaml``, ``metrics.csv`` (one row per epoch), ``last.pt`` (after every
epoch, atomic), ``best.pt`` (best epoch by ``select_metric``, atomic), ``final.json``
(last epoch's metrics, Params*, confusion matrix, versions), ``curves.png`` and ``tb/``.

The loop is in parts, each usable and tested alone: :func:`setup_run`,
:func:`train_one_epoch`, :func:`evaluate_model`, :class:`CheckpointSaver` and
:func:`finish_run`, chained by :func:`train` through :func:`run_epochs`.

Resuming (``resume=True``) reloads ``last.pt`` and restarts the epoch that was running
when the process died from its beginning. Shuffling, augmentation and the per-epoch
RNG seeds are functions of ``(seed, epoch, …)``, so in deterministic mode a resumed run
ends with the same weights and metrics as an uninterrupted one.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
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

__all__ = [
    "CheckpointSaver",
    "RunState",
    "TrainingRun",
    "build_optimizer",
    "build_scheduler",
    "evaluate_model",
    "finish_run",
    "run_epochs",
    "setup_run",
    "train",
    "train_one_epoch",
]

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
    forward: Any = None,
) -> dict[str, Any]:
    """Metrics of ``model`` over every sample of ``loader`` (sharded over ranks).

    The loader yields ``(images [B,3,S,S], labels [B], indices [B])``; outputs of all
    ranks are gathered and de-duplicated by index, so the metrics are those a single
    process would compute on the whole split. ``forward`` (default ``model``) maps the
    loader's first item to logits: e.g. ``model.forward_head`` over cached feature maps.
    """
    info = info or DistInfo()
    forward = forward or model
    was_training = model.training
    model.eval()
    outs, ys, ids = [], [], []
    for images, labels, indices in loader:
        with ctx.autocast():
            logits = forward(ctx.to_device(images))
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


@dataclass
class RunState:
    """Where a run stands after its last completed epoch (what a resume restores).

    Attributes:
        epoch: completed epochs (0 for a new run).
        seconds: training seconds so far (all epochs, across resumes).
        metrics: the last evaluated epoch's row merged with its metrics (``accuracy``,
            ``macro_f1``, ``per_class``, ``confusion_matrix``…), what ``final.json`` reports.
    """

    epoch: int = 0
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainingRun:
    """Everything :func:`setup_run` builds for the epoch loop.

    ``model`` is the plain model (its ``state_dict`` is what checkpoints hold);
    ``train_model`` is what the optimisation step calls (``model`` itself, or wrapped in
    ``DistributedDataParallel`` and/or ``torch.compile``).
    """

    cfg: TrainConfig
    info: DistInfo
    out: Path
    classes: list[str]
    model: nn.Module
    train_model: nn.Module
    ctx: StepContext
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None
    train_loader: Any
    train_sampler: Any
    test_loader: Any
    steps: int
    params_head: int
    params_total: int
    n_train: int
    n_test: int
    state: RunState
    saver: CheckpointSaver
    resumed: bool = False


class CheckpointSaver:
    """Writes ``last.pt`` after every epoch and ``best.pt`` when ``select_metric``
    improves (``test_loss`` is minimised, the others maximised); both atomically.

    The first evaluated epoch is always the best so far; a tie keeps the earlier epoch.
    ``best_metric`` / ``best_epoch`` travel inside every checkpoint, so a resumed run
    continues the same comparison.
    """

    def __init__(self, out: Path, select_metric: str, best_metric: float | None = None,
                 best_epoch: int | None = None) -> None:
        self.last_path = out / record.LAST_CHECKPOINT
        self.best_path = out / record.BEST_CHECKPOINT
        self.select_metric = select_metric
        self.higher_is_better = HIGHER_IS_BETTER[select_metric]
        self.best_metric = best_metric
        self.best_epoch = best_epoch

    def update(self, epoch: int, row: dict[str, Any] | None) -> bool:
        """Takes an epoch's metrics row (``None``: not evaluated); whether it is the new best."""
        if row is None:
            return False
        value = float(row[self.select_metric])
        improved = self.best_metric is None or (
            value > self.best_metric if self.higher_is_better else value < self.best_metric
        )
        if improved:
            self.best_metric, self.best_epoch = value, epoch
        return improved

    def save(self, checkpoint: dict[str, Any], improved: bool) -> None:
        """Writes ``checkpoint`` as ``best.pt`` (if ``improved``) and as ``last.pt``."""
        if improved:
            atomic_save(checkpoint, self.best_path)
        atomic_save(checkpoint, self.last_path)


def train(cfg: TrainConfig, *, resume: bool = False) -> Path:
    """Trains ``cfg`` and returns the run dir (see the module docstring for its content).

    The parts, each usable alone: :func:`setup_run` (resume checks, data, model,
    optimiser, DDP, loaders, run dir), :func:`train_one_epoch`, :func:`evaluate_model`,
    :class:`CheckpointSaver` (``last``/``best``) and :func:`finish_run` (``final.json``,
    plot, summary line).

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
        run = setup_run(cfg, info, resume)
        run_epochs(run)
        if info.is_main:
            finish_run(run)
        barrier(info)
        return run.out
    finally:
        cleanup_distributed(info)


def setup_run(cfg: TrainConfig, info: DistInfo | None = None, resume: bool = False
              ) -> TrainingRun:
    """Everything before the first epoch: resume checks, data, model, optimiser (restored
    from ``last.pt`` when resuming), DDP/compile wrapping, loaders, and the run dir
    (``config.yaml`` written, ``metrics.csv`` cut to the resumed epoch).

    Raises:
        ConfigError: the run dir holds a run and ``resume`` is false, or a resume would
            change the model or the data (:func:`~qhead.engine.config.resume_conflicts`).
        CheckpointError: ``last.pt`` does not fit the data or the model.
        DataError, QheadError: unreadable data, an empty split.
    """
    from qhead.data import build_datasets
    from qhead.models import build_model, count_parameters

    info = info or DistInfo()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    set_deterministic(cfg.deterministic)
    device = resolve_device(cfg.device, info.local_rank if info.enabled else None)
    out = cfg.run_dir
    if cfg.data.root is not None:
        # absolute, so that the saved config (and evaluate) work from any directory
        cfg.data.root = str(Path(cfg.data.root).expanduser().resolve())
    checkpoint = open_checkpoint(cfg, out, resume, info)

    splits = build_datasets(cfg.data)
    classes = check_data(cfg, splits, checkpoint, info)

    seed_everything(cfg.seed)
    model = build_model(cfg.model)
    ctx = make_step_context(model, device, cfg.amp, cfg.channels_last, cfg.grad_clip,
                            cfg.label_smoothing, cfg.model.image_size)
    prepare_model(model, ctx)
    optimizer = build_optimizer(cfg, model.parameters())
    scheduler = build_scheduler(cfg, optimizer)
    state, saver = RunState(), CheckpointSaver(out, cfg.select_metric)
    if checkpoint is not None:
        state, saver = restore_run(checkpoint, out, cfg, model, optimizer, scheduler, ctx)
        log(f"resumed from {saver.last_path} after epoch {state.epoch}", info)

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

    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / record.CONFIG_FILE)
        metrics_path = out / record.METRICS_FILE
        if checkpoint is not None:
            truncate_metrics(metrics_path, state.epoch)
        elif metrics_path.exists():
            metrics_path.unlink()
    run = TrainingRun(
        cfg=cfg, info=info, out=out, classes=classes, model=model, train_model=train_model,
        ctx=ctx, optimizer=optimizer, scheduler=scheduler, train_loader=train_loader,
        train_sampler=train_sampler, test_loader=test_loader, steps=steps,
        params_head=count_parameters(model.head), params_total=count_parameters(model),
        n_train=len(splits.train), n_test=len(splits.test),  # type: ignore[arg-type]
        state=state, saver=saver, resumed=checkpoint is not None,
    )
    if state.epoch == 0:
        log(
            f"qhead train: {cfg.model.backbone} + {cfg.model.head} head on {cfg.data.name} "
            f"({len(classes)} classes, {run.n_train} train / {run.n_test} test, "
            f"{cfg.model.image_size}px); Params* {run.params_head:,} of {run.params_total:,}; "
            f"{ctx.describe()}" + (f", {info.world_size} processes" if info.enabled else "")
            + f"; run dir {out}",
            info,
        )
    return run


def open_checkpoint(cfg: TrainConfig, out: Path, resume: bool, info: DistInfo
                    ) -> dict[str, Any] | None:
    """``last.pt`` of the run dir if resuming (checked against ``cfg``), else ``None``.

    Raises:
        ConfigError: a run exists and ``resume`` is false, or the resume would change
            what :data:`~qhead.engine.config.RESUMABLE_KEYS` does not allow.
    """
    last_path = out / record.LAST_CHECKPOINT
    if resume and last_path.exists():
        checkpoint = read_checkpoint(last_path)
        conflicts = resume_conflicts(checkpoint["config"], cfg)
        if conflicts:
            raise ConfigError(
                f"cannot resume {out} with another {'; '.join(conflicts)}: that changes the "
                "model, the data or the optimisation of the run. A resume may change only "
                f"{', '.join(RESUMABLE_KEYS)}; train another configuration in a new --out"
            )
        return checkpoint
    if resume:
        log(f"resume: no {last_path} yet, starting from epoch 1", info)
    elif last_path.exists():
        raise ConfigError(
            f"{out} already holds a run ({record.LAST_CHECKPOINT}); pass --resume to continue "
            "it, or choose another --out (or delete the folder) to start again"
        )
    return None


def check_data(cfg: TrainConfig, splits: Any, checkpoint: dict[str, Any] | None,
               info: DistInfo) -> list[str]:
    """The classes of ``splits``: sets ``cfg.model.num_classes`` from them, checks them
    against a resumed checkpoint's, refuses an empty split and warns about a split that
    lacks a class (and about skipped files)."""
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
            f"{cfg.run_dir / record.LAST_CHECKPOINT} was trained on classes "
            f"{list(checkpoint['classes'])} but the data now has {classes}; resume with the "
            "same data or start a new run"
        )
    if len(splits.train) == 0 or len(splits.test) == 0:
        raise QheadError(f"dataset {cfg.data.name!r}: the train or test split is empty")
    for message in missing_class_warnings(
        {"train": getattr(splits.train, "labels", None),
         "test": getattr(splits.test, "labels", None)}, classes,
    ):
        log(f"warning: {message}", info)
    return classes


def restore_run(
    checkpoint: dict[str, Any],
    out: Path,
    cfg: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    ctx: StepContext,
) -> tuple[RunState, CheckpointSaver]:
    """Loads a ``last.pt`` into model, optimiser, scheduler, loss scaler and the RNGs;
    returns the run's state and a saver that continues its best-checkpoint comparison.

    Raises:
        CheckpointError: the states do not fit (another model or optimiser).
    """
    try:
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        if scheduler is not None and checkpoint.get("scheduler"):
            scheduler.load_state_dict(checkpoint["scheduler"])
        if ctx.scaler is not None and checkpoint.get("scaler"):
            ctx.scaler.load_state_dict(checkpoint["scaler"])
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(
            f"{out / record.LAST_CHECKPOINT} does not match this config (model or optimizer "
            f"differ: {str(error).splitlines()[0][:160]}); resume with the run's own config"
        ) from None
    restore_rng_state(checkpoint["rng"])
    state = RunState(epoch=int(checkpoint["epoch"]),
                     seconds=float(checkpoint.get("seconds", 0.0)),
                     metrics=dict(checkpoint.get("metrics") or {}))
    saver = CheckpointSaver(out, cfg.select_metric, checkpoint.get("best_metric"),
                            checkpoint.get("best_epoch"))
    return state, saver


def train_one_epoch(
    model: nn.Module,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    ctx: StepContext,
    *,
    epoch: int,
    seed: int,
    steps: int | None = None,
    info: DistInfo | None = None,
    progress: bool = False,
    desc: str = "",
) -> dict[str, float]:
    """One pass over ``loader`` (at most ``steps`` batches) with :func:`train_step`.

    Model-side randomness (dropout, shot sampling) is reseeded from ``(seed, epoch,
    rank)`` first, so an epoch restarted by a resume draws the same numbers. The caller
    sets the sampler's epoch and steps the scheduler.

    Returns:
        ``{"train_loss", "train_acc", "lr", "n"}`` over all ranks (``lr``: the learning
        rate the epoch ran with; ``n``: images seen).
    """
    info = info or DistInfo()
    t0 = time.perf_counter()
    seed_everything(derive_seed(seed, 3, epoch, info.rank) % 2**63)
    lr = float(optimizer.param_groups[0]["lr"])
    model.train()
    total = len(loader) if steps is None else steps
    sums = torch.zeros(3, dtype=torch.float64)  # loss·n, correct, n
    bar = _progress_bar(total, desc, progress and info.is_main)
    for step, (images, labels, _idx) in enumerate(loader):
        if step >= total:
            break
        loss, logits = train_step(model, images, labels, optimizer, ctx)
        n = labels.shape[0]
        sums += torch.tensor([loss.item() * n, (logits.argmax(1).cpu() == labels).sum().item(),
                              n], dtype=torch.float64)
        elapsed = time.perf_counter() - t0
        bar.set_postfix(loss=f"{sums[0] / sums[2]:.4f}",
                        img_s=f"{sums[2] * info.world_size / max(elapsed, 1e-9):.1f}")
        bar.update(1)
    bar.close()
    totals = all_reduce_sum(sums, info)
    return {"train_loss": float(totals[0] / totals[2]), "train_acc": float(totals[1] / totals[2]),
            "lr": lr, "n": float(totals[2])}


def run_epochs(run: TrainingRun) -> None:
    """The epoch loop from ``run.state.epoch`` to ``cfg.epochs``: train, evaluate (every
    ``eval_every`` epochs and after the last), log, ``metrics.csv``, checkpoints.

    Raises:
        QheadError: out of memory, naming the batch size to try.
    """
    cfg, info, state = run.cfg, run.info, run.state
    metrics_path = run.out / record.METRICS_FILE
    writer = _tensorboard(cfg, run.out, info)
    config_dict = config_to_dict(cfg)
    try:
        for epoch in range(state.epoch, cfg.epochs):
            t0 = time.perf_counter()
            run.train_sampler.set_epoch(epoch)
            row: dict[str, Any] = {"epoch": epoch + 1, **train_one_epoch(
                run.train_model, run.train_loader, run.optimizer, run.ctx, epoch=epoch,
                seed=cfg.seed, steps=run.steps, info=info, progress=cfg.progress,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
            )}
            images = row.pop("n")
            if run.scheduler is not None:
                run.scheduler.step()
            evaluated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
            if evaluated:
                broadcast_buffers(run.model, info)
                metrics = evaluate_model(run.model, run.test_loader, run.ctx, run.classes, info)
                row.update(test_loss=metrics["loss"], test_acc=metrics["accuracy"],
                           test_macro_f1=metrics["macro_f1"])
                state.metrics = {**row, **metrics}
            epoch_seconds = time.perf_counter() - t0
            state.seconds += epoch_seconds
            state.epoch = epoch + 1
            row["seconds"] = epoch_seconds
            if info.is_main:
                log_epoch(cfg, row, evaluated, images, epoch_seconds, info, writer)
                write_metrics_row(metrics_path, row)
                improved = run.saver.update(epoch + 1, row if evaluated else None)
                run.saver.save(make_checkpoint(
                    model_state=run.model.state_dict(),
                    optimizer_state=run.optimizer.state_dict(),
                    scheduler_state=(run.scheduler.state_dict()
                                     if run.scheduler is not None else None),
                    scaler_state=(run.ctx.scaler.state_dict()
                                  if run.ctx.scaler is not None else None),
                    epoch=epoch + 1, best_metric=run.saver.best_metric,
                    best_epoch=run.saver.best_epoch, seconds=state.seconds,
                    metrics=state.metrics, classes=run.classes, config=config_dict,
                ), improved)
            barrier(info)
    except torch.OutOfMemoryError as error:
        raise _oom_error(cfg, run.ctx.device, error) from None
    except RuntimeError as error:
        if _is_cpu_oom(error):
            raise _oom_error(cfg, run.ctx.device, error) from None
        raise
    finally:
        if writer is not None:
            writer.close()


def finish_run(run: TrainingRun) -> dict[str, Any]:
    """The end-of-run summary (rank 0): ``final.json``, the learning curves and the
    ``done:`` line; returns what ``final.json`` holds."""
    cfg, state = run.cfg, run.state
    final = record.final_summary(
        cfg, state.metrics, classes=run.classes, params_head=run.params_head,
        params_total=run.params_total, seconds=state.seconds,
        best_metric=run.saver.best_metric, best_epoch=run.saver.best_epoch,
        device=str(run.ctx.device), precision=run.ctx.describe(),
        world_size=run.info.world_size,
    )
    record.write_final(run.out, final)
    if cfg.plots:
        try:
            plot_learning_curves(
                run.out / record.CURVES_FILE,
                {cfg.model.head: read_metrics(run.out / record.METRICS_FILE)},
                title=f"{cfg.model.backbone} + {cfg.model.head} on {cfg.data.name}",
            )
        except Exception as error:  # a plot must never lose a finished run
            log(f"warning: could not write {record.CURVES_FILE} ({error})", run.info)
    log(
        f"done: accuracy {final['accuracy']:.4f}, macro-F1 {final['macro_f1']:.4f} "
        f"after {plural(final['epochs'], 'epoch')} in {state.seconds:.1f} s; run dir {run.out}",
        run.info,
    )
    return final


def log_epoch(
    cfg: TrainConfig,
    row: dict[str, Any],
    evaluated: bool,
    images: float,
    epoch_seconds: float,
    info: DistInfo,
    writer: Any = None,
) -> None:
    """The one line printed after an epoch (and its TensorBoard scalars)."""
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
    rate = images / epoch_seconds
    text += f" | lr {row['lr']:.3g} | {epoch_seconds:.1f} s ({rate:.0f} img/s)"
    log(text, info)
    if writer is not None:
        for key in ("train_loss", "train_acc", "test_loss", "test_acc", "test_macro_f1", "lr"):
            if key in row and row[key] is not None and not (
                isinstance(row[key], float) and math.isnan(row[key])
            ):
                writer.add_scalar(key, row[key], row["epoch"])
        writer.flush()
