"""Parking an incremental recipe's build directory while another definition is built.

Contract:
- An ``incremental`` recipe keeps its build directory across changes of its own tree (a
  syscall table change); a changed *definition* (a dependency, the recipe, the image: its
  definition key) starts from an empty one.  Without this module the directory of the old
  definition was deleted, so going back to it (an edit of an override put back: the artifacts
  come from the cache) and then changing the table rebuilt everything from scratch.
- :func:`swap` ``(slots, build, sdir, old, new, stamp_names)`` is called by
  :func:`hermitbuild.steps.plan_steps` instead of deleting the directory: the finished build
  of definition ``old`` (``build`` and the step stamps ``sdir/<step>.json``) is moved to
  ``slots/<old>/`` (renames on one file system, nothing copied), and a build parked earlier
  for ``new`` is moved back in its place.  True when one was: the caller goes on as for a
  tree change (configure kept, make rebuilds what changed since that build; the prepared
  tree gives every file changed since then a newer mtime, and the definition key covers
  everything else the objects were built from).
- One slot is kept per recipe (the last definition left); older ones are deleted (in a
  thread, :func:`hermitbuild.fsutil.discard`).  A slot that is not complete (a build
  directory and a stamp for every step, all of definition ``new``) is never moved back.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from .fsutil import discard, read_json

logger = logging.getLogger(__name__)


def _complete(slot: Path, defkey: str, stamp_names: Sequence[str]) -> bool:
    if not (slot / "build").is_dir():
        return False
    for name in stamp_names:
        stamp = read_json(slot / "steps" / f"{name}.json")
        if not stamp or stamp.get("defkey") != defkey:
            return False
    return True


def _move_stamps(src: Path, dest: Path, stamp_names: Sequence[str]) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for name in stamp_names:
        if (src / f"{name}.json").exists():
            os.replace(src / f"{name}.json", dest / f"{name}.json")


def swap(slots: Path, build: Path, sdir: Path, old: str | None, new: str,
         stamp_names: Sequence[str]) -> bool:
    """Park the finished build of definition ``old`` (None: not a finished build, nothing is
    parked); bring back the one of ``new`` if parked.

    ``stamp_names``: the recipe's step names.  Returns True when ``build`` and ``sdir`` now hold
    the parked build of ``new`` (its stamps as they were when it was parked)."""
    want = slots / new
    usable = _complete(want, new, stamp_names)
    parked = False
    if old is not None and old != new and build.is_dir():
        target = slots / old
        discard(target)  # an incomplete leftover of the same definition
        target.mkdir(parents=True)
        try:
            os.rename(build, target / "build")
        except OSError as exc:  # another file system, a busy directory: delete as before
            logger.debug("cannot park %s: %s", build, exc)
            discard(target)
        else:
            _move_stamps(sdir, target / "steps", stamp_names)
            parked = True
            logger.info("parked the build directory of definition %s in %s", old[:12], target)
    if usable:
        discard(build)  # an unfinished build of another definition (not parked)
        try:
            os.rename(want / "build", build)
        except OSError as exc:  # nothing moved: the caller starts from an empty directory
            logger.debug("cannot take back %s: %s", want, exc)
            usable = False
        else:
            _move_stamps(want / "steps", sdir, stamp_names)
            logger.info("took back the build directory parked for definition %s", new[:12])
        discard(want)
    keep = {old} if parked else set()
    if slots.is_dir():
        for slot in slots.iterdir():
            if slot.name not in keep and not slot.name.startswith("."):
                discard(slot)
    return usable
