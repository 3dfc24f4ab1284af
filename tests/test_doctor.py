"""`doit doctor` and the pre-flight, through the public commands with real podman.

Each broken machine is made for real: an option podman rejects, an init binary that is
not there (podman's own `--init-path`), the docker CLI with no engine, no runtime on PATH,
a read-only prefix and a full disk (small tmpfs mounts; root only), and each must fail
with the named fix, a non-zero exit and no traceback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.helpers_cli import failed_cleanly
from hermitbuild import container, doctor
from hermitbuild.settings import Settings
from tests.helpers_podman import RUNTIME_OPTIONS, require_podman

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = " ".join(RUNTIME_OPTIONS)


def _doit(args: list[str], tmp_path: Path, extra_env: dict[str, str] | None = None,
          timeout: int = 300) -> subprocess.CompletedProcess:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path / "home"),
        "HERMITBUILD_BUILD_DIR": str(tmp_path / "build"),
        "HERMITBUILD_PREFIX": str(tmp_path / "prefix"),
        "HERMITBUILD_CACHE_DIR": str(tmp_path / "cache"),
        "HERMITBUILD_RUNTIME": "podman",
        "HERMITBUILD_RUNTIME_OPTIONS": OPTIONS,
        "PYTHONPATH": str(ROOT),
        **(extra_env or {}),
    }
    return subprocess.run([sys.executable, "-m", "doit", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@contextlib.contextmanager
def _tmpfs(path: Path, options: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "hermitbuild-test", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.mark.podman
def test_doctor_passes_here_and_reports_where_settings_came_from(tmp_path):
    require_podman()
    done = _doit(["doctor"], tmp_path, {"HERMITBUILD_JOBS": "3"})
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert "[ok  ] container runtime: " in out and "podman version" in out
    assert "[ok  ] container run (build-step options)" in out
    for name in ("prefix", "build_dir", "cache_dir"):
        assert f"[ok  ] {name} writable" in out
    assert "free disk" in out and "kvm:" in out and "remote cache: off" in out
    assert "setting jobs: 3 (HERMITBUILD_JOBS)" in out
    assert "setting runtime_options: " in out and "(HERMITBUILD_RUNTIME_OPTIONS)" in out
    assert "setting target: x86_64-hermit (" + str(ROOT / "hermitbuild.yaml") in out
    assert "all checks passed" in out


@pytest.mark.podman
def test_an_option_podman_rejects_is_named(tmp_path):
    require_podman()
    done = _doit(["doctor"], tmp_path, {"HERMITBUILD_RUNTIME_OPTIONS": OPTIONS + " --no-such-option 1"})
    failed_cleanly(done, "[FAIL] container run", "--no-such-option", "runtime_options")


@pytest.mark.podman
def test_a_missing_init_binary_names_catatonit(tmp_path):
    """podman's error when catatonit is not installed, made with podman's own --init-path."""
    require_podman()
    done = _doit(["doctor"], tmp_path,
                 {"HERMITBUILD_RUNTIME_OPTIONS": OPTIONS + f" --init-path {tmp_path}/no/catatonit"})
    failed_cleanly(done, "[FAIL] container run", "catatonit", "apt-get install catatonit")


def test_the_docker_cli_without_an_engine_is_explained(tmp_path):
    docker = shutil.which("docker")
    if docker is None:
        pytest.skip("no docker CLI on this machine")
    probe = subprocess.run([docker, "info"], capture_output=True, timeout=60)
    if probe.returncode == 0:
        pytest.skip("a docker engine answers here")
    done = _doit(["doctor"], tmp_path, {"HERMITBUILD_RUNTIME": "docker"})
    failed_cleanly(done, "no docker engine answers", "runtime: podman")


def test_no_runtime_at_all(tmp_path):
    (tmp_path / "bin").mkdir()
    done = _doit(["doctor"], tmp_path, {"PATH": str(tmp_path / "bin"), "HERMITBUILD_RUNTIME": "auto"})
    failed_cleanly(done, "[FAIL] container runtime", "install podman")


@pytest.mark.podman
def test_a_read_only_prefix_fails_even_for_root(tmp_path):
    require_podman()
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        done = _doit(["doctor"], tmp_path, {"HERMITBUILD_PREFIX": str(ro / "hermit")})
        failed_cleanly(done, "[FAIL] prefix writable", "Read-only file system", "chown")


@pytest.mark.podman
def test_a_full_disk_fails_with_the_needed_size(tmp_path):
    require_podman()
    with _tmpfs(tmp_path / "small", "size=8m") as small:
        done = _doit(["doctor"], tmp_path, {"HERMITBUILD_BUILD_DIR": str(small / "build")})
        out = failed_cleanly(done, "[FAIL] free disk", "a cold toolchain needs about", "larger disk")
        assert "GiB free on the file system of build_dir" in out


@pytest.mark.podman
def test_doit_toolchain_stops_in_seconds_before_any_download(tmp_path):
    """The pre-flight: a broken runtime stops `doit toolchain` at its first recipe to build,
    with the doctor's lines, before anything is downloaded."""
    require_podman()
    done = _doit(["toolchain"], tmp_path, {"HERMITBUILD_RUNTIME_OPTIONS": OPTIONS + " --no-such-option 1",
                                           "HERMITBUILD_OFFLINE": "1"}, timeout=120)
    failed_cleanly(done, "pre-flight checks failed", "[FAIL] container run", "--no-such-option",
                    "doit doctor")
    downloads = tmp_path / "build" / "downloads"
    assert not downloads.exists() or not any(downloads.rglob("*")), "downloaded before the pre-flight"
    assert not (tmp_path / "build" / "src").exists(), "prepared a tree before the pre-flight"


