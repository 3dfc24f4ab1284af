"""The one command runner: argv only, logs, tails, timeouts, missing programs."""

from __future__ import annotations

import sys
import time

import pytest

from hermitbuild import runner
from hermitbuild.errors import CommandError, HermitBuildError


def test_streams_to_log_and_captures(tmp_path):
    log = tmp_path / "logs" / "step.log"
    done = runner.run([sys.executable, "-c", "print('hello'); import sys; print('err', file=sys.stderr)"],
                      log_path=log, capture=True, env={"HB_TEST": "1"})
    assert done.returncode == 0
    assert "hello" in done.output and "err" in done.output
    text = log.read_text()
    assert "hello" in text and "### env: HB_TEST=1" in text and "exit status 0" in text


def test_failure_raises_with_tail_and_log(tmp_path):
    log = tmp_path / "x.log"
    script = "import sys\nfor i in range(100): print('line', i)\nsys.exit(3)"
    with pytest.raises(CommandError) as info:
        runner.run([sys.executable, "-c", script], log_path=log, cwd=tmp_path)
    err = info.value
    assert isinstance(err, HermitBuildError)
    assert err.returncode == 3
    assert "line 99" in err.tail and "line 59" not in err.tail  # last 40 lines only
    assert str(log) in str(err) and "exit status 3" in str(err)


def test_no_shell_metacharacters_interpreted(tmp_path):
    out = runner.output(["echo", "a;b", "$HOME", "`x`"])
    assert out == "a;b $HOME `x`"


def test_missing_program_is_a_clear_error():
    with pytest.raises(CommandError) as info:
        runner.run(["/nonexistent/program-xyz", "--help"])
    assert "program not found" in str(info.value) and "fix:" in str(info.value)


def test_timeout_kills_process_group(tmp_path):
    marker = tmp_path / "child-alive"
    script = (f"import subprocess,sys,time\n"
              f"subprocess.Popen(['sh','-c','sleep 3; touch {marker}'])\n"
              f"time.sleep(30)")
    start = time.monotonic()
    with pytest.raises(CommandError) as info:
        runner.run([sys.executable, "-c", script], timeout=1)
    assert "timed out" in str(info.value)
    assert time.monotonic() - start < 20
    time.sleep(3.5)
    assert not marker.exists(), "the grandchild survived the timeout"


def test_check_false_returns_status():
    done = runner.run(["sh", "-c", "exit 4"], check=False)
    assert done.returncode == 4


def test_stdin_bytes():
    assert runner.output(["cat"], stdin=b"piped") == "piped"


def test_errors_pickle_roundtrip():
    import pickle

    err = CommandError(["make", "all"], 2, cwd="/tmp", log_path="/tmp/x.log", tail="boom")
    again = pickle.loads(pickle.dumps(err))
    assert str(again) == str(err) and again.returncode == 2


def test_output_bytes_returns_stdout_unchanged_and_keeps_stderr_for_the_error():
    raw = runner.output_bytes([sys.executable, "-c",
                               "import sys; sys.stdout.buffer.write(b'caf\\xe9\\0x\\n'); print('noise', file=sys.stderr)"])
    assert raw == b"caf\xe9\0x\n"
    with pytest.raises(CommandError) as info:
        runner.output_bytes([sys.executable, "-c", "import sys; print('why it failed', file=sys.stderr); sys.exit(3)"])
    assert info.value.returncode == 3 and "why it failed" in info.value.tail
    with pytest.raises(CommandError):
        runner.output_bytes(["/nonexistent/program"])


def test_pipeline_names_the_command_that_failed(tmp_path):
    out = tmp_path / "out"
    runner.pipeline([sys.executable, "-c", "print('through the pipe')"],
                    [sys.executable, "-c", f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"])
    assert out.read_text() == "through the pipe\n"
    with pytest.raises(CommandError) as info:
        runner.pipeline([sys.executable, "-c", "import sys; print('first broke', file=sys.stderr); sys.exit(2)"],
                        [sys.executable, "-c", "import sys; sys.stdin.read()"])
    assert info.value.returncode == 2 and "first broke" in info.value.tail and "first broke" in info.value.argv[-1]
    with pytest.raises(CommandError) as info:
        runner.pipeline(["yes"],  # killed by the broken pipe: the second's failure is the cause
                        [sys.executable, "-c", "import sys; print('second broke', file=sys.stderr); sys.exit(4)"])
    assert info.value.returncode == 4 and "second broke" in info.value.tail
    with pytest.raises(CommandError):
        runner.pipeline(["/nonexistent/first"], ["cat"])
