"""Backbones: image ``[B, 3, S, S]`` → unpooled feature map ``[B, C, h, w]``.

Every entry of :data:`BACKBONES` is a factory
``(image_size: int, **options) -> Backbone``. The factories build their networks
**without weights** (the paper trains from scratch); weights come only from a local file
(:func:`load_local_weights`, ``ModelConfig.pretrained``), never from the network.

Registered: ``resnet18`` and ``maxvit_t`` (torchvision), ``small_cnn`` (a tiny CNN for
demos and fast tests), and ``timm`` (any timm model through its ``forward_features``;
also spelled ``timm:<model name>``; needs the ``timm`` extra).
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from qhead.errors import ConfigError
from qhead.registry import Registry, UnknownNameError

__all__ = [
    "BACKBONES",
    "Backbone",
    "build_backbone",
    "discover_feature_shape",
    "load_local_weights",
    "resolve_backbone",
    "validate_backbone_name",
]

BACKBONES: Registry = Registry("backbone")
"""Backbone factories ``(image_size, **options) -> Backbone``, by name."""


class Backbone(nn.Module):
    """Base class of all backbones: ``forward(x [B, 3, S, S]) -> [B, C, h, w]`` (unpooled).

    Attributes:
        classical_head: name in :data:`qhead.models.HEADS` of the head the original
            network uses (what ``head: classical`` resolves to).
        head_prefixes: state-dict key prefixes of the original network's classifier;
            ignored when loading a full-network weights file.
    """

    classical_head: str = "avg-linear"
    head_prefixes: tuple[str, ...] = ()

    def load_weights_file(self, path: str) -> None:
        """Loads backbone weights from a local file (see :func:`load_local_weights`)."""
        load_local_weights(self, path, self.head_prefixes)


class ResNet18Backbone(Backbone):
    """torchvision ResNet-18 without ``avgpool``/``fc``: ``[B, 3, 224, 224] -> [B, 512, 7, 7]``.

    Submodule names equal torchvision's, so a torchvision ``resnet18`` state dict loads
    directly (its ``fc.*`` entries are skipped).
    """

    classical_head = "avg-linear"
    head_prefixes = ("fc.",)

    def __init__(self) -> None:
        super().__init__()
        from torchvision.models import resnet18

        net = resnet18(weights=None)
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def maxvit_block_input_sizes(image_size: int, n_blocks: int = 4) -> list[int]:
    """Side of the attention grid in each MaxViT block (S/4, S/8, S/16, S/32).

    Mirrors torchvision's ``_make_block_input_shapes``: the stem halves the image and each
    block starts with a stride-2 MBConv.
    """

    def conv_out(s: int) -> int:  # kernel 3, stride 2, padding 1
        return (s - 3 + 2) // 2 + 1

    side = conv_out(image_size)
    sizes = []
    for _ in range(n_blocks):
        side = conv_out(side)
        sizes.append(side)
    return sizes


def maxvit_partition_size(image_size: int, partition_size: int | None = None) -> int:
    """The MaxViT partition size to use at ``image_size`` (see :class:`MaxViTTBackbone`).

    Raises:
        ConfigError: no size >= 2 fits (``model.image_size``), or the given one does not
            divide every attention grid (``model.backbone_options.partition_size``).
    """
    sizes = maxvit_block_input_sizes(image_size)
    if partition_size is None:
        fitting = [p for p in range(7, 0, -1) if all(s % p == 0 for s in sizes)]
        partition_size = fitting[0]
        if partition_size < 2:
            raise ConfigError(
                f"model.image_size: maxvit_t cannot run at {image_size}x{image_size}: its "
                f"attention grids {sizes} must share a divisor (the partition size) >= 2; "
                "use a multiple of 32 (a multiple of 224 keeps torchvision's partition size 7)"
            )
    if (
        not isinstance(partition_size, int)
        or partition_size < 1
        or any(s % partition_size for s in sizes)
    ):
        raise ConfigError(
            f"model.backbone_options.partition_size: {partition_size!r} does not divide the "
            f"maxvit_t attention grids {sizes} at image_size {image_size}; allowed: "
            f"{[p for p in range(1, sizes[-1] + 1) if all(s % p == 0 for s in sizes)]}"
        )
    return partition_size


class MaxViTTBackbone(Backbone):
    """torchvision MaxViT-T without its classifier: ``[B, 3, 224, 224] -> [B, 512, 7, 7]``.

    MaxViT attends within ``p × p`` windows and grids, so the map of every block
    (S/4, S/8, S/16, S/32) must be divisible by the partition size ``p``; torchvision's
    ``maxvit_t`` uses ``p = 7``, which needs ``S`` to be a multiple of 224 (the paper's
    size). With ``partition_size=None`` the largest ``p <= 7`` that fits ``S`` is chosen
    (e.g. 2 at 64×64, 3 at 96×96), which changes only the attention windows and their
    bias tables, not the feature-map shape. Submodule names equal torchvision's
    (``stem``, ``blocks``).
    """

    classical_head = "maxvit-classical"
    head_prefixes = ("classifier.",)

    def __init__(self, image_size: int, partition_size: int | None = None) -> None:
        super().__init__()
        from torchvision.models.maxvit import MaxVit

        partition_size = maxvit_partition_size(image_size, partition_size)
        self.partition_size = partition_size
        net = MaxVit(
            input_size=(image_size, image_size),
            stem_channels=64,
            block_channels=[64, 128, 256, 512],
            block_layers=[2, 2, 5, 2],
            head_dim=32,
            stochastic_depth_prob=0.2,
            partition_size=partition_size,
        )
        self.stem, self.blocks = net.stem, net.blocks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return x


class SmallCNNBackbone(Backbone):
    """A tiny CNN for demos and fast tests: ``[B, 3, 32, 32] -> [B, 64, 4, 4]`` by default.

    Each stage is Conv3×3 → BatchNorm → ReLU → MaxPool2, so the side halves per stage.
    """

    def __init__(self, channels: Sequence[int] = (16, 32, 64)) -> None:
        super().__init__()
        if not channels or any(not isinstance(c, int) or c < 1 for c in channels):
            raise ConfigError(
                "model.backbone_options.channels: expected a non-empty list of positive "
                f"integers, got {channels!r}"
            )
        layers: list[nn.Module] = []
        c_in = 3
        for c in channels:
            layers += [
                nn.Conv2d(c_in, c, 3, padding=1, bias=False),
                nn.BatchNorm2d(c),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
            c_in = c
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


class TimmBackbone(Backbone):
    """Any timm model through ``forward_features`` (built with ``pretrained=False``).

    timm returns NCHW maps for CNNs; NHWC maps (models with ``output_fmt == "NHWC"``) are
    permuted to NCHW, and token sequences ``[B, N, C]`` (ViTs) become ``[B, C, N, 1]`` so
    that every head sees ``[B, C, h, w]``.
    """

    def __init__(self, model_name: str, **timm_kwargs: Any) -> None:
        super().__init__()
        import timm

        if not timm.is_model(model_name):
            raise ConfigError(
                f"model.backbone: timm has no model {model_name!r}; "
                "see `python -c 'import timm; print(timm.list_models())'`"
            )
        self.model_name = model_name
        self.net = timm.create_model(model_name, pretrained=False, **timm_kwargs)
        classifier = (getattr(self.net, "pretrained_cfg", None) or {}).get("classifier")
        names = [classifier] if isinstance(classifier, str) else list(classifier or [])
        self.head_prefixes = tuple(f"net.{n}." for n in names)

    def load_weights_file(self, path: str) -> None:
        load_local_weights(self.net, path, tuple(p[len("net.") :] for p in self.head_prefixes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net.forward_features(x)
        if f.ndim == 3:  # [B, N, C] tokens
            return f.transpose(1, 2).unsqueeze(-1)
        if f.ndim == 4 and str(getattr(self.net, "output_fmt", "NCHW")).endswith("NHWC"):
            return f.permute(0, 3, 1, 2)
        if f.ndim != 4:
            raise ConfigError(
                f"model.backbone: timm model {self.model_name!r} returns features of shape "
                f"{tuple(f.shape)}; expected [B, C, h, w] or [B, N, C]"
            )
        return f


@BACKBONES.register("resnet18")
def _resnet18(image_size: int) -> Backbone:
    """torchvision ResNet-18 (no weights); 512×(S/32)×(S/32) features, 512×7×7 at 224."""
    del image_size
    return ResNet18Backbone()


@BACKBONES.register("maxvit_t")
def _maxvit_t(image_size: int, partition_size: int | None = None) -> Backbone:
    """torchvision MaxViT-T (no weights); 512×7×7 at 224; image_size a multiple of 32 (64 works)."""
    return MaxViTTBackbone(image_size, partition_size)


@BACKBONES.register("small_cnn")
def _small_cnn(image_size: int, channels: list[int] | None = None) -> Backbone:
    """Tiny 3-stage CNN for demos/tests; 64×4×4 features at 32×32."""
    del image_size
    return SmallCNNBackbone(tuple(channels) if channels is not None else (16, 32, 64))


@BACKBONES.register("timm")
def _timm(image_size: int, model_name: str = "", **timm_kwargs: Any) -> Backbone:
    """Any timm model via forward_features (needs timm); also `timm:<model name>`."""
    del image_size
    return TimmBackbone(model_name, **timm_kwargs)


def resolve_backbone(name: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Maps ``timm:<model>`` to ``("timm", {"model_name": <model>, ...})``; others unchanged."""
    if name.startswith("timm:"):
        model = name[len("timm:") :]
        if "model_name" in options and options["model_name"] != model:
            raise ConfigError(
                f"model.backbone_options.model_name: {options['model_name']!r} contradicts "
                f"backbone {name!r}; give the timm model name once"
            )
        return "timm", {**options, "model_name": model}
    return name, dict(options)


