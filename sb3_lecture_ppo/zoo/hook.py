"""
Start-up hook that registers the lecture's algorithms into the RL Zoo when, and only when,
the zoo is imported.

The installed ``sb3_lecture_ppo_zoo.pth`` imports this module at interpreter start-up. It costs
no torch or rl_zoo3 import: it only puts an import hook on ``sys.meta_path`` that waits for the
zoo's modules (``rl_zoo3.utils``, ``rl_zoo3.hyperparams_opt``, ``rl_zoo3.exp_manager``) and runs
the matching registration step of :mod:`sb3_lecture_ppo.zoo.registration` right after each of
them is executed. Installing twice is harmless; errors only print a one-line warning.
Set ``SB3_LECTURE_PPO_NO_ZOO_HOOK=1`` to turn the registration off: the zoo is then left alone, and
a command line that asks for one of our algorithms (``--algo lecture_ppo``) only gets a line on
how to register before the zoo's own "invalid choice" error.
"""

from __future__ import annotations

import os
import sys

# Nothing else is imported at start-up: typing or importlib.abc alone would cost milliseconds
# at every interpreter start. The finder and loader below follow importlib's protocols by duck typing.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import importlib.abc
    import importlib.machinery
    from collections.abc import Sequence
    from types import ModuleType

# zoo module -> registration step run right after it is executed
WATCHED_MODULES = {
    "rl_zoo3.utils": "register_algorithms",
    "rl_zoo3.hyperparams_opt": "register_samplers",
    "rl_zoo3.exp_manager": "register_hyperparams_files",
}


# our zoo names (sb3_lecture_ppo.zoo.registration.zoo_algorithms, without importing it)
ALGORITHM_NAMES = ("lecture_ppo", "lecture_ac", "lecture_gae_ac", "lecture_mc_pg")
DISABLED_STEP = "explain_disabled_registration"
HOW_TO_REGISTER = "call sb3_lecture_ppo.zoo.register() or use `python -m sb3_lecture_ppo.zoo train ...`"


def warn(message: str) -> None:
    sys.stderr.write(f"sb3_lecture_ppo: {message}\n")


class _RegisteringLoader:
    """Runs the wrapped loader, then one registration step."""

    def __init__(self, loader: importlib.abc.Loader, step: str) -> None:
        self.loader = loader
        self.step = step

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        if self.step == DISABLED_STEP:
            explain_disabled_registration(sys.argv)
            return
        try:
            import importlib

            registration = importlib.import_module("sb3_lecture_ppo.zoo.registration")
            getattr(registration, self.step)()
        except Exception as error:
            warn(f"could not register with rl_zoo3 ({type(error).__name__}: {error}); {HOW_TO_REGISTER}")

    def __getattr__(self, name: str) -> object:
        # get_source, get_code, is_package ... of the wrapped loader (tracebacks, pkgutil)
        return getattr(self.loader, name)


def requested_algorithm(argv: Sequence[str]) -> str | None:
    """Which of our algorithms a zoo command line asks for with ``--algo`` (None if none)."""
    for index, arg in enumerate(argv):
        if arg == "--algo" and index + 1 < len(argv):
            value = argv[index + 1]
        elif arg.startswith("--algo="):
            value = arg.partition("=")[2]
        else:
            continue
        if value in ALGORITHM_NAMES:
            return value
    return None


def explain_disabled_registration(argv: Sequence[str]) -> None:
    """One line on how to register, for a command line that asks for our algorithm while the hook is off."""
    algo = requested_algorithm(argv)
    if algo is not None:
        reason = "SB3_LECTURE_PPO_NO_ZOO_HOOK is set"
        warn(f"--algo {algo} is not registered with rl_zoo3 because {reason}; unset it, or {HOW_TO_REGISTER}")


class ZooImportHook:
    """
    Finds the watched zoo modules with the other finders and wraps their loaders.

    :param disabled: only explain, on ``rl_zoo3.utils``, how to register (``SB3_LECTURE_PPO_NO_ZOO_HOOK``)
    """

    def __init__(self, disabled: bool = False) -> None:
        self.watched = {"rl_zoo3.utils": DISABLED_STEP} if disabled else WATCHED_MODULES

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        step = self.watched.get(fullname)
        if step is None:
            return None
        for finder in sys.meta_path:
            if finder is self or isinstance(finder, ZooImportHook) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RegisteringLoader(spec.loader, step)  # type: ignore[assignment]
                return spec
        return None


def install() -> None:
    """Put the hook on ``sys.meta_path`` once (a venv's lib64 link can process the .pth twice)."""
    if any(type(finder).__name__ == "ZooImportHook" for finder in sys.meta_path):
        return
    try:
        sys.meta_path.insert(0, ZooImportHook(disabled=bool(os.environ.get("SB3_LECTURE_PPO_NO_ZOO_HOOK"))))
    except Exception as error:  # pragma: no cover - sys.meta_path is a plain list
        warn(f"could not install the rl_zoo3 hook ({error})")


install()
