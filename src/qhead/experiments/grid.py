"""Experiment grids: (dataset × backbone × arm × seed) cells, run dirs, shards, status.

An **arm** is one way of building the model of a cell from the paper presets:

===================  ==========================  ======================================
arm                  base preset                 change
===================  ==========================  ======================================
``classical``        ``<backbone>/<dataset>``    none (the paper's classical model)
``quantum``          ``<backbone>_q/<dataset>``  none (the paper's AE-VQC model)
``max-linear``       ``<backbone>/<dataset>``    head → global max pooling + Linear
``flatten-linear``   ``<backbone>/<dataset>``    head → no pooling, Linear on the flat map
``twin``             ``<backbone>_q/<dataset>``  head → classical twin of Ansatz 1
                                                 (⟨Z⟩₀, ⟨X⟩₀ features, same FC stack)
``frozen``           ``<backbone>_q/<dataset>``  circuit weights frozen at their init
===================  ==========================  ======================================

The controls keep everything else of their base preset (backbone, class count, FC
stack of the quantum preset for ``twin``/``frozen``), so each differs from the paper
model it is compared with in exactly one respect.

A cell also names its **split** of the dataset (``data.split``: ``paper``, the default, or
e.g. ``grouped``, the leakage-free split of ``docs/data.md``).

Every cell has a stable run dir ``<out>/<dataset>/<backbone>/<arm>/seed<k>`` (paper
split) or ``<out>/<dataset>-<split>/<backbone>/<arm>/seed<k>`` (any other split) so that
re-running the same command finds what is finished (skipped), interrupted (resumed)
or missing (started), and so that ``K`` machines can split one grid by ``--shard i/K``
without talking to each other. The paper split adds nothing to a cell's overrides, so run
dirs written before splits existed keep their paths and fingerprints.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qhead.data.config import SPLIT_PROTOCOLS, DataConfig
from qhead.engine.record import (
    CELL_FILE,
    FINAL_FILE,
    LAST_CHECKPOINT,
    read_cell_record,
    read_config,
    write_cell_record,  # noqa: F401  (part of this module's API since cell.json began here)
)
from qhead.errors import ConfigError
from qhead.overrides import flatten

SEED_KEY = "seed"
"""Dotted config key of the training seed."""

DATASET_KEY = "data.name"
SPLIT_KEY = "data.split"
"""Dotted config key of the dataset split (the data layer's protocol name)."""
DEFAULT_SPLIT: str = DataConfig.split
"""The split a cell uses when none is named: the data layer's default, the paper's own."""
DATA_ROOT_KEY = "data.root"
UNTRACKED_KEYS: tuple[str, ...] = (DATA_ROOT_KEY,)
"""Overrides that do not change what a run computes (paths); ignored when matching runs."""


def _tracked(overrides: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in overrides.items() if k not in UNTRACKED_KEYS}


@dataclass(frozen=True)
class ArmSpec:
    """How an arm's model is derived from a paper preset.

    Attributes:
        name: arm name used in run dirs and tables.
        base: ``"classical"`` (preset ``<backbone>/<dataset>``) or ``"quantum"``
            (preset ``<backbone>_q/<dataset>``).
        overrides: dotted config overrides applied on top of the preset (applied after
            the preset, before the user's budget overrides).
        description: one line for tables and ``--dry-run``.
    """

    name: str
    base: str
    overrides: tuple[tuple[str, Any], ...] = ()
    description: str = ""


ARMS: dict[str, ArmSpec] = {
    spec.name: spec
    for spec in (
        ArmSpec("classical", "classical", (), "paper's classical model (GAP + FC)"),
        ArmSpec("quantum", "quantum", (), "paper's quantum model (AE-VQC + FC)"),
        ArmSpec(
            "max-linear",
            "classical",
            (("model.head", "max-linear"),),
            "control: global max pooling + Linear",
        ),
        ArmSpec(
            "flatten-linear",
            "classical",
            (("model.head", "flatten-linear"),),
            "control: no pooling, Linear on the flattened map",
        ),
        ArmSpec(
            "twin",
            "quantum",
            (("model.head", "twin"),),
            "control: classical twin of Ansatz 1 (<Z>0,<X>0 features), same FC stack",
        ),
        ArmSpec(
            "frozen",
            "quantum",
            (("model.head_options.freeze_circuit", True),),
            "control: quantum model with circuit weights frozen at init",
        ),
    )
}
"""Known arms, by name. ``classical`` is the reference every other arm is compared to."""

REFERENCE_ARM = "classical"


def arm_spec(name: str) -> ArmSpec:
    """The :class:`ArmSpec` of an arm name.

    Raises:
        ConfigError: for an unknown arm, listing the allowed names.
    """
    try:
        return ARMS[name]
    except KeyError:
        raise ConfigError(
            f"heads: unknown arm {name!r}; allowed: {', '.join(ARMS)}"
        ) from None


def preset_name(backbone: str, dataset: str, base: str) -> str:
    """Paper preset name, e.g. ``("resnet18", "busi", "quantum")`` → ``"resnet18_q/busi"``."""
    if base == "classical":
        return f"{backbone}/{dataset}"
    if base == "quantum":
        return f"{backbone}_q/{dataset}"
    raise ConfigError(f"base must be 'classical' or 'quantum', got {base!r}")


def has_preset(name: str) -> bool:
    """Whether ``name`` is one of the paper presets of :data:`qhead.models.PRESETS`."""
    from qhead.models import PRESETS

    return name in PRESETS


@dataclass(frozen=True, order=True)
class Cell:
    """One training run of a grid: dataset (and its split), backbone, arm, seed."""

    dataset: str
    backbone: str
    arm: str
    seed: int
    split: str = DEFAULT_SPLIT

    @property
    def dataset_dir(self) -> str:
        """``busi`` for the paper split, ``busi-grouped`` for the grouped one."""
        return self.dataset if self.split == DEFAULT_SPLIT else f"{self.dataset}-{self.split}"

    @property
    def key(self) -> str:
        """Stable identifier, also the run dir relative to the grid's output dir."""
        return f"{self.dataset_dir}/{self.backbone}/{self.arm}/seed{self.seed}"

    @property
    def base(self) -> str:
        """``"classical"`` or ``"quantum"``: which paper model the arm starts from."""
        return arm_spec(self.arm).base

    @property
    def preset(self) -> str | None:
        """The paper preset of the arm's base, or ``None`` if the paper has none for this
        (dataset, backbone), e.g. ``digits`` or ``small_cnn``."""
        name = preset_name(self.backbone, self.dataset, self.base)
        return name if has_preset(name) else None

    def base_overrides(self) -> dict[str, Any]:
        """Overrides that describe the base model when there is no preset for it."""
        if self.preset is not None:
            return {}
        return {"model.backbone": self.backbone, "model.head": self.base}

    def run_dir(self, out: Path | str) -> Path:
        return Path(out) / self.key


@dataclass
class GridSpec:
    """What ``qhead reproduce`` runs: the grid axes and the budget shared by all cells.

    Attributes:
        datasets: dataset registry names (``["busi"]``).
        backbones: backbone names of the paper presets (``["resnet18"]``).
        arms: arm names from :data:`ARMS` (``["classical", "quantum", "twin"]``).
        seeds: seed values (``qhead reproduce --seeds 5`` means ``[0, 1, 2, 3, 4]``).
        overrides: budget and other dotted overrides ``{"epochs": 50}`` applied to
            every cell after the arm's own overrides; recorded in every run's config.
        data_roots: where each dataset lives, ``{"busi": "/data/busi"}``; becomes the
            cell's ``data.root`` but is not part of its identity (a grid copied to another
            machine with the data elsewhere is still recognised as finished).
        splits: dataset splits (``["paper"]``, ``["paper", "grouped"]``); a ``data.split``
            in ``overrides`` is taken as the grid's one split.
    """

    datasets: list[str] = field(default_factory=list)
    backbones: list[str] = field(default_factory=list)
    arms: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    overrides: dict[str, Any] = field(default_factory=dict)
    data_roots: dict[str, str] = field(default_factory=dict)
    splits: list[str] = field(default_factory=lambda: [DEFAULT_SPLIT])

    def __post_init__(self) -> None:
        if SPLIT_KEY in self.overrides:
            # one place for the split: the cell (so that it names the run dir)
            value = str(self.overrides[SPLIT_KEY])
            if list(self.splits) not in ([DEFAULT_SPLIT], [value]):
                raise ConfigError(
                    f"{SPLIT_KEY}={value} and splits {list(self.splits)}: name the splits once "
                    "(qhead reproduce --splits paper,grouped)"
                )
            self.overrides = {k: v for k, v in self.overrides.items() if k != SPLIT_KEY}
            self.splits = [value]
        for name in ("datasets", "backbones", "arms", "seeds", "splits"):
            values = getattr(self, name)
            if not values:
                raise ConfigError(f"{name}: the grid needs at least one value")
            if len(set(values)) != len(values):
                raise ConfigError(f"{name}: duplicate values in {values!r}")
        for arm in self.arms:
            arm_spec(arm)
        for split in self.splits:
            if split not in SPLIT_PROTOCOLS:
                raise ConfigError(
                    f"splits: unknown split {split!r}; allowed: {', '.join(SPLIT_PROTOCOLS)}"
                )
        for seed in self.seeds:
            if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
                raise ConfigError(f"seeds: expected non-negative integers, got {seed!r}")

    def cells(self) -> list[Cell]:
        """All cells in canonical order (dataset, split, backbone, seed, arm as given).

        Seeds vary slower than arms so that a partial grid (or one shard) holds
        complete paired comparisons early.
        """
        return [
            Cell(d, b, a, s, split)
            for d in self.datasets
            for split in self.splits
            for b in self.backbones
            for s in self.seeds
            for a in self.arms
        ]

    def cell_overrides(self, cell: Cell) -> dict[str, Any]:
        """All dotted overrides of a cell on top of its preset (arm, then grid, then seed)."""
        merged: dict[str, Any] = {DATASET_KEY: cell.dataset, **cell.base_overrides()}
        if cell.split != DEFAULT_SPLIT:
            merged[SPLIT_KEY] = cell.split
        merged.update(arm_spec(cell.arm).overrides)
        merged.update(self.overrides)
        merged[SEED_KEY] = cell.seed
        if cell.dataset in self.data_roots:
            merged[DATA_ROOT_KEY] = self.data_roots[cell.dataset]
        return merged


def parse_shard(text: str) -> tuple[int, int]:
    """Parses ``"i/K"`` (0 ≤ i < K) into ``(i, K)``.

    Raises:
        ConfigError: for anything else, with the expected form.
    """
    try:
        index_text, count_text = text.split("/")
        index, count = int(index_text), int(count_text)
    except ValueError:
        raise ConfigError(
            f"--shard: expected 'i/K' with 0 <= i < K (e.g. 0/4), got {text!r}"
        ) from None
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"--shard: expected 'i/K' with 0 <= i < K, got {text!r}")
    return index, count


