"""
Would ``torch.compile`` pay for the population's update? One minibatch step of 33 members (batch 64, HalfCheetah's
17 observations and 6 actions, two 64 x 64 tanh networks, the clip objective with a KL term, plain means over each
member's steps) timed eager against compiled (inductor, CPU), one torch thread, CPU time::

    python benchmarks/results/population/compiled_loss.py
"""

import time
from collections.abc import Callable

import torch as th

MEMBERS, BATCH, OBS, HIDDEN, ACTIONS = 33, 64, 17, 64, 6
REPEATS = 200


def stacked_layer(n_out: int, n_in: int) -> tuple[th.Tensor, th.Tensor]:
    return (th.randn(MEMBERS, n_out, n_in) * 0.1).requires_grad_(), (th.randn(MEMBERS, n_out) * 0.1).requires_grad_()


def mlp(inputs: th.Tensor, layers: list[tuple[th.Tensor, th.Tensor]]) -> th.Tensor:
    hidden = inputs
    for index, (weight, bias) in enumerate(layers):
        hidden = th.baddbmm(bias.unsqueeze(1), hidden, weight.transpose(1, 2))
        if index < len(layers) - 1:
            hidden = th.tanh(hidden)
    return hidden


def loss_fn(batch: tuple[th.Tensor, ...], *params: th.Tensor) -> th.Tensor:
    observations, actions, old_log_prob, advantages, returns, clip_range, kl_coef, old_mean, old_log_std = batch
    actor = [(params[0], params[1]), (params[2], params[3]), (params[4], params[5])]
    critic = [(params[6], params[7]), (params[8], params[9]), (params[10], params[11])]
    log_std = params[12].unsqueeze(1)
    mean, values = mlp(observations, actor), mlp(observations, critic).squeeze(-1)
    log_prob = (-0.5 * ((actions - mean) / log_std.exp()) ** 2 - log_std - 0.9189385332).sum(-1)
    ratio = (log_prob - old_log_prob).exp()
    advantages = (advantages - advantages.mean(-1, keepdim=True)) / (advantages.std(-1, keepdim=True) + 1e-8)
    policy_loss = -th.min(ratio * advantages, ratio.clamp(1 - clip_range, 1 + clip_range) * advantages).mean(-1)
    variance_ratio = (old_log_std.exp() ** 2 + (old_mean - mean) ** 2) / (2 * log_std.exp() ** 2)
    kl = (log_std - old_log_std + variance_ratio - 0.5).sum(-1).mean(-1)
    return (policy_loss + 0.5 * ((returns - values) ** 2).mean(-1) + kl_coef.squeeze(1) * kl).sum()


def main() -> None:
    th.set_num_threads(1)
    th.manual_seed(0)
    layers = [stacked_layer(HIDDEN, OBS), stacked_layer(HIDDEN, HIDDEN), stacked_layer(ACTIONS, HIDDEN)]
    layers += [stacked_layer(HIDDEN, OBS), stacked_layer(HIDDEN, HIDDEN), stacked_layer(1, HIDDEN)]
    params = [tensor for layer in layers for tensor in layer] + [th.zeros(MEMBERS, ACTIONS, requires_grad=True)]
    steps = (MEMBERS, BATCH)
    batch = (
        th.randn(*steps, OBS),
        th.randn(*steps, ACTIONS),
        th.randn(*steps),
        th.randn(*steps),
        th.randn(*steps),
        th.full((MEMBERS, 1), 0.2),
        th.zeros(MEMBERS, 1),
        th.randn(*steps, ACTIONS),
        th.zeros(MEMBERS, 1, ACTIONS),
    )

    def step(function: Callable[..., th.Tensor]) -> list[th.Tensor]:
        for param in params:
            param.grad = None
        function(batch, *params).backward()
        return [param.grad.clone() for param in params if param.grad is not None]

    compiled = th.compile(loss_fn)
    start = time.process_time()
    compiled_grads = step(compiled)
    print(f"compile: {time.process_time() - start:.1f} CPU-s")
    difference = max((a - b).abs().max().item() for a, b in zip(step(loss_fn), compiled_grads, strict=True))
    print(f"largest gradient difference: {difference:.1e}")
    for _ in range(3):
        for name, function in (("eager", loss_fn), ("compiled", compiled)):
            start = time.process_time()
            for _ in range(REPEATS):
                step(function)
            print(f"{name}: {(time.process_time() - start) / REPEATS * 1e3:.2f} ms per minibatch step")


if __name__ == "__main__":
    main()
