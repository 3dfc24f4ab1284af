"""What a build shows on the console while it runs, and the summary at its end.

Contract:
- :func:`step_line` prints the plain one-line-per-step output (``[k/n] recipe:step done
  in 12.3s``); it is the only output without a terminal (CI logs stay as they were).
- :func:`live_step` is a context manager around one running step.  When standard output
  is a terminal (and ``TERM`` is not ``dumb``) it shows, with rich, a live line that is
  refreshed a few times a second: the step, its elapsed time, an estimate when an
  earlier run of the same step is in :func:`history` (the fraction done, from the log's
  length against that run's, and the time left, from its duration), and the last line
  of the step's log.  The live line goes away when the step ends; the plain line follows.
  Without a terminal it does nothing.
- :func:`remember` stores a finished step's duration and log length in
  ``<stamps>/history/<recipe>.json`` (for the next estimate).
- :func:`start_run` marks the start of a doit run (the entry point calls it once; ``doit
  -n`` workers inherit it); :func:`record` appends a recipe's outcome (``built``,
  ``restored``, ``failed``) with its time to ``<stamps>/runs/<run>.jsonl`` (the last
  :data:`KEEP_RUNS` runs are kept), and
  :func:`summary` renders the table of a run: every recipe of the toolchain, built,
  restored, up to date (doit found nothing to do), skipped (the ``skip`` setting) or
  failed, with its time.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

from .fsutil import write_atomic
from .settings import Settings

_RUN_ID: str | None = None
KEEP_RUNS = 20  # run records kept in <stamps>/runs


def start_run() -> str:
    """Mark the start of this doit run (once per process tree)."""
    global _RUN_ID
    if _RUN_ID is None:
        _RUN_ID = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}"
    return _RUN_ID


def is_terminal() -> bool:
    try:
        return sys.stdout.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False


def step_line(message: str) -> None:
    """The plain progress line (one per step)."""
    print(message, flush=True)


# --------------------------------------------------------------------------- history (estimates)

def _history_path(recipe: str, settings: Settings) -> Path:
    return settings.stamps_dir / "history" / f"{recipe}.json"


def history(recipe: str, settings: Settings) -> dict[str, dict[str, float]]:
    try:
        data = json.loads(_history_path(recipe, settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
    except OSError:
        return 0


def remember(recipe: str, step: str, seconds: float, log: Path, settings: Settings) -> None:
    """Keep a finished step's duration and log length for the next run's estimate."""
    data = history(recipe, settings)
    data[step] = {"seconds": round(seconds, 3), "lines": _count_lines(log)}
    try:
        write_atomic(_history_path(recipe, settings), json.dumps(data, indent=1, sort_keys=True) + "\n")
    except OSError:
        pass  # an estimate is a nicety; never fail a build for it


# --------------------------------------------------------------------------- live line

def _elapsed(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _last_line(log: Path) -> str:
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 4096))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return ""
    for line in reversed(lines):
        if line.strip() and not line.startswith("### "):
            return line.strip()
    return ""


class _LiveStep:
    """The renderable of the live line (rich calls :meth:`__rich__` on every refresh)."""

    def __init__(self, label: str, log: Path, before: dict[str, float] | None) -> None:
        self.label = label
        self.log = log
        self.before = before or {}
        self.start = time.monotonic()
        self._lines = 0
        self._offset = 0

    def _log_lines(self) -> int:
        try:
            with open(self.log, "rb") as fh:
                fh.seek(self._offset)
                data = fh.read()
        except OSError:
            return self._lines
        self._offset += len(data)
        self._lines += data.count(b"\n")
        return self._lines

    def estimate(self, elapsed: float) -> str:
        seconds = float(self.before.get("seconds") or 0)
        lines = float(self.before.get("lines") or 0)
        if seconds <= 0:
            return ""
        parts = []
        if lines > 0:
            parts.append(f"~{min(99, int(100 * self._log_lines() / lines))}%")
        left = seconds - elapsed
        parts.append(f"about {_elapsed(left)} left" if left > 0 else f"longer than last time ({_elapsed(seconds)})")
        return ", ".join(parts)

    def __rich__(self) -> object:
        from rich.text import Text

        elapsed = time.monotonic() - self.start
        text = Text()
        text.append(f"{self.label} ", style="bold")
        text.append(f"running {_elapsed(elapsed)}", style="cyan")
        estimate = self.estimate(elapsed)
        if estimate:
            text.append(f" ({estimate})", style="cyan")
        last = _last_line(self.log)
        if last:
            text.append(f"  | {last}", style="dim")
        text.no_wrap = True
        text.overflow = "ellipsis"
        return text


@contextlib.contextmanager
def live_step(label: str, log: Path, before: dict[str, float] | None = None) -> Iterator[None]:
    """Show a live line for a running step on a terminal (see the module docstring)."""
    if not is_terminal():
        yield
        return
    from rich.console import Console
    from rich.live import Live

    with Live(_LiveStep(label, log, before), console=Console(), refresh_per_second=4, transient=True):
        yield


# --------------------------------------------------------------------------- the run's summary

def _runs_file(settings: Settings) -> Path:
    return settings.stamps_dir / "runs" / f"{start_run()}.jsonl"


def record(recipe: str, outcome: str, seconds: float, settings: Settings, detail: str = "") -> None:
    """Append one recipe's outcome to this run's record."""
    path = _runs_file(settings)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not path.exists()
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"recipe": recipe, "outcome": outcome, "seconds": round(seconds, 1),
                                 "detail": detail}) + "\n")
        if fresh:  # a new run: keep the records of the last KEEP_RUNS runs only
            for old in sorted(path.parent.glob("*.jsonl"), key=lambda f: f.stat().st_mtime)[:-KEEP_RUNS]:
                old.unlink(missing_ok=True)
    except OSError:
        pass


def outcomes(settings: Settings) -> dict[str, dict]:
    out: dict[str, dict] = {}
    try:
        text = _runs_file(settings).read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and isinstance(row.get("recipe"), str):
            out[row["recipe"]] = row
    return out


def summary(names: Sequence[str], skipped: Sequence[str], settings: Settings,
            installed: Callable[[str], bool] = lambda name: True) -> str:
    """The table of this run: one row per recipe with its outcome and time.

    A recipe this run did not build or restore is "up to date" when ``installed`` says so,
    else "not built" (a run that stopped before it)."""
    from rich.console import Console
    from rich.table import Table

    done = outcomes(settings)
    table = Table(title="toolchain", title_justify="left", show_edge=False)
    table.add_column("recipe")
    table.add_column("outcome")
    table.add_column("time", justify="right")
    table.add_column("detail", overflow="fold")
    total = 0.0
    for name in [*names, *skipped]:
        row = done.get(name)
        if name in skipped:
            table.add_row(name, "skipped", "", "the skip setting")
        elif row is None:
            table.add_row(name, "up to date" if installed(name) else "not built", "", "")
        else:
            total += float(row.get("seconds") or 0)
            table.add_row(name, row["outcome"], _elapsed(float(row.get("seconds") or 0)),
                          str(row.get("detail") or ""))
    table.add_row("", "", _elapsed(total), "total", end_section=True)
    sink = io.StringIO()
    console = Console(file=sink, width=None if is_terminal() else 100, force_terminal=is_terminal(),
                      no_color=not is_terminal())
    console.print(table)
    return sink.getvalue().rstrip("\n")
