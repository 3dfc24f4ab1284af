"""The x86_64-hermit GCC: recipes, the GCC 12.2 patch series, the libhermit patches.

Fast tests (seconds) apply the series through the project's own patch code
(:func:`hermitbuild.patch.apply_series`) to the pristine files of GCC 12.2.0 taken
from Debian's ``gcc-12-source`` package (``/usr/src/gcc-12/gcc-12.2.0-dfsg.tar.xz``;
the DFSG tarball differs from the GNU one only in the documentation, which the
series does not touch) and check what the target needs.  They skip, saying why,
when the package is not installed (``apt-get install gcc-12-source``; the CI image
has it).

The slow test builds stage 1 for real: the DFSG tree as a source override of
``gcc-stage1`` (plus ``patches/gcc/debian-dfsg``), the series applied by
:mod:`hermitbuild.prepare`, the steps run by :func:`hermitbuild.build.build_recipe`
in the toolchain container; then ``x86_64-hermit-gcc`` must name its target,
predefine ``__hermit__`` and compile a freestanding C file to an x86-64 ELF object.
The recipe is used as it is except for ``--enable-languages=c`` (C only, to stay near
10 minutes on 2 cores; plus the toolchain image, if not built yet).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from hermitbuild.patch import apply_series
from hermitbuild.recipe import PatchSpec, check_patch_header, load_recipe, load_recipes

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
PATCHES = ROOT / "patches"
DFSG_TARBALL = Path(os.environ.get("HERMITBUILD_TEST_GCC12_TARBALL",
                                   "/usr/src/gcc-12/gcc-12.2.0-dfsg.tar.xz"))
GNU_SHA256 = "e549cf9cf3594a00e27b6589d4322d70e0720cdd213f39beb4181e06926230ff"
UPSTREAM = {"gcc_variant": "upstream"}
FORK = {"gcc_variant": "fork"}


def need_gcc12_source() -> None:
    if not DFSG_TARBALL.is_file():
        pytest.skip(f"{DFSG_TARBALL} is missing: install Debian's gcc-12-source package "
                    "(apt-get install gcc-12-source) to test the GCC 12.2 patch series")


def series(variant: dict = UPSTREAM) -> tuple[PatchSpec, ...]:
    return load_recipe(RECIPES / "gcc-stage1.yaml", PATCHES, variant).patches


def dfsg_patches() -> list[PatchSpec]:
    return [PatchSpec(path=p, number=int(p.name[:4]))
            for p in sorted((PATCHES / "gcc" / "debian-dfsg").glob("[0-9][0-9][0-9][0-9]-*.patch"))]


def touched_files(patches: list[PatchSpec] | tuple[PatchSpec, ...]) -> set[str]:
    """Paths (strip 1) the patches modify in the release tree; new files (from /dev/null), and
    files a later patch changes after an earlier one created them, are left out."""
    out: set[str] = set()
    created: set[str] = set()
    for spec in patches:
        old = None
        for line in spec.path.read_text(encoding="utf-8").splitlines():
            if line.startswith("--- "):
                old = line[4:].split("\t")[0]
            elif line.startswith("+++ ") and old is not None:
                if old == "/dev/null":
                    created.add(line[4:].split("\t")[0].split("/", 1)[1])
                elif old.split("/", 1)[1] not in created:
                    out.add(old.split("/", 1)[1])
                old = None
    return out


def extract_members(tarball: Path, dest: Path, members: set[str]) -> Path:
    """Extract ``gcc-12.2.0/<member>`` files of the tarball into ``dest``; returns the tree.

    GNU tar, not :mod:`tarfile`: streaming the 1 GB tree through Python's lzma is
    several times slower."""
    names = sorted(f"gcc-12.2.0/{m}" for m in members)
    subprocess.run(["tar", "-xJf", str(tarball), "-C", str(dest), "--no-same-owner", *names],
                   check=True, capture_output=True)
    missing = [n for n in names if not (dest / n).is_file()]
    assert not missing, f"not in {tarball}: {missing}"
    return dest / "gcc-12.2.0"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pristine GCC 12.2.0 files the patches touch (from the DFSG tarball), read-only use."""
    need_gcc12_source()
    members = touched_files(series()) | touched_files(dfsg_patches()) | {"gcc/config/i386/i386elf.h"}
    return extract_members(DFSG_TARBALL, tmp_path_factory.mktemp("gcc12"), members)


