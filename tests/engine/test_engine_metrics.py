"""Classification metrics against hand-computed values."""

from __future__ import annotations

import math

import pytest
import torch

from qhead.engine.metrics import classification_metrics


def test_metrics_match_hand_computation() -> None:
    # true: 0 0 1 1 2 2 ; pred: 0 1 1 1 0 2
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 0, 2])
    logits = torch.nn.functional.one_hot(pred, 3).float() * 5.0
    m = classification_metrics(logits, labels, ["a", "b", "c"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class: a: P=1/2 R=1/2 F=1/2 ; b: P=2/3 R=1 F=0.8 ; c: P=1 R=1/2 F=2/3
    assert m["per_class"]["a"]["f1"] == pytest.approx(0.5)
    assert m["per_class"]["b"]["precision"] == pytest.approx(2 / 3)
    assert m["per_class"]["b"]["f1"] == pytest.approx(0.8)
    assert m["per_class"]["c"]["recall"] == pytest.approx(0.5)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    expected_loss = torch.nn.functional.cross_entropy(logits, labels).item()
    assert m["loss"] == pytest.approx(expected_loss)


def test_absent_class_scores_zero_not_nan() -> None:
    labels = torch.tensor([0, 0, 1])
    logits = torch.tensor([[1.0, 0, 0], [1.0, 0, 0], [0, 1.0, 0]])
    m = classification_metrics(logits, labels, ["a", "b", "c"])
    assert m["per_class"]["c"]["f1"] == 0.0
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert not math.isnan(m["macro_f1"])


def test_wrong_logit_width_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"\[N, 3\]"):
        classification_metrics(torch.zeros(2, 2), torch.zeros(2, dtype=torch.long), "abc")