def _timm_available() -> bool:
    return importlib.util.find_spec("timm") is not None


def validate_backbone_name(name: str, options: dict[str, Any]) -> None:
    """Checks a backbone name and its option keys without building anything.

    Raises:
        ConfigError: unknown name (listing the allowed ones), unknown option keys, timm
            backbone without timm installed, timm without a model name.
    """
    base, opts = resolve_backbone(name, options)
    try:
        factory = BACKBONES.get(base)
    except UnknownNameError as error:
        raise ConfigError(f"model.backbone: {error}; or timm:<model name>") from None
    if base == "timm":
        if not _timm_available():
            raise ConfigError(
                f"model.backbone: {name!r} needs the timm package, which is not installed; "
                "install it with `pip install 'qhead[timm]'` or use resnet18, maxvit_t, small_cnn"
            )
        if not isinstance(opts.get("model_name"), str) or not opts.get("model_name"):
            raise ConfigError(
                "model.backbone_options.model_name: backbone 'timm' needs a timm model name "
                "(or write the backbone as 'timm:<model name>')"
            )
        return  # any further keyword goes to timm.create_model
    check_options(factory, opts, f"model.backbone_options (backbone {name!r})", skip=1)


def check_options(factory: Any, options: dict[str, Any], where: str, skip: int) -> None:
    """Raises ConfigError for keys the factory does not accept (after ``skip`` positionals).

    Keyword-only parameters are not options: they are what a builder passes (e.g. a
    head's checked ``circuit``), so a config cannot set them.
    """
    params = list(inspect.signature(factory).parameters.values())[skip:]
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return
    allowed = [p.name for p in params if p.kind is not inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(
            f"{where}: unknown option(s) {', '.join(unknown)}; "
            f"allowed: {', '.join(allowed) or '(none)'}"
        )


def build_backbone(name: str, image_size: int, options: dict[str, Any] | None = None) -> Backbone:
    """Builds a registered backbone (no weights).

    Raises:
        ConfigError: unknown name or option, or an image size the backbone cannot take.
    """
    options = dict(options or {})
    validate_backbone_name(name, options)
    return make_backbone(name, image_size, options)


def make_backbone(name: str, image_size: int, options: dict[str, Any]) -> Backbone:
    """Builds a backbone whose name and option keys are checked (``ModelConfig`` did it).

    Raises:
        ConfigError: an image size (or option value) the backbone cannot take.
    """
    base, opts = resolve_backbone(name, dict(options))
    try:
        return BACKBONES.get(base)(image_size, **opts)
    except ConfigError:
        raise
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"model.backbone_options: cannot build backbone {name!r} with {opts} "
            f"at image_size {image_size}: {error}"
        ) from None


