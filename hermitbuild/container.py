"""Container runtime: detection, build images, base image, one command in a fresh container.

Contract:
- :func:`detect_runtime` returns the path of the runtime binary: the ``runtime``
  setting (``podman``/``docker``) or, for ``auto``, podman then docker found on
  ``PATH``.  None found raises :class:`~hermitbuild.errors.ContainerError`
  saying how to install one.
- Images are ``containers/Containerfile.<image>`` (``ARG BASE_IMAGE`` +
  ``FROM ${BASE_IMAGE}``).  :func:`image_hash` is a sha256 over the
  Containerfile bytes, the base image name and every file the Containerfile
  COPYs/ADDs (pure file reads, no runtime call); :func:`image_tag` is
  ``localhost/hermitbuild-<image>:<hash[:16]>``.  So editing a Containerfile
  (or choosing another base image) builds a new image, and nothing else does.
- :func:`build_image` builds the image if it does not exist yet (one at a time
  per image, under a file lock) with
  ``<runtime> build --build-arg BASE_IMAGE=<base> -t <tag> -f <file> <containers dir>``,
  logging to ``<logs>/containers/<image>.log``.  The ``--ulimit`` options of the
  ``runtime_options`` setting are passed to ``build`` as well (the other options,
  e.g. ``--runtime runc``, are ``run`` options).
- :func:`make_base_image` creates the base image without any registry:
  ``debootstrap --variant=minbase <suite>`` into a temporary directory under
  the build dir (Debian mirror: the host's apt sources, else
  ``http://deb.debian.org/debian``; suite: the base image's tag when it is a
  Debian codename, else ``bookworm``), packed with tar and imported under the
  ``base_image`` name.  Needs root (debootstrap does).
- :func:`run_in_container` runs ``argv`` in a fresh ``--rm`` container:
  network off unless asked, as the invoking user's uid:gid (podman rootless:
  ``--userns=keep-id``), ``LC_ALL=C`` and ``HOME=/tmp`` plus the given
  environment, every mount at the *same* path inside as outside (read-only or
  read-write), ``-w cwd``, ``--init`` (signals reach the command), optional
  ``--label``s, then the ``runtime_options`` setting.  Output goes to ``log_path`` (via
  :func:`hermitbuild.runner.run`).  On Ctrl-C or a timeout the container is
  removed with ``rm -f`` so none is left running; :func:`remove_labelled`
  removes containers a killed client left behind.
- :func:`explain_runtime_failure` turns the runtime's own error text (a run that
  failed before the command started) into the missing piece and its fix
  (catatonit for ``--init``, runc, ulimits, subuid ranges, storage, a docker CLI
  without an engine, an option the runtime rejects); :func:`runtime_failure`
  tells such a failure from the command's own exit status.  The doctor and the
  build both use them.
- :func:`probe_image` imports a tiny image made of this host's ``/bin/sh`` and the
  libraries it loads (no registry, no debootstrap; about a second), so that the
  exact ``run`` options of build steps can be tried before any long step.
- :func:`toolchain_exec_prefix` is the mount policy of ``doit boot``/``smoke``/``image``:
  the toolchain's programs run in its build image with the prefix, the build directory,
  the checkout and the application's directory mounted (never a directory that would hide
  one of the image's system directories), or on the host when no runtime exists.
- :func:`exec_prefix` is the same ``run`` command line up to and including the
  image tag, for callers that run programs through :func:`hermitbuild.runner.run`
  themselves (``doit boot``/``smoke``/``image`` run the installed toolchain in
  the image it was built in); ``--device`` options (``/dev/kvm``) and ``-i`` on
  request.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import secrets
import shlex
import shutil
import sys
import tarfile
import tempfile
from pathlib import Path
from typing import Mapping, Sequence

from . import runner
from .errors import CommandError, ContainerError
from .runner import Completed
from .fsutil import file_lock
from .settings import Settings

logger = logging.getLogger(__name__)

RUNTIME_NAMES = ("podman", "docker")
DEBIAN_CODENAMES = ("buster", "bullseye", "bookworm", "trixie", "forky", "sid")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
INSTALL_HINT = ("install podman (Debian/Ubuntu: `sudo apt-get install podman runc catatonit uidmap slirp4netns`, "
                "Fedora: `sudo dnf install podman`) or docker, or set `runtime:` in hermitbuild.yaml "
                "(HERMITBUILD_RUNTIME) to the one you have")


# --------------------------------------------------------------------------- runtime

def detect_runtime(settings: Settings) -> str:
    """Path of the container runtime to use (see the module docstring)."""
    wanted = RUNTIME_NAMES if settings.runtime == "auto" else (settings.runtime,)
    for name in wanted:
        path = shutil.which(name)
        if path:
            return path
    raise ContainerError(
        "no container runtime found" if settings.runtime == "auto"
        else f"container runtime '{settings.runtime}' not found",
        f"looked for {' and '.join(wanted)} on PATH (setting runtime: {settings.runtime}); every build "
        "step runs in a container",
        INSTALL_HINT)


def runtime_kind(runtime: str) -> str:
    """``podman`` or ``docker`` for a runtime path."""
    return "docker" if Path(runtime).name.startswith("docker") else "podman"


def build_options(settings: Settings) -> list[str]:
    """The ``--ulimit`` options of ``runtime_options``, which ``build`` needs as much as ``run``."""
    out: list[str] = []
    opts = list(settings.runtime_options)
    i = 0
    while i < len(opts):
        opt = opts[i]
        if opt == "--ulimit" and i + 1 < len(opts):
            out += [opt, opts[i + 1]]
            i += 2
            continue
        if opt.startswith("--ulimit="):
            out.append(opt)
        i += 1
    return out


# --------------------------------------------------------------------------- images

def containerfile(image: str, settings: Settings) -> Path:
    """``containers/Containerfile.<image>``; ContainerError when it does not exist."""
    path = settings.containers_dir / f"Containerfile.{image}"
    if not path.is_file():
        known = sorted(p.name.split(".", 1)[1] for p in settings.containers_dir.glob("Containerfile.*"))
        raise ContainerError(
            f"no build image '{image}'",
            f"{path} does not exist (known images: {', '.join(known) or 'none'})",
            f"create {path} or set the recipe's `image:` to one of the known images",
            image=image, path=str(path))
    return path


_COPY_RE = re.compile(r"^\s*(COPY|ADD)\s+(.*)$", re.IGNORECASE)


def _copied_files(text: str, context: Path) -> list[Path]:
    """Local files a Containerfile COPYs/ADDs (sources only; ``--from=`` copies are skipped)."""
    files: list[Path] = []
    joined = re.sub(r"\\\n", " ", text)
    for line in joined.splitlines():
        m = _COPY_RE.match(line)
        if not m:
            continue
        rest = m.group(2).strip()
        if rest.startswith("["):
            try:
                parts = [str(p) for p in json.loads(rest)]
            except ValueError:
                parts = shlex.split(rest)
        else:
            parts = shlex.split(rest)
        if any(p.startswith("--from") for p in parts):
            continue
        sources = [p for p in parts if not p.startswith("--")][:-1]
        for src in sources:
            if "://" in src:
                continue
            matches = sorted(context.glob(src)) if any(c in src for c in "*?[") else [context / src]
            for path in matches:
                if path.is_dir():
                    files.extend(sorted(p for p in path.rglob("*") if p.is_file()))
                elif path.is_file():
                    files.append(path)
    return files


def image_hash(image: str, settings: Settings) -> str:
    """sha256 hex of the Containerfile, the base image name and the files it copies."""
    path = containerfile(image, settings)
    data = path.read_bytes()
    h = hashlib.sha256()
    h.update(b"containerfile\0" + data + b"\0")
    h.update(b"base\0" + settings.base_image.encode() + b"\0")
    context = settings.containers_dir
    for f in _copied_files(data.decode("utf-8", "replace"), context):
        rel = os.path.relpath(f, context)
        h.update(b"file\0" + rel.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def image_tag(image: str, settings: Settings) -> str:
    """``localhost/hermitbuild-<image>:<image_hash[:16]>``."""
    return f"localhost/hermitbuild-{image}:{image_hash(image, settings)[:16]}"


def _exists(ref: str, settings: Settings) -> bool:
    rt = detect_runtime(settings)
    if runtime_kind(rt) == "podman":
        argv = [rt, "image", "exists", ref]
    else:
        argv = [rt, "image", "inspect", "--format", "{{.Id}}", ref]
    return runner.run(argv, check=False, capture=True).returncode == 0


def image_exists(image: str, settings: Settings) -> bool:
    """Whether the build image for the current Containerfile exists (one runtime call)."""
    return _exists(image_tag(image, settings), settings)


def base_image_exists(settings: Settings) -> bool:
    """Whether ``settings.base_image`` exists locally (one runtime call)."""
    return _exists(settings.base_image, settings)




def build_image(image: str, settings: Settings) -> str:
    """Build the image unless it exists; return its tag."""
    tag = image_tag(image, settings)
    rt = detect_runtime(settings)
    with file_lock(settings.stamps_dir / "images" / f"{image}.lock"):
        if _exists(tag, settings):
            return tag
        path = containerfile(image, settings)
        if settings.base_image.startswith("localhost/") and not base_image_exists(settings):
            # a local base image (the default) is created on first use: no registry needed
            make_base_image(settings)
        log = settings.logs_dir / "containers" / f"{image}.log"
        logger.info("building image %s (%s), log: %s", tag, path.name, log)
        argv = [rt, "build", *build_options(settings), "--build-arg", f"BASE_IMAGE={settings.base_image}",
                "-t", tag, "-f", str(path), str(settings.containers_dir)]
        try:
            runner.run(argv, log_path=log)
        except CommandError as err:
            base_hint = ""
            try:
                if not base_image_exists(settings):
                    base_hint = (f"; the base image {settings.base_image} is not available locally: "
                                 "create it with `doit base_image` (debootstrap, no registry needed)")
            except ContainerError:
                pass
            raise ContainerError(
                f"could not build image '{image}' ({tag})",
                f"{err.why}",
                f"read {log}, fix containers/{path.name}{base_hint}, and re-run",
                image=image, tag=tag, log_path=str(log)) from None
        return tag


_PRESENT: set[tuple[str, str]] = set()  # (runtime, tag) seen to exist by this process


def ensure_image(image: str, settings: Settings) -> str:
    """The tag of an existing image, built first when missing.  An image this process saw
    exist is not asked about again (every build step starts a container of it)."""
    tag = image_tag(image, settings)
    seen = (detect_runtime(settings), tag)
    if seen in _PRESENT:
        return tag
    if not _exists(tag, settings):
        build_image(image, settings)
    _PRESENT.add(seen)
    return tag


# --------------------------------------------------------------------------- base image

def _suite(base_image: str) -> str:
    tag = base_image.rsplit("/", 1)[-1].partition(":")[2]
    for codename in DEBIAN_CODENAMES:
        if tag == codename or tag.startswith(codename + "-"):
            return codename
    return "bookworm"


def host_debian_mirror(sources: Sequence[Path] = (Path("/etc/apt/sources.list"),
                                                  Path("/etc/apt/sources.list.d"))) -> str:
    """The first Debian (non-security) mirror URL of the host's apt sources, else deb.debian.org."""
    files: list[Path] = []
    for src in sources:
        if src.is_dir():
            files += sorted(p for p in src.iterdir() if p.suffix in (".list", ".sources"))
        elif src.is_file():
            files.append(src)
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        for line in text.splitlines():
            line = line.strip()
            m = re.match(r"^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            url = m.group(1) if m else None
            if url is None:
                m = re.match(r"^URIs:\s*(\S+)", line)
                url = m.group(1) if m else None
            if url and url.startswith(("http://", "https://")) and "security" not in url \
                    and url.rstrip("/").endswith("/debian"):
                return url
    return DEFAULT_MIRROR


def make_base_image(settings: Settings) -> str:
    """Create ``settings.base_image`` locally with debootstrap + import; return its name."""
    rt = detect_runtime(settings)
    name = settings.base_image
    debootstrap = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if Path("/usr/sbin/debootstrap").exists() else None)
    if debootstrap is None:
        raise ContainerError("cannot create the base image: debootstrap is not installed",
                             "the base image is made from Debian packages with debootstrap",
                             "install it (`sudo apt-get install debootstrap`) and re-run `doit base_image`")
    if os.geteuid() != 0:
        raise ContainerError("cannot create the base image as a normal user",
                             "debootstrap needs root to create device nodes and set file owners",
                             "run `sudo -E doit base_image` once (or import a Debian image another way "
                             f"under the name {name})")
    suite = _suite(name)
    mirror = host_debian_mirror()
    log = settings.logs_dir / "containers" / "base_image.log"
    settings.build_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".base-image-", dir=settings.build_dir))
    try:
        root = tmp / "root"
        logger.info("creating base image %s: debootstrap %s from %s (log: %s)", name, suite, mirror, log)
        try:
            runner.run([debootstrap, "--variant=minbase", suite, str(root), mirror], log_path=log)
            tarball = tmp / "root.tar"
            runner.run(["tar", "--numeric-owner", "-C", str(root), "-c", "-f", str(tarball), "."],
                       log_path=log)
            runner.run([rt, "import", "--change", 'CMD ["/bin/bash"]', str(tarball), name], log_path=log)
        except CommandError as err:
            raise ContainerError(f"could not create the base image {name}", err.why,
                                 f"read {log}; check the Debian mirror {mirror} is reachable "
                                 "(or set a mirror in the host's apt sources) and re-run `doit base_image`",
                                 log_path=str(log)) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return name


