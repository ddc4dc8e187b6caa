"""
Front door to the RL Zoo with the lecture's algorithms registered, for sites where the start-up
hook cannot run (``python -S``, .pth files disabled)::

    python -m sb3_lecture_ppo.zoo train --algo lecture_ppo --env CartPole-v1
    python -m sb3_lecture_ppo.zoo enjoy --algo lecture_ppo --env CartPole-v1 -f logs/
"""

import runpy
import sys

from sb3_lecture_ppo.zoo import register

COMMANDS = {
    "train": "rl_zoo3.train",
    "enjoy": "rl_zoo3.enjoy",
    "record_video": "rl_zoo3.record_video",
    "plot_train": "rl_zoo3.plots.plot_train",
}


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        sys.exit(f"usage: python -m sb3_lecture_ppo.zoo {{{','.join(COMMANDS)}}} [zoo arguments]")
    register()
    module = COMMANDS[argv[0]]
    sys.argv = [module, *argv[1:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
