"""Shot-noise study (journal version): test accuracy / macro-F1 of trained quantum models
when each ⟨Z_k⟩ is estimated from a finite number of measurement shots.

For every checkpoint and every shot count, the test set is evaluated once per sampling
seed (the seed of the shot sampler, not of training); ``exact`` (analytic expectation
values) is deterministic and evaluated once. Rows report mean ± sample std over the
sampling seeds; with several checkpoints (training seeds) a second table averages the
per-checkpoint means over checkpoints.
"""

from __future__ import annotations

import csv
import inspect
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qhead.engine.record import ACCURACY, CHECKPOINTS, CONFIG_FILE, MACRO_F1, read_config
from qhead.errors import ConfigError, DataError
from qhead.experiments.results import budget_of
from qhead.experiments.stats import Summary, summarize

EXACT = "exact"
CHECKPOINT_PREFERENCE = CHECKPOINTS

EvaluateFn = Callable[[Path, "int | None", int], dict[str, Any]]
"""``evaluate(checkpoint, shots_or_None, sampling_seed) -> metrics dict``."""


def parse_shots(text: str) -> list[int | None]:
    """``"10,100,exact"`` → ``[10, 100, None]`` (``None`` = exact expectation values).

    Raises:
        ConfigError: for a non-positive or non-integer count, naming the allowed values.
    """
    out: list[int | None] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if part.lower() in (EXACT, "none", "inf"):
            out.append(None)
            continue
        try:
            value = int(part)
        except ValueError:
            value = 0
        if value < 1:
            raise ConfigError(
                f"--shots: {part!r} is not a positive integer or 'exact' (e.g. 10,100,exact)"
            )
        out.append(value)
    if not out:
        raise ConfigError("--shots: give at least one shot count, e.g. 10,100,1000,exact")
    return list(dict.fromkeys(out))


def shots_label(shots: int | None) -> str:
    return EXACT if shots is None else str(shots)