@pytest.fixture
def patched(pristine: Path, tmp_path: Path) -> Path:
    tree = tmp_path / "gcc-12.2.0"
    shutil.copytree(pristine, tree, symlinks=True)
    apply_series(tree, series(), recipe="gcc-stage1")
    return tree


# --------------------------------------------------------------------------- recipes

def test_upstream_variant_is_pinned_gnu_tarball_with_the_series() -> None:
    stage1 = load_recipe(RECIPES / "gcc-stage1.yaml", PATCHES, UPSTREAM)
    assert stage1.variant == "upstream" and stage1.version == "12.2.0"
    (src,) = stage1.sources
    assert src.kind == "tarball"
    assert src.url == "https://ftp.gnu.org/gnu/gcc/gcc-12.2.0/gcc-12.2.0.tar.xz"
    assert src.sha256 == GNU_SHA256
    names = [p.name for p in stage1.patches]
    assert names and all(re.match(r"^\d{4}-", n) for n in names)
    assert [p.number for p in stage1.patches] == sorted(p.number for p in stage1.patches)
    assert all(p.path.parent == PATCHES / "gcc" / "12.2.0" for p in stage1.patches)
    for p in stage1.patches:
        header = check_patch_header(p.path)
        assert header["upstream"]


def test_fork_variant_is_the_pinned_hermitcore_fork() -> None:
    stage1 = load_recipe(RECIPES / "gcc-stage1.yaml", PATCHES, FORK)
    (src,) = stage1.sources
    assert stage1.variant == "fork" and src.kind == "git"
    assert src.url == "https://github.com/hermitcore/gcc.git" and re.fullmatch(r"[0-9a-f]{40}", src.commit)
    assert stage1.patches == ()  # patches/gcc/fork holds none yet


@pytest.mark.parametrize("variant", [UPSTREAM, FORK], ids=["upstream", "fork"])
def test_both_stages_work_with_both_variants(variant: dict) -> None:
    stage1 = load_recipe(RECIPES / "gcc-stage1.yaml", PATCHES, variant)
    final = load_recipe(RECIPES / "gcc.yaml", PATCHES, variant)
    assert final.variant == stage1.variant == variant["gcc_variant"]
    assert final.version == stage1.version
    assert final.tree_owner == "gcc-stage1"
    assert stage1.depends == ("binutils",)
    assert set(final.depends) >= {"binutils", "gcc-stage1", "hermit-bootstrap", "newlib", "pthread-embedded"}
    ctx = {"src": "/src", "target": "x86_64-hermit", "prefix": "/opt/hermit", "jobs": "2",
           "stage": "/stage", "build": "/build"}
    s1 = {s.name: s.argv(ctx) for s in stage1.steps}
    assert s1["configure"][0] == "/src/configure"
    assert {"--target=x86_64-hermit", "--prefix=/opt/hermit", "--with-newlib",
            "--enable-threads=posix", "--disable-shared"} <= set(s1["configure"])
    assert s1["build"][-1] == "all-gcc"
    assert s1["install"][-2:] == ["install-strip-gcc", "DESTDIR=/stage"]
    fin = {s.name: s.argv(ctx) for s in final.steps}
    # one compile of the compilers: the final recipe starts with stage 1's own steps
    # (skipped in stage 1's build directory) and installs only the target libraries
    assert final.build_from == "gcc-stage1"
    assert fin["configure"] == s1["configure"] and fin["build"] == s1["build"]
    assert "all-target-libgcc" in fin["libgcc"]
    assert "all-target-libstdc++-v3" in fin["libstdcxx"]  # CMake's C++ check links -lstdc++
    assert fin["install"] == ["make", "-j2", "install-strip-target-libgcc",
                              "install-strip-target-libstdc++-v3", "DESTDIR=/stage"]