_SHAPE_CACHE: dict[str, tuple[int, int, int]] = {}


def discover_feature_shape(
    backbone: nn.Module, image_size: int, cache_key: str | None = None
) -> tuple[int, int, int]:
    """Returns ``(C, h, w)`` of ``backbone`` at ``image_size`` by a dry run on one black image.

    The run is in eval mode (BatchNorm on one sample) without gradients, and the
    module's mode is restored afterwards. Shapes depend only on the architecture, so
    they are cached under ``cache_key`` when given.

    Raises:
        ConfigError: ``model.image_size`` when the backbone cannot run at that size, or
            when it does not return a ``[B, C, h, w]`` map.
    """
    if cache_key is not None and cache_key in _SHAPE_CACHE:
        return _SHAPE_CACHE[cache_key]
    try:
        param = next(backbone.parameters())
        device, dtype = param.device, param.dtype
    except StopIteration:
        device, dtype = torch.device("cpu"), torch.float32
    was_training = backbone.training
    backbone.eval()
    try:
        with torch.no_grad():
            out = backbone(torch.zeros(1, 3, image_size, image_size, device=device, dtype=dtype))
    except (RuntimeError, ValueError) as error:
        raise ConfigError(
            f"model.image_size: the backbone cannot run at {image_size}x{image_size}: "
            f"{str(error).splitlines()[0]}"
        ) from None
    finally:
        backbone.train(was_training)
    if out.ndim != 4 or min(out.shape[1:]) < 1:
        raise ConfigError(
            f"model.image_size: the backbone returns shape {tuple(out.shape)} at "
            f"{image_size}x{image_size}; expected [B, C, h, w] with h, w >= 1"
        )
    shape = (int(out.shape[1]), int(out.shape[2]), int(out.shape[3]))
    if cache_key is not None:
        _SHAPE_CACHE[cache_key] = shape
    return shape


