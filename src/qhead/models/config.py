"""The model configuration: which backbone, which head, how many classes, what input size.

:class:`ModelConfig` is a plain dataclass so that it works as an OmegaConf structured
config (YAML files, dotted command-line overrides) and round-trips through
``dataclasses.asdict`` → YAML → ``ModelConfig(**d)``; this is how a model rebuilds from
the config stored in its checkpoint.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Optional

from qhead.errors import ConfigError

if TYPE_CHECKING:
    from qhead.models.heads import HeadSpec

__all__ = ["ModelConfig"]


@dataclass
class ModelConfig:
    """What :func:`qhead.models.build_model` builds.

    Validated once, at construction (names, types, ranges of the head options that can
    be checked without building anything; a quantum head's ansatz is built here, once);
    ``build_model`` trusts it and runs only the checks that need the feature-map shape
    (measured wires vs. qubit count, qubits vs. ``max_qubits``). Both raise
    :class:`~qhead.errors.ConfigError` naming the field and the allowed values. A config
    whose ``head``/``head_options`` were changed after construction is checked again
    when it is next built (:meth:`head_spec`).

    Attributes:
        backbone: a name in :data:`qhead.models.BACKBONES` (``resnet18``, ``maxvit_t``,
            ``small_cnn``), ``timm:<model name>`` or ``timm`` with
            ``backbone_options.model_name``.
        head: a name in :data:`qhead.models.HEADS`, or ``classical``: the backbone's own
            torchvision head (``Backbone.classical_head``: ``maxvit-classical`` for
            ``maxvit_t``, ``avg-linear`` for every other backbone).
        num_classes: number of classes, at least 2.
        image_size: side of the square input image in pixels; the feature-map shape
            (hence the qubit count) is found by a dry run of the backbone at this size.
        pretrained: path of a local file with backbone weights (a state dict, possibly
            under a ``state_dict`` or ``model`` key); ``None`` trains from scratch as the
            paper does. Nothing is ever downloaded.
        backbone_options: keyword options of the backbone factory (e.g.
            ``partition_size`` for ``maxvit_t``, ``model_name`` for ``timm``).
        head_options: keyword options of the head factory. For ``quantum``: ``ansatz``,
            ``layers``, ``measured_wires`` (int m or list of wires), ``ansatz_options``,
            ``hidden`` (list of widths), ``activation``, ``freeze_circuit``, ``shots``,
            ``backend``, ``max_qubits`` (at most :data:`qhead.simulator.MAX_QUBITS`). See
            ``docs/models.md``.
    """

    backbone: str = "resnet18"
    head: str = "quantum"
    num_classes: int = 2
    image_size: int = 224
    pretrained: Optional[str] = None  # noqa: UP045 (OmegaConf needs typing.Optional on 3.10)
    backbone_options: dict[str, Any] = field(default_factory=dict)
    head_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # OmegaConf hands containers over as DictConfig/ListConfig; store plain ones so
        # the config pickles, compares and serialises like any dataclass.
        self.backbone_options = _plain(self.backbone_options, "backbone_options")
        self.head_options = _plain(self.head_options, "head_options")
        self.validate()

    def validate(self) -> None:
        """Checks every field (``__post_init__`` calls it; builders do not).

        Raises:
            ConfigError: naming the bad field and the allowed values.
        """
        self._check_fields()
        self._check_head()

    def _check_fields(self) -> None:
        """Every field but the head (cheap: nothing is built)."""
        from qhead.models.backbones import validate_backbone_name

        if not isinstance(self.backbone, str) or not self.backbone:
            raise ConfigError(f"model.backbone: expected a name, got {self.backbone!r}")
        validate_backbone_name(self.backbone, self.backbone_options)
        if (
            not isinstance(self.num_classes, int)
            or isinstance(self.num_classes, bool)
            or (self.num_classes < 2)
        ):
            raise ConfigError(
                f"model.num_classes: expected an integer >= 2, got {self.num_classes!r}"
            )
        if (
            not isinstance(self.image_size, int)
            or isinstance(self.image_size, bool)
            or (self.image_size < 8)
        ):
            raise ConfigError(
                f"model.image_size: expected an integer >= 8 (pixels), got {self.image_size!r}"
            )
        if self.pretrained is not None and (
            not isinstance(self.pretrained, str) or not self.pretrained
        ):
            raise ConfigError(
                f"model.pretrained: expected a local file path or null, got {self.pretrained!r}"
            )
        # Not dataclass fields: equality, asdict and YAML see only the fields.
        self._checked_fields = dataclasses.astuple(self)

    def _check_head(self) -> None:
        from qhead.models.heads import validate_head

        spec = validate_head(self.head, self.head_options)
        self._checked_head = (self.head, copy.deepcopy(self.head_options), spec)

    def head_spec(self) -> HeadSpec:
        """The checked head (:class:`~qhead.models.heads.HeadSpec`) that builders build.

        The one made at construction. Fields changed since (the engine sets
        ``image_size`` and ``num_classes`` from the data) are checked again, once, when
        the config is next built; the head (and its ansatz) only if ``head`` or
        ``head_options`` changed. So a builder never takes an unchecked value.

        Raises:
            ConfigError: for a changed field with a bad value.
        """
        head, options, spec = self.__dict__.get("_checked_head", (None, None, None))
        if spec is None or head != self.head or options != self.head_options:
            self._check_head()
            head, options, spec = self._checked_head
        if self.__dict__.get("_checked_fields") != dataclasses.astuple(self):
            self._check_fields()
        return spec

    def backbone_key(self) -> str:
        """What the backbone (and its feature-map shape) depends on, as a cache key."""
        return json.dumps(
            [self.backbone, self.backbone_options, self.image_size], sort_keys=True, default=str
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Builds a config from a plain dict (e.g. the ``model`` section of a stored config).

        Raises:
            ConfigError: for unknown keys (listing the allowed ones) or bad values.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"model: expected a mapping, got {type(data).__name__}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(
                f"model: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(allowed)}"
            )
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """A plain, YAML-safe dict (``dataclasses.asdict``)."""
        return dataclasses.asdict(self)


def _plain(value: Any, name: str) -> dict[str, Any]:
    from omegaconf import DictConfig, OmegaConf

    if value is None:
        return {}
    if isinstance(value, DictConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if not isinstance(value, dict):
        raise ConfigError(f"model.{name}: expected a mapping of options, got {value!r}")
    return {str(k): _plain_value(v) for k, v in value.items()}


def _plain_value(value: Any) -> Any:
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, tuple):
        return list(value)
    return value