@pytest.mark.parametrize("variant", [UPSTREAM, FORK], ids=["upstream", "fork"])
def test_recipe_set_loads_with_either_variant(variant: dict) -> None:
    recipes = load_recipes(RECIPES, PATCHES, variant)
    order = list(recipes.order)
    assert order.index("binutils") < order.index("gcc-stage1") < order.index("gcc")
    assert order.index("newlib") < order.index("gcc") and order.index("pthread-embedded") < order.index("gcc")


# --------------------------------------------------------------------------- the series

def test_series_applies_to_pristine_gcc_12_2(patched: Path) -> None:
    assert (patched / "gcc" / "config" / "hermit.h").is_file()


def test_config_sub_accepts_x86_64_hermit(pristine: Path, patched: Path) -> None:
    before = subprocess.run(["sh", str(pristine / "config.sub"), "x86_64-hermit"],
                            capture_output=True, text=True)
    assert before.returncode != 0 and "hermit" in before.stderr  # the series is what makes it work
    after = subprocess.run(["sh", str(patched / "config.sub"), "x86_64-hermit"],
                           capture_output=True, text=True, check=True)
    assert after.stdout.strip() == "x86_64-pc-hermit"


def test_hermit_h_defines_the_target(patched: Path) -> None:
    text = (patched / "gcc" / "config" / "hermit.h").read_text(encoding="utf-8")
    assert "NO_IMPLICIT_EXTERN_C" not in text  # poisoned in GCC 12
    assert 'builtin_define ("__hermit__")' in text and 'builtin_define ("__unix__")' in text
    assert re.search(r'#define STARTFILE_SPEC "crt0\.o%s crti\.o%s crtbegin\.o%s"', text)
    assert re.search(r'#define ENDFILE_SPEC "crtend\.o%s crtn\.o%s"', text)
    lib_spec = re.search(r"#define LIB_SPEC \\\n((?:.*\\\n)*.*)\n", text).group(1)
    assert "-lpthread -lc -lg -lm -lhermit" in lib_spec and "max-page-size=0x1000" in lib_spec
    assert "%{pthread:" not in lib_spec  # libpthread in every link (0005)
    assert re.search(r"#define GTHREAD_USE_WEAK 0", text)


def test_threads_and_limits_h_pieces(patched: Path) -> None:
    opt = (patched / "gcc" / "config" / "hermit.opt").read_text(encoding="utf-8")
    assert "\npthread\nDriver\n" in opt
    assert "LIMITS_H_TEST = true" in (patched / "gcc" / "config" / "t-hermit").read_text(encoding="utf-8")
    config_gcc = (patched / "gcc" / "config.gcc").read_text(encoding="utf-8")
    os_entry = re.search(r"\n\*-\*-hermit\*\)\n(.*?)\n  ;;\n", config_gcc, re.S).group(1)
    assert 'extra_options="${extra_options} hermit.opt"' in os_entry
    assert 'tmake_file="${tmake_file} t-hermit"' in os_entry
    defines = (patched / "libstdc++-v3" / "config" / "os" / "newlib" / "os_defines.h").read_text(encoding="utf-8")
    assert re.search(r"#ifdef __hermit__\n(//.*\n)*#define _GLIBCXX_GTHREAD_USE_WEAK 0\n#endif", defines)


