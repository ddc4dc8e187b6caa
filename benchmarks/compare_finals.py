"""
Pool every seed's final evaluation of two or more algorithms from several sources (benchmark run
folders, and tables written by ``diagnose_precursors.py --json``, e.g. from other machines) and compare
them: median, mean, rliable's IQM with a stratified-bootstrap 95% interval, and the probability that the
first one beats each other one on a random pair of seeds (P(X > Y)). Runs of one seed on two machines
count as two samples: their floating point differs, and so does their whole course.

    python benchmarks/compare_finals.py --runs benchmarks/results/precursors-10-seeds \\
        --rows benchmarks/results/precursors/lambda_screen/*.json \\
        --label lecture_gae_ac=gae_lambda_0.25 --label lecture_ac=ac_a2c \\
        --order lecture_gae_ac lecture_ac --plot finals.png

``FOLDER:NAME,...`` takes only the named contestants' runs from a folder, e.g. SB3's A2C from the folder
whose precursor runs an entry change has outdated:

    python benchmarks/compare_finals.py --runs benchmarks/results/precursors-10-seeds \\
        benchmarks/results/precursors:a2c --order lecture_ac lecture_gae_ac lecture_mc_pg a2c
"""

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from sb3_lecture_ppo.evaluation.report import interval_estimates, plot_final_returns
from sb3_lecture_ppo.evaluation.runner import RUNS_FOLDER, load_run


def collect(
    run_folders: list[Path],
    row_files: list[Path],
    labels: dict[str, str],
    only: dict[Path, set[str]] | None = None,
) -> dict[str, list[tuple[str, float]]]:
    """
    name -> (source, final evaluation) of every finished run; ``labels`` maps variant names to algorithm names,
    ``only`` a run folder to the contestants taken from it (all where it is not named).
    """
    finals: dict[str, list[tuple[str, float]]] = {}
    for folder in run_folders:
        for path in sorted((folder / RUNS_FOLDER).glob("*.json")):
            if (run := load_run(path)) is not None:
                cell = run["cell"]
                if only and folder in only and cell["contestant"] not in only[folder]:
                    continue
                source = f"{folder.name} seed {cell['seed']}"
                finals.setdefault(cell["contestant"], []).append((source, run["final_evaluation"]["mean"]))
    for path in row_files:
        for row in json.loads(path.read_text()):
            if row["final"] is not None:
                name = labels.get(row["variant"], row["variant"])
                finals.setdefault(name, []).append((f"{path.name} seed {row['seed']}", row["final"]))
    return finals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--runs", nargs="*", default=[], metavar="FOLDER[:NAME,...]", help="benchmark output folders (only NAMEs' runs)"
    )
    parser.add_argument("--rows", type=Path, nargs="*", default=[], help="tables written by diagnose_precursors --json")
    parser.add_argument("--label", action="append", default=[], metavar="NAME=VARIANT", help="pool VARIANT's rows as NAME")
    parser.add_argument("--order", nargs="+", required=True, help="the algorithms to compare, the first against the others")
    parser.add_argument("--plot", type=Path, default=None, help="PNG of every sample's final evaluation")
    args = parser.parse_args()
    labels = {}
    for pair in args.label:
        name, separator, variant = pair.partition("=")
        if not separator:
            parser.error(f"--label {pair!r}: expected NAME=VARIANT")
        labels[variant] = name
    folders, only = [], {}
    for entry in args.runs:
        folder, _, names = entry.partition(":")
        folders.append(Path(folder))
        if names:
            only[Path(folder)] = set(names.split(","))
    finals = collect(folders, args.rows, labels, only)
    missing = [name for name in args.order if name not in finals]
    if missing:
        parser.error(f"--order: no finished run of {', '.join(missing)} (found: {', '.join(sorted(finals))})")
    scores = {name: np.array([[value] for _, value in finals[name]]) for name in args.order}
    aggregates, improvements = interval_estimates(scores, best=args.order[0])
    print("| algorithm | samples | median | mean | IQM [95% CI] | P(first > it) [95% CI] |")
    print("|---|---|---|---|---|---|")
    for name in args.order:
        values = [value for _, value in finals[name]]
        iqm, low, high = aggregates[name]
        improvement = "-"
        if name in improvements:
            point, low_p, high_p = improvements[name]
            improvement = f"{point:.2f} [{low_p:.2f}, {high_p:.2f}]"
        row = f"{statistics.median(values):,.0f} | {statistics.mean(values):,.0f} | {iqm:,.0f} [{low:,.0f}, {high:,.0f}]"
        print(f"| `{name}` | {len(values)} | {row} | {improvement} |")
    if args.plot is not None:
        panels = {"final evaluations": {name: [value for _, value in finals[name]] for name in args.order}}
        plot_final_returns(panels, args.plot, "final evaluation (deterministic)")


if __name__ == "__main__":
    main()
