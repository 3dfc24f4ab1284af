"""The environment checks: ``doit doctor``, the end of ``scripts/setup`` and the pre-flight of a build.

Contract:
- :func:`run_checks` returns one :class:`Check` per line of the report: a name, a
  status (``ok``, ``fail``, ``warn`` or ``info``), what was found and, for a failure
  or a warning, the fix.  ``fail`` means the main job (``doit toolchain``) cannot
  work; ``warn`` means something optional (KVM, the remote cache) will not be used.
- The runtime check runs a real container of a tiny probe image
  (:func:`hermitbuild.container.probe_image`) with exactly the options build steps
  use (``--init``, ``--network=none``, ``--user``, ``runtime_options``, a same-path
  read-write mount) and checks that the container wrote a file there as the invoking
  user; a failure is translated into the missing piece by
  :func:`hermitbuild.container.explain_runtime_failure`.
- Directory checks write and remove a file in the directory (or, when it does not
  exist yet, in the nearest existing parent it would be created in): a read-only
  file system or a missing permission fails even for root.  Free space is compared
  with :data:`NEEDED_BYTES` (per file system, summed when several directories share one);
  the pre-flight of a build insists only on :data:`PREFLIGHT_BYTES` (a real shortage).
- The remote cache check never prints the token; it reads (HEAD of a key that does
  not exist) and, in ``readwrite`` mode, writes and deletes one probe object.
- :func:`preflight` runs the checks a build needs (runtime, directories, disk) once
  per process (the runtime's real container run once a day per boot, binaries and settings:
  ``<stamps>/preflight-runtime.json``) and raises :class:`~hermitbuild.errors.PreflightError` with the failed
  lines and their fixes: ``doit toolchain`` calls it before the first long step
  (download, prepare or build), so a broken machine stops in seconds.
- :func:`main` (``python -m hermitbuild.doctor [--runtime]``) prints the report and
  exits 1 when a check failed; ``--runtime`` runs only the runtime check (the end of
  ``scripts/setup``, so of every ``scripts/doit`` command), remembered as the pre-flight's
  is: its real container run again only when a binary, a setting or the boot changed (or a
  day passed); ``doit doctor`` always runs it.  Nothing here changes the machine but the
  probe image and files.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from . import container, qemu, runner
from .errors import CommandError, ContainerError, HermitBuildError, PreflightError
from .recipe import load_recipes
from .fsutil import read_json, write_json
from .settings import FILE_FIELDS, Settings, load_settings

logger = logging.getLogger(__name__)

GIB = 1024 ** 3

# Free space a cold `doit toolchain` (upstream gcc) needs, per location. Measured parts (the
# suite's builds, 2 cores, this project's recipes): GCC 12.2's unpacked tree 0.97 GB; gcc stage 1
# (C only) 1.8 GB of build directory, a 40 MB artifact; gdb 13.1 0.66 GB of build directory and a
# 0.22 GB tree; the toolchain image 0.94 GB. Estimated from those: stage 1 with C++ and LTO about
# 2.5 GB, the final gcc with its target libraries about 3 GB, binutils and newlib under 1 GB
# together: about 9 GiB for the build directory, well under 1 GiB each for the cache and prefix.
NEEDED_BYTES = {"build_dir": 9 * GIB, "cache_dir": 1 * GIB, "prefix": 1 * GIB, "images": 2 * GIB}

STATUS_MARK = {"ok": "ok  ", "fail": "FAIL", "warn": "warn", "info": "    "}


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    name: str
    status: str  # ok | fail | warn | info
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == "fail"


def render(checks: Sequence[Check]) -> str:
    lines = []
    for check in checks:
        lines.append(f"[{STATUS_MARK[check.status]}] {check.name}: {check.detail}")
        if check.fix and check.status in ("fail", "warn"):
            lines.append(f"         fix: {check.fix}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- runtime

def check_runtime(settings: Settings) -> list[Check]:
    """The runtime is found, tells its version, and runs a container exactly as build steps do."""
    try:
        runtime = container.detect_runtime(settings)
    except ContainerError as err:
        return [Check("container runtime", "fail", err.why, err.fix)]
    name = Path(runtime).name
    try:
        version = runner.run([runtime, "--version"], capture=True, check=False, timeout=30).output.strip()
    except CommandError as err:
        return [Check("container runtime", "fail", f"{runtime} does not start: {err.why}",
                      f"reinstall {name}")]
    checks = [Check("container runtime", "ok", f"{runtime} ({version or 'version unknown'})")]
    checks.append(_check_run(settings, runtime))
    return checks


def _check_run(settings: Settings, runtime: str) -> Check:
    label = "container run (build-step options)"
    try:
        tag = container.probe_image(settings)
    except (CommandError, ContainerError) as err:
        tail = getattr(err, "tail", "") or err.why
        cause, fix = container.explain_runtime_failure(runtime, tail)
        return Check(label, "fail", f"cannot create the probe image: {cause}", fix)
    except OSError as exc:
        return Check(label, "fail", f"cannot create the probe image: {exc}",
                     f"make {settings.build_dir} writable")
    try:
        settings.build_dir.mkdir(parents=True, exist_ok=True)
        probe_dir = Path(tempfile.mkdtemp(prefix=".doctor-", dir=settings.build_dir))
    except OSError as exc:
        return Check(label, "fail", f"cannot create a directory in {settings.build_dir}: {exc.strerror}",
                     f"make {settings.build_dir} writable or choose another build_dir")
    try:
        target = probe_dir / "probe"
        argv = container.run_argv(tag, ["/bin/sh", "-c", f"echo ok > {target}"], settings,
                                  runtime=runtime, cwd=probe_dir, mounts=[(probe_dir, True)], env={},
                                  network=False, user=None, name=None,
                                  labels={"hermitbuild.doctor": "1"})
        try:
            done = runner.run(argv, capture=True, check=False, timeout=120)
        except CommandError as err:
            return Check(label, "fail", f"the probe container did not finish: {err.why}",
                         f"check that `{Path(runtime).name} info` answers")
        if done.returncode != 0:
            cause, fix = container.explain_runtime_failure(runtime, done.output)
            return Check(label, "fail", cause, fix)
        if not target.is_file() or target.read_text(errors="replace").strip() != "ok":
            return Check(label, "fail", "the container ran but did not write into its same-path mount",
                         "check that bind mounts work with this runtime (SELinux: add :z or disable "
                         "labelling)")
        owner = target.stat().st_uid
        if owner != os.getuid():
            return Check(label, "fail", f"files written in the container belong to uid {owner}, "
                         f"not to you ({os.getuid()})",
                         "rootless podman needs --userns=keep-id (hermitbuild adds it); check "
                         "/etc/subuid and /etc/subgid")
        options = " ".join(settings.runtime_options) or "none"
        return Check(label, "ok", f"--init --network=none --user and same-path mounts work "
                     f"(runtime_options: {options})")
    finally:
        shutil.rmtree(probe_dir, ignore_errors=True)


def check_images(settings: Settings, images: Sequence[str]) -> list[Check]:
    """Base and build images present, or what creating them will take."""
    try:
        container.detect_runtime(settings)
    except ContainerError:
        return []  # reported by the runtime check
    out: list[Check] = []
    try:
        base = container.base_image_exists(settings)
    except HermitBuildError as err:
        return [Check("images", "fail", err.why, err.fix)]
    if base:
        out.append(Check("base image", "ok", f"{settings.base_image} is present"))
    elif settings.base_image.startswith("localhost/"):
        if os.geteuid() != 0:
            out.append(Check("base image", "fail", f"{settings.base_image} is missing, and creating it "
                             "(debootstrap) needs root", "run `sudo -E .venv/bin/doit base_image` once"))
        else:
            out.append(Check("base image", "info", f"{settings.base_image} is missing; the first build "
                             "creates it with debootstrap (about 30 s)"))
    else:
        out.append(Check("base image", "info", f"{settings.base_image} will be pulled on first use"))
    for image in images:
        try:
            present = container.image_exists(image, settings)
            tag = container.image_tag(image, settings)
        except HermitBuildError as err:
            out.append(Check(f"build image '{image}'", "fail", err.why, err.fix))
            continue
        out.append(Check(f"build image '{image}'", "ok" if present else "info",
                         f"{tag} is present" if present else
                         f"{tag} will be built on first use (the toolchain image: about 3 minutes)"))
    return out


# --------------------------------------------------------------------------- directories and disk

def _existing_parent(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _writable(path: Path) -> str | None:
    """None when a file can be created where ``path`` is (or would be created); else why not."""
    where = _existing_parent(path)
    if not where.is_dir():
        return f"{where} is not a directory"
    try:
        fd, name = tempfile.mkstemp(prefix=".hermitbuild-doctor-", dir=where)
    except OSError as exc:
        return f"cannot create files in {where}: {exc.strerror}"
    os.close(fd)
    os.unlink(name)
    return None


def _dirs(settings: Settings) -> dict[str, Path]:
    return {"prefix": settings.prefix, "build_dir": settings.build_dir,
            "cache_dir": settings.cache_dir or settings.build_dir / "cache"}


def check_dirs(settings: Settings) -> list[Check]:
    out = []
    for setting, path in _dirs(settings).items():
        problem = _writable(path)
        if problem:
            out.append(Check(f"{setting} writable", "fail", f"{path}: {problem}",
                             f"`sudo mkdir -p {path} && sudo chown $(id -u):$(id -g) {path}`, or choose "
                             f"another {setting} (HERMITBUILD_{setting.upper()})"))
        else:
            out.append(Check(f"{setting} writable", "ok", str(path)))
    return out


def _image_store(settings: Settings) -> Path | None:
    try:
        runtime = container.detect_runtime(settings)
    except ContainerError:
        return None
    fmt = "{{.Store.GraphRoot}}" if container.runtime_kind(runtime) == "podman" else "{{.DockerRootDir}}"
    try:
        done = runner.run([runtime, "info", "--format", fmt], capture=True, check=False, timeout=30)
    except CommandError:
        return None
    text = done.output.strip()
    return Path(text) if done.returncode == 0 and text.startswith("/") else None


# What the pre-flight of a build insists on (a build of one recipe needs far less than a cold
# toolchain; below this even a small one would run out of space).
PREFLIGHT_BYTES = {"build_dir": 1 * GIB, "cache_dir": GIB // 4, "prefix": GIB // 4, "images": GIB // 2}


def check_disk(settings: Settings, *, image_store: Path | None = None,
               needed: dict[str, int] = NEEDED_BYTES) -> list[Check]:
    """Free space per file system against what a cold toolchain (or ``needed``) needs there."""
    places = {name: _existing_parent(path) for name, path in _dirs(settings).items()}
    if image_store is not None:
        places["images"] = _existing_parent(image_store)
    by_device: dict[int, list[str]] = {}
    for name, path in places.items():
        try:
            by_device.setdefault(os.stat(path).st_dev, []).append(name)
        except OSError:
            continue
    out = []
    for names in by_device.values():
        path = places[names[0]]
        free = shutil.disk_usage(path).free
        need = sum(needed[n] for n in names)
        what = ", ".join(f"{n} ({_dirs(settings).get(n, image_store)})" for n in names)
        figure = f"{need / GIB:.0f} GiB" if need >= GIB else f"{need / GIB:.2f} GiB"
        detail = f"{free / GIB:.1f} GiB free on the file system of {what}; " + (
            f"a cold toolchain needs about {figure} there" if needed is NEEDED_BYTES
            else f"a build needs at least {figure} there")
        if free < need:
            out.append(Check("free disk", "fail", detail,
                             "free space there, or move build_dir/cache_dir (HERMITBUILD_BUILD_DIR, "
                             "HERMITBUILD_CACHE_DIR) to a larger disk"))
        else:
            out.append(Check("free disk", "ok", detail))
    return out


# --------------------------------------------------------------------------- kvm, remote, settings

def check_kvm(settings: Settings) -> list[Check]:
    usable = qemu.kvm_usable()
    auto = "auto uses it" if usable else "auto boots with TCG (software emulation, slower)"
    if settings.kvm == "on" and not usable:
        return [Check("kvm", "warn", "kvm: on, but /dev/kvm is not usable: doit boot will fail",
                      "set kvm: auto or off, or give yourself access to /dev/kvm (group kvm)")]
    state = "usable" if usable else ("present but not usable" if Path("/dev/kvm").exists() else "absent")
    checks = [Check("kvm", "info", f"/dev/kvm is {state}; kvm: {settings.kvm}"
                    + (f" ({auto})" if settings.kvm == "auto" else ""))]
    if usable and settings.kvm != "off" and _in_virtual_machine():
        checks.append(Check("nested kvm", "warn", "this machine is itself a virtual machine: HermitCore "
                            "guests were seen hanging under nested KVM",
                            "if `doit boot` times out, set `kvm: off` (HERMITBUILD_KVM=off) to boot with TCG"))
    return checks


def _in_virtual_machine(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether the CPU flags carry ``hypervisor`` (this kernel runs as a guest)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return False
    return any(line.startswith("flags") and " hypervisor" in line for line in text.splitlines())


def check_remote(settings: Settings) -> list[Check]:
    if settings.remote_cache_mode == "off":
        return [Check("remote cache", "info", "off")]
    from . import cache  # here, not at the top: set-up's runtime check (every scripts/doit) needs none of it

    _, remote = cache.open_caches(settings)
    assert remote is not None
    token = " with a token" if settings.remote_cache_token else \
        f" without a token ({settings.remote_cache_token_env} is not set)"
    credentials = getattr(remote, "credentials", None)
    if not settings.remote_cache_token and credentials is not None:
        token = f" with the credentials of user {credentials[0]!r} from a podman/docker auth file"
    status, detail = remote.probe()
    if status != "ok":
        return [Check("remote cache", "warn", f"{settings.remote_cache} ({settings.remote_cache_mode}"
                      f"{token}): {detail}; builds go on locally",
                      "check the URL, the server and the token variable " + settings.remote_cache_token_env
                      + (f" (USER:SECRET for a registry), or run `podman login {remote.host}`"
                         if getattr(remote, "host", None) else ""))]
    return [Check("remote cache", "ok", f"{settings.remote_cache} ({settings.remote_cache_mode}{token}): "
                  f"{detail}")]


def settings_report(settings: Settings) -> list[Check]:
    origins = dict(settings.origins)
    out = []
    for name in sorted(FILE_FIELDS):
        value = getattr(settings, name)
        if isinstance(value, tuple):
            value = " ".join(value) if name == "runtime_options" else list(value)
        elif isinstance(value, dict):
            value = {k: str(v) for k, v in value.items()}
        out.append(Check(f"setting {name}", "info", f"{value} ({origins.get(name, 'default')})"))
    return out


# --------------------------------------------------------------------------- entry points

def run_checks(settings: Settings, images: Sequence[str] = ()) -> list[Check]:
    checks = check_runtime(settings)
    checks += check_images(settings, images)
    checks += check_dirs(settings)
    checks += check_disk(settings, image_store=_image_store(settings))
    checks += check_kvm(settings)
    checks += check_remote(settings)
    checks += settings_report(settings)
    return checks


_PREFLIGHT_DONE: set[tuple[str, ...]] = set()
# what a passed runtime check depends on besides the settings: the binaries podman and docker
# run a container with, their configuration files, and this boot of the machine
_RUNTIME_FILES = ("/usr/libexec/podman/catatonit", "/usr/libexec/podman/conmon", "/etc/containers/containers.conf",
                  "/etc/containers/storage.conf", "/etc/containers/policy.json", "/etc/docker/daemon.json")
_RUNTIME_PROGRAMS = ("runc", "crun", "catatonit", "conmon", "docker-init")
RUNTIME_PASS_SECONDS = 24 * 3600
_BOOT_ID = Path("/proc/sys/kernel/random/boot_id")


def _runtime_fingerprint(settings: Settings, ident: Sequence[str]) -> str | None:
    """A digest of everything a passed runtime check depends on (None: no runtime found)."""
    try:
        runtime = container.detect_runtime(settings)
    except ContainerError:
        return None
    paths = [runtime, *_RUNTIME_FILES, *(shutil.which(p) or p for p in _RUNTIME_PROGRAMS),
             str(Path.home() / ".config" / "containers" / "containers.conf"),
             str(Path.home() / ".config" / "containers" / "storage.conf")]
    paths.append(os.path.realpath("/bin/sh"))  # what the probe image holds
    parts = list(ident)
    for path in paths:
        try:
            st = os.stat(path)
            parts.append(f"{path}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
        except OSError:
            parts.append(f"{path}:-")
    try:
        parts.append(_BOOT_ID.read_text().strip())
    except OSError:
        parts.append(f"no-boot-id:{os.getpid()}:{time.time_ns()}")  # never the same twice
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _runtime_checks(settings: Settings, ident: Sequence[str]) -> list[Check]:
    """:func:`check_runtime`, unless it passed before with the same fingerprint (the same
    settings, runtime binaries and configuration, in this boot) within a day: a real container
    run costs 0.3-0.4 s, and every command that rebuilds something would pay it again."""
    stamp = settings.stamps_dir / "preflight-runtime.json"
    fingerprint = _runtime_fingerprint(settings, ident)
    kept = read_json(stamp) or {}
    if (fingerprint is not None and kept.get("fingerprint") == fingerprint
            and isinstance(kept.get("time"), (int, float))
            and 0 <= time.time() - kept["time"] < RUNTIME_PASS_SECONDS):
        return [Check("container runtime", "ok", f"{kept.get('runtime', '')} (passed its real run "
                      f"{int(time.time() - kept['time'])} s ago; same binaries and settings)")]
    found = check_runtime(settings)
    if fingerprint is not None and not any(c.failed for c in found):
        try:
            write_json(stamp, {"fingerprint": fingerprint, "time": time.time(),
                               "runtime": found[0].detail if found else ""})
        except OSError as exc:
            logger.debug("cannot keep the runtime check's result in %s: %s", stamp, exc)
    else:
        with contextlib.suppress(OSError):  # a cache only; the check's own result is what counts
            stamp.unlink(missing_ok=True)
    return found


def _ident(settings: Settings) -> tuple[str, ...]:
    """The settings a runtime check's result depends on."""
    return (str(settings.build_dir), str(settings.prefix), settings.runtime, *settings.runtime_options)