# --------------------------------------------------------------------------- runtime failures

_RUNTIME_MARKERS = ("OCI runtime", "OCI permission denied", "runc create failed", "crun:", "Error: ",
                    "docker: Error response from daemon", "Cannot connect to the Docker daemon",
                    "container-init binary not found")


def runtime_failure(returncode: int, tail: str) -> bool:
    """Whether a run's failure is the container runtime's (exit 125/126/127 + its error text)."""
    return returncode in (125, 126, 127) and any(m in tail for m in _RUNTIME_MARKERS)


_UNKNOWN_FLAG = re.compile(r"unknown (?:shorthand )?flag:? '?(-{1,2}[\w-]+)'?")
_INVALID_ULIMIT = re.compile(r"(?:ulimit|rlimit|setrlimit|RLIMIT_)", re.IGNORECASE)


def explain_runtime_failure(runtime: str, tail: str) -> tuple[str, str]:
    """(cause, fix) for a container run that failed in the runtime, from its error text.

    Interprets the *runtime's* messages (podman, docker, runc, crun), never ours."""
    name = Path(runtime).name
    text = tail or ""
    low = text.lower()
    if "container-init binary not found" in low or ("catatonit" in low and "no such file" in low):
        return ("podman's --init (every build step uses it) needs catatonit, which is not installed",
                "install it: `sudo apt-get install catatonit` (scripts/setup does this)")
    for oci in ("runc", "crun"):
        if re.search(rf"{oci}.{{0,40}}(not found|no such file|executable file)", low) or \
                re.search(rf"(not found|no such file).{{0,40}}\b{oci}\b", low):
            return (f"the OCI runtime {oci} that runtime_options asks for is not installed",
                    f"install it (`sudo apt-get install {oci}`) or change `--runtime {oci}` in the "
                    "runtime_options setting")
    if "cannot connect to the docker daemon" in low or "is the docker daemon running" in low:
        return ("the docker CLI is installed but no docker engine answers",
                "start the engine (`sudo systemctl start docker`), or use podman: "
                "`sudo apt-get install podman runc catatonit` and `runtime: podman`")
    flag = _UNKNOWN_FLAG.search(text)
    if flag:
        return (f"{name} does not know the option {flag.group(1)}",
                f"remove or correct {flag.group(1)} in the runtime_options setting "
                "(hermitbuild.yaml or HERMITBUILD_RUNTIME_OPTIONS)")
    if "subuid" in low or "subgid" in low or "newuidmap" in low or "not enough ids" in low \
            or "cannot set up namespace" in low:
        return ("rootless podman has no subordinate uid/gid ranges for your user",
                "`sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $USER` and "
                "then `podman system migrate`")
    if _INVALID_ULIMIT.search(text) or "operation not permitted" in low and "limit" in low:
        return ("the runtime could not set the ulimits of runtime_options",
                "keep `--ulimit nofile=4096:4096 --ulimit nproc=4096:4096` in runtime_options, at "
                "or below your hard limits (`ulimit -Hn`, `ulimit -Hu`)")
    if "storage" in low or "overlay" in low or "graph driver" in low or "no space left" in low:
        return (f"{name}'s image storage does not work",
                f"check free space where {name} keeps images (`{name} info`); as a last resort "
                f"`{name} system reset` (removes all its images)")
    last = next((line for line in reversed(text.splitlines()) if line.strip()), "no message")
    return (f"{name} failed before the command started: {last.strip()}",
            f"run the command above by hand to see more, and check `{name} info`")


