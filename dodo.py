"""doit entry point for hermitbuild: configuration and task generators only.

Run `doit list` to see the tasks; `doit toolchain` builds everything (the default).
All logic lives in the `hermitbuild` package (see hermitbuild/tasks.py).
"""

import sys

from hermitbuild import cli, tasks
from hermitbuild.errors import HermitBuildError

try:
    DOIT_CONFIG = tasks.doit_config(cli.context()[0])
except HermitBuildError as err:  # bad settings or recipes: say what, why, fix; no traceback
    sys.stderr.write(f"{err}\n")
    sys.exit(2)

task_base_image = tasks.task_base_image
task_containers = tasks.task_containers
task_download = tasks.task_download
task_prepare = tasks.task_prepare
task_build = tasks.task_build
task_toolchain = tasks.task_toolchain
task_syscall = tasks.task_syscall
task_cache = tasks.task_cache
task_doctor = tasks.task_doctor
task_debug = tasks.task_debug
task_boot = tasks.task_boot
task_smoke = tasks.task_smoke
task_image = tasks.task_image
task_sbom = tasks.task_sbom
task_toolchain_image = tasks.task_toolchain_image
