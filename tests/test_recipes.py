"""The real recipe set (recipes/, patches/) and the recipe loader's error messages."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hermitbuild.errors import RecipeError
from hermitbuild.recipe import (PLACEHOLDERS, RecipeSet, check_patch_header, load_recipe,
                                load_recipes)

ROOT = Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
PATCHES = ROOT / "patches"

NAMES = {"binutils", "gcc-stage1", "hermit-bootstrap", "newlib", "pthread-embedded", "gcc", "hermit",
         "autoconf", "automake", "gdb"}
CHAIN = ["binutils", "gcc-stage1", "hermit-bootstrap", "newlib", "pthread-embedded", "gcc", "hermit"]


@pytest.fixture(params=["upstream", "fork"], scope="module")
def real(request) -> RecipeSet:
    return load_recipes(RECIPES, PATCHES, {"gcc_variant": request.param})


def test_real_set_has_the_fixed_names(real: RecipeSet) -> None:
    assert set(real.recipes) == NAMES


def test_dependencies_exist_and_form_no_cycle(real: RecipeSet) -> None:
    position = {name: i for i, name in enumerate(real.order)}
    assert sorted(position) == sorted(real.recipes)
    for rec in real:
        for dep in rec.depends + ((rec.tree_from,) if rec.tree_from else ()):
            assert dep in real.recipes, f"{rec.name} -> {dep}"
            assert position[dep] < position[rec.name], f"{dep} must come before {rec.name}"


def _needs(real: RecipeSet, name: str, other: str) -> bool:
    """True if ``name`` (transitively) depends on ``other``."""
    return other in real.closure(name) and other != name


def test_build_order_constraints(real: RecipeSet) -> None:
    for earlier, later in zip(CHAIN, CHAIN[1:]):
        assert _needs(real, later, earlier), f"{later} must depend on {earlier}"
        assert real.order.index(earlier) < real.order.index(later)
    assert _needs(real, "automake", "autoconf")
    assert real.order.index("autoconf") < real.order.index("automake")


def test_every_source_is_pinned(real: RecipeSet) -> None:
    for rec in real:
        if rec.tree_from:
            assert not rec.sources
            continue
        assert rec.sources, rec.name
        for src in rec.sources:
            if src.kind == "git":
                assert re.fullmatch(r"[0-9a-f]{40}", src.commit), (rec.name, src.url)
            else:
                assert re.fullmatch(r"[0-9a-f]{64}", src.sha256), (rec.name, src.url)
                assert src.url.startswith("https://"), src.url


def test_every_patch_exists_and_has_a_header(real: RecipeSet) -> None:
    seen = 0
    for rec in real:
        numbers = [p.number for p in rec.patches]
        assert numbers == sorted(numbers)
        for patch in rec.patches:
            assert patch.path.is_file()
            header = check_patch_header(patch.path)
            assert header["what"] and header["why"] and header["upstream"]
            seen += 1
    # every *.patch in a recipe's patch dir is part of its series (none silently ignored)
    used = {p.path.resolve() for r in real for p in r.patches}
    for rec in real:
        if not rec.tree_from:
            for path in (PATCHES / rec.patch_dir).glob("*.patch"):
                assert path.resolve() in used, path
    assert seen > 0


def test_gdb_patch_carries_its_source() -> None:
    """The guide's gdb 8.0 carries the 'g'-packet patch (the default 13.1 needs none)."""
    gdb = load_recipe(ROOT / "recipes" / "gdb.yaml", PATCHES, {"gdb_variant": "8.0"})
    assert [p.name for p in gdb.patches] == ["0001-remote-g-packet.patch"]
    text = gdb.patches[0].path.read_text()
    # provenance: the guide's patch it is equivalent to (hermitbuild's own rewrite)
    assert "https://github.com/olivierpierre/gdb-remote-patch" in text
    assert "b95225dd4385e0e264469acce3221bc12a02989f" in text
    assert "+  if (buf_len != 2 * rsa->sizeof_g_packet)" in text


