"""One spec per dataset: every reader of dataset facts takes them from qhead.dataspec."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from qhead.cli import build_parser
from qhead.data import DATASETS, PREPARERS
from qhead.data.audit import collect_records
from qhead.data.prepare import LAYOUT_READERS
from qhead.dataspec import (
    DATASET_SPECS,
    LAYOUTS,
    PAPER_DATASETS,
    DatasetSpec,
    spec_names,
    spec_of,
)
from qhead.experiments.paper import DATASET_TITLES, PAPER_RESULTS
from qhead.models.presets import DATASET_ALIASES, DATASET_CLASSES, PAPER_PARAMS, get_preset


def test_paper_order_and_every_reader_follows_the_specs():
    assert PAPER_DATASETS == ("croatian-fish", "aircraft737", "busi", "apples-or-tomatoes")
    assert set(LAYOUT_READERS) == set(LAYOUTS)
    for name in spec_names():
        spec = DATASET_SPECS.get(name)
        assert name in DATASETS and PREPARERS.get(name).spec is spec
        assert PREPARERS.get(name).expected == spec.expected
    assert DATASET_CLASSES == {"croatian-fish": 12, "aircraft737": 8, "busi": 3,
                               "apples-or-tomatoes": 2}
    assert DATASET_ALIASES == {"fish": "croatian-fish", "aircraft": "aircraft737",
                               "aot": "apples-or-tomatoes"}
    assert list(DATASET_TITLES) == list(PAPER_DATASETS) and DATASET_TITLES["busi"] == "BUSI"
    assert len(PAPER_RESULTS) == len(PAPER_PARAMS) == 16
    for (dataset, backbone, arm), cell in PAPER_RESULTS.items():
        preset = f"{backbone}{'_q' if arm == 'quantum' else ''}/{dataset}"
        assert PAPER_PARAMS[preset] == cell.params
        assert get_preset(preset).num_classes == DATASET_SPECS.get(dataset).num_classes
    assert spec_of("aot") is DATASET_SPECS.get("apples-or-tomatoes")


def test_cli_choices_come_from_the_specs():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    prepare = sub.choices["prepare"]
    dataset = next(a for a in prepare._actions if a.dest == "dataset")
    assert list(dataset.choices) == spec_names()
    audit = next(a for a in sub.choices["audit"]._actions if a.dest == "dataset")
    assert list(audit.choices) == [*spec_names(), "imagefolder"]


def test_test_size_rules():
    assert DATASET_SPECS.get("busi").test_size(778) == 158
    assert DATASET_SPECS.get("busi").test_size(24) == 5
    assert DATASET_SPECS.get("croatian-fish").test_size(794) == 159
    assert DATASET_SPECS.get("aircraft737").test_size(800) is None


def make_image(path, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
                    ).save(path)


def test_layout_detection_by_markers(tmp_path):
    busi = tmp_path / "b" / "Dataset_BUSI_with_GT"
    for label in ("benign", "malignant", "normal"):
        make_image(busi / label / f"{label} (1).png", seed=len(label))
    assert DATASET_SPECS.get("busi").detects(tmp_path / "b")
    assert DATASET_SPECS.get("busi").detects(busi)  # the inner folder itself
    assert not DATASET_SPECS.get("aircraft737").detects(tmp_path / "b")
    records, _ = collect_records(tmp_path / "b")
    assert sorted(r.label for r in records) == ["benign", "malignant", "normal"]
    plain = tmp_path / "plain"
    make_image(plain / "x" / "1.png", seed=1)
    assert not any(DATASET_SPECS.get(n).detects(plain) for n in spec_names())


def test_bad_specs_are_refused():
    base = dict(name="d", title="D", num_classes=2, layout="class-folders", protocol="p",
                test_share=(1, 5), expected={})
    DatasetSpec(**base)
    with pytest.raises(ValueError, match="layout 'nope'"):
        DatasetSpec(**{**base, "layout": "nope"})
    with pytest.raises(ValueError, match="sorted"):
        DatasetSpec(**{**base, "classes": ("b", "a")})
    with pytest.raises(ValueError, match="expected"):
        DatasetSpec(**{**base, "expected": {"classes": 3}})
