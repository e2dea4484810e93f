"""``qhead reproduce`` / ``report`` / ``shots`` argument handling (no training here)."""

import pytest

from qhead.cli import main
from qhead.cli.reproduce import parse_data_roots, parse_seeds
from qhead.errors import ConfigError


def test_parse_seeds():
    assert parse_seeds("3") == [0, 1, 2]
    assert parse_seeds("0,3,7") == [0, 3, 7]
    assert parse_seeds("3-5") == [3, 4, 5]
    for bad in ("0", "x", "1,a"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_parse_data_roots():
    assert parse_data_roots(["busi=/d/busi", "aot=a=b"]) == {"busi": "/d/busi", "aot": "a=b"}
    with pytest.raises(ConfigError, match="DATASET=PATH"):
        parse_data_roots(["/d/busi"])


def test_dry_run_prints_the_plan_with_budget_and_shard(tmp_path, capsys):
    code = main(["reproduce", "--datasets", "busi", "--backbones", "resnet18",
                 "--heads", "classical,quantum,flatten-linear,twin", "--seeds", "3",
                 "--epochs", "5", "--image-size", "64", "--data-root", "busi=/nowhere",
                 "--out", str(tmp_path), "--shard", "1/4", "--dry-run", "lr=0.0005"])
    out = capsys.readouterr().out
    assert code == 0
    assert "grid: 12 cell(s), shard 1/4: 3" in out
    assert "epochs=5" in out and "image_size=64" in out and "lr=0.0005" in out
    assert "start    busi/resnet18/quantum/seed0" in out
    assert "3 cell(s): 3 start" in out
    assert not any(tmp_path.iterdir())  # a dry run writes nothing


def test_user_errors_are_one_line(tmp_path, capsys):
    assert main(["reproduce", "--heads", "classical,quantom", "--out", str(tmp_path),
                 "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "unknown arm 'quantom'" in err and "Traceback" not in err
    assert main(["reproduce", "--shard", "4/4", "--dry-run", "--out", str(tmp_path)]) == 1
    assert "--shard" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 1
    assert "no finished run" in capsys.readouterr().err
    assert main(["shots", str(tmp_path / "missing.pt")]) == 1
    assert "no such checkpoint" in capsys.readouterr().err
    assert main(["shots", str(tmp_path), "--shots", "10,0"]) == 1
    assert "--shots" in capsys.readouterr().err


def test_shots_merge_needs_out_and_writes_the_pooled_report(tmp_path, capsys):
    study = tmp_path / "study"
    study.mkdir()
    (study / "shots.csv").write_text(
        "checkpoint,shots,n_sampling_seeds,acc_mean,acc_std,f1_mean,f1_std,budget\n"
        "/gone/last.pt,exact,1,0.72,,0.61,,epochs=50\n"
    )
    assert main(["shots", "--merge", str(study)]) == 1
    assert "--merge needs --out" in capsys.readouterr().err
    assert main(["shots", "--merge", str(study), "--out", str(tmp_path / "pooled"),
                 "--no-plot"]) == 0
    assert "| /gone/last.pt | exact | 1 | 72.00 | 61.00 |" in (
        tmp_path / "pooled/shots.md").read_text()
    assert main(["shots", "--merge", str(tmp_path / "nothing"), "--out", str(tmp_path)]) == 1
