"""Grid expansion, sharding, overrides and skip / resume / conflict bookkeeping."""

import json
from itertools import product

import pytest
import yaml

from qhead.errors import ConfigError
from qhead.experiments.grid import (
    ARMS,
    Cell,
    GridSpec,
    cell_record,
    cell_status,
    config_differences,
    parse_shard,
    shard_cells,
    write_cell_record,
)
from qhead.overrides import format_override, parse_overrides


def _grid(**kw):
    base = dict(
        datasets=["busi", "digits"],
        backbones=["resnet18"],
        arms=["classical", "quantum", "twin"],
        seeds=[0, 1, 2],
        overrides={"train.epochs": 2},
    )
    base.update(kw)
    return GridSpec(**base)


def test_grid_expands_to_the_full_product_with_stable_run_dirs(tmp_path):
    grid = _grid()
    cells = grid.cells()
    assert len(cells) == 2 * 1 * 3 * 3
    assert set(cells) == {
        Cell(d, "resnet18", a, s)
        for d, a, s in product(["busi", "digits"], ["classical", "quantum", "twin"], [0, 1, 2])
    }
    cell = Cell("busi", "resnet18", "quantum", 2)
    assert cell.run_dir(tmp_path) == tmp_path / "busi" / "resnet18" / "quantum" / "seed2"
    assert cell.preset == "resnet18_q/busi"
    assert Cell("busi", "resnet18", "flatten-linear", 0).preset == "resnet18/busi"
    assert Cell("busi", "maxvit_t", "twin", 0).preset == "maxvit_t_q/busi"
    # no paper preset: the base model is described by overrides instead
    small = Cell("digits", "small_cnn", "twin", 0)
    assert small.preset is None
    assert small.base_overrides() == {"model.backbone": "small_cnn", "model.head": "quantum"}
    overrides = GridSpec(["digits"], ["small_cnn"], ["twin"], [0]).cell_overrides(small)
    assert overrides == {"data.name": "digits", "model.backbone": "small_cnn",
                         "model.head": "twin", "seed": 0}


def test_arm_overrides_then_budget_then_seed():
    grid = _grid(arms=["twin"], overrides={"train.epochs": 3, "model.head": "twin"})
    overrides = grid.cell_overrides(Cell("busi", "resnet18", "twin", 4))
    assert overrides["train.epochs"] == 3
    assert overrides["model.head"] == "twin"
    assert overrides["seed"] == 4
    assert dict(ARMS["twin"].overrides)["model.head"] == "twin"


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 7, 18, 25])
def test_shards_cover_every_cell_exactly_once(count):
    cells = _grid().cells()
    shards = [shard_cells(cells, i, count) for i in range(count)]
    flat = [cell for shard in shards for cell in shard]
    assert sorted(flat) == sorted(cells)  # every cell, no duplicates
    sizes = [len(s) for s in shards]
    assert max(sizes) - min(sizes) <= 1
    # deterministic: the same command on another machine selects the same cells
    assert shards == [shard_cells(_grid().cells(), i, count) for i in range(count)]


def test_parse_shard_errors():
    assert parse_shard("2/4") == (2, 4)
    for bad in ("4/4", "-1/3", "1", "a/b", "0/0"):
        with pytest.raises(ConfigError, match="--shard"):
            parse_shard(bad)


def test_bad_grids_name_the_field():
    with pytest.raises(ConfigError, match=r"unknown arm 'quantom'.*allowed: classical"):
        _grid(arms=["quantom"])
    with pytest.raises(ConfigError, match="seeds: the grid needs"):
        _grid(seeds=[])
    with pytest.raises(ConfigError, match="duplicate"):
        _grid(datasets=["busi", "busi"])


def test_overrides_round_trip():
    parsed = parse_overrides(["train.epochs=5", "model.head_options.hidden=[4, 8]", "x.y=abc"])
    assert parsed == {"train.epochs": 5, "model.head_options.hidden": [4, 8], "x.y": "abc"}
    assert parse_overrides(format_override(k, v) for k, v in parsed.items()) == parsed
    with pytest.raises(ConfigError, match=r"dotted\.key=value"):
        parse_overrides(["epochs"])


