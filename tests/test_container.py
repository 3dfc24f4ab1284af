"""Tests of hermitbuild.container: fast unit tests of the pure parts, then real podman."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hermitbuild import container, runner
from hermitbuild.errors import CommandError, ContainerError
from hermitbuild.settings import Settings

from helpers_podman import (BASE_IMAGE, ROOT, RUNTIME_OPTIONS, HttpServer, ensure_base_image, host_ip,
                            podman_settings, require_podman)


def _root_with(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "root"
    for name, text in files.items():
        p = root / "containers" / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


# --------------------------------------------------------------------------- unit: runtime

def test_no_runtime_gives_install_hint(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    for runtime in ("auto", "podman", "docker"):
        with pytest.raises(ContainerError) as exc:
            container.detect_runtime(Settings(root=tmp_path, runtime=runtime))
        text = str(exc.value)
        assert "apt-get install podman" in text and "runtime" in text
    assert "no container runtime found" in str(
        pytest.raises(ContainerError, container.detect_runtime, Settings(root=tmp_path)).value)


def test_auto_prefers_podman_then_docker(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("docker", "podman"):
        (bindir / name).write_text("#!/bin/sh\n")
        (bindir / name).chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    assert container.detect_runtime(Settings(root=tmp_path)) == str(bindir / "podman")
    assert container.detect_runtime(Settings(root=tmp_path, runtime="docker")) == str(bindir / "docker")
    (bindir / "podman").unlink()
    assert container.detect_runtime(Settings(root=tmp_path)) == str(bindir / "docker")


def test_build_options_take_only_ulimits(tmp_path):
    s = Settings(root=tmp_path, runtime_options=RUNTIME_OPTIONS + ("--ulimit=core=0", "--security-opt",
                                                                  "label=disable"))
    assert container.build_options(s) == ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
                                          "--ulimit=core=0"]


# --------------------------------------------------------------------------- unit: images

def test_image_hash_follows_containerfile_base_and_copied_files(tmp_path):
    root = _root_with(tmp_path, {
        "Containerfile.x": "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nCOPY files/setup.sh /setup.sh\n"
                           "COPY [\"extra\", \"/extra\"]\nRUN /setup.sh\n",
        "files/setup.sh": "echo one\n",
        "extra/a.txt": "a\n",
        "unrelated.txt": "nothing\n",
        "Containerfile.other": "FROM x\n",
    })
    s = Settings(root=root, base_image="localhost/base:1")
    h0 = container.image_hash("x", s)
    assert len(h0) == 64 and h0 == container.image_hash("x", s)
    assert container.image_tag("x", s) == f"localhost/hermitbuild-x:{h0[:16]}"
    # unrelated files and other Containerfiles do not matter
    (root / "containers" / "unrelated.txt").write_text("changed\n")
    (root / "containers" / "Containerfile.other").write_text("FROM y\n")
    assert container.image_hash("x", s) == h0
    # a copied file, a file in a copied directory, the base image and the Containerfile do
    (root / "containers" / "files" / "setup.sh").write_text("echo two\n")
    h1 = container.image_hash("x", s)
    assert h1 != h0
    (root / "containers" / "extra" / "b.txt").write_text("b\n")
    h2 = container.image_hash("x", s)
    assert h2 != h1
    h3 = container.image_hash("x", s.replace(base_image="localhost/base:2"))
    assert h3 != h2
    cf = root / "containers" / "Containerfile.x"
    cf.write_text(cf.read_text() + "RUN true\n")
    assert container.image_hash("x", s) not in (h0, h1, h2, h3)


def test_unknown_image_names_known_ones(tmp_path):
    root = _root_with(tmp_path, {"Containerfile.toolchain": "FROM x\n"})
    with pytest.raises(ContainerError) as exc:
        container.image_hash("nope", Settings(root=root))
    assert "Containerfile.nope" in str(exc.value) and "toolchain" in str(exc.value)


def test_repository_images_start_from_the_base_image_setting():
    for cf in sorted((ROOT / "containers").glob("Containerfile.*")):
        lines = [l.strip() for l in cf.read_text().splitlines() if l.strip() and not l.startswith("#")]
        assert lines[0].startswith("ARG BASE_IMAGE"), cf
        assert lines[1] == "FROM ${BASE_IMAGE}", cf
    toolchain = (ROOT / "containers" / "Containerfile.toolchain").read_text()
    for pkg in ("build-essential", "bison", "flex", "texinfo", "libgmp-dev", "libmpfr-dev", "libmpc-dev",
                "libisl-dev", "cmake", "ninja-build", "nasm", "python3", "automake1.11", "autoconf2.64", "bsdextrautils"):
        assert pkg in toolchain, pkg


def test_host_debian_mirror(tmp_path):
    one = tmp_path / "sources.list"
    one.write_text("# comment\ndeb [arch=amd64] http://ftp.example.org/debian bookworm main\n")
    assert container.host_debian_mirror([one]) == "http://ftp.example.org/debian"
    d = tmp_path / "sources.list.d"
    d.mkdir()
    (d / "debian.sources").write_text("Types: deb\nURIs: http://deb.debian.org/debian-security\n\n"
                                      "Types: deb\nURIs: http://mirror.example.net/debian/\n")
    assert container.host_debian_mirror([tmp_path / "missing", d]) == "http://mirror.example.net/debian/"
    assert container.host_debian_mirror([tmp_path / "missing"]) == container.DEFAULT_MIRROR
    assert container._suite("docker.io/library/debian:bookworm") == "bookworm"
    assert container._suite("debian:trixie-slim") == "trixie"
    assert container._suite("localhost/something:latest") == "bookworm"


def test_run_argv_pins_network_user_env_and_mounts(tmp_path):
    s = Settings(root=tmp_path, runtime_options=RUNTIME_OPTIONS)
    src, work = tmp_path / "src", tmp_path / "work"
    argv = container.run_argv("localhost/img:1", ["make", "-j2"], s, runtime="/usr/bin/podman", cwd=work,
                              mounts=[(src, False), (work, True), (src, False)], env={"A": "b c"},
                              network=False, user=None, name="hermitbuild-x-1")
    assert argv[:3] == ["/usr/bin/podman", "run", "--rm"]
    assert "--network=none" in argv
    assert argv[argv.index("--user") + 1] == f"{os.getuid()}:{os.getgid()}"
    assert argv.count(f"{src}:{src}:ro") == 1 and f"{work}:{work}:rw" in argv
    assert argv[argv.index("-w") + 1] == str(work)
    for env in ("LC_ALL=C", "HOME=/tmp", "A=b c"):
        assert argv[argv.index(env) - 1] == "-e"
    tag_at = argv.index("localhost/img:1")
    assert argv[tag_at + 1:] == ["make", "-j2"]
    assert argv[tag_at - len(RUNTIME_OPTIONS):tag_at] == list(RUNTIME_OPTIONS)
    on = container.run_argv("t", ["true"], s, runtime="podman", cwd=work, mounts=[], env={},
                            network=True, user=(1234, 99), name="n")
    assert "--network=none" not in on and on[on.index("--user") + 1] == "1234:99"


# --------------------------------------------------------------------------- real podman

@pytest.fixture(scope="module")
def podman_env(tmp_path_factory):
    require_podman()
    base = tmp_path_factory.mktemp("container")
    ensure_base_image(base)
    settings = podman_settings(ROOT, base)
    container.build_image("fixture", settings)
    return settings


@pytest.mark.podman
def test_base_image_is_debian(podman_env, tmp_path):
    assert container.base_image_exists(podman_env)
    out = runner.output(["podman", "run", "--rm", *RUNTIME_OPTIONS, BASE_IMAGE, "cat", "/etc/debian_version"])
    assert out.split(".")[0].isdigit()


@pytest.mark.podman
def test_build_image_is_tagged_by_hash_and_reused(podman_env):
    s = podman_env
    tag = container.image_tag("fixture", s)
    assert container.image_exists("fixture", s)
    calls: list[list[str]] = []
    real = runner.run

    def spy(argv, **kw):
        calls.append([str(a) for a in argv])
        return real(argv, **kw)

    runner.run = spy
    try:
        assert container.build_image("fixture", s) == tag
    finally:
        runner.run = real
    assert not any(c[1] == "build" for c in calls), "an existing image must not be rebuilt"
    assert tag.startswith("localhost/hermitbuild-fixture:")
    assert runner.output(["podman", "image", "inspect", "--format", "{{.Id}}", tag])


@pytest.mark.podman
def test_run_in_container_mounts_user_env_and_logs(podman_env, tmp_path):
    s = podman_env
    ro = tmp_path / "ro"
    rw = tmp_path / "rw"
    ro.mkdir()
    (ro / "input").write_text("data\n")
    log = tmp_path / "logs" / "step.log"
    script = ("cat {ro}/input; echo made > {rw}/out; echo LC_ALL=$LC_ALL FOO=$FOO; pwd; "
              "if touch {ro}/nope 2>/dev/null; then echo RO-W''RITABLE; fi").format(ro=ro, rw=rw)
    done = container.run_in_container("fixture", ["sh", "-c", script], s, cwd=rw,
                                      mounts=[(ro, False), (rw, True)], env={"FOO": "bar"}, log_path=log)
    text = log.read_text()
    assert "data" in text and "LC_ALL=C FOO=bar" in text and str(rw) in text
    assert "RO-WRITABLE" not in text and not (ro / "nope").exists()
    st = (rw / "out").stat()
    assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid())
    assert done.returncode == 0
    with pytest.raises(CommandError) as exc:
        container.run_in_container("fixture", ["sh", "-c", "echo failing; exit 3"], s, cwd=rw,
                                   mounts=[(rw, True)], env={}, log_path=log)
    assert exc.value.returncode == 3 and "failing" in exc.value.tail


@pytest.mark.podman
def test_run_as_another_uid_leaves_files_owned_by_it(podman_env, tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to hand a directory to another uid")  # the invoking-uid case is above
    rw = tmp_path / "rw"
    rw.mkdir()
    os.chown(rw, 1234, 1234)
    container.run_in_container("fixture", ["sh", "-c", "id -u > uid; touch made"], podman_env, cwd=rw,
                               mounts=[(rw, True)], env={}, log_path=tmp_path / "log", user=(1234, 1234))
    assert (rw / "uid").read_text().strip() == "1234"
    st = (rw / "made").stat()
    assert (st.st_uid, st.st_gid) == (1234, 1234)


@pytest.mark.podman
def test_network_is_off_unless_asked(podman_env, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    ip = host_ip()
    if ip.startswith("127."):
        pytest.skip("this host has no non-loopback address to probe")
    server = HttpServer(served, host="0.0.0.0")
    try:
        probe = ["bash", "-c", f"ls /sys/class/net; if echo > /dev/tcp/{ip}/{server.port}; then echo CONN''ECTED; "
                               "else echo UNREACH''ABLE; fi"]
        off = container.run_in_container("fixture", probe, podman_env, cwd=Path("/"), mounts=[], env={},
                                         log_path=tmp_path / "off.log")
        on = container.run_in_container("fixture", probe, podman_env, cwd=Path("/"), mounts=[], env={},
                                        log_path=tmp_path / "on.log", network=True)
    finally:
        server.close()
    off_text, on_text = (tmp_path / "off.log").read_text(), (tmp_path / "on.log").read_text()
    assert "UNREACHABLE" in off_text and "CONNECTED" not in off_text
    assert "eth0" not in off_text
    assert "CONNECTED" in on_text, "positive control: with the network on, the host port is reachable"
    assert off.returncode == on.returncode == 0


@pytest.mark.podman
def test_timeout_removes_the_container(podman_env, tmp_path):
    with pytest.raises(CommandError) as exc:
        container.run_in_container("fixture", ["sleep", "300"], podman_env, cwd=Path("/"), mounts=[],
                                   env={}, log_path=tmp_path / "log", timeout=5, label="timeout-test")
    assert "timed out" in str(exc.value)
    left = runner.output(["podman", "ps", "-a", "--filter", "name=hermitbuild-timeout-test", "-q"])
    assert left == ""