def test_config_gcc_and_libgcc_know_the_target(patched: Path) -> None:
    config_gcc = (patched / "gcc" / "config.gcc").read_text(encoding="utf-8")
    elf = re.search(r"\nx86_64-\*-elf\*\)\n\ttm_file=\"\$\{tm_file\} ([^\"]*)\"", config_gcc).group(1)
    hermit = re.search(r"\nx86_64-\*-hermit\*\)\n\ttm_file=\"\$\{tm_file\} ([^\"]*)\"", config_gcc).group(1)
    assert hermit == elf + " hermit.h"
    os_entry = re.search(r"\n\*-\*-hermit\*\)\n(.*?)\n  ;;\n", config_gcc, re.S).group(1)
    for needle in ("gas=yes", "gnu_ld=yes", "default_use_cxa_atexit=yes", "use_gcc_stdint=wrap",
                   "thread_file='posix'"):
        assert needle in os_entry
    config_host = (patched / "libgcc" / "config.host").read_text(encoding="utf-8")
    entry = re.search(r"\nx86_64-\*-hermit\*\)\n(.*?)\n\t;;\n", config_host, re.S).group(1)
    assert "i386/t-crtstuff t-crtstuff-pic t-libgcc-pic" in entry
    assert "crtbegin.o crtend.o crti.o crtn.o" in entry


