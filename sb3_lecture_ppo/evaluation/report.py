"""
Runs -> tables and figures: per contestant and env, the median and min-max over seeds of the
final evaluation, of the env steps until the evaluation first reaches a threshold and until it
stays there, and of the throughput; learning curves (median line, min-max band over seeds), every
seed's final evaluation and a throughput bar chart.
"""

import importlib.util
import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Run = dict[str, Any]


def steps_to_threshold(timesteps: Sequence[int], means: Sequence[float], threshold: float) -> tuple[int | None, int | None]:
    """
    Env steps of the first evaluation at or above ``threshold``, and of the first evaluation
    from which every later one stays at or above it (None where there is none).
    """
    reached = [mean >= threshold for mean in means]
    first = next((step for step, ok in zip(timesteps, reached, strict=True) if ok), None)
    stays = None
    for index in range(len(reached) - 1, -1, -1):
        if not reached[index]:
            break
        stays = timesteps[index]
    return first, stays


def falls_after_reach(means: Sequence[float], threshold: float, level: float) -> bool | None:
    """
    Whether an evaluation after the first one at or above ``threshold`` falls below ``level`` (a collapse a user
    watching the printout would see); None where the threshold is never reached.
    """
    first = next((index for index, mean in enumerate(means) if mean >= threshold), None)
    if first is None:
        return None
    return any(mean < level for mean in means[first + 1 :])


def _spread(values: Sequence[float | int | None]) -> dict[str, Any]:
    """Median, min and max of the values that exist, and how many are missing."""
    present = [float(value) for value in values if value is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "missing": len(values)}
    return {
        "median": float(np.median(present)),
        "min": min(present),
        "max": max(present),
        "missing": len(values) - len(present),
    }


def contestant_label(run: Run) -> str:
    return str(run["cell"]["contestant"])


