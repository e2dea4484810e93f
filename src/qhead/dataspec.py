"""The paper's datasets, one :class:`DatasetSpec` each: every fact about a dataset in one place.

A spec carries the dataset's registry name, its table title, its classes, how its raw
layout is read and recognised, its split protocol, the paper's counts, and the paper's
Table 3/4 rows (Params*, accuracy, macro-F1) for the models trained on it. Everything
else reads it:

* ``qhead.data`` registers a dataset and a preparer per spec (``qhead prepare`` and
  ``qhead audit --dataset`` take their choices from :data:`PAPER_DATASETS`; the audit
  recognises raw layouts by :meth:`DatasetSpec.detects`);
* ``qhead.models.presets`` takes the class counts, aliases and Params* from here;
* ``qhead.experiments.paper`` builds the paper's tables (titles, row order, numbers).

This module sits beside ``registry.py`` and ``errors.py`` (pure Python, no torch), so
every layer may import it. Adding a dataset whose raw layout is one of
:data:`LAYOUTS` is one :func:`DATASET_SPECS.add <qhead.registry.Registry.add>` call here
(see ``docs/data.md``); a new kind of layout also needs its reader in
``qhead.data.prepare``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from qhead.registry import Registry

__all__ = [
    "DATASET_SPECS",
    "LAYOUTS",
    "PAPER_ARMS",
    "PAPER_BACKBONES",
    "PAPER_DATASETS",
    "DatasetSpec",
    "PaperCell",
    "spec_names",
    "spec_of",
]

LAYOUTS: tuple[str, ...] = ("busi", "class-folders", "train-test-folders", "fgvc-aircraft")
"""Raw layouts ``qhead.data.prepare`` can read:

* ``busi``: ``Dataset_BUSI_with_GT/<class>/*.png`` with ``*_mask*.png`` masks left out;
* ``class-folders``: one folder per class (the classes are the folder names);
* ``train-test-folders``: ``train/<class>/`` and ``test/<class>/`` (the given split);
* ``fgvc-aircraft``: FGVC-Aircraft 2013b ``data/images/<id>.jpg`` with
  ``data/images_variant_{trainval,test}.txt``; the classes are the variants kept.
"""

PAPER_BACKBONES: tuple[str, ...] = ("resnet18", "maxvit_t")
PAPER_ARMS: tuple[str, ...] = ("classical", "quantum")


@dataclass(frozen=True)
class PaperCell:
    """One row of the paper's Tables 3–4.

    Attributes:
        params: Params* (trainable parameters after the backbone).
        accuracy: test accuracy, fraction.
        macro_f1: test macro-averaged F1, fraction.
        table: ``"Table 3"`` (ResNet-18) or ``"Table 4"`` (MaxViT-T).
    """

    params: int
    accuracy: float
    macro_f1: float
    table: str


def _cell(params: int, acc_pct: float, f1_pct: float, table: str) -> PaperCell:
    return PaperCell(params, round(acc_pct / 100.0, 6), round(f1_pct / 100.0, 6), table)


def _table(resnet18: tuple[tuple[int, float, float], tuple[int, float, float]],
           maxvit_t: tuple[tuple[int, float, float], tuple[int, float, float]],
           ) -> dict[tuple[str, str], PaperCell]:
    """``(backbone, arm) -> PaperCell`` from ((Params*, acc %, F1 %) classical, quantum)."""
    out = {}
    for backbone, rows, table in (("resnet18", resnet18, "Table 3"),
                                  ("maxvit_t", maxvit_t, "Table 4")):
        for arm, row in zip(PAPER_ARMS, rows, strict=True):
            out[(backbone, arm)] = _cell(*row, table)
    return out


@dataclass(frozen=True)
class DatasetSpec:
    """Everything qhead knows about one of the paper's datasets.

    Attributes:
        name: registry name (``data.name``, ``qhead prepare NAME``, preset suffix).
        title: the paper's table title (``"BUSI"``).
        num_classes: the number of classes.
        layout: how the publisher's folder is read, one of :data:`LAYOUTS`.
        protocol: one line describing the paper's protocol (in every summary).
        test_share: ``(a, b)``: the test split holds ``round(N · a / b)`` of the ``N``
            kept images, stratified by class and seeded; ``None`` when the publisher
            gives the split (then the ``grouped`` split protocol does not apply).
        expected: the paper's counts (``total``, ``train``, ``test``, ``classes``) that a
            preparation is checked against (``matches_paper``).
        markers: globs, relative to a folder, whose presence identifies the raw layout
            (for ``qhead audit``); a plain name also matches the folder itself.
        classes: the class names, sorted (labels are their indices), where the protocol
            fixes them; ``None`` when the layout's folders name them (``class-folders``).
        crop_bottom: pixel rows cut off the bottom of every image at load time.
        drop_cross_class_duplicates: drop every image of a group with identical decoded
            pixels in more than one class (a label contradiction).
        aliases: short names accepted in preset names (``resnet18_q/aot``).
        paper: the paper's rows for models on this dataset, ``(backbone, arm)`` →
            :class:`PaperCell` with ``arm`` in :data:`PAPER_ARMS`.
    """

    name: str
    title: str
    num_classes: int
    layout: str
    protocol: str
    test_share: tuple[int, int] | None
    expected: dict[str, int]
    classes: tuple[str, ...] | None = None
    markers: tuple[str, ...] = ()
    crop_bottom: int = 0
    drop_cross_class_duplicates: bool = False
    aliases: tuple[str, ...] = ()
    paper: dict[tuple[str, str], PaperCell] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"dataset spec {self.name!r}: layout {self.layout!r}; "
                             f"allowed: {', '.join(LAYOUTS)}")
        if self.num_classes < 2:
            raise ValueError(f"dataset spec {self.name!r}: num_classes must be >= 2")
        if self.classes is not None and (list(self.classes) != sorted(set(self.classes))
                                         or len(self.classes) != self.num_classes):
            raise ValueError(f"dataset spec {self.name!r}: classes must be num_classes "
                             "sorted, distinct names")
        if self.expected.get("classes", self.num_classes) != self.num_classes:
            raise ValueError(f"dataset spec {self.name!r}: expected['classes'] differs from "
                             "num_classes")

    def test_size(self, n: int) -> int | None:
        """Test-split size for ``n`` kept images (``None``: the split is given)."""
        if self.test_share is None:
            return None
        a, b = self.test_share
        return int(n * a / b + 0.5)

    def detects(self, folder: Path) -> bool:
        """Whether ``folder`` looks like this dataset's raw layout (by :attr:`markers`)."""
        return any(any(folder.glob(m)) or ("/" not in m and "*" not in m and folder.name == m)
                   for m in self.markers)


DATASET_SPECS: Registry[DatasetSpec] = Registry("dataset spec")
"""Every dataset with a protocol (``qhead prepare`` can prepare it), by name."""

_ORDER: list[str] = []


def _register(spec: DatasetSpec, *, help: str) -> None:
    DATASET_SPECS.add(spec.name, spec, help=help)
    _ORDER.append(spec.name)


_register(DatasetSpec(
    name="croatian-fish",
    title="Croatian Fish",
    num_classes=12,  # the species folders name them
    layout="class-folders",
    protocol="one folder per species; stratified split, test size round(0.2*N)",
    test_share=(1, 5),
    expected={"total": 794, "classes": 12},
    aliases=("fish",),
    paper=_table(((6156, 91.52, 91.77), (222, 94.55, 94.56)),
                 ((269836, 71.52, 68.54), (14363, 76.97, 75.15))),
), help="Croatian Fish: species folders, stratified 80/20 (635/159)")

_register(DatasetSpec(
    name="aircraft737",
    title="Aircraft (737)",
    num_classes=8,
    classes=tuple(f"737-{v}00" for v in range(2, 10)),
    layout="fgvc-aircraft",
    protocol=("FGVC-Aircraft 2013b variants 737-200..737-900; images_variant_trainval.txt "
              "-> train, images_variant_test.txt -> test; bottom 20 px banner cropped"),
    test_share=None,
    expected={"train": 533, "test": 267, "classes": 8},
    markers=("*data/images_variant_trainval.txt", "*/data/images_variant_trainval.txt"),
    crop_bottom=20,
    aliases=("aircraft",),
    paper=_table(((4104, 31.46, 31.74), (143, 36.33, 36.93)),
                 ((267784, 13.11, 6.56), (12311, 22.32, 22.35))),
), help="FGVC-Aircraft 2013b, Boeing 737-200 … 737-900, official split (533/267), "
                 "banner cropped")