def preflight(settings: Settings, *, checks: Callable[[Settings], list[Check]] | None = None) -> None:
    """The checks a build needs, once per process; raises PreflightError listing what failed.
    The runtime's real container run is remembered across processes (:func:`_runtime_checks`)."""
    ident = _ident(settings)
    if ident in _PREFLIGHT_DONE:
        return
    found = checks(settings) if checks else (_runtime_checks(settings, ident) + check_dirs(settings)
                                             + check_disk(settings, needed=PREFLIGHT_BYTES))
    failed = [c for c in found if c.failed]
    if failed:
        raise PreflightError(failed=[dataclasses.asdict(c) for c in failed], report=render(failed))
    _PREFLIGHT_DONE.add(ident)


def main(argv: Sequence[str] | None = None, settings: Settings | None = None,
         images: Sequence[str] | None = None) -> int:
    """``doit doctor`` / ``python -m hermitbuild.doctor [--runtime]``: print the report."""
    parser = argparse.ArgumentParser(prog="doit doctor", description="check this machine for hermitbuild")
    parser.add_argument("--runtime", action="store_true", help="only the container runtime check")
    ns = parser.parse_args(list(argv or []))
    try:
        settings = settings or load_settings()
        if images is None and not ns.runtime:
            recipes = load_recipes(settings.recipes_dir, settings.patches_dir, settings.variant_values)
            images = sorted({r.image for r in recipes})
    except HermitBuildError as err:
        print(err, file=sys.stderr)
        return 2
    # set-up (every scripts/doit command) takes a remembered pass, as a build's pre-flight does;
    # `doit doctor` is what someone runs when something is wrong: it always runs the container
    checks = _runtime_checks(settings, _ident(settings)) if ns.runtime else run_checks(settings, images or ())
    print(render(checks), flush=True)
    failed = [c for c in checks if c.failed]
    if failed:
        print(f"\n{len(failed)} check(s) failed: the toolchain cannot be built until they are fixed",
              flush=True)
        return 1
    print("\nall checks passed" if not ns.runtime else "\nthe container runtime works", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