# --------------------------------------------------------------------------- probe image

def _loaded_libraries(binary: str) -> list[str]:
    """The shared libraries ``binary`` loads (absolute paths, from ldd)."""
    done = runner.run(["ldd", binary], check=False, capture=True, timeout=30)
    libs: list[str] = []
    for line in done.output.splitlines():
        m = re.search(r"(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
    return libs


def probe_image(settings: Settings) -> str:
    """Import (once) a tiny image holding this host's /bin/sh; return its tag."""
    rt = detect_runtime(settings)
    shell = os.path.realpath("/bin/sh")
    files = [shell, *_loaded_libraries(shell)]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for directory in ("bin", "tmp"):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
        for path in dict.fromkeys(files):
            data = Path(os.path.realpath(path)).read_bytes()
            for name in dict.fromkeys([path.lstrip("/"), "bin/sh" if path == shell else ""]):
                if not name:
                    continue
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
    data = buf.getvalue()
    tag = f"localhost/hermitbuild-probe:{hashlib.sha256(data).hexdigest()[:16]}"
    if _exists(tag, settings):
        return tag
    settings.build_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=settings.build_dir, prefix=".probe-", suffix=".tar") as fh:
        fh.write(data)
        fh.flush()
        runner.run([rt, "import", fh.name, tag], capture=True, timeout=120)
    return tag