def shard_cells(cells: Sequence[Cell], index: int, count: int) -> list[Cell]:
    """The cells of shard ``index`` of ``count``: round-robin over ``cells`` in the order
    given (:meth:`GridSpec.cells`' canonical order).

    Every cell is in exactly one shard and shard sizes differ by at most one, provided
    every shard is given the same grid (same command apart from ``--shard``).
    """
    if count < 1 or not 0 <= index < count:
        raise ConfigError(f"shard: expected 0 <= index < count, got {index}/{count}")
    return [cell for position, cell in enumerate(cells) if position % count == index]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
        except (TypeError, ValueError):
            return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def config_differences(
    expected: Mapping[str, Any], actual: Mapping[str, Any], ignore: Iterable[str] = ()
) -> list[str]:
    """Dotted keys whose values differ between two (nested) configs, as readable lines.

    Args:
        expected: the config the grid would run now.
        actual: the config found in a run dir (``config.yaml``).
        ignore: dotted keys (or prefixes ending with ``.``) that may differ, e.g. paths.
    """
    ignored = tuple(ignore)

    def skip(key: str) -> bool:
        return any(key == i or (i.endswith(".") and key.startswith(i)) for i in ignored)

    flat_e, flat_a = flatten(expected), flatten(actual)
    lines = []
    for key in sorted(set(flat_e) | set(flat_a)):
        if skip(key):
            continue
        if key not in flat_a:
            lines.append(f"{key}: expected {flat_e[key]!r}, missing in run")
        elif key not in flat_e:
            lines.append(f"{key}: unexpected in run ({flat_a[key]!r})")
        elif not _same(flat_e[key], flat_a[key]):
            lines.append(f"{key}: expected {flat_e[key]!r}, run has {flat_a[key]!r}")
    return lines