def test_recipe_details(real: RecipeSet) -> None:
    for rec in real:
        assert rec.description, f"{rec.name} needs a description"
        # every recipe installs into the staging dir, never straight into the prefix (an argument,
        # or DESTDIR in a step's environment: ninja takes no variables on its command line)
        args = [a for step in rec.steps for a in (*step.args, *(v for _, v in step.env))]
        assert any("{stage}" in a for a in args), f"{rec.name}: no step writes into {{stage}}"
        for step in rec.steps:
            for a in (*step.args, *(v for _, v in step.env)):
                for ph in re.findall(r"\{([^{}]*)\}", a):
                    assert ph in PLACEHOLDERS
    # the kernel side of the table goes into hermit's own tree; the bootstrap build ignores it
    assert real["hermit"].syscalls == "kernel" and real["hermit"].tree_from is None
    assert real["hermit-bootstrap"].syscalls == "none" and real["hermit-bootstrap"].ignores_syscalls
    assert real["hermit-bootstrap"].patch_dir == real["hermit"].patch_dir == "hermit"
    assert real["hermit"].sources == real["hermit-bootstrap"].sources
    assert real["hermit"].override_from == "hermit-bootstrap"
    assert real["newlib"].syscalls == "newlib" and real["newlib"].incremental
    assert real["gcc"].tree_from == "gcc-stage1"
    assert real["pthread-embedded"].build_in_source
    for name in ("autoconf", "automake"):
        assert real[name].install_root == "tools"
        assert any("--prefix={tools}" in a for s in real[name].steps for a in s.args)
    pins = {rec.name: [s.pin for s in rec.sources] for rec in real}
    assert pins["binutils"] == ["c2f0be9fd4fab8477492abfcd31a373dc1380038"]
    assert pins["hermit-bootstrap"] == ["b27b19458cce322fbeb37e9bccfb47df4888659b"]
    assert pins["newlib"] == ["02d2b8799abdf827adc74e3513c40b3c3fbb9a45"]
    assert pins["pthread-embedded"] == ["2a0fbf77278915b74fd26cefe62ec6552d49afd9"]
    assert real["hermit-bootstrap"].sources[0].submodules


def test_no_mirror_urls_in_recipes() -> None:
    """Mirrors come from settings: each recipe names only its canonical upstream."""
    from hermitbuild.yamlutil import load_yaml

    def keys(node: object) -> list[str]:
        if isinstance(node, dict):
            return [str(k) for k in node] + [k for v in node.values() for k in keys(v)]
        if isinstance(node, list):
            return [k for v in node for k in keys(v)]
        return []

    for path in RECIPES.glob("*.yaml"):
        assert not [k for k in keys(load_yaml(path, RecipeError)) if "mirror" in k.lower()], path


# ---------------------------------------------------------------------- loader errors

GOOD = """\
name: {name}
version: "1.0"
description: test
depends: {depends}
sources:
  - git: https://example.org/{name}.git
    commit: {commit}
steps:
  - name: build
    make: [all, "DESTDIR={{stage}}"]
"""
COMMIT = "a" * 40


def write(d: Path, name: str, text: str | None = None, depends: str = "[]",
          commit: str = COMMIT) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{name}.yaml"
    path.write_text(text if text is not None else GOOD.format(name=name, depends=depends,
                                                             commit=commit))
    return path


def line_of(path: Path, needle: str) -> int:
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


def assert_names(err: RecipeError, path: Path, field: str, line: int) -> None:
    text = str(err)
    assert f"{path}:{line}" in text, text
    assert f"field '{field}'" in text, text
    assert err.file == path and err.line == line and err.field == field
    assert "fix:" in text


def test_unknown_key(tmp_path: Path) -> None:
    path = write(tmp_path / "r", "a", GOOD.format(name="a", depends="[]", commit=COMMIT)
                 + "mirror: https://example.org/x\n")
    with pytest.raises(RecipeError, match="unknown key 'mirror'") as err:
        load_recipe(path, tmp_path / "p")
    assert_names(err.value, path, "mirror", line_of(path, "mirror:"))


def test_unknown_key_in_a_step(tmp_path: Path) -> None:
    text = GOOD.format(name="a", depends="[]", commit=COMMIT).replace(
        "    make: [all", "    timeout: 5\n    make: [all")
    path = write(tmp_path / "r", "a", text)
    with pytest.raises(RecipeError, match="unknown key 'timeout'") as err:
        load_recipe(path, tmp_path / "p")
    assert_names(err.value, path, "steps[0].timeout", line_of(path, "timeout:"))


