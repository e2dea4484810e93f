"""The engine: configs, training, evaluation, prediction, checkpoints, DDP.

Public API::

    from qhead.engine import TrainConfig, load_config, train, evaluate, predict, load_checkpoint

    cfg = load_config(preset="resnet18_q/busi", overrides=["data.root=../shared/data/busi",
                                                            "epochs=5", "image_size=64"])
    run_dir = train(cfg)                       # config.yaml, metrics.csv, last.pt, best.pt, ...
    result = evaluate(run_dir / "best.pt")     # accuracy, macro_f1, per-class, confusion
    loaded = load_checkpoint(run_dir / "best.pt")   # model rebuilt from the checkpoint alone

See ``docs/engine.md``.
"""

from qhead.engine.checkpoint import (
    LoadedCheckpoint,
    atomic_save,
    capture_rng_state,
    load_checkpoint,
    read_checkpoint,
    restore_rng_state,
    set_backend,
)
from qhead.engine.config import (
    TrainConfig,
    config_from_dict,
    config_to_dict,
    load_config,
    save_config,
)
from qhead.engine.evaluation import evaluate, predict, predictions_csv, set_shots
from qhead.engine.metrics import classification_metrics
from qhead.engine.runtime import (
    StepContext,
    make_step_context,
    prepare_model,
    seed_everything,
    train_step,
)
from qhead.engine.trainer import evaluate_model, train

__all__ = [
    "LoadedCheckpoint",
    "StepContext",
    "TrainConfig",
    "atomic_save",
    "capture_rng_state",
    "classification_metrics",
    "config_from_dict",
    "config_to_dict",
    "evaluate",
    "evaluate_model",
    "load_checkpoint",
    "load_config",
    "make_step_context",
    "predict",
    "predictions_csv",
    "prepare_model",
    "read_checkpoint",
    "restore_rng_state",
    "save_config",
    "seed_everything",
    "set_backend",
    "set_shots",
    "train",
    "train_step",
]
