"""Live progress on a terminal (under a real pseudo-terminal), plain lines without one,
estimates from an earlier run, and the summary table."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hermitbuild import progress
from hermitbuild.settings import Settings
from tests.helpers_podman import FixtureWorld, ensure_base_image, require_podman, run_doit, write_dodo

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def ticker_root(tmp_path_factory):
    require_podman()
    base = tmp_path_factory.mktemp("progressworld")
    ensure_base_image(base)
    world = FixtureWorld(base)
    root = world.make_root("root", extra=["ticker"])
    write_dodo(root, base / "ws")
    yield root, base / "ws"
    world.close()


def _run_under_pty(argv: list[str], cwd: Path, timeout: float = 600) -> list[tuple[float, str]]:
    """Run ``argv`` with a pseudo-terminal as stdout/stderr; return (time, text) chunks as read."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "40"}
    proc = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
                            env=env, close_fds=True)
    os.close(slave)
    chunks: list[tuple[float, str]] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append((time.monotonic(), data.decode("utf-8", "replace")))
            elif proc.poll() is not None:
                break
    finally:
        os.close(master)
        proc.wait(timeout=60)
    assert proc.returncode == 0, "".join(text for _, text in chunks)
    return chunks


@pytest.mark.podman
def test_live_line_changes_while_a_step_runs_and_plain_lines_stay_without_a_tty(ticker_root):
    root, ws = ticker_root
    argv = [sys.executable, "-m", "doit", "-f", str(root / "dodo.py"), "build:ticker"]
    chunks = _run_under_pty(argv, root)
    text = ANSI.sub("", "".join(t for _, t in chunks))
    live = [ANSI.sub("", t) for _, t in chunks if "ticker:tick running" in ANSI.sub("", t)]
    assert live, text
    # the line changed while the step ran: the elapsed time and the log's last line moved on
    elapsed = set(re.findall(r"ticker:tick running (\d+s)", text))
    ticks = set(re.findall(r"\| tick (\d)", text))
    assert len(elapsed) >= 2 and len(ticks) >= 2, text
    assert "[1/1] ticker:tick done in" in text
    assert "\x1b[" in "".join(t for _, t in chunks), "no terminal control codes: not a live display"

    # a second run of the same step estimates from the first (history); force the step to rerun
    history = progress.history("ticker", _ws_settings(root, ws))
    assert history["tick"]["seconds"] > 3 and history["tick"]["lines"] >= 8
    (ws / "build" / "stamps" / "install" / "ticker.json").unlink()
    for stamp in (ws / "build" / "stamps" / "steps" / "ticker").glob("*.json"):
        stamp.unlink()
    import shutil

    shutil.rmtree(ws / "cache")
    again = ANSI.sub("", "".join(t for _, t in _run_under_pty(argv, root)))
    assert re.search(r"ticker:tick running \d+s \(~\d+%, about \d+s left\)", again), again

    # without a terminal: the plain one-line-per-step output, no control codes, no live line
    (ws / "build" / "stamps" / "install" / "ticker.json").unlink()
    for stamp in (ws / "build" / "stamps" / "steps" / "ticker").glob("*.json"):
        stamp.unlink()
    shutil.rmtree(ws / "cache")
    plain = run_doit(root, "build:ticker")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "[1/1] ticker:tick done in" in plain.stdout
    assert "running" not in plain.stdout and "\x1b[" not in plain.stdout + plain.stderr


def _ws_settings(root: Path, ws: Path) -> Settings:
    from tests.helpers_podman import podman_settings

    return podman_settings(root, ws)


def test_summary_names_every_outcome(tmp_path, monkeypatch):
    monkeypatch.setattr(progress, "_RUN_ID", "test-run")
    s = Settings(root=tmp_path, prefix=tmp_path / "p", build_dir=tmp_path / "b")
    progress.record("binutils", "built", 118.4, s, "120 files")
    progress.record("newlib", "restored", 1.2, s, "key abcdef")
    progress.record("hermit", "failed", 3.0, s, "build failed: recipe 'hermit', step 'cmake'")
    table = progress.summary(["binutils", "gcc", "newlib", "hermit", "pthread"], ["gdb"], s,
                             installed=lambda name: name == "gcc")
    rows = {line.split()[0]: line for line in table.splitlines() if line.split()}
    assert "built" in rows["binutils"] and "1m58s" in rows["binutils"]
    assert "up to date" in rows["gcc"] and "restored" in rows["newlib"]
    assert "failed" in rows["hermit"] and "step 'cmake'" in rows["hermit"]
    assert "not built" in rows["pthread"] and "skipped" in rows["gdb"]
    assert "2m02s" in table  # the total


def test_estimate_from_the_previous_run(tmp_path):
    log = tmp_path / "step.log"
    log.write_text("".join(f"line {i}\n" for i in range(25)))
    live = progress._LiveStep("[1/1] x:y", log, {"seconds": 100.0, "lines": 100})
    assert live.estimate(40.0) == "~25%, about 1m00s left"
    assert live.estimate(130.0).startswith("~25%, longer than last time")
    assert progress._LiveStep("[1/1] x:y", log, None).estimate(5.0) == ""