INCREMENTAL_STEPS = """\
steps:
  - name: build
    make: []
    incremental: {value}
  - name: install
    make: [install, "DESTDIR={{stage}}"]
"""


def _with_steps(value: str, incremental: bool = True) -> str:
    base = GOOD.format(name="a", depends="[]", commit=COMMIT)
    head = base[:base.index("steps:")]
    return (head + ("incremental: true\n" if incremental else "")
            + INCREMENTAL_STEPS.format(value=value))


def test_a_step_left_out_of_incremental_rebuilds(tmp_path: Path) -> None:
    rec = load_recipe(write(tmp_path / "r", "a", _with_steps("skip")), tmp_path / "p")
    assert [s.incremental for s in rec.steps] == ["skip", "run"]
    plain = load_recipe(write(tmp_path / "q", "a"), tmp_path / "p")
    assert all(s.incremental == "run" for s in plain.steps)


@pytest.mark.parametrize("text, match", [
    (_with_steps("sometimes"), "must be run or skip, got 'sometimes'"),
    (_with_steps("skip", incremental=False), "the recipe is not incremental"),
    (_with_steps("run").replace("    make: [install", "    incremental: skip\n    make: [install"),
     "the last step 'install' cannot have `incremental: skip`"),
])
def test_bad_incremental_step(tmp_path: Path, text: str, match: str) -> None:
    path = write(tmp_path / "r", "a", text)
    with pytest.raises(RecipeError, match=match) as err:
        load_recipe(path, tmp_path / "p")
    needle = "incremental: skip" if "last step" in match else "incremental: "
    line = max(i for i, l in enumerate(path.read_text().splitlines(), 1) if needle in l
               and not l.startswith("incremental"))
    index = 1 if "last step" in match else 0
    assert_names(err.value, path, f"steps[{index}].incremental", line)


def test_missing_field(tmp_path: Path) -> None:
    text = GOOD.format(name="a", depends="[]", commit=COMMIT).replace('version: "1.0"\n', "")
    path = write(tmp_path / "r", "a", text)
    with pytest.raises(RecipeError, match="missing required field 'version'") as err:
        load_recipe(path, tmp_path / "p")
    assert_names(err.value, path, "version", 1)


def test_bad_commit(tmp_path: Path) -> None:
    path = write(tmp_path / "r", "a", commit="master")
    with pytest.raises(RecipeError, match="full 40-hex commit") as err:
        load_recipe(path, tmp_path / "p")
    assert_names(err.value, path, "sources[0].commit", line_of(path, "commit:"))


def test_bad_placeholder(tmp_path: Path) -> None:
    text = GOOD.format(name="a", depends="[]", commit=COMMIT).replace("{stage}", "{stagedir}")
    path = write(tmp_path / "r", "a", text)
    with pytest.raises(RecipeError, match=r"unknown placeholder \{stagedir\}") as err:
        load_recipe(path, tmp_path / "p")
    assert_names(err.value, path, "steps[0].make", line_of(path, "make:"))


def test_wrong_name(tmp_path: Path) -> None:
    path = write(tmp_path / "r", "b", GOOD.format(name="a", depends="[]", commit=COMMIT))
    with pytest.raises(RecipeError, match="does not match its file name") as err:
        load_recipe(path, tmp_path / "p")
    assert_names(err.value, path, "name", line_of(path, "name: a"))


def test_unknown_dependency(tmp_path: Path) -> None:
    d = tmp_path / "r"
    write(d, "a")
    path = write(d, "b", depends="[a, nope]")
    with pytest.raises(RecipeError, match="depends on unknown recipe 'nope'") as err:
        load_recipes(d, tmp_path / "p")
    assert_names(err.value, path, "depends", line_of(path, "depends:"))


