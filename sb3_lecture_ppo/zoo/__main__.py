"""
Front door to the RL Zoo with the lecture's algorithms registered, for sites where the start-up
hook cannot run (``python -S``, .pth files disabled), and to a GIF of the agent::

    python -m sb3_lecture_ppo.zoo train --algo lecture_ppo --env CartPole-v1
    python -m sb3_lecture_ppo.zoo train --algo lecture_ppo --env CartPole-v1 --gif cartpole.gif
    python -m sb3_lecture_ppo.zoo enjoy --algo lecture_ppo --env CartPole-v1 -f logs/ --gif

``--gif [PATH]`` (``train`` and ``enjoy``) records the trained model of the run as a GIF with
:mod:`sb3_lecture_ppo.record_gif` once the zoo command is done (default path:
``<log folder>/<algo>/<env>.gif``).
"""

import argparse
import runpy
import sys

from sb3_lecture_ppo.zoo import register

COMMANDS = {
    "train": "rl_zoo3.train",
    "enjoy": "rl_zoo3.enjoy",
    "record_video": "rl_zoo3.record_video",
    "plot_train": "rl_zoo3.plots.plot_train",
}
GIF_COMMANDS = ("train", "enjoy")


def gif_arguments(command: str, zoo_argv: list[str]) -> tuple[list[str] | None, list[str]]:
    """
    Split ``--gif [PATH]`` off the zoo's arguments.

    :return: the arguments of :mod:`sb3_lecture_ppo.record_gif` for the run (None without ``--gif``)
        and the zoo's arguments without ``--gif``
    """
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--gif", nargs="?", const="", default=None)
    parser.add_argument("--algo", default="ppo")
    parser.add_argument("--env", default="CartPole-v1")
    parser.add_argument("-f", "--folder", "--log-folder", dest="folder", default="logs")
    parser.add_argument("--exp-id", type=int, default=0)
    parser.add_argument("--load-best", action="store_true")
    known, _ = parser.parse_known_args(zoo_argv)
    if known.gif is None:
        return None, zoo_argv
    if command not in GIF_COMMANDS:
        sys.exit(f"python -m sb3_lecture_ppo.zoo: error: --gif works with {' and '.join(GIF_COMMANDS)}, not {command}")
    index = next(i for i, argument in enumerate(zoo_argv) if argument == "--gif" or argument.startswith("--gif="))
    takes_next = zoo_argv[index] == "--gif" and bool(known.gif)  # "--gif PATH" rather than "--gif=PATH" or a bare "--gif"
    rest = zoo_argv[:index] + zoo_argv[index + 1 + takes_next :]
    gif_argv = ["--algo", known.algo, "--env", known.env, "-f", known.folder]
    if command == "enjoy":  # train's --exp-id names the run to continue; the GIF is of the newest run
        gif_argv += ["--exp-id", str(known.exp_id)] + (["--load-best"] if known.load_best else [])
    return gif_argv + (["-o", known.gif] if known.gif else []), rest


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        sys.exit(f"usage: python -m sb3_lecture_ppo.zoo {{{','.join(COMMANDS)}}} [zoo arguments] [--gif [PATH]]")
    gif_argv, zoo_argv = gif_arguments(argv[0], argv[1:])
    register()
    module = COMMANDS[argv[0]]
    sys.argv = [module, *zoo_argv]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    if gif_argv is not None:
        from sb3_lecture_ppo import record_gif

        record_gif.main(gif_argv)


if __name__ == "__main__":
    main()