def load_local_weights(module: nn.Module, path: str, head_prefixes: tuple[str, ...] = ()) -> None:
    """Loads a local weights file into ``module`` (never downloads).

    Accepts a state dict, or a dict holding one under ``state_dict``/``model``/
    ``model_state``; a ``module.`` prefix (DataParallel/DDP) is stripped. Entries of the
    original network's classifier (``head_prefixes``) are ignored; every other entry
    must match exactly.

    Raises:
        ConfigError: ``model.pretrained`` when the file is missing or unreadable, or when
            its entries do not fit the backbone (listing a few missing/unexpected keys).
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise ConfigError(
            f"model.pretrained: no such file {str(file)!r}; give the path of a local weights "
            "file (qhead never downloads weights) or null to train from scratch"
        )
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds for corrupt files
        raise ConfigError(
            f"model.pretrained: cannot read {str(file)!r} as a torch weights file: {error}"
        ) from None
    for key in ("state_dict", "model", "model_state"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ConfigError(f"model.pretrained: {str(file)!r} does not hold a state dict of tensors")
    state = {k.removeprefix("module."): v for k, v in data.items()}
    state = {k: v for k, v in state.items() if not k.startswith(head_prefixes)}
    try:
        result = module.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        detail = " ".join(str(error).split())[:400]
        raise ConfigError(
            f"model.pretrained: {str(file)!r} does not fit the backbone: {detail}"
        ) from None
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(
            f"model.pretrained: {str(file)!r} does not fit the backbone: "
            f"missing {result.missing_keys[:5]} ({len(result.missing_keys)} in all), "
            f"unexpected {result.unexpected_keys[:5]} ({len(result.unexpected_keys)} in all)"
        )
