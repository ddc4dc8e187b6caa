"""
Metadata lives in setup.cfg. This file only installs the RL Zoo start-up hook
(``sb3_lecture_ppo_zoo.pth``) at the root of site-packages, for regular and editable installs.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

HOOK = "sb3_lecture_ppo_zoo.pth"
HERE = Path(__file__).parent


class BuildPyWithHook(build_py):
    """Regular installs: the .pth goes to the root of the wheel, i.e. of site-packages."""

    def run(self) -> None:
        super().run()
        if not self.editable_mode:
            self.copy_file(str(HERE / HOOK), str(Path(self.build_lib) / HOOK))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else [*outputs, str(Path(self.build_lib) / HOOK)]


class EditableWheelWithHook(editable_wheel):
    """Editable installs (PEP 660): setuptools' editable wheel carries no root files by itself."""

    def _run_build_commands(self, dist_name, unpacked_wheel, build_lib, tmp_dir):  # type: ignore[no-untyped-def]
        files, mapping = super()._run_build_commands(dist_name, unpacked_wheel, build_lib, tmp_dir)
        shutil.copy(HERE / HOOK, Path(unpacked_wheel) / HOOK)
        return files, mapping


setup(cmdclass={"build_py": BuildPyWithHook, "editable_wheel": EditableWheelWithHook})
