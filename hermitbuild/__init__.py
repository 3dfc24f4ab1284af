"""hermitbuild: a reproducible build orchestrator for HermitCore unikernel toolchains, on doit.

Nothing runs at import time.  The modules, one per stage:
settings -> recipe -> fetch -> unpack/patch (prepare) -> container/build -> cache -> install,
plus syscalls (generator), qemu (running unikernels), runner (every external command),
errors (every error) and tasks (the doit task generators).
"""

__version__ = "0.1.0"
