"""The parts of the training loop, each on its own: the checkpoint saver, one epoch of
training, and setup → epochs → summary as ``train`` chains them."""

from __future__ import annotations

import json

import pytest
import torch
from engine_helpers import tiny_config
from torch import nn

from qhead.engine import record
from qhead.engine.runtime import StepContext
from qhead.engine.trainer import (
    CheckpointSaver,
    finish_run,
    run_epochs,
    setup_run,
    train_one_epoch,
)


@pytest.mark.parametrize(("metric", "values", "improved", "best"), [
    ("test_macro_f1", [0.5, 0.4, 0.5, 0.7], [True, False, False, True], (0.7, 4)),
    ("test_loss", [1.0, 1.2, 0.9, 0.9], [True, False, True, False], (0.9, 3)),
])
def test_saver_keeps_the_first_best_epoch(tmp_path, metric, values, improved, best) -> None:
    saver = CheckpointSaver(tmp_path, metric)
    got = [saver.update(epoch, {metric: v}) for epoch, v in enumerate(values, start=1)]
    assert got == improved and (saver.best_metric, saver.best_epoch) == best
    assert saver.update(5, None) is False  # an epoch without evaluation never is the best


def test_saver_writes_best_only_when_improved_and_last_always(tmp_path) -> None:
    saver = CheckpointSaver(tmp_path, "test_acc", best_metric=0.8, best_epoch=2)  # resumed
    for epoch, acc in ((3, 0.7), (4, 0.9)):
        saver.save({"epoch": epoch}, saver.update(epoch, {"test_acc": acc}))
        last = torch.load(tmp_path / record.LAST_CHECKPOINT, weights_only=True)
        assert last["epoch"] == epoch
        assert (tmp_path / record.BEST_CHECKPOINT).exists() == (epoch == 4)
    assert torch.load(tmp_path / record.BEST_CHECKPOINT, weights_only=True)["epoch"] == 4


class _Batches:
    """Three fixed batches of 4 points in the loader's (images, labels, indices) form."""

    def __init__(self) -> None:
        g = torch.Generator().manual_seed(0)
        self.batches = [(torch.randn(4, 6, generator=g), torch.randint(0, 3, (4,), generator=g),
                         torch.arange(4 * i, 4 * i + 4)) for i in range(3)]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self):
        return iter(self.batches)


def test_one_epoch_reports_the_mean_loss_and_accuracy_of_its_batches() -> None:
    torch.manual_seed(0)
    model = nn.Linear(6, 3)
    frozen = torch.optim.SGD(model.parameters(), lr=0.0)  # lr 0: the model stays as it is
    loader = _Batches()
    stats = train_one_epoch(model, loader, frozen, StepContext(torch.device("cpu")),
                            epoch=0, seed=1, steps=2)
    images = torch.cat([b[0] for b in loader.batches[:2]])
    labels = torch.cat([b[1] for b in loader.batches[:2]])
    with torch.no_grad():
        logits = model(images)
    assert stats["n"] == 8  # steps=2 of 3 batches
    assert stats["train_loss"] == pytest.approx(
        float(nn.functional.cross_entropy(logits, labels)), rel=1e-6)
    assert stats["train_acc"] == pytest.approx(float((logits.argmax(1) == labels).float().mean()))
    assert stats["lr"] == 0.0


def test_one_epoch_reseeds_model_side_randomness_per_epoch() -> None:
    def loss(epoch: int) -> float:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Dropout(0.5), nn.Linear(6, 3))
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        torch.manual_seed(123 + epoch)  # whatever came before must not matter
        return train_one_epoch(model, _Batches(), optimizer, StepContext(torch.device("cpu")),
                               epoch=epoch, seed=7)["train_loss"]

    assert loss(1) == loss(1) and loss(1) != loss(2)


def test_setup_epochs_and_summary_compose_into_a_run(tmp_path, capsys) -> None:
    cfg = tiny_config(tmp_path / "run", "epochs=2", "eval_every=2")
    run = setup_run(cfg)
    assert run.state.epoch == 0 and not run.resumed
    assert (run.out / record.CONFIG_FILE).is_file() and run.classes == [str(i) for i in range(10)]
    run_epochs(run)
    assert run.state.epoch == 2 and run.saver.best_epoch == 2  # epoch 1 was not evaluated
    final = finish_run(run)
    assert final == json.loads((run.out / record.FINAL_FILE).read_text())
    assert final["accuracy"] == run.state.metrics["accuracy"]

    more = setup_run(tiny_config(tmp_path / "run", "epochs=3", "eval_every=2"), resume=True)
    assert more.resumed and more.state.epoch == 2
    assert (more.saver.best_metric, more.saver.best_epoch) == (run.saver.best_metric, 2)
    assert torch.equal(next(more.model.parameters()), next(run.model.parameters()))
    assert "resumed from" in capsys.readouterr().out