def group_runs(runs: Sequence[Run], label: Callable[[Run], str] = contestant_label) -> dict[tuple[str, str], list[Run]]:
    """(label, env id) -> its runs, in seed order; the label is the contestant's name by default."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for run in sorted(runs, key=lambda run: run["cell"]["seed"]):
        groups[(label(run), run["cell"]["env_id"])].append(run)
    return dict(groups)


def summarize(
    runs: Sequence[Run], thresholds: dict[str, float], fall_levels: dict[str, float] | None = None
) -> list[dict[str, Any]]:
    """
    One row per contestant and env (see the module docstring). ``fall_levels``: per env, the return below which an
    evaluation after the first reach of the threshold counts as a fall (:func:`falls_after_reach`).
    """
    rows = []
    for (contestant, env_id), group in group_runs(runs).items():
        threshold = thresholds.get(env_id)
        fall_level = (fall_levels or {}).get(env_id)
        first: list[int | None] = []
        stays: list[int | None] = []
        falls: list[bool | None] = []
        for run in group:
            evaluations = run["evaluations"]
            if threshold is None:
                first.append(None)
                stays.append(None)
                continue
            reach, stay = steps_to_threshold(evaluations["timesteps"], evaluations["mean"], threshold)
            first.append(reach)
            stays.append(stay)
            if fall_level is not None:
                falls.append(falls_after_reach(evaluations["mean"], threshold, fall_level))
        rows.append(
            {
                "contestant": contestant,
                "env_id": env_id,
                "seeds": [run["cell"]["seed"] for run in group],
                "timesteps": group[0]["cell"]["timesteps"],
                "threshold": threshold,
                "final_evaluation": _spread([run["final_evaluation"]["mean"] for run in group]),
                "final_evaluations": [run["final_evaluation"]["mean"] for run in group],
                "steps_to_threshold": _spread(first),
                "steps_to_stay_above_threshold": _spread(stays),
                "fall_level": fall_level if falls else None,
                "seeds_falling_after_reach": sum(bool(fall) for fall in falls) if falls else None,
                "env_steps_per_cpu_second": _spread([run["env_steps_per_cpu_second"] for run in group]),
                "peak_rss_mb": _spread([run["peak_rss_mb"] for run in group]),
                "buffer_bytes_per_transition": _spread([run["buffer_bytes_per_transition"] for run in group]),
                "pad_fraction": _spread([run["pad_fraction"] for run in group]),
            }
        )
    return rows


def _format_spread(spread: dict[str, Any], digits: int = 0, scale: float = 1.0) -> str:
    if spread["median"] is None:
        return "not reached" if spread["missing"] else "-"

    def number(value: float) -> str:
        return f"{value / scale:,.{digits}f}"

    text = f"{number(spread['median'])} ({number(spread['min'])}-{number(spread['max'])})"
    if spread["missing"]:
        text += f", {spread['missing']} not reached"
    return text


def _format_falls(row: dict[str, Any]) -> str:
    if row.get("seeds_falling_after_reach") is None:
        return "-"
    return f"{row['seeds_falling_after_reach']} of {len(row['seeds'])} (below {row['fall_level']:g})"


def _ratio(row: dict[str, Any], reference: dict[str, Any] | None, key: str) -> str:
    if reference is None or row[key]["median"] is None or not reference[key]["median"]:
        return ""
    return f" ({row[key]['median'] / reference[key]['median']:.2f}x)"


def markdown_table(rows: Sequence[dict[str, Any]], reference: str = "ppo") -> str:
    """The summary as a markdown table; ratios are to ``reference`` on the same env where it ran."""
    by_key = {(row["contestant"], row["env_id"]): row for row in rows}
    lines = [
        f"Median (min-max) over seeds. Ratios in parentheses after a median are to `{reference}` on the same env.",
        "",
        "| env | algorithm | seeds | steps | final evaluation | steps to first reach threshold | steps until it stays "
        "| seeds falling back after the first reach | env steps per CPU-second | peak RSS (MB) | buffer bytes / transition "
        "| pad fraction |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        reference_row = by_key.get((reference, row["env_id"]))
        threshold = "" if row["threshold"] is None else f" (>= {row['threshold']:g})"
        lines.append(
            f"| {row['env_id']}{threshold} | `{row['contestant']}` | {len(row['seeds'])} | {row['timesteps']:,} "
            f"| {_format_spread(row['final_evaluation'], 1)} "
            f"| {_format_spread(row['steps_to_threshold'])}{_ratio(row, reference_row, 'steps_to_threshold')} "
            f"| {_format_spread(row['steps_to_stay_above_threshold'])} | {_format_falls(row)} "
            f"| {_format_spread(row['env_steps_per_cpu_second'])}{_ratio(row, reference_row, 'env_steps_per_cpu_second')} "
            f"| {_format_spread(row['peak_rss_mb'])} | {_format_spread(row['buffer_bytes_per_transition'])} "
            f"| {_format_spread(row['pad_fraction'], 3)} |"
        )
    return "\n".join(lines) + "\n"


def curve_band(group: Sequence[Run], curve: str, value_key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Median, min and max over seeds at the timesteps every run of the group has."""
    curves = [(run[curve]["timesteps"], run[curve][value_key]) for run in group if run[curve]["timesteps"]]
    length = min(len(timesteps) for timesteps, _ in curves)
    steps = np.asarray(curves[0][0][:length], dtype=float)
    values = np.asarray([values[:length] for _, values in curves], dtype=float)
    return steps, np.median(values, axis=0), values.min(axis=0), values.max(axis=0)