def test_preflight_runs_once_per_process_and_only_until_it_passes(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "_PREFLIGHT_DONE", set())
    s = Settings(root=ROOT, prefix=tmp_path / "p", build_dir=tmp_path / "b", cache_dir=tmp_path / "c")
    calls: list[int] = []

    def bad(settings: Settings) -> list[doctor.Check]:
        calls.append(1)
        return [doctor.Check("container run", "fail", "broken", "repair it")]

    from hermitbuild.errors import PreflightError

    with pytest.raises(PreflightError) as exc:
        doctor.preflight(s, checks=bad)
    assert "[FAIL] container run: broken" in str(exc.value) and "repair it" in str(exc.value)
    assert exc.value.failed[0]["name"] == "container run"
    with pytest.raises(PreflightError):
        doctor.preflight(s, checks=bad)
    assert len(calls) == 2  # a failed pre-flight is not remembered
    doctor.preflight(s, checks=lambda settings: calls.append(1) or [doctor.Check("x", "ok", "")])
    doctor.preflight(s, checks=lambda settings: pytest.fail("ran twice"))
    assert len(calls) == 3


def _counted_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                     ) -> tuple[Path, Path, list[int], list[str]]:
    """A runtime binary and a boot id the test can change, and a runtime check that counts its
    runs and answers ``verdict[0]``."""
    runtime = tmp_path / "podman"
    runtime.write_text("#!/bin/sh\n")
    boot = tmp_path / "boot_id"
    boot.write_text("boot-1\n")
    monkeypatch.setattr(container, "detect_runtime", lambda settings: str(runtime))
    monkeypatch.setattr(doctor, "_BOOT_ID", boot)
    runs: list[int] = []
    verdict = ["ok"]
    monkeypatch.setattr(doctor, "check_runtime", lambda settings: runs.append(1) or [
        doctor.Check("container run", verdict[0], "podman 4.3.1", "fix it")])
    return runtime, boot, runs, verdict


def test_a_passed_runtime_check_is_remembered_until_a_binary_or_setting_changes(tmp_path, monkeypatch):
    """The real container run of the pre-flight (0.3-0.4 s) runs again in a new process only when
    something it depends on changed: the runtime binary, the settings, or the machine rebooted."""
    runtime, boot, runs, verdict = _counted_runtime(tmp_path, monkeypatch)
    monkeypatch.setattr(doctor, "check_dirs", lambda settings: [])
    monkeypatch.setattr(doctor, "check_disk", lambda settings, needed=None: [])
    s = Settings(root=ROOT, prefix=tmp_path / "p", build_dir=tmp_path / "b", cache_dir=tmp_path / "c")

    def new_process() -> None:
        monkeypatch.setattr(doctor, "_PREFLIGHT_DONE", set())
        doctor.preflight(s)

    new_process()
    new_process()
    assert len(runs) == 1, "a second process ran the container again"
    os.utime(runtime, ns=(1, 1))  # the runtime was upgraded
    new_process()
    assert len(runs) == 2
    new_process()
    boot.write_text("boot-2\n")  # rebooted
    new_process()
    assert len(runs) == 3
    new_process()
    s = s.replace(runtime_options=("--runtime", "crun"))
    new_process()
    assert len(runs) == 4
    verdict[0] = "fail"  # a failed check is never remembered, and forgets the pass
    s = s.replace(runtime_options=("--runtime", "runc"))
    from hermitbuild.errors import PreflightError
    for _ in range(2):
        with pytest.raises(PreflightError):
            new_process()
    assert len(runs) == 6


