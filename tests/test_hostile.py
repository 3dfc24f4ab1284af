"""The hostile trial's failures, each through the public commands (`doit ...` in a subprocess):
every one must end in a clear error (what, why, fix; the file, line or variable) with a
non-zero exit, no traceback and nothing half-written.

The trickling download, two recipes installing one file and the doctor's broken machines
have their own tests (test_fetch_tarball, test_build, test_doctor); the fuzzing of every
loader and of the unpacker is in test_fuzz.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.helpers_cli import failed_cleanly
from hermitbuild.cli import with_eaten_arguments

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the repository's files (so a test may break a recipe or the settings file)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()
    dest = tmp_path / "repo"
    for name in listed.split("\0"):
        if name and (ROOT / name).is_file() and not name.startswith("tests/"):
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def _doit(root: Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None,
          timeout: int = 300) -> subprocess.CompletedProcess:
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path / "home"),
            "HERMITBUILD_BUILD_DIR": str(tmp_path / "build"), "HERMITBUILD_PREFIX": str(tmp_path / "prefix"),
            "HERMITBUILD_CACHE_DIR": str(tmp_path / "cache"), "PYTHONPATH": str(root)}
    return subprocess.run([sys.executable, "-m", "doit", "-f", str(root / "dodo.py"), *args], cwd=root,
                          env={**base, **(env or {})}, capture_output=True, text=True, timeout=timeout)


# ---- 1. a corrupt archive is not half-unpacked

def test_a_corrupt_archive_is_refused_whole(repo, tmp_path):
    """A gzip tarball with a CRC error, pinned by its own (corrupt) sha256, as a mirror or a
    careless pin would bring it: `doit prepare` stops naming it and places no tree."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for i in range(12):
            body = os.urandom(20000)
            info = tarfile.TarInfo(f"autoconf-2.64/f{i}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    data = bytearray(gzip.compress(buf.getvalue()))
    data[len(data) // 2] ^= 0x10
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "autoconf-2.64.tar.gz").write_bytes(bytes(data))
    recipe = repo / "recipes" / "autoconf.yaml"
    text = recipe.read_text()
    old_url = next(line for line in text.splitlines() if "tarball:" in line)
    old_sha = next(line for line in text.splitlines() if "sha256:" in line)
    text = text.replace(old_url, old_url.split("tarball:")[0] + "tarball: https://ftp.gnu.org/gnu/autoconf/"
                        "autoconf-2.64.tar.gz")
    text = text.replace(old_sha, old_sha.split("sha256:")[0] + "sha256: " + hashlib.sha256(data).hexdigest())
    recipe.write_text(text)
    done = _doit(repo, tmp_path, "prepare:autoconf",
                 env={"HERMITBUILD_MIRRORS": str(mirror), "HERMITBUILD_OFFLINE": "1"})
    failed_cleanly(done, "autoconf-2.64.tar.gz", "corrupt")
    src = tmp_path / "build" / "src"
    assert not (src / "autoconf").exists()
    assert [p.name for p in src.iterdir() if p.is_dir()] == [], "a temporary tree was left behind"


# ---- 2., 3., 8. syscall bodies, C library names, '=' in arguments

def _syscall(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess, Path]:
    table = tmp_path / "table.yaml"
    if not table.exists():
        table.write_text("syscalls: []\n")
    done = _doit(ROOT, tmp_path, "syscall", "add", *args, "--table", str(table), "--no-apply")
    return done, table


def test_a_body_that_cannot_compile_is_refused_before_anything_is_written(tmp_path):
    done, table = _syscall(tmp_path, "frob", "int frob(int x)", "--body", "return 1;}")
    failed_cleanly(done, "frob", "closes the function early", "nothing was written")
    done, table = _syscall(tmp_path, "frob", "int frob(int x)", "--body", "return x +;")
    failed_cleanly(done, "does not compile", "expected expression")
    assert table.read_text() == "syscalls: []\n"


@pytest.mark.parametrize("name, signature", [("strlen", "size_t strlen(const char *s)"),
                                             ("malloc", "void *malloc(size_t n)"),
                                             ("qsort", "void qsort(void *b, size_t n, size_t s, void *c)")])
def test_c_library_functions_are_not_system_calls(tmp_path, name, signature):
    done, table = _syscall(tmp_path, name, signature)
    failed_cleanly(done, f"newlib already defines {name}()", "patches/newlib/")
    assert table.read_text() == "syscalls: []\n"


def test_the_catalog_rename_still_works(tmp_path):
    done, table = _syscall(tmp_path, "rename")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "name: rename" in table.read_text()


def test_an_equals_sign_in_a_body_reaches_the_command(tmp_path):
    done, table = _syscall(tmp_path, "foo", "int foo(int x)", "--body", "return x == 1;")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "return x == 1;" in table.read_text()


def test_eaten_arguments_are_taken_back_only_when_they_line_up():
    argv = ["doit", "syscall", "add", "foo", "--body", "return x == 1;"]
    assert with_eaten_arguments("syscall", ["add", "foo", "--body"], argv) == argv[2:]
    assert with_eaten_arguments("syscall", ["add", "foo"], ["doit", "syscall", "add", "foo"]) == ["add", "foo"]
    # the command line says something else (doit -n workers, embedding): doit's list stands
    assert with_eaten_arguments("syscall", ["list"], ["python", "-m", "pytest", "x=1"]) == ["list"]


# ---- 5. tracebacks: read-only build dir, bytes that are not UTF-8

def test_a_read_only_build_dir_is_a_clear_error(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a read-only tmpfs needs root (CI runs as root)")
    ro = tmp_path / "ro"
    ro.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "hermitbuild-test", str(ro)], check=True)
    try:
        done = _doit(ROOT, tmp_path, "list", env={"HERMITBUILD_BUILD_DIR": str(ro / "build")})
        failed_cleanly(done, "HERMITBUILD_BUILD_DIR", "Read-only file system", "choose another build_dir")
    finally:
        subprocess.run(["umount", "-l", str(ro)], check=False)


