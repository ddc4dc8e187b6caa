"""
Start-up hook that registers the lecture's algorithms into the RL Zoo when, and only when,
the zoo is imported.

The installed ``sb3_lecture_ppo_zoo.pth`` imports this module at interpreter start-up. It costs
no torch or rl_zoo3 import: it only puts an import hook on ``sys.meta_path`` that waits for the
zoo's modules (``rl_zoo3.utils``, ``rl_zoo3.hyperparams_opt``, ``rl_zoo3.exp_manager``) and runs
the matching registration step of :mod:`sb3_lecture_ppo.zoo.registration` right after each of
them is executed. Installing twice is harmless; errors only print a one-line warning.
Set ``SB3_LECTURE_PPO_NO_ZOO_HOOK=1`` to turn the hook off.
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
        try:
            import importlib

            registration = importlib.import_module("sb3_lecture_ppo.zoo.registration")
            getattr(registration, self.step)()
        except Exception as error:
            warn(
                f"could not register with rl_zoo3 ({type(error).__name__}: {error}); "
                "call sb3_lecture_ppo.zoo.register() or use `python -m sb3_lecture_ppo.zoo train ...`"
            )

    def __getattr__(self, name: str) -> object:
        # get_source, get_code, is_package ... of the wrapped loader (tracebacks, pkgutil)
        return getattr(self.loader, name)


class ZooImportHook:
    """Finds the watched zoo modules with the other finders and wraps their loaders."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        step = WATCHED_MODULES.get(fullname)
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
    if os.environ.get("SB3_LECTURE_PPO_NO_ZOO_HOOK"):
        return
    if any(type(finder).__name__ == "ZooImportHook" for finder in sys.meta_path):
        return
    try:
        sys.meta_path.insert(0, ZooImportHook())
    except Exception as error:  # pragma: no cover - sys.meta_path is a plain list
        warn(f"could not install the rl_zoo3 hook ({error})")


install()