def find_checkpoints(paths: Iterable[Path | str], arm: str = "quantum") -> list[Path]:
    """Checkpoint files from files and run dirs.

    A file is taken as is. A directory is searched for run dirs of the given arm
    (``.../<arm>/seed<k>/``, as written by ``qhead reproduce``) or, failing that, for any
    run dir; in each run dir ``last.pt`` (the model the report's numbers come from) is
    taken, ``best.pt`` only if there is no ``last.pt`` (``best.pt`` is selected on the
    test split, so its test metrics are optimistic).

    Raises:
        DataError: if a path does not exist or nothing is found.
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            found.append(path)
            continue
        if not path.is_dir():
            raise DataError(f"{path}: no such checkpoint file or runs directory")
        run_dirs = sorted({p.parent for p in path.rglob("*.pt")})
        of_arm = [d for d in run_dirs if d.parent.name == arm or d.name == arm]
        for run_dir in of_arm or run_dirs:
            for name in CHECKPOINT_PREFERENCE:
                if (run_dir / name).is_file():
                    found.append(run_dir / name)
                    break
    if not found:
        raise DataError("no checkpoint (best.pt / last.pt) found in " + ", ".join(map(str, paths)))
    return list(dict.fromkeys(found))


def engine_evaluate(
    checkpoint: Path, shots: int | None, seed: int, backend: str | None = None
) -> dict[str, Any]:
    """Evaluates with :func:`qhead.engine.evaluate` (test split, ``shots``, sampler seed).

    ``backend`` (``"pennylane[:device]"``) runs the head there instead of qhead's simulator.
    """
    from qhead.engine import evaluate

    params = inspect.signature(evaluate).parameters
    kwargs: dict[str, Any] = {"shots": shots}
    if backend is not None:
        kwargs["backend"] = backend
    for name in ("seed", "shots_seed", "sampling_seed"):
        if name in params:
            kwargs[name] = seed
            break
    if "write" in params:
        kwargs["write"] = False
    return evaluate(checkpoint, **kwargs)


class CachedEvaluate:
    """The default :data:`EvaluateFn`: :class:`qhead.engine.evaluation.PreparedEvaluation`
    with cached features, so that the backbone runs once per checkpoint and every shot
    count and sampling seed re-runs the head only (same numbers as :func:`engine_evaluate`;
    one checkpoint's features are held at a time).

    ``backend`` (``"pennylane[:device]"``) runs the head there instead of qhead's simulator.
    """

    def __init__(self, backend: str | None = None):
        self.backend = backend
        self._prepared: Any = None

    def __call__(self, checkpoint: Path, shots: int | None, seed: int) -> dict[str, Any]:
        from qhead.engine.evaluation import PreparedEvaluation

        if self._prepared is None or self._prepared.checkpoint != Path(checkpoint):
            self._prepared = None  # free the previous checkpoint's features first
            self._prepared = PreparedEvaluation(checkpoint, backend=self.backend,
                                                cache_features=True)
        return self._prepared.run(shots, seed)


@dataclass
class ShotRow:
    """Metrics of one checkpoint at one shot count over the sampling seeds."""

    checkpoint: Path
    shots: int | None
    accuracy: Summary
    macro_f1: Summary
    seeds: list[int]
    budget: str | None = None  # training budget; None: read from the checkpoint's run dir


def shot_study(
    checkpoints: Sequence[Path],
    shots: Sequence[int | None],
    sampling_seeds: int,
    evaluate: EvaluateFn | None = None,
    echo: Callable[[str], None] = lambda _line: None,
) -> list[ShotRow]:
    """Evaluates each checkpoint at each shot count with ``sampling_seeds`` sampler seeds
    (``evaluate`` default: :class:`CachedEvaluate`, the backbone once per checkpoint).

    Raises:
        ConfigError: if ``sampling_seeds < 1``.
        DataError: if the evaluation lacks accuracy or macro-F1.
    """
    if sampling_seeds < 1:
        raise ConfigError(f"--sampling-seeds: expected an integer >= 1, got {sampling_seeds!r}")
    evaluate = evaluate or CachedEvaluate()
    rows = []
    for checkpoint in checkpoints:
        for count in shots:
            seeds = [0] if count is None else list(range(sampling_seeds))
            accs, f1s = [], []
            for seed in seeds:
                metrics = evaluate(Path(checkpoint), count, seed)
                acc, f1 = metrics.get(ACCURACY), metrics.get(MACRO_F1)
                if acc is None or f1 is None:
                    raise DataError(
                        f"{checkpoint}: evaluation gave no accuracy / macro-F1 "
                        f"(keys {sorted(metrics)})"
                    )
                accs.append(float(acc))
                f1s.append(float(f1))
            row = ShotRow(Path(checkpoint), count, summarize(accs), summarize(f1s), seeds)
            echo(
                f"{checkpoint}  shots={shots_label(count):>6s}  "
                f"acc={row.accuracy.format()}  macro-F1={row.macro_f1.format()}"
            )
            rows.append(row)
    return rows


def pooled(
    rows: Sequence[Any], key: Callable[[Any], Any] = lambda row: row.shots
) -> list[tuple[Any, Summary, Summary]]:
    """Per value of ``key`` (default: the shot count): mean ± std over checkpoints of each
    checkpoint's mean accuracy and macro-F1, in first-seen order. Rows are any records
    with ``accuracy`` and ``macro_f1`` summaries (shot rows, noise rows)."""
    groups: dict[Any, list[Any]] = defaultdict(list)
    for row in rows:
        groups[key(row)].append(row)
    return [
        (
            value,
            summarize([r.accuracy.mean for r in group]),
            summarize([r.macro_f1.mean for r in group]),
        )
        for value, group in groups.items()
    ]


CSV_COLUMNS = ("checkpoint", "shots", "n_sampling_seeds", "acc_mean", "acc_std", "f1_mean",
               "f1_std", "budget")


def read_shots_csv(path: Path | str) -> list[ShotRow]:
    """The rows of a ``shots.csv`` written by :func:`write_shots_report` (a file or the
    folder holding it), e.g. committed studies of checkpoints that no longer exist, to be
    merged and pooled with :func:`write_shots_report`. Files written before the ``budget``
    column take it from the ``Training budget:`` line of the ``shots.md`` beside them.

    Raises:
        DataError: a missing or malformed file.
    """
    path = Path(path)
    if path.is_dir():
        path = path / "shots.csv"
    if not path.is_file():
        raise DataError(f"{path}: no such shot-study table (shots.csv)")
    fallback = None
    md = path.with_name("shots.md")
    if md.is_file():
        found = [line.split(":", 1)[1].strip() for line in md.read_text().splitlines()
                 if line.startswith("Training budget:")]
        fallback = found[0] if len(found) == 1 else None

    def number(text: str) -> float:
        return float(text) if text else math.nan

    rows = []
    with path.open(newline="") as handle:
        for i, record in enumerate(csv.DictReader(handle), start=2):
            try:
                n = int(record["n_sampling_seeds"])
                shots = None if record["shots"] == EXACT else int(record["shots"])
                acc = Summary(n, number(record["acc_mean"]), number(record["acc_std"]))
                f1 = Summary(n, number(record["f1_mean"]), number(record["f1_std"]))
                checkpoint = Path(record["checkpoint"])
            except (KeyError, TypeError, ValueError) as error:
                raise DataError(f"{path}, line {i}: not a shot-study row ({error})") from None
            seeds = [0] if shots is None else list(range(n))
            rows.append(ShotRow(checkpoint, shots, acc, f1, seeds,
                                record.get("budget") or fallback))
    if not rows:
        raise DataError(f"{path}: no rows")
    return rows


def merge_shot_studies(paths: Iterable[Path | str]) -> list[ShotRow]:
    """The rows of several ``shots.csv`` (files or folders), in order, for one pooled
    report. Raises DataError for a checkpoint and shot count found twice (it would be
    counted twice in the pooled rows)."""
    rows: list[ShotRow] = []
    seen: dict[tuple[Path, int | None], Path] = {}
    for path in paths:
        for row in read_shots_csv(path):
            key = (row.checkpoint, row.shots)
            if key in seen:
                raise DataError(
                    f"{row.checkpoint} at shots={shots_label(row.shots)} is in both "
                    f"{seen[key]} and {path}; merge each study once"
                )
            seen[key] = Path(path)
            rows.append(row)
    return rows


def _budget(checkpoint: Path) -> str:
    """The training budget of the run ``checkpoint`` belongs to, as one line."""
    config = read_config(Path(checkpoint).parent)
    budget = budget_of(config)
    if not budget:
        return f"unknown ({Path(checkpoint).parent}/{CONFIG_FILE} not found)"
    return ", ".join(f"{k}={v}" for k, v in budget.items())


def _num(value: float) -> str:
    return "" if not math.isfinite(value) else f"{value:.6f}"


def write_shots_report(
    rows: Sequence[ShotRow], out: Path | str, title: str = "", plot: bool = True
) -> list[Path]:
    """Writes ``shots.md``, ``shots.csv`` and ``shots.png`` into ``out``; returns the paths."""
    if not rows:
        raise DataError("no shot-study rows to write")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    budgets: dict[Path, str] = {}
    for r in rows:  # one config read per checkpoint, not per row
        if r.checkpoint not in budgets:
            budgets[r.checkpoint] = r.budget or _budget(r.checkpoint)
    csv_path = out / "shots.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(list(CSV_COLUMNS))
        for row in rows:
            writer.writerow([
                str(row.checkpoint), shots_label(row.shots), row.accuracy.n,
                _num(row.accuracy.mean), _num(row.accuracy.std),
                _num(row.macro_f1.mean), _num(row.macro_f1.std), budgets[row.checkpoint],
            ])  # fmt: skip
    lines = ["# Shot-noise study", ""]
    if title:
        lines += [title, ""]
    lines += [
        "Test accuracy and macro-F1 (%) when every ⟨Z_k⟩ of the quantum head is estimated "
        "from a finite number of shots; mean ± sample std over the sampling seeds (`n`). "
        "`exact` = analytic expectation values (deterministic, n=1).",
        "",
        "| checkpoint | shots | n | Acc | macro-F1 |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row.checkpoint} | {shots_label(row.shots)} | {row.accuracy.n} | "
            f"{row.accuracy.format()} | {row.macro_f1.format()} |"
        )
    checkpoints = set(budgets)
    lines += ["", *(f"Training budget: {b}" for b in sorted(set(budgets.values())))]
    if len(checkpoints) > 1:
        lines += [
            "",
            f"Pooled over {len(checkpoints)} checkpoints (training seeds): mean ± std of the "
            "per-checkpoint means.",
            "",
            "| shots | n | Acc | macro-F1 |",
            "|---:|---:|---:|---:|",
        ]
        for count, acc, f1 in pooled(rows):
            lines.append(f"| {shots_label(count)} | {acc.n} | {acc.format()} | {f1.format()} |")
    md_path = out / "shots.md"
    md_path.write_text("\n".join(lines) + "\n")
    written = [md_path, csv_path]
    if plot:
        png = out / "shots.png"
        _plot(rows, png)
        written.append(png)
    return written


def _plot(rows: Sequence[ShotRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = sorted({r.shots for r in rows if r.shots is not None})
    exact_x = (max(finite) * 10) if finite else 1
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    by_ckpt: dict[Path, list[ShotRow]] = defaultdict(list)
    for row in rows:
        by_ckpt[row.checkpoint].append(row)
    for i, (ckpt, group) in enumerate(by_ckpt.items()):
        for ax, metric in zip(axes, ("accuracy", "macro_f1"), strict=True):
            pts = sorted(
                (exact_x if r.shots is None else r.shots, getattr(r, metric)) for r in group
            )
            xs = [p[0] for p in pts]
            ys = [p[1].mean * 100 for p in pts]
            es = [0.0 if p[1].n < 2 else p[1].std * 100 for p in pts]
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, color=f"C{i % 10}",
                        label=ckpt.parent.name + "/" + ckpt.name if len(by_ckpt) > 1 else None)
    for ax, label in zip(axes, ("accuracy (%)", "macro-F1 (%)"), strict=True):
        ax.set_xscale("log")
        ticks = [*finite, exact_x]
        ax.set_xticks(ticks, [*map(str, finite), EXACT])
        ax.set_xlabel("shots")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if len(by_ckpt) > 1:
        axes[0].legend(fontsize=6)
    fig.suptitle("test metrics vs shots (mean ± std over sampling seeds)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