def test_setup_takes_a_remembered_pass_and_doctor_always_runs_the_container(tmp_path, monkeypatch, capsys):
    """`python -m hermitbuild.doctor --runtime` ends scripts/setup, so every scripts/doit command:
    it reuses the pre-flight's remembered pass (0.4 s less per command); `doit doctor` does not."""
    runtime, _, runs, verdict = _counted_runtime(tmp_path, monkeypatch)
    for name in ("check_images", "check_dirs", "check_disk", "check_kvm", "check_remote", "settings_report"):
        monkeypatch.setattr(doctor, name, lambda *a, **k: [])
    s = Settings(root=ROOT, prefix=tmp_path / "p", build_dir=tmp_path / "b", cache_dir=tmp_path / "c")
    assert doctor.main(["--runtime"], settings=s) == 0 and len(runs) == 1
    assert doctor.main(["--runtime"], settings=s) == 0 and len(runs) == 1
    assert "passed its real run" in capsys.readouterr().out
    assert doctor.main([], settings=s, images=[]) == 0 and len(runs) == 2  # doctor: a real run
    os.utime(runtime, ns=(1, 1))  # the runtime changed: set-up runs the container again
    verdict[0] = "fail"
    assert doctor.main(["--runtime"], settings=s) == 1 and len(runs) == 3
    assert "fix it" in capsys.readouterr().out
    assert doctor.main(["--runtime"], settings=s) == 1 and len(runs) == 4  # a failure is not kept


@pytest.mark.parametrize("text, needle", [
    ("Error: container-init binary not found on the host: stat /usr/libexec/podman/catatonit: "
     "no such file or directory", "catatonit"),
    ('Error: default OCI runtime "runc" not found: invalid argument', "apt-get install runc"),
    ("Error: unknown flag: --frobnicate", "--frobnicate"),
    ("docker: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
     "Is the docker daemon running?", "no docker engine"),
    ("Error: cannot set up namespace using \"/usr/bin/newuidmap\": exit status 1", "subuids"),
    ("Error: OCI runtime error: runc: setrlimit `RLIMIT_NPROC`: operation not permitted", "ulimit"),
])
def test_runtime_messages_become_the_missing_piece(text, needle):
    cause, fix = container.explain_runtime_failure("/usr/bin/podman", text)
    assert needle in cause + fix


def test_nested_kvm_is_recognised_from_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu vme hypervisor lahf_lm\n")
    assert doctor._in_virtual_machine(info)
    info.write_text("processor\t: 0\nflags\t\t: fpu vme lahf_lm\n")
    assert not doctor._in_virtual_machine(info)


def test_the_preflight_insists_only_on_a_real_shortage(tmp_path):
    """2 GiB free: `doit doctor` says a cold toolchain will not fit, but a build of one recipe
    is not stopped for it (the pre-flight insists on 1 GiB)."""
    with _tmpfs(tmp_path / "mid", "size=2g") as mid:
        s = Settings(root=ROOT, prefix=mid / "prefix", build_dir=mid / "build", cache_dir=mid / "cache")
        full = doctor.check_disk(s)
        cold = (doctor.NEEDED_BYTES["build_dir"] + doctor.NEEDED_BYTES["cache_dir"]
                + doctor.NEEDED_BYTES["prefix"]) // doctor.GIB
        assert [c.status for c in full] == ["fail"] and f"a cold toolchain needs about {cold} GiB" in full[0].detail
        light = doctor.check_disk(s, needed=doctor.PREFLIGHT_BYTES)
        assert [c.status for c in light] == ["ok"] and "a build needs at least" in light[0].detail