# --------------------------------------------------------------------------- running

def _container_name(label: str) -> str:
    safe = re.sub(r"[^a-zA-Z0-9_.-]+", "-", label).strip("-.")[:60]
    return f"hermitbuild-{safe + '-' if safe else ''}{secrets.token_hex(4)}"


def run_argv(tag: str, argv: Sequence[str], settings: Settings, *, runtime: str, cwd: Path,
             mounts: Sequence[tuple[Path, bool]], env: Mapping[str, str], network: bool,
             user: tuple[int, int] | None, name: str | None,
             labels: Mapping[str, str] | None = None, devices: Sequence[str] = (),
             interactive: bool = False) -> list[str]:
    """The full ``<runtime> run ...`` command line (see the module docstring).

    ``name=None`` leaves the container unnamed; ``devices`` become ``--device``
    options, ``interactive`` adds ``-i`` (stdin is passed on).
    """
    uid, gid = user if user is not None else (os.getuid(), os.getgid())
    cmd = [runtime, "run", "--rm", "--init"]
    if name is not None:
        cmd += ["--name", name]
    if interactive:
        cmd.append("-i")
        if sys.stdin.isatty():
            cmd.append("-t")  # an interactive program (gdb) wants a terminal
    for key, value in (labels or {}).items():
        cmd += ["--label", f"{key}={value}"]
    if not network:
        cmd.append("--network=none")
    cmd += ["--user", f"{uid}:{gid}"]
    if runtime_kind(runtime) == "podman" and os.getuid() != 0 and user is None:
        cmd.append("--userns=keep-id")
    base_env = {"LC_ALL": "C", "HOME": "/tmp"}
    for key, value in {**base_env, **env}.items():
        cmd += ["-e", f"{key}={value}"]
    seen: set[str] = set()
    for path, writable in mounts:
        p = str(Path(path))
        if p in seen:
            continue
        seen.add(p)
        cmd += ["-v", f"{p}:{p}:{'rw' if writable else 'ro'}"]
    for device in devices:
        cmd += ["--device", str(device)]
    cmd += ["-w", str(cwd)]
    cmd += list(settings.runtime_options)
    cmd.append(tag)
    cmd += [str(a) for a in argv]
    return cmd


