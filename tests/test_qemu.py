"""hermitbuild.qemu: compile, boot through the proxy, smoke test.

The cross toolchain cannot be built in CI, so the prefix holds stand-ins
(tests/helpers_qemu.py): the host gcc as ``x86_64-hermit-gcc`` (real
compilation of the real examples, with a stub for HermitCore's my_syscall /
rename) and a ``proxy`` that records its argv and HERMIT_* environment, runs
the program, exits with its status and dumps a "kernel log" at exit or on
SIGTERM like HermitCore's proxy.c.  The real qemu boots are in test_image.py.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hermitbuild.errors import RunError
from hermitbuild.qemu import (RunOptions, SmokeResult, ExampleResult, compile_app, example_cpus, example_flags,
                              kvm_usable,
                              missing_lines, proxy_env, required_syscalls, run_app,
                              run_main, smoke)

from helpers_qemu import REPO, fake_toolchain, proxy_record, write_c

EXAMPLES = REPO / "examples"


@pytest.fixture
def tc(tmp_path: Path):
    return fake_toolchain(tmp_path)


@pytest.fixture
def no_kvm(tmp_path: Path) -> Path:
    return tmp_path / "no-kvm"  # a device path that does not exist


@pytest.fixture
def fake_kvm(tmp_path: Path) -> Path:
    # A path that opens read-write but is not a KVM device.
    path = tmp_path / "kvm"
    path.write_text("")
    return path


# ---- options, KVM, environment ------------------------------------------------------------------

def test_options_are_validated() -> None:
    assert RunOptions(mem="512m").mem == "512M"
    for kwargs, field in [({"isle": "xen"}, "isle"), ({"mem": "lots"}, "mem"), ({"cpus": 0}, "cpus"),
                          ({"timeout": 0}, "timeout")]:
        with pytest.raises(RunError) as info:
            RunOptions(**kwargs)
        assert info.value.field == field and info.value.fix


def test_kvm_usable_needs_a_real_kvm_device(no_kvm: Path, fake_kvm: Path) -> None:
    assert kvm_usable(no_kvm) is False
    assert kvm_usable(fake_kvm) is False  # opens, but does not answer the KVM ioctl


@pytest.mark.skipif(not os.path.exists("/dev/kvm"), reason="no /dev/kvm on this host")
def test_kvm_usable_agrees_with_opening_dev_kvm() -> None:
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
        can_open = True
    except OSError:
        can_open = False
    assert kvm_usable() == can_open


def test_proxy_env_qemu_with_and_without_kvm() -> None:
    opts = RunOptions(mem="2G", cpus=2)
    assert proxy_env(opts, kvm=True) == {"HERMIT_ISLE": "qemu", "HERMIT_KVM": "1", "HERMIT_MEM": "2G",
                                         "HERMIT_CPUS": "2", "HERMIT_VERBOSE": "1"}
    assert proxy_env(opts, kvm=False)["HERMIT_KVM"] == "0"


def test_uhyve_needs_kvm() -> None:
    assert proxy_env(RunOptions(isle="uhyve"), kvm=True)["HERMIT_ISLE"] == "uhyve"
    with pytest.raises(RunError) as info:
        proxy_env(RunOptions(isle="uhyve"), kvm=False)
    assert "uhyve needs KVM" in info.value.what and "--isle qemu" in info.value.fix


# ---- compile ------------------------------------------------------------------------------------

def test_compile_a_file_and_a_directory(tc, tmp_path: Path) -> None:
    out = compile_app(EXAMPLES / "hello" / "hello.c", tmp_path / "bin" / "hello", tc)
    assert out.is_file() and os.access(out, os.X_OK)
    src = tmp_path / "multi"
    write_c(src / "a.c", "int helper(void);\nint main(void) { printf(\"%d\\n\", helper()); return 0; }\n")
    write_c(src / "b.c", "int helper(void) { return 41 + 1; }\n")
    out2 = compile_app(src, tmp_path / "bin" / "multi", tc)
    assert sorted(p.name for p in out2.parent.iterdir()) == ["hello", "multi"]  # no temporaries


def test_compile_errors_are_reported_without_a_binary(tc, tmp_path: Path) -> None:
    bad = write_c(tmp_path / "bad.c", "int main(void) { return undefined_thing; }\n")
    with pytest.raises(RunError) as info:
        compile_app(bad, tmp_path / "bin" / "bad", tc)
    assert "compiling bad.c failed" in info.value.what
    assert "undefined_thing" in info.value.why  # the compiler's message
    assert not (tmp_path / "bin").exists() or list((tmp_path / "bin").iterdir()) == []


def test_compile_bad_inputs(tc, tmp_path: Path) -> None:
    with pytest.raises(RunError, match="does not exist"):
        compile_app(tmp_path / "nope.c", tmp_path / "x", tc)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunError, match="no C or C\\+\\+ sources"):
        compile_app(tmp_path / "empty", tmp_path / "x", tc)
    (tmp_path / "notc.txt").write_text("x")
    with pytest.raises(RunError, match="not a C or C\\+\\+ source"):
        compile_app(tmp_path / "notc.txt", tmp_path / "x", tc)


def test_compile_without_toolchain_says_how_to_get_one(tmp_path: Path, make_settings) -> None:
    with pytest.raises(RunError) as info:
        compile_app(EXAMPLES / "hello", tmp_path / "x", make_settings())
    assert "doit toolchain" in info.value.fix


# ---- run through the proxy ----------------------------------------------------------------------

def test_run_app_invokes_proxy_with_env_and_args(tc, tmp_path: Path, no_kvm: Path, capsys) -> None:
    binary = compile_app(EXAMPLES / "hello", tmp_path / "hello", tc)
    opts = RunOptions(mem="512M", cpus=2, extra_args=("one", "two words"))
    status = run_app(binary, opts, tc, log_dir=tmp_path / "logs", kvm_dev=no_kvm)
    assert status == 0
    rec = proxy_record(tc)
    assert rec["argv"][1:] == [str(binary), "one", "two words"]
    assert rec["env"] == {"HERMIT_ISLE": "qemu", "HERMIT_KVM": "0", "HERMIT_MEM": "512M",
                          "HERMIT_CPUS": "2", "HERMIT_VERBOSE": "1"}
    shown = capsys.readouterr().out
    assert "hello world!" in shown  # the application's output reached the terminal
    assert "Dump kernel log" not in shown and "qemu startup command" not in shown
    assert not (tmp_path / "logs" / "hello.log").exists()  # success: log removed


def test_run_app_uses_kvm_when_usable(tc, tmp_path: Path, monkeypatch) -> None:
    binary = compile_app(EXAMPLES / "hello", tmp_path / "hello", tc)
    monkeypatch.setattr("hermitbuild.qemu.kvm_usable", lambda dev=None: True)
    run_app(binary, RunOptions(), tc, log_dir=tmp_path / "logs")
    assert proxy_record(tc)["env"]["HERMIT_KVM"] == "1"
    run_app(binary, RunOptions(kvm=False), tc, log_dir=tmp_path / "logs")
    assert proxy_record(tc)["env"]["HERMIT_KVM"] == "0"
    run_app(binary, RunOptions(isle="uhyve"), tc, log_dir=tmp_path / "logs")
    assert proxy_record(tc)["env"]["HERMIT_ISLE"] == "uhyve"


def test_explicit_kvm_or_uhyve_without_kvm_fails_before_booting(tc, tmp_path: Path, no_kvm: Path) -> None:
    binary = compile_app(EXAMPLES / "hello", tmp_path / "hello", tc)
    with pytest.raises(RunError, match="KVM was asked for"):
        run_app(binary, RunOptions(kvm=True), tc, log_dir=tmp_path / "logs", kvm_dev=no_kvm)
    with pytest.raises(RunError, match="uhyve needs KVM"):
        run_app(binary, RunOptions(isle="uhyve"), tc, log_dir=tmp_path / "logs", kvm_dev=no_kvm)
    assert not (tc.prefix / "proxy-record.json").exists()


def test_verbose_shows_the_kernel_log(tc, tmp_path: Path, no_kvm: Path, capsys) -> None:
    binary = compile_app(EXAMPLES / "hello", tmp_path / "hello", tc)
    run_app(binary, RunOptions(verbose=True, keep_log=True), tc, log_dir=tmp_path / "logs",
            kvm_dev=no_kvm)
    shown = capsys.readouterr().out
    assert "Dump kernel log:" in shown and "fake kernel log line" in shown
    assert "fake kernel log line" in (tmp_path / "logs" / "hello.log").read_text()  # kept as asked


def test_exit_status_is_the_apps_and_log_is_kept(tc, tmp_path: Path, no_kvm: Path, capsys) -> None:
    src = write_c(tmp_path / "fail.c", 'int main(void) { printf("about to fail\\n"); return 3; }\n')
    binary = compile_app(src, tmp_path / "fail", tc)
    status = run_app(binary, RunOptions(), tc, log_dir=tmp_path / "logs", kvm_dev=no_kvm)
    assert status == 3
    log = (tmp_path / "logs" / "fail.log").read_text()
    assert "about to fail" in log and "fake kernel log line" in log  # kernel log saved on failure
    assert "fake kernel log line" not in capsys.readouterr().out


def test_a_hang_ends_at_the_timeout_with_the_log_saved(tc, tmp_path: Path, no_kvm: Path) -> None:
    src = write_c(tmp_path / "hang.c",
                  'int main(void) { printf("hanging\\n"); fflush(stdout); for (;;) pause(); }\n')
    binary = compile_app(src, tmp_path / "hang", tc)
    with pytest.raises(RunError) as info:
        run_app(binary, RunOptions(timeout=2), tc, log_dir=tmp_path / "logs", kvm_dev=no_kvm)
    err = info.value
    log = tmp_path / "logs" / "hang.log"
    assert "ran longer than 2 s" in err.what
    assert str(log) in err.why and str(log) in err.fix
    text = log.read_text()
    assert "hanging" in text and "fake kernel log line" in text  # proxy dumped it when stopped


def test_run_main_compiles_and_passes_options(tc, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("hermitbuild.qemu.kvm_usable", lambda dev=None: False)
    src = write_c(tmp_path / "echo.c", 'int main(int c, char **v) { for (int i = 1; i < c; i++) '
                  'printf("arg %s\\n", v[i]); return c - 1; }\n')
    status = run_main([str(src), "--mem", "256M", "--cpus", "3", "--timeout", "30", "--", "x", "-y"], tc)
    assert status == 2
    rec = proxy_record(tc)
    assert rec["argv"][1:] == [str(tc.work_dir / "run" / "echo"), "x", "-y"]
    assert rec["env"]["HERMIT_MEM"] == "256M" and rec["env"]["HERMIT_CPUS"] == "3"
    captured = capsys.readouterr()
    assert "arg -y" in captured.out
    assert "exited with status 2" in captured.err


def test_exec_prefix_passes_env_on_the_command_line(tc, tmp_path: Path, no_kvm: Path) -> None:
    # `env` as the "container": the HERMIT_* variables must travel in argv.
    binary = compile_app(EXAMPLES / "hello", tmp_path / "hello", tc, exec_prefix=["env"])
    status = run_app(binary, RunOptions(), tc, exec_prefix=["env", "-i", f"PATH={os.environ['PATH']}"],
                     log_dir=tmp_path / "logs", kvm_dev=no_kvm)
    assert status == 0
    assert proxy_record(tc)["env"]["HERMIT_ISLE"] == "qemu"


# ---- smoke --------------------------------------------------------------------------------------

def test_missing_lines_in_order() -> None:
    out = "warning: x\nhello world!\r\nmy_syscall returns: 54\nrename returns 0\n"
    assert missing_lines(out, ["hello world!", "rename returns 0"]) == []
    assert missing_lines(out, ["rename returns 0", "my_syscall returns: 54"]) == ["my_syscall returns: 54"]
    assert missing_lines(out, ["hello world"]) == ["hello world"]  # whole lines only


def test_bundled_examples_are_complete() -> None:
    assert (EXAMPLES / "hello" / "expected.txt").read_text().strip() == "hello world!"
    assert (EXAMPLES / "syscall-test" / "expected.txt").read_text().split("\n")[:2] == [
        "my_syscall returns: 54", "rename returns 0"]
    assert required_syscalls(EXAMPLES / "syscall-test") == ["my_syscall", "rename"]
    assert required_syscalls(EXAMPLES / "hello") == []


def test_smoke_passes_on_the_bundled_examples(tc, tmp_path: Path, no_kvm: Path, capsys) -> None:
    result = smoke(tc, examples_dir=EXAMPLES, syscalls_ready=True, kvm_dev=no_kvm)
    assert result.passed, result.summary()
    assert [e.name for e in result.examples] == ["cxx-threads", "hello", "syscall-test"]
    assert all(e.compiled and e.booted and e.matched and e.status == 0 for e in result.examples)
    manifest = result.to_manifest()
    assert manifest["passed"] is True and set(manifest["examples"]) == {"cxx-threads", "hello", "syscall-test"}
    assert "hello world!" not in capsys.readouterr().out  # smoke output is captured, not echoed


def test_the_cxx_example_compiles_with_gxx_and_its_flags_and_boots_with_its_cpus(tc, no_kvm: Path) -> None:
    result = smoke(tc, examples_dir=EXAMPLES, only={"cxx-threads"}, kvm_dev=no_kvm)
    assert result.passed, result.summary()
    assert proxy_record(tc)["env"]["HERMIT_CPUS"] == "2"
    assert example_flags(EXAMPLES / "cxx-threads") == ["-pthread"]


def test_bad_example_flags_and_cpus_name_the_file(tc, tmp_path: Path, no_kvm: Path) -> None:
    ex = tmp_path / "examples" / "bad"
    write_c(ex / "main.c", "int main(void) { puts(\"hi\"); return 0; }\n")
    (ex / "expected.txt").write_text("hi\n")
    (ex / "cpus.txt").write_text("two\n")
    with pytest.raises(RunError) as info:
        example_cpus(ex)
    assert str(ex / "cpus.txt") in info.value.what and "whole number" in info.value.fix
    result = smoke(tc, examples_dir=tmp_path / "examples", kvm_dev=no_kvm)
    assert not result.passed and "cpus.txt" in result.examples[0].error
    (ex / "cpus.txt").unlink()
    (ex / "flags.txt").write_text("-DX='unclosed\n")
    with pytest.raises(RunError) as info:
        example_flags(ex)
    assert "flags.txt" in info.value.what and "quotes closed" in info.value.fix


def test_smoke_skips_the_syscall_example_without_the_calls(tc, no_kvm: Path) -> None:
    result = smoke(tc, examples_dir=EXAMPLES, syscalls_ready=False, kvm_dev=no_kvm)
    skipped = {e.name: e.skipped for e in result.examples}
    assert skipped["hello"] == ""
    assert "my_syscall, rename" in skipped["syscall-test"] and "doit syscall add" in skipped["syscall-test"]
    assert result.passed  # hello ran and passed; the skip is reported, not a failure


def test_smoke_fails_on_wrong_output(tmp_path: Path, no_kvm: Path) -> None:
    # Without the stubbed rename the host libc's rename("./x", "./y") returns -1.
    tc = fake_toolchain(tmp_path, stub_rename=False)
    result = smoke(tc, examples_dir=EXAMPLES, syscalls_ready=True, kvm_dev=no_kvm)
    assert not result.passed
    bad = {e.name: e for e in result.examples}["syscall-test"]
    assert bad.missing == ("rename returns 0",)
    assert Path(bad.log).is_file()  # log kept for the failing example
    assert "FAILED" in result.summary() and "rename returns 0" in result.summary()
    assert result.to_manifest()["examples"]["syscall-test"]["passed"] is False


def test_smoke_reports_compile_failures_and_no_toolchain(tmp_path: Path, make_settings) -> None:
    examples = tmp_path / "examples"
    write_c(examples / "broken" / "main.c", "int main(void) { return nope; }\n")
    (examples / "broken" / "expected.txt").write_text("x\n")
    result = smoke(fake_toolchain(tmp_path / "t"), examples_dir=examples)
    assert not result.passed and "FAILED to compile" in result.summary()
    result = smoke(make_settings(), examples_dir=EXAMPLES)
    assert not result.passed and not result.examples[0].compiled


def test_smoke_decides_from_the_table_names(tc, no_kvm: Path) -> None:
    result = smoke(tc, examples_dir=EXAMPLES, available_syscalls=["my_syscall"], kvm_dev=no_kvm)
    skipped = {e.name: e.skipped for e in result.examples}
    assert "needs system calls rename;" in skipped["syscall-test"]
    result = smoke(tc, examples_dir=EXAMPLES, available_syscalls=["rename", "my_syscall", "x"],
                   kvm_dev=no_kvm, only=["syscall-test"])
    assert [(e.name, e.passed, e.skipped) for e in result.examples] == [("syscall-test", True, "")]


def test_smoke_main_prints_the_summary(tc, monkeypatch, capsys) -> None:
    monkeypatch.setattr("hermitbuild.qemu.kvm_usable", lambda dev=None: False)
    from hermitbuild.qemu import smoke_main
    result = smoke_main(tc, available_syscalls=[], examples_dir=EXAMPLES)
    out = capsys.readouterr().out
    assert result.passed and out.startswith("smoke test passed")
    assert "hello: ok" in out and "syscall-test: skipped" in out