def plot_curves(
    runs: Sequence[Run],
    path: Path,
    thresholds: dict[str, float] | None = None,
    curve: str = "evaluations",
    value_key: str = "mean",
    ylabel: str = "evaluation return (deterministic)",
    label: Callable[[Run], str] = contestant_label,
    env_ids: Sequence[str] | None = None,
    columns: int | None = None,
) -> None:
    """
    Learning curves, one panel per env: the median over seeds as a line, min-max as a band.

    :param columns: panels per row (default: all in one row)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = group_runs(runs, label)
    env_ids = sorted({env_id for _, env_id in groups}) if env_ids is None else list(env_ids)
    labels = list(dict.fromkeys(name for name, _ in groups))  # one color per label in every panel
    colors = [plt.get_cmap("tab20" if len(labels) > 10 else "tab10")(index) for index in range(20 if len(labels) > 10 else 10)]
    columns = len(env_ids) if columns is None else min(columns, len(env_ids))
    rows = math.ceil(len(env_ids) / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(6 * columns, 4.2 * rows), squeeze=False)
    for axis in axes.flat[len(env_ids) :]:
        axis.set_visible(False)
    for axis, env_id in zip(axes.flat, env_ids, strict=False):
        for (name, group_env), group in groups.items():
            if group_env != env_id or not any(run[curve]["timesteps"] for run in group):
                continue
            steps, median, low, high = curve_band(group, curve, value_key)
            color = colors[labels.index(name) % len(colors)]
            (line,) = axis.plot(steps, median, label=f"{name} ({len(group)} seeds)", linewidth=1.6, color=color)
            axis.fill_between(steps, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
        if thresholds and env_id in thresholds:
            axis.axhline(
                thresholds[env_id], color="grey", linestyle="--", linewidth=1, label=f"threshold {thresholds[env_id]:g}"
            )
        axis.set_title(env_id)
        axis.set_xlabel("env steps")
        axis.set_ylabel(ylabel)
        axis.ticklabel_format(axis="x", style="sci", scilimits=(0, 3))
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")  # where it hides the fewest points: the curves differ per task
    figure.suptitle("median over seeds, band: min-max", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_throughput(rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Env steps per CPU-second of training (evaluation excluded): median bar, min-max error bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env_ids = sorted({row["env_id"] for row in rows})
    figure, axes = plt.subplots(1, len(env_ids), figsize=(5.5 * len(env_ids), 3.8), squeeze=False)
    for axis, env_id in zip(axes[0], env_ids, strict=True):
        env_rows = [row for row in rows if row["env_id"] == env_id]
        medians = [row["env_steps_per_cpu_second"]["median"] for row in env_rows]
        errors = [
            [median - row["env_steps_per_cpu_second"]["min"] for median, row in zip(medians, env_rows, strict=True)],
            [row["env_steps_per_cpu_second"]["max"] - median for median, row in zip(medians, env_rows, strict=True)],
        ]
        positions = np.arange(len(env_rows))
        axis.bar(positions, medians, yerr=errors, capsize=4, color=[f"C{index}" for index in positions])
        axis.set_xticks(positions, [row["contestant"] for row in env_rows], rotation=20, ha="right", fontsize=8)
        axis.set_title(env_id)
        axis.set_ylabel("env steps per CPU-second (training)")
        axis.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_final_returns(panels: Mapping[str, Mapping[str, Sequence[float]]], path: Path, xlabel: str) -> None:
    """
    Every seed's final evaluation as a dot, one row per label and one panel per key of ``panels``
    (e.g. env id), with the median as a black tick: where a median hides a failed seed, this shows it.

    :param panels: panel title -> label -> final evaluation of each seed
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = max(len(groups) for groups in panels.values())
    figure, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 0.55 * n_rows + 1.4), squeeze=False)
    jitter = np.random.default_rng(0)  # spreads equal values apart; fixed so the figure is reproducible
    for axis, (title, groups) in zip(axes[0], panels.items(), strict=True):
        for row, values in enumerate(groups.values()):
            offsets = jitter.uniform(-0.15, 0.15, size=len(values))
            axis.scatter(values, row + offsets, s=22, color=f"C{row % 10}", alpha=0.8, linewidths=0)
            axis.vlines(np.median(values), row - 0.3, row + 0.3, color="black", linewidth=1.8)
        axis.set_yticks(range(len(groups)), [f"{name} ({len(values)} seeds)" for name, values in groups.items()], fontsize=8)
        axis.invert_yaxis()
        axis.set_title(title)
        axis.set_xlabel(xlabel)
        axis.grid(axis="x", alpha=0.3)
    figure.suptitle("one dot per seed, black tick: median", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def final_return_panels(
    runs: Sequence[Run], label: Callable[[Run], str] = contestant_label
) -> dict[str, dict[str, list[float]]]:
    """env id -> label -> each seed's final evaluation mean, for :func:`plot_final_returns`."""
    panels: dict[str, dict[str, list[float]]] = {}
    for (name, env_id), group in group_runs(runs, label).items():
        panels.setdefault(env_id, {})[name] = [run["final_evaluation"]["mean"] for run in group]
    return dict(sorted(panels.items()))


# ------------------------------------------------------------------------------------- normalized scores
def normalized_scores(
    raw: dict[str, dict[str, list[float]]], random_scores: dict[str, float], reference: dict[str, float] | None = None
) -> dict[str, np.ndarray]:
    """
    The PPO paper's normalization: per task, a random policy scores 0 and the best algorithm 1.

    :param raw: algorithm -> env id -> one score per seed
    :param random_scores: env id -> the random policy's mean return
    :param reference: env id -> the score that counts as 1 (default: the best algorithm's mean over seeds)
    :return: algorithm -> (n_seeds, n_envs) normalized scores, envs in sorted order
    """
    env_ids = sorted({env_id for per_env in raw.values() for env_id in per_env})
    if reference is None:
        reference = {
            env_id: max(float(np.mean(per_env[env_id])) for per_env in raw.values() if env_id in per_env) for env_id in env_ids
        }
    normalized = {}
    for name, per_env in raw.items():
        columns = [
            (np.asarray(per_env[env_id], dtype=float) - random_scores[env_id]) / (reference[env_id] - random_scores[env_id])
            for env_id in env_ids
        ]
        normalized[name] = np.stack(columns, axis=1)
    return normalized


def interval_estimates(
    scores: dict[str, np.ndarray], best: str, reps: int = 2000, seed: int = 0
) -> tuple[dict[str, tuple[float, float, float]], dict[str, tuple[float, float, float]]]:
    """
    rliable's IQM of each algorithm's (n_seeds, n_envs) normalized scores, and the probability
    that ``best`` improves on each other algorithm, with stratified-bootstrap 95% intervals.

    :return: algorithm -> (IQM, low, high), and other algorithm -> (P(best > it), low, high)
    """
    if importlib.util.find_spec("rliable") is None:
        raise ImportError("the ablation's aggregate scores need rliable: pip install 'sb3_lecture_ppo[ablation]'")
    # rliable's stratified bootstrap draws its indices from NumPy's global generator, not from random_state:
    # seed that one for the call (and put it back) so the intervals are reproducible
    global_state = np.random.get_state()
    np.random.seed(seed)
    try:
        return _bootstrap_estimates(scores, best, reps, seed)
    finally:
        np.random.set_state(global_state)


def _bootstrap_estimates(
    scores: dict[str, np.ndarray], best: str, reps: int, seed: int
) -> tuple[dict[str, tuple[float, float, float]], dict[str, tuple[float, float, float]]]:
    from rliable import library as rly
    from rliable import metrics

    def iqm(array: np.ndarray) -> np.ndarray:
        return np.array([metrics.aggregate_iqm(array)])

    points, intervals = rly.get_interval_estimates(scores, iqm, reps=reps, random_state=np.random.RandomState(seed))
    aggregates = {
        name: (float(points[name][0]), float(intervals[name][0, 0]), float(intervals[name][1, 0])) for name in scores
    }
    pairs = {name: (scores[best], scores[name]) for name in scores if name != best}
    improvements: dict[str, tuple[float, float, float]] = {}
    if pairs:
        points, intervals = rly.get_interval_estimates(
            pairs, metrics.probability_of_improvement, reps=reps, random_state=np.random.RandomState(seed)
        )
        improvements = {
            name: (float(points[name]), float(np.ravel(intervals[name])[0]), float(np.ravel(intervals[name])[1]))
            for name in pairs
        }
    return aggregates, improvements


def plot_interval_estimates(aggregates: dict[str, tuple[float, float, float]], path: Path, xlabel: str) -> None:
    """Point estimate and 95% interval of each algorithm, one row each (rliable's style)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(aggregates)
    figure, axis = plt.subplots(figsize=(6.5, 0.42 * len(names) + 1.2))
    for row, name in enumerate(names):
        point, low, high = aggregates[name]
        axis.barh(row, high - low, left=low, height=0.6, color=f"C{row % 10}", alpha=0.75)
        axis.vlines(point, row - 0.3, row + 0.3, color="black", linewidth=1.5)
    axis.set_yticks(range(len(names)), names, fontsize=8)
    axis.invert_yaxis()
    axis.set_xlabel(xlabel)
    axis.grid(axis="x", alpha=0.3)
    axis.set_title("IQM with stratified-bootstrap 95% CI (rliable)", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
