"""Property-based fuzzing (hypothesis) of every loader and of the unpacker.

- Loaders (settings file, HERMITBUILD_* environment, recipes, syscall table, syscall
  signatures and bodies, patch headers, artifact manifests): random and mutated inputs
  may only succeed or raise a HermitBuildError; any other exception is a bug.
- The unpacker: random truncations and bit flips of real tar.gz / tar.xz / tar.bz2 / zip
  archives either unpack completely and identically (names, types, bytes, link targets)
  or fail with an UnpackError and leave nothing behind.  (A zip's central directory has
  no checksum, so a flip there may change a file mode unnoticed: modes are not compared.)

Bounded: a fixed number of examples each, no deadline, no database of its own.
"""

from __future__ import annotations

import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings as hsettings, strategies as st

from hermitbuild import cache, unpack
from hermitbuild.errors import HermitBuildError, UnpackError
from hermitbuild.recipe import check_patch_header, load_recipe
from hermitbuild.settings import load_settings
from hermitbuild.syscalls.model import loads_table

ROOT = Path(__file__).resolve().parent.parent
FUZZ = hsettings(max_examples=60, deadline=None, database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _mutations(seed: bytes) -> st.SearchStrategy[bytes]:
    """Mutated copies of ``seed``: bit flips, truncations, insertions, random bytes."""
    n = len(seed)

    @st.composite
    def mutate(draw: st.DrawFn) -> bytes:
        data = bytearray(seed)
        for _ in range(draw(st.integers(1, 4))):
            kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
            if not data:
                break
            i = draw(st.integers(0, len(data) - 1))
            if kind == "flip":
                data[i] ^= 1 << draw(st.integers(0, 7))
            elif kind == "cut":
                del data[i:]
            elif kind == "insert":
                data[i:i] = draw(st.binary(min_size=1, max_size=8))
            else:
                del data[i:i + draw(st.integers(1, 8))]
        return bytes(data)

    return st.one_of(mutate(), st.binary(max_size=max(64, n)))


def _only_our_errors(call) -> None:
    try:
        call()
    except HermitBuildError:
        pass


# --------------------------------------------------------------------------- loaders

SETTINGS_SEED = (ROOT / "hermitbuild.yaml").read_bytes()
RECIPE_SEED = (ROOT / "recipes" / "newlib.yaml").read_bytes()
TABLE_SEED = b"""syscalls:
  - name: my_syscall
    returns: int
    params: [int x]
    kernel: {body: "return x + 42;"}
    newlib: plain
  - name: rename
    returns: int
    params: [const char *oldpath, const char *newpath]
    kernel: {stub: 0}
    newlib: reentrant
    header: stdio.h
"""
PATCH_SEED = (ROOT / "patches" / "newlib" / "0001-hermit-sleep-and-usleep.patch").read_bytes()[:600]


@FUZZ
@given(data=_mutations(SETTINGS_SEED))
def test_settings_file(tmp_path, data):
    path = tmp_path / "s.yaml"
    path.write_bytes(data)
    _only_our_errors(lambda: load_settings(ROOT, environ={}, file=path))


ENV_NAMES = st.sampled_from(["HERMITBUILD_JOBS", "HERMITBUILD_OFFLINE", "HERMITBUILD_MIRRORS",
                             "HERMITBUILD_OVERRIDES", "HERMITBUILD_RUNTIME_OPTIONS", "HERMITBUILD_KVM",
                             "HERMITBUILD_STEP_TIMEOUT", "HERMITBUILD_CACHE_MAX_SIZE", "HERMITBUILD_SKIP",
                             "HERMITBUILD_REMOTE_CACHE_MODE", "HERMITBUILD_PREFIX", "HERMITBUILD_JOBSS",
                             "HERMITBUILD_HERMIT_LANGUAGES", "HERMITBUILD_SMOKE_GATE"])


@FUZZ
@given(env=st.dictionaries(ENV_NAMES, st.text(max_size=40).filter(lambda t: "\0" not in t), max_size=4))
def test_settings_environment(tmp_path, env):
    _only_our_errors(lambda: load_settings(ROOT, environ=env, file=ROOT / "hermitbuild.yaml"))


@FUZZ
@given(data=_mutations(RECIPE_SEED))
def test_recipe_file(tmp_path, data):
    path = tmp_path / "newlib.yaml"
    path.write_bytes(data)
    _only_our_errors(lambda: load_recipe(path, ROOT / "patches", {"gcc_variant": "upstream"}))


@FUZZ
@given(data=_mutations(TABLE_SEED))
def test_syscall_table(data):
    def load() -> None:
        text = data.decode("utf-8")  # the file reader turns undecodable bytes into an error
        loads_table(text, "table.yaml")

    try:
        load()
    except (HermitBuildError, UnicodeDecodeError):
        pass


BODIES = ["return x + 42;", "return 1;}", "{ return (x; }", "/* } */ return 0;", '"}" ; return 0;',
          "int y = x; return y;", "return x == 1;"]
SIGNATURE_ATOMS = st.sampled_from(["int", "char", "const", "*", "(", ")", ",", "x", "y", "void", "...",
                                   "unsigned", "long", "struct stat", "size_t", " ", "[", "]", ";", "{"])


@FUZZ
@given(name=st.sampled_from(["frob", "rename", "my_syscall", "x y", "", "1abc", "strlen"]),
       parts=st.lists(SIGNATURE_ATOMS, max_size=14), noise=st.text(max_size=6),
       body=st.one_of(st.none(), st.text(max_size=30), st.sampled_from(BODIES)))
def test_syscall_add_signature_and_body(tmp_path, name, parts, noise, body):
    """`doit syscall add NAME SIGNATURE [--body C]` on a scratch table: any input ends in a
    status (an error printed by cli_main), never in another exception."""
    from hermitbuild.settings import Settings
    from hermitbuild.syscalls import cli_main

    table = tmp_path / "table.yaml"
    table.write_text("syscalls: []\n")
    s = Settings(root=ROOT, prefix=tmp_path / "p", build_dir=tmp_path / "b")
    argv = ["add", name, " ".join(parts) + noise, "--table", str(table)]
    if body is not None:
        argv += ["--body", body]
    status = cli_main(argv, s, trees=lambda: (None, None), automake=lambda *a, **k: None)
    assert isinstance(status, int)


@FUZZ
@given(data=_mutations(PATCH_SEED))
def test_patch_header(tmp_path, data):
    path = tmp_path / "0001-x.patch"
    path.write_bytes(data)
    _only_our_errors(lambda: check_patch_header(path))


@pytest.fixture(scope="module")
def artifact_seed(tmp_path_factory) -> bytes:
    base = tmp_path_factory.mktemp("art")
    stage = base / "stage"
    (stage / "bin").mkdir(parents=True)
    (stage / "bin" / "tool").write_bytes(b"#!/bin/sh\necho tool\n")
    (stage / "lib").mkdir()
    (stage / "lib" / "libx.a").write_bytes(os.urandom(3000))
    os.symlink("tool", stage / "bin" / "alias")
    out = cache.pack_artifact(stage, "a" * 64, {"recipe": "x"}, base / "a.tar.gz")
    return out.read_bytes()


@FUZZ
@given(data=st.data())
def test_artifact_manifest_and_restore(tmp_path, artifact_seed, data):
    mutated = data.draw(_mutations(artifact_seed))
    path = tmp_path / f"{os.urandom(4).hex()}.tar.gz"
    path.write_bytes(mutated)
    dest = tmp_path / f"dest-{path.stem}"
    _only_our_errors(lambda: cache.read_manifest(path))
    try:
        cache.restore_artifact(path, dest, "a" * 64)
    except HermitBuildError:
        assert not dest.exists() or not any(dest.rglob("*"))


# --------------------------------------------------------------------------- the unpacker

def _tree_files() -> dict[str, bytes]:
    rnd = __import__("random").Random(7)
    return {f"pkg-1.0/{d}/f{i}.c": bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 3000)))
            for d in ("src", "include") for i in range(4)}


