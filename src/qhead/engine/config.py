"""The training configuration and how it is loaded (YAML + preset + dotted overrides).

Precedence, lowest first: the dataclass defaults, the preset (``--preset`` or a
``preset:`` key in the YAML file), the YAML file (``-c``), the ``key=value`` overrides::

    cfg = load_config("configs/digits_quantum.yaml", preset=None,
                      overrides=["epochs=5", "model.head_options.layers=2"])

The resolved config is saved as ``config.yaml`` in every run dir and as a plain dict in
every checkpoint (:func:`config_to_dict` / :func:`config_from_dict`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from qhead.data import DataConfig
from qhead.errors import ConfigError, MissingFileError
from qhead.models import ModelConfig, get_preset, preset_dataset
from qhead.overrides import flatten, nest, parse_overrides

__all__ = [
    "AMP_MODES",
    "OPTIMIZERS",
    "RESUMABLE_KEYS",
    "SCHEDULERS",
    "SWITCHES",
    "TrainConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "omegaconf_error",
    "resume_conflicts",
    "save_config",
]

OPTIMIZERS: tuple[str, ...] = ("adam", "adamw", "sgd")
SCHEDULERS: tuple[str, ...] = ("none", "cosine")
AMP_MODES: tuple[str, ...] = ("auto", "off", "bf16", "fp16")
SWITCHES: tuple[str, ...] = ("auto", "on", "off")
SELECT_METRICS: tuple[str, ...] = ("test_macro_f1", "test_acc", "test_loss")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class TrainConfig:
    """Everything ``qhead train`` needs; the paper's protocol is the default.

    Attributes:
        model: the model (:class:`qhead.models.ModelConfig`). ``model.num_classes`` is
            set from the dataset's classes at training time.
        data: the datasets (:class:`qhead.data.DataConfig`), including
            ``data.num_workers`` (DataLoader worker processes).
        preset: the paper preset the config started from (``resnet18_q/busi``), if any;
            recorded for provenance.
        image_size: if set, overrides both ``model.image_size`` and ``data.image_size``.
        epochs: training epochs (paper: 200).
        batch_size: per-process batch size (paper: 32); under DDP the global batch is
            ``batch_size × world_size``.
        eval_batch_size: batch size for evaluation (``None``: ``2 × batch_size``).
        lr: learning rate (paper: 1e-3).
        optimizer: ``adam`` (paper), ``adamw`` or ``sgd`` (with ``momentum``).
        momentum: SGD momentum.
        weight_decay: L2 penalty (Adam/SGD) or decoupled decay (AdamW); the paper states none.
        scheduler: ``none`` (paper: constant lr) or ``cosine`` (per epoch, to 0).
        label_smoothing: cross-entropy label smoothing (0 = plain cross-entropy).
        grad_clip: max global gradient norm, ``None`` for no clipping.
        seed: seeds model init, shuffling, augmentation and dropout. Shuffling and
            augmentation are pure functions of ``(seed, epoch, sample index)``.
        deterministic: ``torch.use_deterministic_algorithms`` + cuDNN deterministic flags.
        device: ``auto`` (CUDA if present, else CPU), ``cpu``, ``cuda`` or ``cuda:<i>``.
        amp: ``auto`` (CUDA: bf16 if supported else fp16 with loss scaling; CPU: bf16
            autocast only if the CPU has native bf16 instructions), ``off``, ``bf16``,
            ``fp16`` (CUDA only).
        channels_last: ``auto`` (on for models with 2-D convolutions), ``on``, ``off``.
        threads: intra-op CPU threads (``None``: PyTorch's default).
        compile: ``torch.compile`` the model (inductor). Pays a compile time of minutes
            once per run for faster steps (measured 1.2x on a small CNN on CPU); off by
            default.
        out: the run directory (``None``: ``runs/<dataset>-<backbone>-<head>-seed<k>``).
        eval_every: evaluate on the test split every N epochs (and always after the last).
        max_steps_per_epoch: stop each epoch after this many steps (quick runs); ``None``
            for full epochs.
        select_metric: what ``best.pt`` maximises (``test_loss`` is minimised).
        tensorboard: write TensorBoard logs to ``out/tb`` when tensorboard is installed.
        progress: show a tqdm progress bar per epoch.
        plots: write the learning-curve PNG at the end.
    """

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    preset: Optional[str] = None  # noqa: UP045 (OmegaConf needs Optional)
    image_size: Optional[int] = None  # noqa: UP045
    epochs: int = 200
    batch_size: int = 32
    eval_batch_size: Optional[int] = None  # noqa: UP045
    lr: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    scheduler: str = "none"
    label_smoothing: float = 0.0
    grad_clip: Optional[float] = None  # noqa: UP045
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    amp: str = "auto"
    channels_last: str = "auto"
    threads: Optional[int] = None  # noqa: UP045
    compile: bool = False
    out: Optional[str] = None  # noqa: UP045
    eval_every: int = 1
    max_steps_per_epoch: Optional[int] = None  # noqa: UP045
    select_metric: str = "test_macro_f1"
    tensorboard: bool = True
    progress: bool = True
    plots: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):
            self.model = ModelConfig.from_dict(dict(self.model))
        if isinstance(self.data, Mapping):
            self.data = DataConfig(**dict(self.data))
        if self.image_size is not None:
            _positive_int("image_size", self.image_size, minimum=8)
            self.model.image_size = self.image_size
            self.data.image_size = self.image_size
        elif self.model.image_size != self.data.image_size:
            raise ConfigError(
                f"model.image_size={self.model.image_size} and data.image_size="
                f"{self.data.image_size} differ; set image_size=<pixels> to set both"
            )
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        if self.eval_batch_size is not None:
            _positive_int("eval_batch_size", self.eval_batch_size)
        _positive_int("eval_every", self.eval_every)
        if self.max_steps_per_epoch is not None:
            _positive_int("max_steps_per_epoch", self.max_steps_per_epoch)
        if self.threads is not None:
            _positive_int("threads", self.threads)
        if not _is_int(self.seed) or self.seed < 0:
            raise ConfigError(f"seed: expected an integer >= 0, got {self.seed!r}")
        for name in ("lr", "momentum", "weight_decay", "label_smoothing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"{name}: expected a number >= 0, got {value!r}")
        if self.lr <= 0:
            raise ConfigError(f"lr: expected a number > 0, got {self.lr!r}")
        if self.label_smoothing >= 1:
            raise ConfigError(f"label_smoothing: expected a number in [0, 1), got "
                              f"{self.label_smoothing!r}")
        if self.grad_clip is not None and (
            isinstance(self.grad_clip, bool) or not self.grad_clip > 0
        ):
            raise ConfigError(f"grad_clip: expected null or a number > 0, got {self.grad_clip!r}")
        # YAML 1.1 reads off/on/no/yes as booleans, which reach these str fields as
        # "False"/"True": `amp=off` on the command line must still mean "off".
        self.amp = _switch(self.amp, true="auto")
        self.channels_last = _switch(self.channels_last, true="on")
        _choice("optimizer", self.optimizer, OPTIMIZERS)
        _choice("scheduler", self.scheduler, SCHEDULERS)
        _choice("amp", self.amp, AMP_MODES)
        _choice("channels_last", self.channels_last, SWITCHES)
        _choice("select_metric", self.select_metric, SELECT_METRICS)
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")
        ):
            raise ConfigError(
                f"device: expected auto, cpu, cuda or cuda:<index>, got {self.device!r}"
            )
        if self.preset is not None:
            get_preset(self.preset)  # raises ConfigError listing the presets

    @property
    def run_dir(self) -> Path:
        """The run directory (``out`` or a name derived from dataset, model and seed)."""
        if self.out:
            return Path(self.out)
        head = self.model.head
        return Path("runs") / f"{self.data.name}-{self.model.backbone}-{head}-seed{self.seed}"


def _positive_int(name: str, value: Any, minimum: int = 1) -> None:
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"{name}: expected an integer >= {minimum}, got {value!r}")


def _switch(value: Any, true: str) -> Any:
    text = str(value).lower()
    if value is False or text in ("false", "no"):
        return "off"
    if value is True or text in ("true", "yes"):
        return true
    return value


def _choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}: {value!r} is not allowed; allowed: {', '.join(allowed)}")


# ---------------------------------------------------------------- OmegaConf plumbing


def omegaconf_error(error: Exception) -> ConfigError:
    """One line naming the key, from any OmegaConf exception."""
    key = getattr(error, "full_key", None) or getattr(error, "key", None)
    message = str(getattr(error, "msg", None) or error).strip().splitlines()[0]
    if "not in" in message and key:
        parent = str(key).rsplit(".", 1)[0] if "." in str(key) else ""
        allowed = _allowed_keys(parent)
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return ConfigError(f"unknown config key {key!r}{hint}")
    if key:
        return ConfigError(f"config key {key!r}: {message}")
    return ConfigError(f"config: {message}")


def _allowed_keys(parent: str) -> list[str]:
    cls: Any = TrainConfig
    for part in [p for p in parent.split(".") if p]:
        kinds = {f.name: f for f in dataclasses.fields(cls)}
        if part not in kinds:
            return []
        cls = {"model": ModelConfig, "data": DataConfig}.get(part)
        if cls is None:
            return []
    return [f.name for f in dataclasses.fields(cls)]


def _structured_base() -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.structured(TrainConfig)


def _to_config(node: Any) -> TrainConfig:
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        plain = OmegaConf.to_container(node, resolve=True)
    except OmegaConfBaseException as error:
        raise omegaconf_error(error) from None
    assert isinstance(plain, dict)
    return config_from_plain(plain)


def config_from_plain(plain: Mapping[str, Any]) -> TrainConfig:
    """Builds (and validates) a :class:`TrainConfig` from an already-merged plain dict."""
    plain = dict(plain)
    model = ModelConfig.from_dict(dict(plain.pop("model", {}) or {}))
    data_dict = dict(plain.pop("data", {}) or {})
    try:
        data = DataConfig(**data_dict)
    except TypeError as error:
        raise ConfigError(f"data: {error}") from None
    return TrainConfig(model=model, data=data, **plain)


def load_config(
    config_file: str | Path | None = None,
    preset: str | None = None,
    overrides: Sequence[str] = (),
    base: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """Resolves a :class:`TrainConfig` from defaults, preset, YAML file and overrides.

    Args:
        config_file: a YAML file with any subset of the fields (may name a ``preset``).
        preset: a paper preset (``resnet18_q/busi``): sets ``model`` and ``data.name``.
        overrides: dotted ``key=value`` strings (``model.head_options.layers=2``).
        base: a plain config dict (e.g. from a checkpoint) used instead of the defaults.

    Raises:
        ConfigError: for an unknown key (naming it and the allowed keys), a value of the
            wrong type, an invalid value, or a file that is not YAML;
        MissingFileError: (a ``FileNotFoundError``) for a missing config file.
    """
    import yaml
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    try:
        node = _structured_base()
        if base is not None:
            node = OmegaConf.merge(node, OmegaConf.create(dict(base)))
        file_node = None
        if config_file is not None:
            path = Path(config_file)
            if not path.is_file():
                raise MissingFileError(f"config file {path} does not exist")
            try:
                file_node = OmegaConf.load(path)
            except yaml.YAMLError as error:
                raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})"
                                  ) from None
            if not isinstance(file_node, Mapping) and not OmegaConf.is_dict(file_node):
                raise ConfigError(f"{path}: expected a YAML mapping of config keys")
        dotlist = OmegaConf.create(nest(parse_overrides(overrides)))
        chosen = preset
        if chosen is None and file_node is not None:
            chosen = file_node.get("preset")
        if chosen is None and "preset" in dotlist:
            chosen = dotlist.get("preset")
        if chosen is not None:
            node = OmegaConf.merge(node, _preset_node(str(chosen)))
        if file_node is not None:
            node = OmegaConf.merge(node, file_node)
        node = OmegaConf.merge(node, dotlist)
        if preset is not None:
            node.preset = preset
    except OmegaConfBaseException as error:
        raise omegaconf_error(error) from None
    return _to_config(node)


def _preset_node(name: str) -> Any:
    from omegaconf import OmegaConf

    model = get_preset(name)
    return OmegaConf.create(
        {"preset": name, "model": model.to_dict(), "data": {"name": preset_dataset(name)}}
    )


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """A plain (YAML/JSON-safe, ``weights_only``-loadable) dict of the config."""
    return dataclasses.asdict(cfg)


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Rebuilds a config saved by :func:`config_to_dict` (keys unknown today are errors).

    Raises:
        ConfigError: naming the bad key or value.
    """
    return load_config(base=dict(data))


#: What ``--resume`` may change in a run: how long it trains, where and how it runs, what
#: it logs, where its data lives. Anything else would change the model, the data or the
#: optimisation half-way through, so a resume that changes it is refused.
RESUMABLE_KEYS: tuple[str, ...] = (
    "epochs", "out", "threads", "progress", "tensorboard", "plots", "eval_every",
    "eval_batch_size", "device", "compile", "channels_last", "deterministic",
    "data.root", "data.num_workers", "data.cache", "data.verify_sha256",
)  # fmt: skip

#: Not compared on resume: ``image_size`` is a shortcut for the two nested sizes (which
#: are compared) and ``model.num_classes`` is set from the data (whose classes are
#: checked against the checkpoint's).
_DERIVED_KEYS: tuple[str, ...] = ("image_size", "model.num_classes")


def resume_conflicts(saved: Mapping[str, Any], cfg: TrainConfig) -> list[str]:
    """The keys in which ``cfg`` differs from a run's saved config and that a resume may
    not change (not in :data:`RESUMABLE_KEYS`), as ``"key: old -> new"``.

    Keys that only one side has (a config written by another qhead version) are not
    compared.
    """
    old = flatten(saved)
    new = flatten(config_to_dict(cfg))
    skip = set(RESUMABLE_KEYS) | set(_DERIVED_KEYS)
    return [
        f"{key}: {old[key]!r} -> {new[key]!r}"
        for key in new
        if key in old and key not in skip and old[key] != new[key]
    ]


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    """Writes the resolved config as YAML."""
    import yaml

    Path(path).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))
