"""
``clip-gradient``: "the loss does not grow, so there is no gradient" (the clipping slides).

Draws PPO's per-step objective ``L^CLIP(r) = min(r A, clip(r, 1 - eps, 1 + eps) A)`` over the
ratio r for A > 0 and A < 0, with its gradient dL/dr measured by autograd through the package's
own LecturePPO objective (``LecturePPO._policy_surrogate``, the function the update maximizes),
and marks where that gradient is zero: r > 1 + eps for A > 0 and r < 1 - eps for A < 0.
"""

from typing import TYPE_CHECKING, Any

import numpy as np
import torch as th

from sb3_lecture_ppo.experiments.common import ExperimentConfig, ExperimentOutput, fixed_policy, markdown_table, pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure

NAME = "clip-gradient"
CLAIM = "Where clipping makes the objective flat in r, the gradient is zero: PPO stops pushing the ratio further."
CLIP_RANGE = 0.2
RATIOS = (0.4, 1.6)


def measured_gradient(surrogate: Any, ratios: th.Tensor, advantage: float) -> tuple[np.ndarray, np.ndarray]:
    """The per-step objective at each ratio and its derivative in the ratio, by autograd."""
    ratio = ratios.clone().requires_grad_(True)
    advantages = th.full_like(ratio, advantage)
    log_prob = th.zeros_like(ratio)  # the clipped objective does not use it
    objective = surrogate(ratio, log_prob, advantages, th.zeros_like(ratio))
    (gradient,) = th.autograd.grad(objective.sum(), ratio)
    return objective.detach().numpy(), gradient.numpy()


def expected_zero_gradient(ratios: np.ndarray, advantage: float, clip_range: float) -> np.ndarray:
    """Where the slides say the clipped objective is flat."""
    return ratios > 1 + clip_range if advantage > 0 else ratios < 1 - clip_range


def run(config: ExperimentConfig) -> dict[str, Any]:
    model = fixed_policy(config, timesteps=0, clip_range=CLIP_RANGE)  # only its objective is used
    model._current_progress_remaining = 1.0
    model._on_train_start()  # evaluates the clip range schedule, as before every update
    ratios = th.linspace(*RATIOS, config.size(241, 1201), dtype=th.float64)
    panels = {}
    for advantage in (1.0, -1.0):
        objective, gradient = measured_gradient(model._policy_surrogate, ratios, advantage)
        zero = gradient == 0
        expected = expected_zero_gradient(ratios.numpy(), advantage, CLIP_RANGE)
        panels[advantage] = dict(objective=objective, gradient=gradient, zero=zero, expected=expected)

    summaries = {
        ("A>0" if advantage > 0 else "A<0"): {
            "objective": panel["objective"],
            "gradient": panel["gradient"],
            "zero_gradient_fraction": float(panel["zero"].mean()),
            "zero_exactly_where_clipped": bool((panel["zero"] == panel["expected"]).all()),
        }
        for advantage, panel in panels.items()
    }
    holds = all(summary["zero_exactly_where_clipped"] for summary in summaries.values())
    numbers = {
        "claim_holds": holds,
        "clip_range": CLIP_RANGE,
        "ratios": ratios.numpy(),
        "panels": summaries,
    }
    figure = _plot(ratios.numpy(), panels)
    rows = [
        [name, f"{panel['zero_gradient_fraction']:.3f}", "yes" if panel["zero_exactly_where_clipped"] else "no"]
        for name, panel in summaries.items()
    ]
    markdown = (
        f"# {NAME}\n\n{CLAIM}\n\nRatios {RATIOS[0]} to {RATIOS[1]}, clip range {CLIP_RANGE}, gradient by autograd through "
        "`LecturePPO._policy_surrogate`.\n\n"
        + markdown_table(["advantage", "share of r with zero gradient", "zero exactly where clipped"], rows)
        + f"\n\nClaim holds: {'yes' if holds else 'no'}.\n"
    )
    ExperimentOutput(config.out_dir, NAME).write(figure, numbers, markdown)
    return numbers


def _plot(ratios: np.ndarray, panels: dict[float, dict[str, np.ndarray]]) -> "Figure":
    plt = pyplot()
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharex=True)
    for axis, (advantage, panel) in zip(axes, panels.items(), strict=True):
        axis.plot(ratios, ratios * advantage, color="grey", linestyle=":", label="r·A (unclipped)")
        axis.plot(ratios, panel["objective"], color="C0", linewidth=2, label="L^CLIP(r)")
        gradient_axis = axis.twinx()
        gradient_axis.plot(ratios, panel["gradient"], color="C3", linestyle="--", linewidth=1.2, label="dL/dr (autograd)")
        gradient_axis.set_ylim(-1.6, 1.6)
        gradient_axis.set_ylabel("dL/dr", color="C3")
        axis.fill_between(
            ratios, 0, 1, where=panel["zero"], transform=axis.get_xaxis_transform(), color="C3", alpha=0.12, linewidth=0
        )
        for edge in (1 - CLIP_RANGE, 1 + CLIP_RANGE):
            axis.axvline(edge, color="black", linewidth=0.6, alpha=0.5)
        axis.set_title(f"A {'> 0' if advantage > 0 else '< 0'}: shaded = zero gradient")
        axis.set_xlabel("ratio r = π(a|s) / π_old(a|s)")
        axis.set_ylabel("per-step objective")
        axis.grid(alpha=0.3)
        lines = axis.get_legend_handles_labels()
        gradient_lines = gradient_axis.get_legend_handles_labels()
        axis.legend(
            lines[0] + gradient_lines[0],
            lines[1] + gradient_lines[1],
            fontsize=8,
            loc="upper left" if advantage > 0 else "upper right",
        )
    figure.suptitle(f"PPO's clipped objective, ε = {CLIP_RANGE}", fontsize=10)
    figure.tight_layout()
    return figure