def test_libstdcxx_configure_regenerated_with_the_hermit_case(pristine: Path, patched: Path) -> None:
    assert re.search(r"\n  hermit\*\)\n    os_include_dir=\"os/newlib\"",
                     (patched / "libstdc++-v3" / "configure.host").read_text(encoding="utf-8"))
    assert "*-hermit*)" in (patched / "libstdc++-v3" / "crossconfig.m4").read_text(encoding="utf-8")
    configure = (patched / "libstdc++-v3" / "configure").read_text(encoding="utf-8")
    assert "  *-hermit*)" in configure
    assert configure.startswith((pristine / "libstdc++-v3" / "configure").read_text(
        encoding="utf-8")[:300])  # still autoconf 2.69 output
    assert os.access(patched / "libstdc++-v3" / "configure", os.X_OK)
    syntax = subprocess.run(["sh", "-n", str(patched / "libstdc++-v3" / "configure")],
                            capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


def test_dfsg_workaround_applies_on_top(patched: Path) -> None:
    apply_series(patched, dfsg_patches(), recipe="gcc-stage1 (dfsg)")
    makefile = (patched / "gcc" / "Makefile.in").read_text(encoding="utf-8")
    assert re.search(r"^BUILD_INFO =\s*$", makefile, re.M)
    rule = re.search(r"^s-tm-texi: build/genhooks.*?\n\n", makefile, re.M | re.S).group(0)
    assert "genhooks$(build_exeext) -d" not in rule and "$(STAMP) $@" in rule
    for p in dfsg_patches():
        check_patch_header(p.path)


# --------------------------------------------------------------------------- libhermit patches

def test_hermit_patches_have_headers_and_stay_inside_the_tree() -> None:
    specs = load_recipe(RECIPES / "hermit-bootstrap.yaml", PATCHES, UPSTREAM).patches
    assert [p.path.parent for p in specs] == [PATCHES / "hermit"] * len(specs) and specs
    files = touched_files(specs)
    assert "caves/uhyve-migration.h" in files  # the proxy lives in the caves submodule
    assert "usr/ircce/RCCE_admin.c" in files and "cmake/HermitCore.cmake" in files
    assert not any(f.startswith(("/", "..")) for f in files)


def test_hermit_patches_apply_to_libhermit_b27b194(tmp_path: Path) -> None:
    """Needs a libhermit b27b194 checkout with its submodules (no network here)."""
    tree = os.environ.get("HERMITBUILD_TEST_LIBHERMIT")
    if not tree:
        pytest.skip("set HERMITBUILD_TEST_LIBHERMIT to a libhermit b27b194 checkout (with the caves "
                    "submodule) to apply patches/hermit to it")
    work = tmp_path / "libhermit"
    shutil.copytree(tree, work, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    apply_series(work, load_recipe(RECIPES / "hermit-bootstrap.yaml", PATCHES, UPSTREAM).patches,
                 recipe="hermit-bootstrap")
    assert "extern mig_params_t mig_params;" in (work / "caves" / "uhyve-migration.h").read_text()
    assert "L1:" not in (work / "usr" / "ircce" / "RCCE_admin.c").read_text()
    assert "HERMIT_LANGUAGES" in (work / "cmake" / "HermitCore.cmake").read_text()


def test_hermit_external_projects_build_only_when_their_files_change(tmp_path: Path) -> None:
    """patches/hermit/0007 on the real cmake/HermitCore-Utils.cmake, with the host's cmake and gcc:
    an external project without DEPENDS builds once, not again on an unchanged make, again when
    one of its files or of cmake/ is newer; one with DEPENDS builds on every make."""
    tree = os.environ.get("HERMITBUILD_TEST_LIBHERMIT")
    if not tree:
        pytest.skip("set HERMITBUILD_TEST_LIBHERMIT to a libhermit b27b194 checkout")
    for tool in ("cmake", "make", "gcc"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    work = tmp_path / "libhermit"
    shutil.copytree(tree, work, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    apply_series(work, load_recipe(RECIPES / "hermit-bootstrap.yaml", PATCHES, UPSTREAM).patches,
                 recipe="hermit-bootstrap")
    proj = tmp_path / "proj"
    (proj / "ext").mkdir(parents=True)
    (proj / "ext" / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.7)\nproject(ext C)\nadd_executable(ext main.c)\n"
        "install(TARGETS ext DESTINATION bin)\n")
    (proj / "ext" / "main.c").write_text("int main(void) { return 0; }\n")
    (proj / "CMakeLists.txt").write_text(f"""cmake_minimum_required(VERSION 3.7)
project(top NONE)
include(ExternalProject)
set(HERMIT_ROOT {work})
set(LOCAL_PREFIX_BASE_DIR ${{CMAKE_BINARY_DIR}}/local_prefix)
include({work}/cmake/HermitCore-Utils.cmake)
add_custom_target(kernel ALL COMMAND true)
build_external(proxy ${{CMAKE_SOURCE_DIR}}/ext "")
build_external(tests ${{CMAKE_SOURCE_DIR}}/ext kernel)
""")
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(proj), "-B", str(build)], check=True, capture_output=True)

    def built() -> set[str]:
        out = subprocess.run(["make"], cwd=build, check=True, capture_output=True, text=True).stdout
        return set(re.findall(r"Performing build step for '(\w+)'", out))

    def newer(path: Path) -> None:  # newer than every stamp the last make wrote
        time.sleep(0.05)
        os.utime(path)

    assert built() == {"proxy", "tests"}
    assert built() == {"tests"}
    newer(proj / "ext" / "main.c")
    assert built() == {"proxy", "tests"}
    assert built() == {"tests"}
    newer(work / "cmake" / "HermitCore.cmake")
    assert built() == {"proxy", "tests"}
    assert (build / "local_prefix" / "usr" / "local" / "bin" / "ext").is_file() or any(
        (build / "local_prefix").rglob("ext"))


# --------------------------------------------------------------------------- newlib patches

def test_newlib_patches_have_headers_and_keep_makefile_in_beside_makefile_am() -> None:
    specs = load_recipe(RECIPES / "newlib.yaml", PATCHES, UPSTREAM).patches
    assert [p.name[:4] for p in specs] == ["0001", "0002"]
    for p in specs:
        check_patch_header(p.path)
    files = touched_files(specs)
    assert not any(f.startswith(("/", "..")) for f in files)
    # every Makefile.am a patch edits has its generated Makefile.in edited beside it
    assert {f[:-3] for f in files if f.endswith(".am")} == {f[:-3] for f in files if f.endswith(".in")}


def test_newlib_patches_apply_and_their_makefile_in_is_what_automake_makes(tmp_path: Path) -> None:
    """patches/newlib applied to newlib 02d2b87: automake 1.11 (with autoconf 2.64, as newlib's
    own files were made) regenerates each patched Makefile.in byte for byte from its patched
    Makefile.am, and the header installation of 0002 is one `install` per directory."""
    tree = os.environ.get("HERMITBUILD_TEST_NEWLIB")
    if not tree:
        pytest.skip("set HERMITBUILD_TEST_NEWLIB to a newlib 02d2b87 checkout (olivierpierre/newlib) to "
                    "apply patches/newlib to it")
    for tool in ("automake-1.11", "autoconf2.64"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/setup --tests installs it)")
    work = tmp_path / "newlib"
    shutil.copytree(tree, work, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    specs = load_recipe(RECIPES / "newlib.yaml", PATCHES, UPSTREAM).patches
    apply_series(work, specs, recipe="newlib")
    env = {**os.environ, "AUTOCONF": "autoconf2.64", "AUTOM4TE": "autom4te2.64"}
    for am in sorted(f for f in touched_files(specs) if f.endswith("Makefile.am")):
        directory = (work / am).parent
        patched = (directory / "Makefile.in").read_bytes()
        subprocess.run(["automake-1.11", "--cygnus", "Makefile"], cwd=directory, env=env, check=True,
                       capture_output=True)
        assert (directory / "Makefile.in").read_bytes() == patched, f"{am}: Makefile.in is not automake's"
    install = (work / "newlib" / "Makefile.in").read_text()
    rule = install[install.index("install-data-local:\tinstall-toollibLIBRARIES"):]
    rule = rule[:rule.index("\n\n")]
    assert "`basename $$i`" not in rule and "$(INSTALL_DATA) $(srcdir)/libc/include/*.h" in rule


# --------------------------------------------------------------------------- the real build

BINUTILS_FROM_IMAGE = """\
# Test recipe: the build image's own x86-64 ELF binutils under x86_64-hermit-* names
# (enough for stage 1 and for compiling to an object file; the real recipe builds
# hermitcore/binutils, which cannot be fetched offline).
name: binutils
version: "0"
description: host binutils wrappers (test)
image: toolchain
sources:
  - tarball: http://127.0.0.1:9/unused.tar.gz
    sha256: "0000000000000000000000000000000000000000000000000000000000000000"
steps:
  - name: install
    run: [sh, -c, 'set -e; d={stage}{prefix}/bin; mkdir -p "$d"; for t in as ld ar nm ranlib
          objcopy objdump readelf strip; do printf "#!/bin/sh\\nexec /usr/bin/%s \\"\\$@\\"\\n" "$t"
          > "$d/{target}-$t"; chmod 755 "$d/{target}-$t"; done']
"""


@pytest.mark.slow
@pytest.mark.podman
def test_stage1_builds_a_working_cross_compiler(tmp_path: Path) -> None:
    need_gcc12_source()
    from helpers_podman import ensure_base_image, podman_settings, require_podman

    from hermitbuild import build, container
    from hermitbuild.unpack import safe_extract

    require_podman()
    ensure_base_image(tmp_path)
    root = tmp_path / "root"
    (root / "recipes").mkdir(parents=True)
    # The real recipe with one change: C only, like the CI proof (about 10 minutes
    # on 2 cores); the C++ and LTO front ends double the build time and are built by
    # `doit toolchain`.
    text = (RECIPES / "gcc-stage1.yaml").read_text(encoding="utf-8")
    assert text.count('"--enable-languages=c,c++,lto"') == 2
    (root / "recipes" / "gcc-stage1.yaml").write_text(
        text.replace('"--enable-languages=c,c++,lto"', '"--enable-languages=c"'), encoding="utf-8")
    (root / "recipes" / "binutils.yaml").write_text(BINUTILS_FROM_IMAGE, encoding="utf-8")
    shutil.copytree(PATCHES / "gcc", root / "patches" / "gcc")
    shutil.copytree(ROOT / "containers", root / "containers")
    (tmp_path / "empty").mkdir()

    # GCC 12.2 from Debian's gcc-12-source as the source override of gcc-stage1
    dfsg = tmp_path / "gcc-12.2.0-dfsg"
    safe_extract(DFSG_TARBALL, dfsg, strip_components=1)
    apply_series(dfsg, dfsg_patches(), recipe="dfsg")

    settings = podman_settings(root, tmp_path, gcc_variant="upstream",
                               overrides={"gcc-stage1": dfsg, "binutils": tmp_path / "empty"})
    recipes = load_recipes(root / "recipes", root / "patches", UPSTREAM)
    build.build_recipe("binutils", recipes, settings, push=False)
    build.build_recipe("gcc-stage1", recipes, settings, push=False)

    gcc = settings.prefix / "bin" / "x86_64-hermit-gcc"
    assert gcc.is_file()
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "free.c").write_text(
        "int answer(int x) { return x * 6 + 0 * __hermit__; }\n", encoding="utf-8")

    def run(*argv: str) -> str:
        done = container.run_in_container(
            "toolchain", ["sh", "-c", " ".join(argv)], settings, cwd=tmp_path / "t",
            mounts=[(settings.prefix, False), (tmp_path / "t", True)], env={"LC_ALL": "C"},
            log_path=tmp_path / "checks.log")
        assert done.returncode == 0
        return (tmp_path / "t" / "out.txt").read_text(encoding="utf-8")

    assert run(str(gcc), "-dumpmachine", ">out.txt").strip() == "x86_64-hermit"
    assert "#define __hermit__ 1" in run(str(gcc), "-dM -E - </dev/null >out.txt").splitlines()
    run(str(gcc), "-O2 -ffreestanding -c free.c -o free.o && echo ok >out.txt")
    # -pthread (patch 0005): accepted by the driver, defines _REENTRANT; libpthread is in every
    # link, with or without it (libgcc and libstdc++ refer to it strongly)
    macros = run(str(gcc), "-pthread -dM -E - </dev/null >out.txt 2>&1").splitlines()
    assert "#define _REENTRANT 1" in macros, macros[:5]
    assert "#define _REENTRANT 1" not in run(str(gcc), "-dM -E - </dev/null >out.txt").splitlines()
    for flags in ("-pthread", ""):
        link = run(str(gcc), flags, "-### free.o -o free >out.txt 2>&1")
        assert "unrecognized command-line option" not in link, link[-600:]
        collect2 = next(shlex.split(line) for line in link.splitlines() if "collect2" in line)
        assert "-lpthread" in collect2, collect2[-12:]
        assert collect2.index("-lpthread") < collect2.index("-lc") < collect2.index("-lhermit")
    # limits.h (patch 0005's t-hermit): built before newlib's headers exist, the installed
    # limits.h still goes on to the C library's in {prefix}/{target}/include
    libc_include = settings.prefix / "x86_64-hermit" / "include"
    libc_include.mkdir(parents=True, exist_ok=True)
    (libc_include / "limits.h").write_text("#define HERMIT_LIBC_LIMITS_H_WAS_READ 1\n", encoding="utf-8")
    limits = run("printf '#include <limits.h>\\n' |", str(gcc), "-dM -E -x c - >out.txt").splitlines()
    assert "#define HERMIT_LIBC_LIMITS_H_WAS_READ 1" in limits and any(
        line.startswith("#define INT_MAX ") for line in limits)
    obj = (tmp_path / "t" / "free.o").read_bytes()
    assert obj[:4] == b"\x7fELF" and obj[4] == 2  # ELF64
    assert int.from_bytes(obj[18:20], "little") == 62  # EM_X86_64