def remove_container(name: str, settings: Settings) -> None:
    """Remove a container by name, killing it if it still runs (errors ignored)."""
    rt = detect_runtime(settings)
    argv = [rt, "rm", "-f", name] if runtime_kind(rt) == "docker" else [rt, "rm", "-f", "-t", "0", name]
    try:
        runner.run(argv, check=False, capture=True, timeout=60)
    except CommandError:
        pass


def remove_labelled(labels: Mapping[str, str], settings: Settings) -> list[str]:
    """Remove (killing first) every container carrying all of ``labels``; return their ids.

    The build calls this before running a recipe's steps, so a container left
    behind by a killed client (``kill -9`` of doit) cannot keep writing into the
    build directory while the step is redone.
    """
    if not labels:
        raise ValueError("remove_labelled needs at least one label")
    rt = detect_runtime(settings)
    argv = [rt, "ps", "-a", "-q", "--no-trunc"]
    for key, value in labels.items():
        argv += ["--filter", f"label={key}={value}"]
    done = runner.run(argv, check=False, capture=True, timeout=60)
    ids = done.output.split() if done.returncode == 0 else []
    for cid in ids:
        logger.info("removing leftover container %s", cid[:12])
        remove_container(cid, settings)
    return ids


def run_in_container(image: str, argv: Sequence[str], settings: Settings, *, cwd: Path,
                     mounts: Sequence[tuple[Path, bool]], env: Mapping[str, str],
                     log_path: Path | None, network: bool = False, echo: bool = False,
                     timeout: float | None = None, check: bool = True,
                     user: tuple[int, int] | None = None, label: str = "",
                     labels: Mapping[str, str] | None = None) -> Completed:
    """Run ``argv`` in a fresh container of ``image`` (built first if missing).

    ``check=True`` raises :class:`CommandError` on a non-zero exit (naming the
    inner command); ``check=False`` returns the :class:`Completed` with its
    return code.  ``user`` overrides the invoking user's (uid, gid); ``label``
    goes into the container name, ``labels`` become ``--label k=v``.
    """
    rt = detect_runtime(settings)
    tag = ensure_image(image, settings)
    for path, _ in mounts:
        Path(path).mkdir(parents=True, exist_ok=True)
    name = _container_name(label or image)
    cmd = run_argv(tag, argv, settings, runtime=rt, cwd=Path(cwd), mounts=mounts, env=env,
                   network=network, user=user, name=name, labels=labels)
    try:
        done = runner.run(cmd, log_path=log_path, echo=echo, check=False, timeout=timeout)
    except KeyboardInterrupt:
        remove_container(name, settings)
        raise
    except CommandError:  # timeout (or the runtime could not start)
        remove_container(name, settings)
        raise
    if check and done.returncode != 0:
        raise CommandError([str(a) for a in argv], done.returncode, cwd=cwd, log_path=log_path,
                           tail=done.tail, why=f"exit status {done.returncode} in container {tag}")
    return done


