"""``doit boot`` / ``doit smoke`` run the toolchain in its build container (issue 7).

Real podman, the small "fixture" image (gcc, make, cmake; no python3) standing
in for the toolchain image, and a stand-in toolchain in a tmp prefix:
``x86_64-hermit-gcc`` is a /bin/sh script running the container's gcc and
``proxy`` a /bin/sh script behaving like HermitCore's proxy towards its caller
(records the HERMIT_* environment, runs the "unikernel" it is given, exits with
its status, dumps a kernel log when HERMIT_VERBOSE=1).  Both record where they
ran: ``/run/.containerenv`` exists in every podman container (not on this
host), a file only the host has must be invisible, and ``/dev/kvm`` must be
there exactly when KVM is usable on the host.
"""

from __future__ import annotations

import os
import stat
import subprocess
import threading
from pathlib import Path

import pytest

from hermitbuild import cli, container
from hermitbuild.errors import RunError
from hermitbuild.qemu import kvm_usable, run_main, smoke_main
from hermitbuild.settings import Settings

from helpers_podman import ROOT, ensure_base_image, podman_settings, require_podman

pytestmark = pytest.mark.podman

GCC = """#!/bin/sh
# stand-in for the HermitCore compiler: the gcc of wherever this runs
{{ [ -f /run/.containerenv ] && echo container=yes || echo container=no
  [ -e {host_only} ] && echo host-file=visible || echo host-file=invisible
}} > {record}/gcc-where
exec gcc "$@"
"""

PROXY = """#!/bin/sh
# stand-in for HermitCore's proxy: record, run the unikernel, pass its status on
env | grep '^HERMIT_' | sort > {record}/proxy-env
{{ [ -f /run/.containerenv ] && echo container=yes || echo container=no
  [ -e {host_only} ] && echo host-file=visible || echo host-file=invisible
  [ -c /dev/kvm ] && echo kvm=yes || echo kvm=no
  id -u
}} > {record}/proxy-where
echo "qemu startup command: qemu-system-x86_64 -fake"
if [ $# -lt 1 ]; then echo "usage: proxy <unikernel>" >&2; exit 1; fi
"$@"
status=$?
if [ "$HERMIT_VERBOSE" = 1 ]; then
  printf '\\nDump kernel log:\\n================\\n\\n[0.000][0:0][INFO] fake kernel log line\\n'
fi
exit $status
"""

APP = r"""#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "greeting.h"
int main(int argc, char **argv) {
    printf("%s from %s\n", GREETING, argc > 1 ? argv[1] : "nobody");
    fflush(stdout);
    if (argc > 2 && argv[2][0] == 's') sleep(120);
    return argc > 2 ? atoi(argv[2]) : 0;
}
"""


def _executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def _where(path: Path) -> list[str]:
    return path.read_text().split()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_podman()
    # the proof of "ran in a container" below: podman creates this file, this host has none
    assert not Path("/run/.containerenv").exists(), "these tests cannot run inside a podman container"
    base = tmp_path_factory.mktemp("boot-container")
    ensure_base_image(base / "base")
    settings = podman_settings(ROOT, base)
    container.build_image("fixture", settings)  # once; the tag is the repository's fixture image
    host_only = base / "host-only"
    host_only.write_text("only on the host\n")
    record = settings.build_dir / "record"  # the build dir is the one writable mount
    record.mkdir(parents=True)
    bindir = settings.prefix / "bin"
    bindir.mkdir(parents=True)
    _executable(bindir / "x86_64-hermit-gcc", GCC.format(record=record, host_only=host_only))
    _executable(bindir / "x86_64-hermit-g++", "#!/bin/sh\nexec g++ \"$@\"\n")  # examples/cxx-threads
    _executable(bindir / "proxy", PROXY.format(record=record, host_only=host_only))
    app_dir = base / "apps" / "greeter"
    app_dir.mkdir(parents=True)
    (app_dir / "greeting.h").write_text('#define GREETING "hello"\n')  # found only with the app's dir mounted
    (app_dir / "greeter.c").write_text(APP)
    return {"settings": settings, "record": record, "app": app_dir / "greeter.c"}


def _prefix(settings: Settings, args: list[str]) -> list[str]:
    return cli._exec_prefix(settings, args, image_name="fixture")


def _assert_in_container(where: list[str]) -> None:
    assert "container=yes" in where  # /run/.containerenv: podman made it, this host has none
    assert "host-file=invisible" in where  # nothing of the host but the mounts


def test_exec_prefix_is_the_run_command_line_up_to_the_image(world: dict) -> None:
    settings: Settings = world["settings"]
    prefix = _prefix(settings, [str(world["app"]), "--mem", "512M"])
    tag = container.image_tag("fixture", settings)
    assert prefix[1:4] == ["run", "--rm", "--init"] and prefix[-1] == tag
    assert "--network=none" in prefix
    volumes = [prefix[i + 1] for i, a in enumerate(prefix) if a == "-v"]
    app_dir = str(world["app"].parent)
    assert f"{settings.prefix}:{settings.prefix}:ro" in volumes
    assert f"{settings.build_dir}:{settings.build_dir}:rw" in volumes
    assert f"{ROOT}:{ROOT}:ro" in volumes
    assert f"{app_dir}:{app_dir}:ro" in volumes
    assert (["--device", "/dev/kvm"] == prefix[prefix.index("--device"):prefix.index("--device") + 2]
            if kvm_usable() else "--device" not in prefix)
    for opt in settings.runtime_options:
        assert opt in prefix