def _make_archive(kind: str) -> bytes:
    files = _tree_files()
    buf = io.BytesIO()
    if kind == "zip":
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, body in files.items():
                zf.writestr(name, body)
        return buf.getvalue()
    mode = {"tar.gz": "w:gz", "tar.xz": "w:xz", "tar.bz2": "w:bz2"}[kind]
    with tarfile.open(fileobj=buf, mode=mode) as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(body), 1700000000, 0o644
            tar.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("pkg-1.0/link")
        link.type, link.linkname, link.mtime = tarfile.SYMTYPE, "src/f0.c", 1700000000
        tar.addfile(link)
    return buf.getvalue()


def _snapshot(root: Path) -> dict[str, object]:
    out: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if path.is_symlink():
            out[rel] = ("link", os.readlink(path))
        elif path.is_dir():
            out[rel] = ("dir",)
        else:
            out[rel] = ("file", __import__("hashlib").sha256(path.read_bytes()).hexdigest()[:16])
    return out


@pytest.fixture(scope="module")
def archives(tmp_path_factory) -> dict[str, "_Good"]:
    base = tmp_path_factory.mktemp("archives")
    out = {}
    for kind in ("tar.gz", "tar.xz", "tar.bz2", "zip"):
        data = _make_archive(kind)
        path = base / f"good.{kind}"
        path.write_bytes(data)
        unpack.safe_extract(path, base / f"good-{kind}", 1)
        out[kind] = _Good(data, _snapshot(base / f"good-{kind}"))
    return out


class _Good:
    """A good archive and its unpacked tree (with a short repr for hypothesis' reports)."""

    def __init__(self, data: bytes, tree: dict) -> None:
        self.data, self.tree = data, tree

    def __repr__(self) -> str:
        return f"<archive of {len(self.data)} bytes, {len(self.tree)} entries>"


@pytest.mark.parametrize("kind", ["tar.gz", "tar.xz", "tar.bz2", "zip"])
@hsettings(max_examples=40, deadline=None, database=None,
           suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_unpacker_all_or_nothing(tmp_path, archives, kind, data):
    good, expected = archives[kind].data, archives[kind].tree
    cut = data.draw(st.booleans())
    mutated = bytearray(good)
    if cut:
        del mutated[data.draw(st.integers(0, len(good) - 1)):]
    else:
        i = data.draw(st.integers(0, len(good) - 1))
        mutated[i] ^= 1 << data.draw(st.integers(0, 7))
    work = tmp_path / os.urandom(6).hex()
    work.mkdir()
    archive = work / f"a.{kind}"
    archive.write_bytes(bytes(mutated))
    dest = work / "tree"
    try:
        unpack.safe_extract(archive, dest, 1)
    except UnpackError:
        assert not dest.exists(), "a failed unpack left a tree"
        assert sorted(p.name for p in work.iterdir()) == [archive.name], "a failed unpack left files"
        return
    assert _snapshot(dest) == expected, "unpacked, but not identically"