def overrides_differences(
    overrides: Mapping[str, Any], actual: Mapping[str, Any]
) -> list[str]:
    """Which of the dotted ``overrides`` a run's config does not hold (value or key)."""
    flat = flatten(actual)
    lines = []
    for key, value in overrides.items():
        if key not in flat:
            # a dict-valued override (e.g. head options) flattens further
            if isinstance(value, Mapping):
                lines.extend(overrides_differences(flatten(value, key + "."), actual))
                continue
            lines.append(f"{key}: expected {value!r}, missing in run")
        elif not _same(value, flat[key]):
            lines.append(f"{key}: expected {value!r}, run has {flat[key]!r}")
    return lines


def cell_fingerprint(cell: Cell, overrides: Mapping[str, Any]) -> str:
    """Short hash of a cell's preset and overrides; equal fingerprints mean the same run."""
    payload = json.dumps(
        {"preset": cell.preset, "overrides": dict(sorted(_tracked(overrides).items()))},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def cell_record(cell: Cell, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """What ``cell.json`` holds: the cell, its preset and overrides, and the fingerprint."""
    return {
        "dataset": cell.dataset,
        "backbone": cell.backbone,
        "arm": cell.arm,
        "seed": cell.seed,
        "split": cell.split,
        "preset": cell.preset,
        "base": cell.base,
        "overrides": {k: overrides[k] for k in sorted(overrides)},
        "fingerprint": cell_fingerprint(cell, overrides),
    }


@dataclass(frozen=True)
class CellStatus:
    """What ``qhead reproduce`` will do with a cell.

    Attributes:
        state: ``"done"`` (final.json present, config matches: skip), ``"resume"``
            (a ``last.pt`` checkpoint and a matching config: continue), ``"new"``
            (nothing there: start), or ``"conflict"`` (the run dir holds a different
            configuration: refuse unless ``--overwrite``).
        reasons: for ``"conflict"``, the differing keys.
    """

    state: str
    reasons: tuple[str, ...] = ()


def cell_status(run_dir: Path, cell: Cell, overrides: Mapping[str, Any]) -> CellStatus:
    """Decides skip / resume / start / conflict for one cell's run dir.

    A run matches when its ``cell.json`` fingerprint equals the current one and, if a
    ``config.yaml`` was written, that config holds every override with the same value
    (so a run dir edited or produced by another command is never silently reused).
    """
    run_dir = Path(run_dir)
    overrides = _tracked(overrides)
    has_final = (run_dir / FINAL_FILE).is_file()
    has_ckpt = (run_dir / LAST_CHECKPOINT).is_file()
    record = read_cell_record(run_dir)
    config = read_config(run_dir)
    if record is None and config is None and not has_final and not has_ckpt:
        return CellStatus("new")
    reasons: list[str] = []
    if record is None:
        reasons.append(f"{CELL_FILE} missing: run dir not made by qhead reproduce")
    elif record.get("fingerprint") != cell_fingerprint(cell, overrides):
        old = _tracked(record.get("overrides", {}))
        if record.get("preset") != cell.preset:
            reasons.append(f"preset: expected {cell.preset!r}, run has {record.get('preset')!r}")
        reasons.extend(config_differences(overrides, old))
    if config is not None:
        reasons.extend(overrides_differences(overrides, config))
    if reasons:
        return CellStatus("conflict", tuple(dict.fromkeys(reasons)))
    if has_final:
        return CellStatus("done")
    if has_ckpt:
        return CellStatus("resume")
    return CellStatus("new")