def test_boot_compiles_and_runs_inside_the_container(world: dict, capfd: pytest.CaptureFixture) -> None:
    settings: Settings = world["settings"]
    record: Path = world["record"]
    args = [str(world["app"]), "--mem", "512M", "--cpus", "2", "--", "tester", "3"]
    status = run_main(args, settings, exec_prefix=_prefix(settings, args))

    assert status == 3  # the application's exit status, through proxy, container and podman
    out = capfd.readouterr().out
    assert "hello from tester" in out  # streamed; the header came from the app's own directory
    assert "fake kernel log line" not in out  # the kernel log only goes to the log file
    _assert_in_container(_where(record / "gcc-where"))
    where = _where(record / "proxy-where")
    _assert_in_container(where)
    assert ("kvm=yes" if kvm_usable() else "kvm=no") in where
    assert where[-1] == str(os.getuid())
    env = dict(line.split("=", 1) for line in (record / "proxy-env").read_text().splitlines())
    assert env == {"HERMIT_ISLE": "qemu", "HERMIT_KVM": "1" if kvm_usable() else "0",
                   "HERMIT_MEM": "512M", "HERMIT_CPUS": "2", "HERMIT_VERBOSE": "1"}
    binary = settings.work_dir / "run" / "greeter"
    log = settings.logs_dir / "run" / "greeter.log"
    assert binary.is_file() and log.is_file()  # failed run: the log is kept
    assert "fake kernel log line" in log.read_text()
    for path in (binary, log, record / "proxy-env"):
        assert path.stat().st_uid == os.getuid()  # written inside, owned by the invoking user
    assert not list((settings.work_dir / "run").glob(".*tmp*"))  # no half-written binary left


def test_a_run_over_the_timeout_leaves_no_container(world: dict) -> None:
    settings: Settings = world["settings"]
    args = [str(world["app"]), "--timeout", "4", "--", "sleeper", "s"]

    def ours() -> list[str]:
        return subprocess.run(["podman", "ps", "-a", "-q", "--filter",
                               f"label={container.EXEC_LABEL}=fixture"],
                              capture_output=True, text=True, check=True).stdout.split()

    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:  # the sleeping run is seen as a labelled container
        while not done.is_set() and not seen:
            seen.extend(ours())
            done.wait(0.3)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        with pytest.raises(RunError) as info:
            run_main(args, settings, exec_prefix=_prefix(settings, args))
    finally:
        done.set()
        watcher.join()
    assert "longer than 4 s" in info.value.what
    assert seen  # it did run in a container...
    assert ours() == []  # ...which the timeout stopped and removed


def test_smoke_runs_the_hello_example_in_the_container(world: dict, capfd: pytest.CaptureFixture) -> None:
    settings: Settings = world["settings"]
    record: Path = world["record"]
    (record / "gcc-where").unlink(missing_ok=True)
    (record / "proxy-where").unlink(missing_ok=True)
    import hermitbuild.qemu as qemu

    result = qemu.smoke(settings, exec_prefix=_prefix(settings, []), examples_dir=ROOT / "examples",
                        only={"hello"})
    assert [e.name for e in result.examples] == ["hello"], result.summary()
    assert result.passed, result.summary()
    _assert_in_container(_where(record / "gcc-where"))
    _assert_in_container(_where(record / "proxy-where"))
    assert (settings.work_dir / "smoke" / "hello").stat().st_uid == os.getuid()

    # and through the CLI entry point: the syscall example is skipped (no table given)
    summary = smoke_main(settings, exec_prefix=_prefix(settings, []))
    assert summary.passed, summary.summary()
    out = capfd.readouterr().out
    assert "hello: ok" in out and "cxx-threads: ok" in out and "syscall-test: skipped" in out


def test_without_a_container_runtime_the_host_runs_the_toolchain(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    settings = podman_settings(ROOT, tmp_path, runtime="docker")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # neither podman nor docker found
    with caplog.at_level("WARNING", logger="hermitbuild.container"):
        assert container.toolchain_exec_prefix(settings, []) == []
    assert "on this host" in caplog.text


def test_app_mounts_never_hide_system_directories(tmp_path: Path) -> None:
    app = tmp_path / "a.c"
    app.write_text("int main(void) { return 0; }\n")
    assert container._app_mounts([str(app), "--mem", "1G", "--", str(tmp_path)]) == [(tmp_path, False)]
    assert container._app_mounts(["/"]) == []
    assert container._app_mounts(["/tmp"]) == []
    assert container._app_mounts(["/etc/hostname"]) == [(Path("/etc/hostname"), False)]
    assert container._app_mounts(["no-such-file.c"]) == []