EXEC_LABEL = "hermitbuild.exec"


def exec_prefix(image: str, settings: Settings, *, mounts: Sequence[tuple[Path, bool]],
                devices: Sequence[str] = (), cwd: Path, interactive: bool = False) -> list[str]:
    """``<runtime> run ... <tag>``: a command prefix running one program in a fresh container.

    Callers append the program and its arguments (``[*prefix, gcc, ...]``); the
    command line is :func:`run_argv`'s (same options as
    :func:`run_in_container`: network off, the invoking uid:gid, same-path
    mounts, ``--init``, the ``runtime_options``), unnamed so that one prefix
    serves any number of runs, labelled ``hermitbuild.exec=<image>``.  The
    image is built first when missing.  Writable mounts are created; a
    read-only mount that does not exist is left out (there is nothing to see
    in it).  Mounts are given parents first.  ``devices`` become ``--device``
    options (e.g. ``/dev/kvm``), ``interactive`` passes stdin on (``-i``).

    Network off is enough to boot unikernels: HermitCore's proxy starts qemu
    with ``-net user,hostfwd=tcp:127.0.0.1:<port>-:<port>`` and connects to
    that port on 127.0.0.1, and a ``--network=none`` container has its own
    loopback interface, up.
    """
    rt = detect_runtime(settings)
    tag = ensure_image(image, settings)
    kept: list[tuple[Path, bool]] = []
    for path, writable in mounts:
        path = Path(path).absolute()
        if writable:
            path.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            logger.debug("not mounting %s into the %s container: it does not exist", path, image)
            continue
        kept.append((path, writable))
    kept.sort(key=lambda m: len(m[0].parts))
    return run_argv(tag, [], settings, runtime=rt, cwd=Path(cwd).absolute(), mounts=kept, env={},
                    network=False, user=None, name=None, labels={EXEC_LABEL: image},
                    devices=devices, interactive=interactive)