def test_bytes_that_are_not_utf8_name_the_file_and_line(repo, tmp_path):
    settings = repo / "hermitbuild.yaml"
    settings.write_bytes(settings.read_bytes().replace(b"target: x86_64-hermit", b"target: x86_64-h\xe9rmit"))
    line = settings.read_bytes().split(b"\n").index(b"target: x86_64-h\xe9rmit") + 1
    failed_cleanly(_doit(repo, tmp_path, "list"), f"{settings}:{line}", "not UTF-8")

    shutil.copy2(ROOT / "hermitbuild.yaml", settings)
    recipe = repo / "recipes" / "gdb.yaml"
    recipe.write_bytes(b"# caf\xe9\n" + recipe.read_bytes())
    failed_cleanly(_doit(repo, tmp_path, "list"), f"{recipe}:1", "not UTF-8")

    recipe.write_bytes((ROOT / "recipes" / "gdb.yaml").read_bytes())
    table = tmp_path / "table.yaml"
    table.write_bytes(b"syscalls:\n  - name: r\xe9name\n")
    failed_cleanly(_doit(repo, tmp_path, "syscall", "check", "--table", str(table)), f"{table}:2", "not UTF-8")


# ---- 6. typos do not pass silently

def test_typos_in_variables_and_settings_are_refused_with_a_suggestion(repo, tmp_path):
    failed_cleanly(_doit(ROOT, tmp_path, "list", env={"HERMITBUILD_JOBSS": "4"}),
                   "unknown environment variable HERMITBUILD_JOBSS", "did you mean HERMITBUILD_JOBS?")
    failed_cleanly(_doit(ROOT, tmp_path, "list", env={"HERMITBUILD_JOBS": "-3"}),
                   "HERMITBUILD_JOBS=", "must be a whole number")
    failed_cleanly(_doit(ROOT, tmp_path, "list", env={"HERMITBUILD_SKIP": "gdbb"}),
                   "field 'HERMITBUILD_SKIP'", "skip names no recipe called 'gdbb'")
    settings = repo / "hermitbuild.yaml"
    text = settings.read_text()
    settings.write_text(text.replace("cache_max_size: 20G", "cache_max_size: 20 gigs"))
    line = settings.read_text().splitlines().index("cache_max_size: 20 gigs") + 1
    failed_cleanly(_doit(repo, tmp_path, "list"), f"{settings}:{line}", "cache_max_size", "not a size")
    settings.write_text(text.replace("prefix: /opt/hermit", "prefx: /opt/hermit"))
    failed_cleanly(_doit(repo, tmp_path, "list"), "unknown setting 'prefx'", "did you mean prefix?")


# ---- the smaller ones

def test_an_unclosed_quote_names_the_line_it_opens_on(tmp_path):
    from hermitbuild.errors import RecipeError
    from hermitbuild.yamlutil import load_yaml

    path = tmp_path / "x.yaml"
    path.write_text('version: "1"\nname: "abc\n' + "".join(f"k{i}: v\n" for i in range(12)))
    with pytest.raises(RecipeError) as exc:
        load_yaml(path, RecipeError)
    assert exc.value.line == 2 and "never closed" in exc.value.why


def test_an_invalid_recipe_name_suggests_a_valid_one(tmp_path):
    from hermitbuild.errors import RecipeError
    from hermitbuild.recipe import load_recipe

    path = tmp_path / "Automake.yaml"
    path.write_text("name: Automake\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(path, tmp_path)
    assert "`name: automake`" in exc.value.fix and "automake.yaml" in exc.value.fix


def test_a_held_lock_is_waited_for_with_a_message(tmp_path, caplog):
    import threading
    import time

    from hermitbuild.fsutil import file_lock

    lock = tmp_path / "x.lock"
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with file_lock(lock):
            held.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    held.wait(10)
    threading.Timer(0.3, release.set).start()
    start = time.monotonic()
    with caplog.at_level("WARNING", logger="hermitbuild.fsutil"), file_lock(lock):
        waited = time.monotonic() - start
    t.join()
    assert waited >= 0.2 and "another hermitbuild run holds it" in caplog.text