_register(DatasetSpec(
    name="busi",
    title="BUSI",
    num_classes=3,
    classes=("benign", "malignant", "normal"),
    layout="busi",
    protocol=("Dataset_BUSI_with_GT/{benign,malignant,normal}; masks excluded; images with "
              "identical decoded pixels in several classes dropped; stratified split, "
              "test size round(N*158/778)"),
    # 158 of the 778 published images: the paper's 620/158 (20.3 %, not a round 20 %)
    test_share=(158, 778),
    expected={"total": 778, "train": 620, "test": 158, "classes": 3},
    markers=("Dataset_BUSI_with_GT",),
    drop_cross_class_duplicates=True,
    paper=_table(((1539, 80.38, 79.10), (63, 86.08, 84.63)),
                 ((265219, 78.48, 77.08), (63, 84.18, 81.97))),
), help="BUSI: masks out, cross-class duplicates dropped, stratified 620/158")

_register(DatasetSpec(
    name="apples-or-tomatoes",
    title="AOT",
    num_classes=2,
    classes=("apples", "tomatoes"),
    layout="train-test-folders",
    protocol="train/{apples,tomatoes} -> train, test/{apples,tomatoes} -> test, as given",
    test_share=None,
    expected={"train": 294, "test": 97, "classes": 2},
    aliases=("aot",),
    paper=_table(((1026, 82.47, 82.35), (41, 87.63, 87.52)),
                 ((264706, 84.54, 83.98), (107, 87.63, 87.56))),
), help="Apples or Tomatoes (Kaggle): the given train/test split (294/97)")

PAPER_DATASETS: tuple[str, ...] = tuple(n for n in _ORDER if DATASET_SPECS.get(n).paper)
"""The datasets of the paper's tables, in its row order (the order of the entries above)."""


def spec_names() -> list[str]:
    """Every registered spec's name, in registration order (the paper's first)."""
    return _ORDER + [n for n in DATASET_SPECS.names() if n not in _ORDER]


def spec_of(name: str) -> DatasetSpec:
    """The spec of a dataset by name or alias.

    Raises:
        UnknownNameError: listing the allowed names.
    """
    for key in DATASET_SPECS.names():
        if name in DATASET_SPECS.get(key).aliases:
            return DATASET_SPECS.get(key)
    return DATASET_SPECS.get(name)
