"""Cache keys: every kind of input changes the key; nothing else does (property style).

The generator of random recipe sets is driven by a ``random.Random``: a hand-rolled loop over
seeds always runs, and hypothesis drives the same generator when it is installed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from pathlib import Path
from typing import Callable

import pytest

from hermitbuild.cache import canonical_json, compute_key, uses_placeholder
from hermitbuild.errors import CacheError
from hermitbuild.recipe import Recipe, RecipeSet, Step

from helpers_cache import recipe, recipe_set, settings_at

WORDS = ["all", "install", "--enable-lto", "--disable-nls", "-O2", "{prefix}", "{target}",
         "--prefix={prefix}", "DESTDIR={install}", "{src}/x", "{build}/y", "CC={target}-gcc",
         "-DHERMIT_LANGUAGES={hermit_languages}"]


def _tree_id(rec: Recipe) -> str:
    return hashlib.sha256(f"tree:{rec.tree_owner}".encode()).hexdigest()


def _image_id(image: str) -> str:
    return hashlib.sha256(f"image:{image}".encode()).hexdigest()


def random_world(rng: random.Random) -> tuple[RecipeSet, Path]:
    """A random chain/diamond of 2..5 recipes; returns (set, root dir name)."""
    n = rng.randint(2, 5)
    recs: list[Recipe] = []
    for i in range(n):
        deps = tuple(sorted({f"r{j}" for j in range(i) if rng.random() < 0.6}))
        steps = tuple(
            Step(f"s{k}", rng.choice(["configure", "make", "run", "cmake"]),
                 tuple(rng.choice(WORDS) for _ in range(rng.randint(1, 4))),
                 cwd=rng.choice(["build", "src"]),
                 env=tuple(sorted({(f"V{rng.randint(0, 3)}", rng.choice(WORDS)) for _ in range(rng.randint(0, 2))})))
            for k in range(rng.randint(1, 3)))
        recs.append(recipe(f"r{i}", depends=deps, version=f"{rng.randint(1, 9)}.{rng.randint(0, 9)}",
                           steps=steps,
                           env=tuple(sorted({(f"E{rng.randint(0, 3)}", rng.choice(WORDS))
                                             for _ in range(rng.randint(0, 2))})),
                           image=rng.choice(["toolchain", "hermit"]),
                           install_root=rng.choice(["prefix", "tools"]),
                           build_in_source=rng.random() < 0.3))
    return recipe_set(*recs), Path(f"/ws{rng.randint(0, 10**6)}")


def key_of(rs: RecipeSet, name: str, settings, tree_id=_tree_id, image_id=_image_id) -> str:
    return compute_key(rs[name], rs, settings, tree_id=tree_id, image_id=image_id)[0]


def _replace_recipe(rs: RecipeSet, name: str, **changes) -> RecipeSet:
    new = dict(rs.recipes)
    new[name] = dataclasses.replace(rs[name], **changes)
    return RecipeSet(recipes=new, order=rs.order)


def _mutations(rs: RecipeSet, rng: random.Random) -> list[tuple[str, Callable]]:
    """(kind, fn(rs, settings, tree_id, image_id) -> key of the last recipe) for one change each."""
    last = rs.order[-1]
    rec = rs[last]
    first_step = rec.steps[0]

    def with_recipe(**changes):
        return lambda s, t, i: key_of(_replace_recipe(rs, last, **changes), last, s, t, i)

    def step_change(**changes):
        steps = (dataclasses.replace(first_step, **changes),) + rec.steps[1:]
        return with_recipe(steps=steps)

    muts: list[tuple[str, Callable]] = [
        ("version", with_recipe(version=rec.version + ".1")),
        ("image", with_recipe(image=rec.image + "2")),
        ("install_root", with_recipe(install_root="tools" if rec.install_root == "prefix" else "prefix")),
        ("build_in_source", with_recipe(build_in_source=not rec.build_in_source)),
        ("source_date_epoch", with_recipe(source_date_epoch=12345)),
        ("variant", with_recipe(variant="fork")),
        ("recipe env", with_recipe(env=rec.env + (("ZZ_NEW", "1"),))),
        ("step arg", step_change(args=first_step.args + ("--extra",))),
        ("step arg order", step_change(args=tuple(reversed(first_step.args)) + ("x", "y"))),
        ("step kind", step_change(kind="run" if first_step.kind != "run" else "make")),
        ("step cwd", step_change(cwd="src" if first_step.cwd == "build" else "build")),
        ("step env", step_change(env=first_step.env + (("ZZ_STEP", "1"),))),
        ("step name", step_change(name=first_step.name + "x")),
        ("step added", with_recipe(steps=rec.steps + (Step("extra", "make", ("check",)),))),
        ("tree id", lambda s, t, i: key_of(rs, last, s, lambda r: t(r) + "0", i)),
        ("image id", lambda s, t, i: key_of(rs, last, s, t, lambda n: "0" + i(n))),
        ("target", lambda s, t, i: key_of(rs, last, s.replace(target="aarch64-hermit"), t, i)),
        ("prefix", lambda s, t, i: key_of(rs, last, s.replace(prefix=Path("/opt/other")), t, i)),
        ("tools prefix", lambda s, t, i: key_of(rs, last, s.replace(tools_prefix=Path("/opt/t")), t, i)),
    ]
    if languages_reach(rs, last):
        muts.append(("hermit_languages",
                     lambda s, t, i: key_of(rs, last, s.replace(hermit_languages=("C",)), t, i)))
    # a change in any (transitive) dependency changes the key
    deps = set()
    stack = list(rec.depends)
    while stack:
        d = stack.pop()
        if d not in deps:
            deps.add(d)
            stack.extend(rs[d].depends)
    for dep in sorted(deps):
        muts.append((f"dependency {dep} version",
                     lambda s, t, i, dep=dep: key_of(
                         _replace_recipe(rs, dep, version=rs[dep].version + "-rc"), last, s, t, i)))
        muts.append((f"dependency {dep} tree",
                     lambda s, t, i, dep=dep: key_of(
                         rs, last, s, lambda r: t(r) + ("!" if r.name == dep else ""), i)))
    muts.append(("new dependency",
                 with_recipe(depends=tuple(sorted(set(rec.depends) | {rs.order[0]})))
                 if rs.order[0] not in rec.depends else
                 with_recipe(depends=tuple(d for d in rec.depends if d != rs.order[0]))))
    return muts


def languages_reach(rs: RecipeSet, name: str) -> bool:
    """Whether ``name`` or one of its (transitive) dependencies uses {hermit_languages}."""
    rec = rs[name]
    return uses_placeholder(rec, "hermit_languages") or any(languages_reach(rs, d) for d in rec.depends)


def check_world(rng: random.Random, tmp_root: Path) -> None:
    rs, ws = random_world(rng)
    last = rs.order[-1]
    s1 = settings_at(tmp_root / ws.name)
    base = key_of(rs, last, s1)
    # nothing changed -> same key, also in another workspace with other non-output settings
    s2 = settings_at(tmp_root / "elsewhere" / ws.name, jobs=7, offline=True,
                     mirrors=("http://m",), runtime_options=("--x",), cache_max_size="1G",
                     downloads_dir=tmp_root / "dl", remote_cache_mode="read", remote_cache="http://c")
    moved = RecipeSet(recipes={n: dataclasses.replace(r, file=Path("/other/place") / r.file.name,
                                                      description="changed", incremental=True)
                               for n, r in rs.recipes.items()}, order=rs.order)
    assert key_of(moved, last, s2) == base
    assert key_of(rs, last, s1) == base
    if not languages_reach(rs, last):   # a setting the recipes never see is not an input
        assert key_of(rs, last, s1.replace(hermit_languages=("C", "Fortran"))) == base
    seen = {base: "base"}
    for kind, fn in _mutations(rs, rng):
        new = fn(s1, _tree_id, _image_id)
        assert new != base, f"changing the {kind} did not change the key"
        assert seen.setdefault(new, kind) == kind, \
            f"changing the {kind} gave the same key as changing the {seen[new]}"


def test_key_properties_hand_rolled(tmp_path: Path) -> None:
    for seed in range(60):
        check_world(random.Random(seed), tmp_path)


def test_key_properties_hypothesis(tmp_path: Path) -> None:
    hypothesis = pytest.importorskip("hypothesis")
    from hypothesis import strategies as st

    @hypothesis.settings(max_examples=40, deadline=None, database=None)
    @hypothesis.given(st.randoms(use_true_random=False))
    def prop(rng: random.Random) -> None:
        check_world(rng, tmp_path)

    prop()


def test_key_is_sha256_of_canonical_inputs(tmp_path: Path) -> None:
    a = recipe("a")
    b = recipe("b", depends=("a",), env=(("CFLAGS", "-O2"),))
    rs = recipe_set(a, b)
    s = settings_at(tmp_path, prefix=Path("/opt/hermit"))
    key, inputs = compute_key(b, rs, s, tree_id=_tree_id, image_id=_image_id)
    assert key == hashlib.sha256(canonical_json(inputs).encode()).hexdigest()
    assert set(inputs) == {"format", "recipe", "tree", "image", "target", "build_settings", "deps"}
    assert inputs["deps"] == {"a": key_of(rs, "a", s)}
    assert inputs["build_settings"] == {"prefix": "/opt/hermit", "tools": "/opt/hermit/tools"}
    assert inputs["recipe"]["steps"][0]["args"] == ["--prefix={prefix}", "--target={target}"]
    text = json.dumps(inputs)
    assert str(tmp_path) not in text and "/somewhere" not in text


def test_key_calls_are_memoised_and_tree_from_is_delegated(tmp_path: Path) -> None:
    a = recipe("a")
    b = recipe("b", depends=("a",))
    c = recipe("c", depends=("a", "b"), tree_from="b")
    rs = recipe_set(a, b, c)
    calls: list[str] = []

    def tree_id(r: Recipe) -> str:
        calls.append(r.name)
        return r.tree_owner * 8

    images: list[str] = []
    compute_key(c, rs, settings_at(tmp_path), tree_id=tree_id,
                image_id=lambda n: images.append(n) or n)
    assert sorted(calls) == ["a", "b", "c"]
    assert images == ["toolchain"]


def test_key_cycle_is_an_error(tmp_path: Path) -> None:
    a = recipe("a", depends=("b",))
    b = recipe("b", depends=("a",))
    with pytest.raises(CacheError, match="cycle"):
        compute_key(a, recipe_set(a, b), settings_at(tmp_path), tree_id=_tree_id, image_id=_image_id)


def test_hermit_languages_reach_only_the_recipes_that_use_them(tmp_path: Path) -> None:
    """With the real recipes: the languages are an input of the HermitCore builds (which pass
    -DHERMIT_LANGUAGES on) and of what is built on top of them, not of binutils or gcc."""
    from hermitbuild.recipe import load_recipes
    root = Path(__file__).resolve().parent.parent
    rs = load_recipes(root / "recipes", root / "patches", {"gcc_variant": "upstream"})
    s = settings_at(tmp_path)
    changed = {name for name in rs.order
               if key_of(rs, name, s) != key_of(rs, name, s.replace(hermit_languages=("C",)))}
    assert {"hermit-bootstrap", "hermit", "newlib", "gcc"} <= changed
    assert not changed & {"binutils", "gcc-stage1", "autoconf", "automake", "gdb"}


def test_ignores_syscalls_keeps_the_table_out_of_the_key(tmp_path: Path) -> None:
    """Below a recipe with ignores_syscalls, tree ids come from the empty-table function."""
    lib = recipe("lib")
    comp = dataclasses.replace(recipe("comp", depends=("lib",)), ignores_syscalls=True)
    app = recipe("app", depends=("lib", "comp"))
    rs = recipe_set(lib, comp, app)
    s = settings_at(tmp_path)

    def keys(table: str) -> dict[str, str]:
        def tree_id(r: Recipe) -> str:
            return _tree_id(r) + (table if r.name == "lib" else "")
        return {n: compute_key(rs[n], rs, s, tree_id=tree_id, image_id=_image_id,
                               empty_table_tree_id=_tree_id)[0] for n in rs.order}

    empty, added = keys(""), keys("+rename")
    assert empty == keys("")
    assert added["comp"] == empty["comp"], "the table reached a recipe that ignores it"
    assert added["lib"] != empty["lib"] and added["app"] != empty["app"]


def test_a_new_syscall_rebuilds_newlib_and_hermit_but_not_the_compilers(tmp_path: Path) -> None:
    """With the real recipes: adding `rename` to the table changes the keys of the trees it
    generates into and of what is built on them, but not of gcc (libgcc, libstdc++),
    pthread-embedded, binutils, gcc stage 1 (a 40-minute rebuild for nothing) or the
    bootstrap HermitCore (its tree has no generated code)."""
    from hermitbuild import build
    from hermitbuild.recipe import load_recipes
    root = Path(__file__).resolve().parent.parent
    work = tmp_path / "root"
    (work / "syscalls").mkdir(parents=True)
    for name in ("recipes", "patches", "containers"):
        (work / name).symlink_to(root / name)
    table = work / "syscalls" / "table.yaml"
    table.write_text("syscalls: []\n")
    s = settings_at(work)
    rs = load_recipes(s.recipes_dir, s.patches_dir, {"gcc_variant": "upstream"})
    before = {n: build.recipe_key(n, rs, s)[0] for n in rs.order}
    table.write_text("syscalls:\n  - name: rename\n    returns: int\n"
                     "    params: [const char *oldpath, const char *newpath]\n"
                     "    kernel: {stub: 0}\n    newlib: reentrant\n    header: stdio.h\n")
    after = {n: build.recipe_key(n, rs, s)[0] for n in rs.order}
    changed = {n for n in rs.order if before[n] != after[n]}
    assert changed == {"newlib", "hermit"}


def test_compiler_identity_follows_the_compilers_not_the_syscall_table(tmp_path: Path) -> None:
    """ccache's compiler check (keys.compiler_identity): newlib's is the same after a table
    change, after a rebuild from the same inputs and after an edit of libhermit (whose headers
    ccache hashes itself), and another when gcc stage 1's patches change (a cc1-only change
    leaves the driver's bytes, and so ccache's own content check, alone)."""
    import shutil
    from hermitbuild.cache.keys import compiler_identity
    from hermitbuild.recipe import load_recipes
    root = Path(__file__).resolve().parent.parent
    work = tmp_path / "root"
    (work / "syscalls").mkdir(parents=True)
    for name in ("recipes", "containers"):
        (work / name).symlink_to(root / name)
    shutil.copytree(root / "patches", work / "patches")
    table = work / "syscalls" / "table.yaml"
    table.write_text("syscalls: []\n")
    s = settings_at(work)

    def ids() -> dict[str, str]:
        rs = load_recipes(s.recipes_dir, s.patches_dir, {"gcc_variant": "upstream"})
        return {n: compiler_identity(n, rs, s) for n in ("newlib", "gcc-stage1", "hermit")}

    before = ids()
    assert before == ids()
    table.write_text("syscalls:\n  - name: rename\n    returns: int\n"
                     "    params: [const char *oldpath, const char *newpath]\n"
                     "    kernel: {stub: 0}\n    newlib: reentrant\n    header: stdio.h\n")
    assert ids() == before, "a syscall table change is not a new compiler"
    kernel = sorted((work / "patches" / "hermit").glob("0001-*.patch"))[0]
    kernel.write_text(kernel.read_text() + "\n")  # libhermit edited: hermit-bootstrap is rebuilt
    edited = ids()
    assert edited["newlib"] == before["newlib"], "newlib's compilers are binutils and gcc stage 1 only"
    assert edited["hermit"] != before["hermit"], "hermit's compiler, the final gcc, is rebuilt"
    before = edited
    series = sorted((work / "patches" / "gcc" / "12.2.0").glob("0005-*.patch"))[0]
    series.write_text(series.read_text() + "\n")  # a changed patch: another cc1
    after = ids()
    assert after["newlib"] != before["newlib"] and after["hermit"] != before["hermit"]
    assert after["gcc-stage1"] == before["gcc-stage1"], "its own compiler is the image's"
