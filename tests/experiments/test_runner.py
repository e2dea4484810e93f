"""Grid runner: K processes, skip finished, resume interrupted, conflicts, failures.

The training process is a stand-in script with ``qhead train``'s interface (so that
this file tests the orchestration alone, in milliseconds); the end-to-end test with the
real engine is in ``test_end_to_end.py``.
"""

import json
import stat
import sys
import textwrap

import pytest

from qhead.errors import ConfigError
from qhead.experiments.grid import GridSpec
from qhead.experiments.runner import plan, run_plan, threads_per_job, train_command

FAKE_TRAIN = textwrap.dedent(
    """\
    #!{python}
    import json, os, sys
    import yaml
    args = sys.argv[1:]
    assert args[:3] == ["-m", "qhead", "train"], args
    overrides = dict(a.split("=", 1) for a in args if "=" in a and not a.startswith("-"))
    out = overrides.pop("out")
    assert overrides.pop("progress") == "false"
    threads = overrides.pop("threads")
    with open(os.path.join(out, "calls.jsonl"), "a") as f:
        f.write(json.dumps({{"args": args, "omp": os.environ.get("OMP_NUM_THREADS"),
                            "threads": threads}}) + "\\n")
    config = {{}}
    for key, value in overrides.items():
        node = config
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {{}})
        node[last] = yaml.safe_load(value)
    with open(os.path.join(out, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f)
    if overrides.get("crash") == "true" and "--resume" not in args:
        open(os.path.join(out, "last.pt"), "wb").close()
        sys.exit(3)
    with open(os.path.join(out, "final.json"), "w") as f:
        json.dump({{"accuracy": 0.5, "macro_f1": 0.5}}, f)
    """
)


@pytest.fixture
def fake_python(tmp_path):
    path = tmp_path / "fake_python"
    path.write_text(FAKE_TRAIN.format(python=sys.executable))
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def _grid(**overrides):
    return GridSpec(["digits"], ["small_cnn"], ["classical", "quantum"], [0, 1],
                    {"epochs": 1, **overrides})


def _calls(run_dir):
    path = run_dir / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_threads_per_job():
    assert threads_per_job(1, cores=16) == 16
    assert threads_per_job(4, cores=16) == 4
    assert threads_per_job(3, cores=2) == 1
    with pytest.raises(ConfigError, match="--jobs"):
        threads_per_job(0)


def test_command_carries_preset_overrides_and_resume(tmp_path):
    item = plan(_grid(), tmp_path)[1]
    command = train_command(item, threads=2, python="py")
    assert command[:4] == ["py", "-m", "qhead", "train"]
    assert "--preset" not in command  # no paper preset for small_cnn/digits
    assert command[-3:] == [f"out={tmp_path / 'digits/small_cnn/quantum/seed0'}", "threads=2",
                            "progress=false"]
    for arg in ("epochs=1", "seed=0", "model.head=quantum", "data.name=digits"):
        assert arg in command
    assert "--resume" not in command
    paper = GridSpec(["busi"], ["resnet18"], ["twin"], [3], {"epochs": 1})
    command = train_command(plan(paper, tmp_path)[0], threads=1, python="py")
    assert command[4:6] == ["--preset", "resnet18_q/busi"]
    assert "model.head=twin" in command and "model.backbone=resnet18" not in command


def test_runs_skips_and_resumes(tmp_path, fake_python):
    out = tmp_path / "runs"
    lines = []
    outcome = run_plan(plan(_grid(), out), jobs=2, cores=4, python=fake_python,
                       echo=lines.append, poll_seconds=0.01)
    assert len(outcome.finished) == 4 and not outcome.failed
    run_dirs = [out / f"digits/small_cnn/{a}/seed{s}" for s in (0, 1)
                for a in ("classical", "quantum")]
    for run_dir in run_dirs:
        calls = _calls(run_dir)
        assert len(calls) == 1 and calls[0]["omp"] == calls[0]["threads"] == "2"  # 4 cores / 2
        assert (run_dir / "cell.json").exists() and (run_dir / "train.log").exists()

    # the same command again: everything is finished, nothing runs
    again = plan(_grid(), out)
    assert {p.action for p in again} == {"skip"}
    outcome = run_plan(again, python=fake_python, echo=lines.append, poll_seconds=0.01)
    assert len(outcome.skipped) == 4 and not outcome.finished
    assert all(len(_calls(d)) == 1 for d in run_dirs)

    # an interrupted run (checkpoint, no final.json) is resumed, the others skipped
    (run_dirs[3] / "final.json").unlink()
    (run_dirs[3] / "last.pt").write_bytes(b"")
    again = plan(_grid(), out)
    assert [p.action for p in again] == ["skip", "skip", "skip", "resume"]
    outcome = run_plan(again, python=fake_python, echo=lines.append, poll_seconds=0.01)
    assert len(outcome.finished) == 1
    assert "--resume" in _calls(run_dirs[3])[-1]["args"]


def test_conflicting_budget_is_refused_unless_overwrite(tmp_path, fake_python):
    out = tmp_path / "runs"
    run_plan(plan(_grid(), out), python=fake_python, echo=lambda _: None, poll_seconds=0.01)
    changed = plan(_grid(epochs=2), out)
    assert {p.action for p in changed} == {"conflict"}
    assert "epochs: expected 2, run has 1" in changed[0].status.reasons
    outcome = run_plan(changed, python=fake_python, echo=lambda _: None, poll_seconds=0.01)
    assert len(outcome.conflicts) == 4 and not outcome.finished
    outcome = run_plan(changed, overwrite=True, python=fake_python, echo=lambda _: None,
                       poll_seconds=0.01)
    assert len(outcome.finished) == 4
    assert {p.action for p in plan(_grid(epochs=2), out)} == {"skip"}


def test_failed_run_is_reported_and_resumed_next_time(tmp_path, fake_python):
    out = tmp_path / "runs"
    grid = _grid(crash=True)
    outcome = run_plan(plan(grid, out), python=fake_python, echo=lambda _: None,
                       poll_seconds=0.01)
    assert len(outcome.failed) == 4 and all(r.returncode == 3 for r in outcome.failed)
    assert {p.action for p in plan(grid, out)} == {"resume"}
    outcome = run_plan(plan(grid, out), python=fake_python, echo=lambda _: None,
                       poll_seconds=0.01)
    assert len(outcome.finished) == 4