def test_dependency_cycle(tmp_path: Path) -> None:
    d = tmp_path / "r"
    write(d, "a", depends="[c]")
    write(d, "b", depends="[a]")
    write(d, "c", text=GOOD.format(name="c", depends="\n  - b", commit=COMMIT))
    with pytest.raises(RecipeError, match="dependency cycle") as err:
        load_recipes(d, tmp_path / "p")
    e = err.value
    assert re.search(r"a -> .* -> a|b -> .* -> b|c -> .* -> c", str(e)), str(e)
    assert e.field == "depends" and e.file is not None and e.line is not None
    assert f"{e.file}:{e.line}" in str(e)
    # the named line is the depends entry closing the cycle in that file
    dep = re.search(r"e\.g\. '(\w+)' from", e.fix).group(1)
    assert dep in Path(e.file).read_text().splitlines()[e.line - 1]


def test_unknown_tree_from(tmp_path: Path) -> None:
    d = tmp_path / "r"
    write(d, "a")
    path = write(d, "b", text="name: b\nversion: \"1\"\ndescription: x\ntree_from: nope\n"
                 "steps:\n  - name: build\n    make: [all]\n")
    with pytest.raises(RecipeError, match="tree_from names unknown recipe 'nope'") as err:
        load_recipes(d, tmp_path / "p")
    assert_names(err.value, path, "tree_from", 4)


def test_patch_without_header(tmp_path: Path) -> None:
    d = tmp_path / "r"
    write(d, "a")
    patch = tmp_path / "p" / "a" / "0001-x.patch"
    patch.parent.mkdir(parents=True)
    patch.write_text("What: something\n--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n")
    with pytest.raises(RecipeError, match="Why:") as err:
        load_recipes(d, tmp_path / "p")
    assert err.value.file == patch and "header" in str(err.value)


def test_ignores_syscalls_contradicting_syscalls(tmp_path: Path) -> None:
    text = GOOD.format(name="a", depends="[]", commit=COMMIT) + "syscalls: newlib\nignores_syscalls: true\n"
    path = write(tmp_path / "r", "a", text)
    with pytest.raises(RecipeError, match="contradicts 'syscalls: newlib'") as err:
        load_recipe(path, tmp_path / "p")
    assert_names(err.value, path, "ignores_syscalls", line_of(path, "ignores_syscalls:"))


def test_ignores_syscalls_in_the_real_set(real: RecipeSet) -> None:
    assert {n for n in real.order if real[n].ignores_syscalls} == {"gcc", "pthread-embedded", "hermit-bootstrap"}



def test_replaces_must_name_a_dependency(tmp_path):
    """`replaces:` is allowed only toward a recipe this one is built after."""
    (tmp_path / "recipes").mkdir()
    for name, extra in (("a", ""), ("b", "replaces: [a]\n")):
        (tmp_path / "recipes" / f"{name}.yaml").write_text(
            GOOD.format(name=name, depends="[]", commit=COMMIT) + extra)
    with pytest.raises(RecipeError, match="'b' replaces 'a', which is not one of its dependencies") as err:
        load_recipes(tmp_path / "recipes", tmp_path / "patches")
    assert err.value.line is not None and err.value.file.name == "b.yaml"


def test_real_recipes_declare_their_replacements_and_drops():
    """The chain's intended double installs: the final gcc and HermitCore over their bootstrap
    builds; newlib leaves pthread-embedded's headers to it; no artifact carries the Info index."""
    real = load_recipes(ROOT / "recipes", ROOT / "patches", {"gcc_variant": "upstream"})
    assert real["gcc"].replaces == ("gcc-stage1",) and real["hermit"].replaces == ("hermit-bootstrap",)
    assert "{target}/include/pthread.h" in real["newlib"].drop_files
    for name in ("binutils", "gcc-stage1", "gcc", "newlib"):
        assert "share/info/dir" in real[name].drop_files, name

def test_provides_compiler_in_the_real_set_and_its_type(real: RecipeSet, tmp_path: Path) -> None:
    assert {n for n in real.order if real[n].provides_compiler} == {"binutils", "gcc-stage1", "gcc"}
    text = GOOD.format(name="a", depends="[]", commit=COMMIT) + "provides_compiler: sometimes\n"
    path = write(tmp_path / "r", "a", text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path, tmp_path / "p")
    assert_names(err.value, path, "provides_compiler", line_of(path, "provides_compiler:"))