def _finish(run_dir, config):
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    (run_dir / "final.json").write_text(json.dumps({"accuracy": 0.5, "macro_f1": 0.4}))


def test_status_new_resume_done_conflict(tmp_path):
    grid = _grid()
    cell = Cell("busi", "resnet18", "quantum", 1)
    run_dir = cell.run_dir(tmp_path)
    overrides = grid.cell_overrides(cell)
    assert cell_status(run_dir, cell, overrides).state == "new"

    write_cell_record(run_dir, cell_record(cell, overrides))
    assert cell_status(run_dir, cell, overrides).state == "new"  # launched, nothing saved
    (run_dir / "last.pt").write_bytes(b"x")
    config = {"train": {"epochs": 2}, "seed": 1, "data": {"name": "busi"},
              "model": {"head": "quantum"}}
    (run_dir / "config.yaml").write_text(yaml.safe_dump(config))
    assert cell_status(run_dir, cell, overrides).state == "resume"
    _finish(run_dir, config)
    assert cell_status(run_dir, cell, overrides).state == "done"

    # the same command with another budget must not reuse the run
    other = _grid(overrides={"train.epochs": 3}).cell_overrides(cell)
    status = cell_status(run_dir, cell, other)
    assert status.state == "conflict"
    assert any("train.epochs: expected 3, run has 2" in r for r in status.reasons)


def test_status_conflict_when_config_yaml_disagrees(tmp_path):
    grid = _grid()
    cell = Cell("busi", "resnet18", "classical", 0)
    run_dir = cell.run_dir(tmp_path)
    overrides = grid.cell_overrides(cell)
    write_cell_record(run_dir, cell_record(cell, overrides))
    _finish(run_dir, {"train": {"epochs": 7}, "seed": 0, "data": {"name": "busi"}})  # edited
    status = cell_status(run_dir, cell, overrides)
    assert status.state == "conflict"
    assert "train.epochs: expected 2, run has 7" in status.reasons


def test_status_conflict_for_foreign_run_dir(tmp_path):
    cell = Cell("busi", "resnet18", "classical", 0)
    run_dir = cell.run_dir(tmp_path)
    run_dir.mkdir(parents=True)
    _finish(run_dir, {"train": {"epochs": 2}, "seed": 0})
    status = cell_status(run_dir, cell, _grid().cell_overrides(cell))
    assert status.state == "conflict" and "cell.json missing" in status.reasons[0]


def test_config_differences_lists_changed_missing_and_extra_keys():
    expected = {"a": {"b": 1, "c": 0.1}, "d": "x", "out": "/tmp/1"}
    actual = {"a": {"b": 2, "c": 0.1 + 1e-15}, "e": 3, "out": "/tmp/2"}
    assert config_differences(expected, actual, ignore=["out"]) == [
        "a.b: expected 1, run has 2",
        "d: expected 'x', missing in run",
        "e: unexpected in run (3)",
    ]


def test_every_arm_of_every_paper_cell_is_a_valid_training_config():
    from qhead.engine import load_config
    from qhead.experiments.paper import PAPER_BACKBONES, PAPER_DATASETS

    grid = GridSpec(list(PAPER_DATASETS), list(PAPER_BACKBONES), list(ARMS), [0],
                    {"epochs": 3, "image_size": 64})
    for cell in grid.cells():
        overrides = [format_override(k, v) for k, v in grid.cell_overrides(cell).items()]
        cfg = load_config(preset=cell.preset, overrides=overrides)
        assert cfg.data.name == cell.dataset and cfg.epochs == 3
        assert cfg.model.image_size == cfg.data.image_size == 64
        expected_head = {"max-linear": "max-linear", "flatten-linear": "flatten-linear",
                         "twin": "twin"}.get(cell.arm, "classical" if cell.base == "classical"
                                             else "quantum")
        assert cfg.model.head == expected_head
        assert cfg.model.head_options.get("freeze_circuit", False) == (cell.arm == "frozen")