# --------------------------------------------------------------------------- the toolchain's programs

TOOLCHAIN_IMAGE = "toolchain"
_SYSTEM_DIRS = frozenset({"bin", "boot", "dev", "etc", "lib", "lib32", "lib64", "libx32", "proc", "run",
                          "sbin", "sys", "usr", "tmp", "var"})


def _would_shadow(directory: Path) -> bool:
    """Whether mounting ``directory`` at the same path would hide a system directory of the image."""
    parts = directory.parts
    if len(parts) <= 1:
        return True  # "/"
    if len(parts) == 2:
        return parts[1] in _SYSTEM_DIRS
    return len(parts) == 3 and parts[1] in _SYSTEM_DIRS - {"tmp", "var", "run"}


def _app_mounts(args: Sequence[str]) -> list[tuple[Path, bool]]:
    """Read-only mounts for the files a ``doit boot``/``doit image`` command line names.

    Every argument before ``--`` that is an existing path counts (the application: a
    ``.c`` file, a directory of them or a built unikernel); its directory is mounted,
    so headers beside the sources are seen.  A directory that would hide a system
    directory of the image (``/``, ``/tmp``, ``/usr/bin``...) is not mounted; a file
    in one is mounted alone.
    """
    mounts: list[tuple[Path, bool]] = []
    for arg in args:
        if arg == "--":
            break
        if not arg or arg.startswith("-"):
            continue
        path = Path(arg).absolute()
        if not path.exists():
            continue
        directory = path if path.is_dir() else path.parent
        if not _would_shadow(directory):
            mounts.append((directory, False))
        elif path.is_file():
            mounts.append((path, False))
        else:
            logger.warning("not mounting %s into the toolchain container (it would hide the "
                           "container's own %s); move the application to a directory of its own",
                           path, path)
    return mounts


def toolchain_exec_prefix(settings: Settings, args: Sequence[str] = (), *, devices: Sequence[str] = (),
                          image: str = TOOLCHAIN_IMAGE, interactive: bool = False) -> list[str]:
    """Run toolchain programs where the toolchain runs: in its build container (issue 7).

    The compiler and the proxy (which starts qemu: the toolchain image holds it) run in a
    fresh container of ``image`` with, at the same paths: the prefix (read-only), the build
    directory (read-write: compile outputs under work/, logs), the repository root
    (read-only: examples/) and the application named in ``args`` (read-only, see
    :func:`_app_mounts`); ``devices`` (the caller passes ``/dev/kvm`` when KVM is usable).  The network
    stays off: the proxy talks to qemu over the container's own loopback.  Without any
    container runtime the programs run on this host (with a warning).
    """
    try:
        detect_runtime(settings)
    except ContainerError as err:
        logger.warning("%s: running the toolchain on this host instead of in its build container "
                       "(%s)", err.what, err.fix)
        return []
    mounts: list[tuple[Path, bool]] = [(settings.prefix, False), (settings.build_dir, True),
                                       (settings.root, False), *_app_mounts(args)]
    return exec_prefix(image, settings, mounts=mounts, devices=devices, cwd=settings.build_dir,
                       interactive=interactive)
