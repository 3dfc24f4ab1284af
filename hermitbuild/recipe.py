"""Recipes: YAML data loaded into frozen, validated objects.

Contract:
- :func:`load_recipe` reads one ``recipes/<name>.yaml`` file; :func:`load_recipes`
  reads a whole directory into a :class:`RecipeSet` (dependencies exist, no
  cycles, ``tree_from`` points at a recipe with sources, every source pinned,
  every patch file present and carrying a header).
- Any problem raises :class:`~hermitbuild.errors.RecipeError` naming the file,
  the field and the line, with the fix.  Nothing is fetched or run here: loading
  is cheap enough for every ``doit list``.
- Variants (``variants:`` + ``variant_setting:``) are resolved at load time from
  the settings, so the returned Recipe is exactly what gets built.
- Patches are discovered from ``patches/<patch_dir>/NNNN-*.patch`` (``patch_dir``
  defaults to the recipe name) in numeric order.

The schema (every key; unknown keys are errors)::

    name: binutils              # must equal the file name without .yaml
    version: "2.30.51"
    description: one line
    license: GPL-3.0-or-later   # SPDX license expression (declared license, for the SBOM)
    license_note: "..."         # the text behind any LicenseRef-... in `license`
    image: toolchain            # containers/Containerfile.<image>
    depends: [other, recipes]   # built (and installed) before this one
    install_root: prefix        # prefix | tools  (where {install} points)
    build_in_source: false      # true: build in a private copy of the tree
    incremental: false          # true: a changed tree keeps the build dir
    syscalls: none              # none | kernel | newlib (generator target)
    ignores_syscalls: false     # true: the syscall table cannot change what this recipe
                                # builds, so its dependencies' keys enter its key as if the
                                # table were empty (adding a system call does not rebuild it)
    provides_compiler: false    # true: installs a compiler, assembler or linker the recipes
                                # built on it run; only such dependencies enter the compiler
                                # identity ccache checks (headers and libraries a dependency
                                # installs are hashed by ccache itself when a compile reads them)
    replaces: [gcc-stage1]      # dependencies whose files this recipe installs again, on purpose
                                # (it is installed after them, so its copies are the ones kept)
    drop_files: [{target}/include/pthread.h]  # paths (under the install root; * and ? match)
                                # left out of this recipe's artifact: another recipe owns them
    tree_from: gcc-stage1       # reuse that recipe's prepared tree (no sources/patches)
    override_from: hermit-bootstrap  # its own tree from the same sources as that recipe: the
                                # setting `overrides` for that recipe applies here too (unless
                                # this one has its own entry)
    build_from: gcc-stage1      # continue in that recipe's build directory when it is there:
                                # the leading steps both have (same commands) are not redone
                                # (needs tree_from: the same recipe; see hermitbuild.steps)
    patch_dir: gcc/12.2.0       # default: the recipe name
    patch_strip: 1
    source_date_epoch: 0        # for tarballs (git uses the commit date)
    env: {VAR: value}
    sources:
      - git: https://...        # or  tarball: https://...
        commit: <40 hex>        # git: required
        submodules: true
        sha256: <64 hex>        # tarball: required
        filename: x.tar.gz      # default: last URL component
        strip_components: 1
        dest: .                 # where in the tree it lands
    steps:
      - name: configure
        configure: [--prefix={prefix}]   # {src}/configure ARGS in the build dir
      - name: build
        make: [all]                      # make -j{jobs} ARGS
      - name: cmake
        cmake: [-DX=Y]                   # cmake {src} ARGS
      - name: other
        run: [program, args]             # any argv
        cwd: build                       # build | src
        env: {VAR: value}
        incremental: skip                # left out of incremental rebuilds (a later
                                         # step, e.g. `make install`, builds what changed)
    variants:                   # optional; chosen by variant_setting
      upstream: {version: ..., sources: [...], patch_dir: ..., steps: [...]}
    variant_setting: gcc_variant

Placeholders in step args and env values: {prefix} {tools} {install} {target}
{src} {build} {jobs} {name} {version} {hermit_languages} {stage}.
{stage} is the DESTDIR of install steps (``make install DESTDIR={stage}``): the
build writes only there; hermitbuild packs it and installs it into the prefix.
"""

from __future__ import annotations

import graphlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

from .fsutil import is_safe_relpath
from .errors import RecipeError
from .yamlutil import LineDict, LineList, load_yaml

PLACEHOLDERS = frozenset({"prefix", "tools", "install", "target", "src", "build", "jobs", "name",
                          "version", "hermit_languages", "stage"})
STEP_KINDS = ("configure", "cmake", "make", "run")
_PLACEHOLDER_RE = re.compile(r"\{([^{}]*)\}")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_PATCH_RE = re.compile(r"^(\d{4})-[A-Za-z0-9._+-]+\.patch$")

RECIPE_KEYS = {"name", "version", "description", "license", "license_note", "image", "depends", "install_root",
               "build_in_source", "incremental", "syscalls", "ignores_syscalls", "provides_compiler", "tree_from", "override_from", "build_from",
               "patch_dir",
               "patch_strip", "source_date_epoch", "env", "sources", "steps", "variants",
               "variant_setting", "drop_files", "replaces"}
VARIANT_KEYS = {"version", "description", "sources", "patch_dir", "steps", "env", "depends",
                "source_date_epoch"}
SOURCE_KEYS = {"git", "tarball", "commit", "submodules", "sha256", "filename",
               "strip_components", "dest"}
STEP_KEYS = {"name", "configure", "cmake", "make", "run", "cwd", "env", "incremental"}


@dataclass(frozen=True)
class Source:
    """One source of a recipe: a git repository at a commit or a tarball with a sha256."""

    kind: str  # "git" | "tarball"
    url: str
    commit: str = ""
    sha256: str = ""
    submodules: bool = True
    filename: str = ""
    strip_components: int = 1
    dest: str = "."

    @property
    def pin(self) -> str:
        """The immutable identity of this source (commit or sha256)."""
        return self.commit if self.kind == "git" else self.sha256

    @property
    def basename(self) -> str:
        if self.filename:
            return self.filename
        return self.url.rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class PatchSpec:
    """One patch file of a recipe's ordered series."""

    path: Path
    number: int
    strip: int = 1

    @property
    def name(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class Step:
    """One build step (one fresh container)."""

    name: str
    kind: str  # configure | cmake | make | run
    args: tuple[str, ...]
    cwd: str = "build"  # build | src
    env: tuple[tuple[str, str], ...] = ()
    # run | skip: ``skip`` leaves the step out of an incremental rebuild (a later step, e.g.
    # ``make install``, builds what changed); a full build runs it
    incremental: str = "run"

    def argv(self, ctx: Mapping[str, str]) -> list[str]:
        """The command line with placeholders filled in from ``ctx``."""
        args = [expand(a, ctx) for a in self.args]
        if self.kind == "configure":
            return [f"{ctx['src']}/configure", *args]
        if self.kind == "cmake":
            return ["cmake", ctx["src"], *args]
        if self.kind == "make":
            return ["make", f"-j{ctx['jobs']}", *args]
        return args

    def environment(self, ctx: Mapping[str, str]) -> dict[str, str]:
        return {k: expand(v, ctx) for k, v in self.env}


@dataclass(frozen=True)
class Recipe:
    """A validated recipe: everything needed to fetch, prepare and build one component."""

    name: str
    version: str
    file: Path
    description: str = ""
    image: str = "toolchain"
    depends: tuple[str, ...] = ()
    install_root: str = "prefix"
    build_in_source: bool = False
    incremental: bool = False
    syscalls: str = "none"
    ignores_syscalls: bool = False
    provides_compiler: bool = False  # its keys enter the ccache compiler identity of recipes on it
    tree_from: str | None = None
    override_from: str | None = None  # whose source override (setting `overrides`) this tree takes
    build_from: str | None = None  # continue in this recipe's build directory (see hermitbuild.steps)
    patch_dir: str = ""
    source_date_epoch: int | None = None
    env: tuple[tuple[str, str], ...] = ()
    sources: tuple[Source, ...] = ()
    patches: tuple[PatchSpec, ...] = ()
    steps: tuple[Step, ...] = ()
    variant: str | None = None
    drop_files: tuple[str, ...] = ()  # install-root-relative patterns left out of the artifact
    license: str = ""  # SPDX license expression ("" = not declared: NOASSERTION in the SBOM)
    license_note: str = ""  # the text behind a LicenseRef-... in ``license``
    replaces: tuple[str, ...] = ()  # dependencies whose files this recipe installs again

    @property
    def tree_owner(self) -> str:
        """The recipe whose prepared tree this recipe builds from."""
        return self.tree_from or self.name

    def override_name(self, overrides: Mapping[str, object]) -> str | None:
        """The key of ``overrides`` (the setting) that stands for this tree owner's source:
        its own name, else its ``override_from`` recipe's; None when neither is there."""
        for name in (self.name, self.override_from):
            if name is not None and name in overrides:
                return name
        return None

    def environment(self, ctx: Mapping[str, str]) -> dict[str, str]:
        return {k: expand(v, ctx) for k, v in self.env}


def expand(text: str, ctx: Mapping[str, str]) -> str:
    """Fill ``{placeholder}``s; unknown ones are left for validation to catch."""
    return _PLACEHOLDER_RE.sub(lambda m: str(ctx.get(m.group(1), m.group(0))), text)


@dataclass(frozen=True)
class RecipeSet:
    """All recipes of a build, in a valid dependency graph."""

    recipes: Mapping[str, Recipe]
    order: tuple[str, ...]  # a topological order (dependencies first)

    def __getitem__(self, name: str) -> Recipe:
        try:
            return self.recipes[name]
        except KeyError:
            raise RecipeError(f"no recipe named '{name}'",
                              "known recipes: " + ", ".join(self.order)) from None

    def __iter__(self) -> Iterator[Recipe]:
        return (self.recipes[n] for n in self.order)

    def __len__(self) -> int:
        return len(self.order)

    def closure(self, name: str) -> list[str]:
        """``name`` and everything it depends on (transitively, incl. tree owners), in build order."""
        wanted: set[str] = set()
        stack = [name]
        while stack:
            cur = stack.pop()
            if cur in wanted:
                continue
            wanted.add(cur)
            rec = self[cur]
            stack.extend(rec.depends)
            if rec.tree_from:
                stack.append(rec.tree_from)
        return [n for n in self.order if n in wanted]

    def dependents(self, name: str) -> list[str]:
        """Recipes that (transitively) depend on ``name``, in build order."""
        out: set[str] = set()
        changed = True
        while changed:
            changed = False
            for rec in self.recipes.values():
                if rec.name in out:
                    continue
                if name in rec.depends or any(d in out for d in rec.depends):
                    out.add(rec.name)
                    changed = True
        return [n for n in self.order if n in out]


# --------------------------------------------------------------------------- loading

class _Ctx:
    """Error helper bound to one file."""

    def __init__(self, file: Path) -> None:
        self.file = file

    def error(self, why: str, fix: str, node: Any = None, key: Any = None, field: str = "") -> RecipeError:
        line = None
        if isinstance(node, LineDict):
            line = node.line_of(key) if key is not None else node.line
        elif isinstance(node, LineList):
            line = node.line_of(key) if isinstance(key, int) else node.line
        return RecipeError(why, fix, file=self.file, line=line, field=field or None)


def _check_keys(c: _Ctx, node: Any, allowed: set[str], what: str, path: str) -> None:
    if not isinstance(node, dict):
        raise c.error(f"{what} must be a mapping, got {type(node).__name__}",
                      f"write {what} as `key: value` lines", node, field=path)
    for key in node:
        if key not in allowed:
            raise c.error(f"unknown key '{key}' in {what}",
                          "allowed keys: " + ", ".join(sorted(allowed)), node, key,
                          field=f"{path}.{key}" if path else str(key))


def _str(c: _Ctx, node: dict, key: str, path: str, *, required: bool = False,
         default: str = "") -> str:
    if key not in node:
        if required:
            raise c.error(f"missing required field '{key}'", f"add `{key}: ...`", node,
                          field=f"{path}{key}")
        return default
    value = node[key]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or (required and not value):
        raise c.error(f"'{key}' must be a non-empty string, got {value!r}",
                      f"write `{key}: \"...\"`", node, key, field=f"{path}{key}")
    return value


def _bool(c: _Ctx, node: dict, key: str, path: str, default: bool) -> bool:
    value = node.get(key, default)
    if not isinstance(value, bool):
        raise c.error(f"'{key}' must be true or false, got {value!r}", f"write `{key}: true`",
                      node, key, field=f"{path}{key}")
    return value


def _int(c: _Ctx, node: dict, key: str, path: str, default: int | None) -> int | None:
    value = node.get(key, default)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
        raise c.error(f"'{key}' must be a whole number >= 0, got {value!r}", f"write `{key}: 1`",
                      node, key, field=f"{path}{key}")
    return value


def _check_placeholders(c: _Ctx, text: str, node: Any, key: Any, field: str) -> None:
    for m in _PLACEHOLDER_RE.finditer(text):
        if m.group(1) not in PLACEHOLDERS:
            raise c.error(f"unknown placeholder {{{m.group(1)}}} in {text!r}",
                          "known placeholders: " + ", ".join("{%s}" % p for p in sorted(PLACEHOLDERS)),
                          node, key, field=field)


def _env(c: _Ctx, node: dict, path: str) -> tuple[tuple[str, str], ...]:
    env = node.get("env", {}) or {}
    if not isinstance(env, dict):
        raise c.error("'env' must be a mapping of VARIABLE: value", "write `env: {CFLAGS: -O2}`",
                      node, "env", field=f"{path}env")
    out = []
    for k, v in env.items():
        if not isinstance(k, str) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k):
            raise c.error(f"environment variable name {k!r} is not valid", "use A-Z, 0-9 and _",
                          env, k, field=f"{path}env.{k}")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            v = str(v)
        if not isinstance(v, str):
            raise c.error(f"env value of {k} must be a string", f"write `{k}: \"...\"`", env, k,
                          field=f"{path}env.{k}")
        _check_placeholders(c, v, env, k, f"{path}env.{k}")
        out.append((k, v))
    return tuple(sorted(out))


def _sources(c: _Ctx, node: Any, path: str) -> tuple[Source, ...]:
    if node is None:
        return ()
    if not isinstance(node, list):
        raise c.error("'sources' must be a list", "write `sources:` followed by `- git: ...` items",
                      node, field=path)
    out = []
    for i, item in enumerate(node):
        p = f"{path}[{i}]."
        _check_keys(c, item, SOURCE_KEYS, f"source #{i + 1}", p.rstrip("."))
        kinds = [k for k in ("git", "tarball") if k in item]
        if len(kinds) != 1:
            raise c.error("a source needs exactly one of 'git' or 'tarball'",
                          "write `- git: URL` with `commit:` or `- tarball: URL` with `sha256:`",
                          node, i, field=p.rstrip("."))
        kind = kinds[0]
        url = _str(c, item, kind, p, required=True)
        commit = _str(c, item, "commit", p)
        sha256 = _str(c, item, "sha256", p)
        if kind == "git":
            if not _COMMIT_RE.match(commit):
                raise c.error(f"git source {url} must be pinned to a full 40-hex commit, got {commit!r}",
                              "write `commit: <40 hex digits>` (a branch or tag is not a pin)",
                              item, "commit" if "commit" in item else None, field=f"{p}commit")
            if sha256:
                raise c.error("'sha256' is for tarballs; a git source is pinned by 'commit'",
                              "remove `sha256:`", item, "sha256", field=f"{p}sha256")
        else:
            if not _SHA256_RE.match(sha256):
                raise c.error(f"tarball {url} must carry its sha256 (64 lower-case hex), got {sha256!r}",
                              "write `sha256: <64 hex digits>` (sha256sum FILE)",
                              item, "sha256" if "sha256" in item else None, field=f"{p}sha256")
            if commit:
                raise c.error("'commit' is for git sources; a tarball is pinned by 'sha256'",
                              "remove `commit:`", item, "commit", field=f"{p}commit")
        dest = _str(c, item, "dest", p, default=".")
        if dest != "." and not is_safe_relpath(dest):
            raise c.error(f"'dest' must be a relative path inside the tree, got {dest!r}",
                          "write e.g. `dest: gcc/gmp`", item, "dest", field=f"{p}dest")
        out.append(Source(kind=kind, url=url, commit=commit, sha256=sha256,
                          submodules=_bool(c, item, "submodules", p, True),
                          filename=_str(c, item, "filename", p),
                          strip_components=_int(c, item, "strip_components", p, 1) or 0,
                          dest=dest))
    return tuple(out)


def _steps(c: _Ctx, node: Any, path: str) -> tuple[Step, ...]:
    if node is None:
        return ()
    if not isinstance(node, list):
        raise c.error("'steps' must be a list", "write `steps:` followed by `- name: ...` items",
                      node, field=path)
    out: list[Step] = []
    seen: set[str] = set()
    for i, item in enumerate(node):
        p = f"{path}[{i}]."
        _check_keys(c, item, STEP_KEYS, f"step #{i + 1}", p.rstrip("."))
        name = _str(c, item, "name", p, required=True)
        if not _NAME_RE.match(name):
            raise c.error(f"step name {name!r} must be lower-case letters, digits, '.', '_', '-'",
                          "rename the step, e.g. `name: configure`", item, "name", field=f"{p}name")
        if name in seen:
            raise c.error(f"duplicate step name '{name}'", "give every step its own name",
                          item, "name", field=f"{p}name")
        seen.add(name)
        kinds = [k for k in STEP_KINDS if k in item]
        if len(kinds) != 1:
            raise c.error(f"step '{name}' needs exactly one of {', '.join(STEP_KINDS)}",
                          "write e.g. `make: [install]`", node, i, field=p.rstrip("."))
        kind = kinds[0]
        args = item[kind] if item[kind] is not None else []
        if isinstance(args, str):
            args = [args]
        if not isinstance(args, list) or not all(isinstance(a, (str, int)) for a in args):
            raise c.error(f"'{kind}' of step '{name}' must be a list of arguments",
                          f"write `{kind}: [arg1, arg2]`", item, kind, field=f"{p}{kind}")
        args = [str(a) for a in args]
        if kind == "run" and not args:
            raise c.error(f"'run' of step '{name}' is empty", "give the program and its arguments",
                          item, kind, field=f"{p}run")
        for a in args:
            _check_placeholders(c, a, item, kind, f"{p}{kind}")
        cwd = _str(c, item, "cwd", p, default="build")
        if cwd not in ("build", "src"):
            raise c.error(f"'cwd' must be build or src, got {cwd!r}", "write `cwd: build`",
                          item, "cwd", field=f"{p}cwd")
        incremental = _str(c, item, "incremental", p, default="run")
        if incremental not in ("run", "skip"):
            raise c.error(f"'incremental' of step '{name}' must be run or skip, got {incremental!r}",
                          "write `incremental: skip` (an incremental rebuild leaves the step out because a "
                          "later step builds what changed) or remove the field", item, "incremental",
                          field=f"{p}incremental")
        out.append(Step(name=name, kind=kind, args=tuple(args), cwd=cwd, env=_env(c, item, p),
                        incremental=incremental))
    return tuple(out)


def _discover_patches(c: _Ctx, patches_root: Path, patch_dir: str, strip: int,
                      node: Any) -> tuple[PatchSpec, ...]:
    directory = patches_root / patch_dir
    if not directory.is_dir():
        return ()
    out: list[PatchSpec] = []
    numbers: dict[int, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.is_dir() or path.name.startswith(".") or path.name.lower() in ("readme", "readme.md", "series"):
            continue
        m = _PATCH_RE.match(path.name)
        if not m:
            raise c.error(f"patch file {path} is not named NNNN-name.patch",
                          "rename it to e.g. 0001-fix-build.patch", node, "patch_dir",
                          field="patch_dir")
        number = int(m.group(1))
        if number in numbers:
            raise c.error(f"patches {numbers[number].name} and {path.name} share number {number:04d}",
                          "renumber one of them", node, "patch_dir", field="patch_dir")
        numbers[number] = path
        check_patch_header(path, c)
        out.append(PatchSpec(path=path, number=number, strip=strip))
    out.sort(key=lambda p: p.number)
    return tuple(out)


HEADER_FIELDS = ("what", "why", "upstream")


def check_patch_header(path: Path, c: _Ctx | None = None) -> dict[str, str]:
    """A patch must start with a header naming what it does, why, and its upstream status.

    The header is the text before the first ``diff``/``---`` line; it must contain
    lines ``What:``, ``Why:`` and ``Upstream:`` (case-insensitive, in any order).
    """
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise RecipeError(f"cannot read patch: {exc.strerror}", "check the file", file=path) from None
    header: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith(("diff ", "--- ", "Index: ")):
            break
        m = re.match(r"^\s*(?:#\s*)?([A-Za-z]+)\s*:\s*(.*)$", line)
        if m and m.group(1).lower() in HEADER_FIELDS and m.group(1).lower() not in header:
            header[m.group(1).lower()] = m.group(2).strip()
    missing = [f for f in HEADER_FIELDS if not header.get(f)]
    if missing:
        raise RecipeError(f"patch header lacks: {', '.join(m.capitalize() + ':' for m in missing)}",
                          "start the patch with lines `What: ...`, `Why: ...`, `Upstream: ...` "
                          "before the first diff", file=path, line=1, field="header")
    return header


def load_recipe(path: Path, patches_root: Path, settings_values: Mapping[str, Any] | None = None) -> Recipe:
    """Load and validate one recipe file (see the module docstring for the schema)."""
    c = _Ctx(path)
    data = load_yaml(path, RecipeError)
    _check_keys(c, data, RECIPE_KEYS, "the recipe", "")
    name = _str(c, data, "name", "", required=True)
    if not _NAME_RE.match(name):  # first: renaming the file to an invalid name would not help
        valid = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._") or "my-recipe"
        raise c.error(f"recipe name {name!r} must be lower-case letters, digits, '.', '_', '-'",
                      f"write `name: {valid}` and name the file {valid}.yaml", data, "name", field="name")
    if name != path.stem:
        raise c.error(f"recipe name '{name}' does not match its file name '{path.name}'",
                      f"rename the file to {name}.yaml or set `name: {path.stem}`", data, "name",
                      field="name")

    variant = None
    merged = LineDict(data)  # keeps line numbers, so errors about merged fields name a line
    merged.line = getattr(data, "line", 1) or 1
    merged.key_lines = dict(getattr(data, "key_lines", {}))
    if "variants" in data:
        variants = data["variants"]
        setting = _str(c, data, "variant_setting", "", required=True)
        if not isinstance(variants, dict) or not variants:
            raise c.error("'variants' must be a non-empty mapping of variant name to fields",
                          "write `variants: {upstream: {...}, fork: {...}}`", data, "variants",
                          field="variants")
        chosen = (settings_values or {}).get(setting)
        if chosen is None:
            chosen = next(iter(variants))
        if chosen not in variants:
            raise c.error(f"setting {setting}={chosen!r} names no variant of this recipe",
                          "choose one of: " + ", ".join(variants), data, "variants",
                          field=f"variants.{chosen}")
        vnode = variants[chosen]
        _check_keys(c, vnode, VARIANT_KEYS, f"variant '{chosen}'", f"variants.{chosen}")
        for key, value in vnode.items():
            if key in data and key != "env":
                raise c.error(f"'{key}' is set both at the top and in variant '{chosen}'",
                              "set it in one place only", vnode, key, field=f"variants.{chosen}.{key}")
        merged.update(vnode)
        merged.key_lines.update(getattr(vnode, "key_lines", {}))
        variant = str(chosen)
    elif "variant_setting" in data:
        raise c.error("'variant_setting' without 'variants'", "add variants or remove variant_setting",
                      data, "variant_setting", field="variant_setting")

    def node_for(key: str) -> Any:
        if variant is not None and key in data["variants"][variant]:
            return data["variants"][variant]
        return data

    version = _str(c, merged, "version", "", required=True)
    install_root = _str(c, merged, "install_root", "", default="prefix")
    if install_root not in ("prefix", "tools"):
        raise c.error(f"'install_root' must be prefix or tools, got {install_root!r}",
                      "write `install_root: prefix`", data, "install_root", field="install_root")
    syscalls = _str(c, merged, "syscalls", "", default="none")
    if syscalls not in ("none", "kernel", "newlib"):
        raise c.error(f"'syscalls' must be none, kernel or newlib, got {syscalls!r}",
                      "write `syscalls: newlib` for the newlib tree", data, "syscalls", field="syscalls")
    ignores_syscalls = _bool(c, merged, "ignores_syscalls", "", False)
    if ignores_syscalls and syscalls != "none":
        raise c.error(f"'ignores_syscalls: true' contradicts 'syscalls: {syscalls}' (the table generates "
                      "code into this recipe's own tree)", "remove `ignores_syscalls:`", data,
                      "ignores_syscalls", field="ignores_syscalls")
    depends = merged.get("depends", []) or []
    if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
        raise c.error("'depends' must be a list of recipe names", "write `depends: [binutils]`",
                      node_for("depends"), "depends", field="depends")
    tree_from = merged.get("tree_from")
    sources = _sources(c, merged.get("sources"), "sources")
    if tree_from is not None:
        if not isinstance(tree_from, str):
            raise c.error("'tree_from' must be a recipe name", "write `tree_from: gcc-stage1`",
                          data, "tree_from", field="tree_from")
        for key in ("sources", "patch_dir"):
            if key in merged:
                raise c.error(f"'{key}' cannot be combined with 'tree_from' (the tree comes from "
                              f"recipe '{tree_from}')", f"remove `{key}:`", node_for(key), key, field=key)
    override_from = merged.get("override_from")
    if override_from is not None and (not isinstance(override_from, str) or tree_from is not None
                                      or override_from == name):
        raise c.error("'override_from' must name another recipe with the same sources (and cannot be "
                      "combined with 'tree_from')", "write `override_from: hermit-bootstrap`, or remove it",
                      data, "override_from", field="override_from")
    if tree_from is None and not sources:
        raise c.error("a recipe needs 'sources' (or 'tree_from' to reuse another recipe's tree)",
                      "add `sources:` with a pinned git commit or tarball sha256", data, field="sources")
    build_from = merged.get("build_from")
    if build_from is not None:
        if not isinstance(build_from, str) or build_from != tree_from:
            raise c.error("'build_from' must name the recipe this one takes its tree from "
                          f"(tree_from: {tree_from or 'not set'}): its build directory was configured "
                          "from that tree", f"write `tree_from: {build_from}` beside `build_from: {build_from}`"
                          if isinstance(build_from, str) else "write `build_from: gcc-stage1`",
                          data, "build_from", field="build_from")
        for key in ("build_in_source", "incremental"):
            if merged.get(key):
                raise c.error(f"'build_from' cannot be combined with '{key}: true'",
                              f"remove `{key}:` or `build_from:`", data, key, field=key)
    patch_strip = _int(c, merged, "patch_strip", "", 1)
    patch_dir = _str(c, merged, "patch_dir", "", default=name)
    patches = () if tree_from else _discover_patches(c, patches_root, patch_dir, patch_strip or 0,
                                                     node_for("patch_dir"))
    steps = _steps(c, merged.get("steps"), "steps")
    if not steps:
        raise c.error("a recipe needs at least one step", "add `steps:` (configure, make, install)",
                      data, field="steps")
    _check_incremental_skips(c, merged, steps)
    drop_files = merged.get("drop_files", []) or []
    if not isinstance(drop_files, list) or not all(
            isinstance(f, str) and is_safe_relpath(f) for f in drop_files):
        raise c.error("'drop_files' must be a list of paths relative to the install root",
                      "write e.g. `drop_files: [\"{target}/include/pthread.h\"]`", node_for("drop_files"),
                      "drop_files", field="drop_files")
    replaces = merged.get("replaces", []) or []
    if not isinstance(replaces, list) or not all(isinstance(r, str) and r for r in replaces):
        raise c.error("'replaces' must be a list of recipe names", "write e.g. `replaces: [gcc-stage1]`",
                      node_for("replaces"), "replaces", field="replaces")
    for pattern in drop_files:
        _check_placeholders(c, pattern, node_for("drop_files"), "drop_files", "drop_files")
    image = _str(c, merged, "image", "", default="toolchain")
    if not _NAME_RE.match(image):
        raise c.error(f"image name {image!r} is not valid", "write `image: toolchain`", data, "image",
                      field="image")
    return Recipe(
        name=name, version=version, file=path,
        description=_str(c, merged, "description", ""),
        image=image, depends=tuple(depends), install_root=install_root,
        build_in_source=_bool(c, merged, "build_in_source", "", False),
        incremental=_bool(c, merged, "incremental", "", False),
        syscalls=syscalls, ignores_syscalls=ignores_syscalls, tree_from=tree_from,
        provides_compiler=_bool(c, merged, "provides_compiler", "", False),
        override_from=override_from, build_from=build_from,
        patch_dir=patch_dir,
        source_date_epoch=_int(c, merged, "source_date_epoch", "", None),
        env=_env(c, merged, ""), sources=sources, patches=patches, steps=steps, variant=variant,
        drop_files=tuple(drop_files), replaces=tuple(replaces),
        license=_license(c, merged), license_note=_str(c, merged, "license_note", ""),
    )


def _check_incremental_skips(c: _Ctx, merged: dict, steps: tuple[Step, ...]) -> None:
    """``incremental: skip`` needs an incremental recipe and a later step that does the work."""
    node = merged.get("steps")
    for i, step in enumerate(steps):
        if step.incremental != "skip":
            continue
        item = node[i] if isinstance(node, list) and i < len(node) else node
        field = f"steps[{i}].incremental"
        if not merged.get("incremental"):
            raise c.error(f"step '{step.name}' has `incremental: skip` but the recipe is not incremental",
                          "add `incremental: true` to the recipe (a changed tree keeps the build "
                          "directory), or remove `incremental: skip` from the step", item, "incremental",
                          field=field)
        if i == len(steps) - 1:
            raise c.error(f"the last step '{step.name}' cannot have `incremental: skip`",
                          "only a step whose work a later step also does (a `make` before "
                          "`make install`) can be left out of an incremental rebuild", item,
                          "incremental", field=field)


_LICENSE_RE = re.compile(r"^[A-Za-z0-9.+()\- ]+$")


def _license(c: _Ctx, node: dict) -> str:
    """The ``license`` field: an SPDX expression's characters (fully parsed by the SBOM writer)."""
    value = _str(c, node, "license", "")
    if value and (not _LICENSE_RE.match(value) or value.count("(") != value.count(")")):
        raise c.error(f"'license' is not an SPDX license expression: {value!r}",
                      "write e.g. `license: GPL-3.0-or-later WITH GCC-exception-3.1` "
                      "(ids from https://spdx.org/licenses/)", node, "license", field="license")
    if "LicenseRef-" in value and not node.get("license_note"):
        raise c.error("'license' uses a LicenseRef- but there is no license_note",
                      "add `license_note: \"...\"` saying what the license is and where its text is",
                      node, "license", field="license_note")
    return value


def load_recipes(recipes_dir: Path, patches_root: Path,
                 settings_values: Mapping[str, Any] | None = None) -> RecipeSet:
    """Load every ``*.yaml`` in ``recipes_dir`` and validate the graph."""
    files = sorted(recipes_dir.glob("*.yaml"))
    if not files:
        raise RecipeError(f"no recipes found in {recipes_dir}", "add recipes/<name>.yaml files",
                          file=recipes_dir)
    recipes = {p.stem: load_recipe(p, patches_root, settings_values) for p in files}
    graph: dict[str, set[str]] = {}
    for rec in recipes.values():
        for dep in rec.depends:
            if dep not in recipes:
                raise RecipeError(f"depends on unknown recipe '{dep}'",
                                  "known recipes: " + ", ".join(sorted(recipes)),
                                  file=rec.file, line=_graph_line(rec, "depends", dep),
                                  field="depends")
        if rec.tree_from is not None:
            owner = recipes.get(rec.tree_from)
            if owner is None:
                raise RecipeError(f"tree_from names unknown recipe '{rec.tree_from}'",
                                  "known recipes: " + ", ".join(sorted(recipes)), file=rec.file,
                                  line=_graph_line(rec, "tree_from"), field="tree_from")
            if owner.tree_from is not None:
                raise RecipeError(f"tree_from '{rec.tree_from}' itself borrows its tree",
                                  f"point tree_from at '{owner.tree_from}'", file=rec.file,
                                  line=_graph_line(rec, "tree_from"), field="tree_from")
        if rec.override_from is not None:
            other = recipes.get(rec.override_from)
            if other is None or other.tree_from is not None or other.sources != rec.sources:
                raise RecipeError(f"override_from '{rec.override_from}' is not a recipe with the same sources",
                                  "override_from shares a source override between recipes that build the "
                                  "same pinned sources; copy that recipe's `sources:` or remove "
                                  "`override_from:`", file=rec.file,
                                  line=_graph_line(rec, "override_from"), field="override_from")
        graph[rec.name] = set(rec.depends) | ({rec.tree_from} if rec.tree_from else set())
    try:
        # stable order: among ready recipes the alphabetical one first, for readable logs
        order = _stable_topo(graph)
    except graphlib.CycleError as exc:
        nodes = list(exc.args[1])  # each node is a dependency of the next one
        cycle = " -> ".join(reversed(nodes))
        rec, dep = recipes[nodes[1]], nodes[0]
        key = "depends" if dep in rec.depends else "tree_from"
        raise RecipeError(f"dependency cycle: {cycle} (each depends on the next)",
                          f"remove one of these dependencies, e.g. '{dep}' from {rec.file.name}",
                          file=rec.file, line=_graph_line(rec, key, dep), field=key) from None
    rs = RecipeSet(recipes=recipes, order=order)
    for rec in recipes.values():
        if rec.build_from is not None:
            _check_build_from(rec, rs)
    for rec in recipes.values():
        for other in rec.replaces:
            if other == rec.name or other not in rs.closure(rec.name):
                raise RecipeError(f"'{rec.name}' replaces '{other}', which is not one of its dependencies",
                                  "a recipe may only take over files of a recipe it is built after: add it "
                                  "to `depends:` or remove it from `replaces:`", file=rec.file,
                                  line=_graph_line(rec, "replaces", other), field="replaces")
    return rs


def _check_build_from(rec: Recipe, rs: "RecipeSet") -> None:
    """``build_from: R``: R is built before ``rec`` and both start with the same step."""
    owner = rs.recipes[rec.build_from or ""]
    if owner.name not in rs.closure(rec.name) or owner.name == rec.name:
        raise RecipeError(f"'{rec.name}' continues in the build directory of '{owner.name}', which is not "
                          "one of its dependencies", f"add '{owner.name}' to `depends:`", file=rec.file,
                          line=_graph_line(rec, "build_from"), field="build_from")
    if not rec.steps or not owner.steps or rec.steps[0] != owner.steps[0]:
        first = rec.steps[0].name if rec.steps else "(none)"
        raise RecipeError(f"'{rec.name}' has build_from: {owner.name}, but its first step '{first}' is not "
                          f"the same as {owner.name}'s first step, so no step done there can be skipped",
                          f"start the steps with {owner.name}'s own (the same name, command and env; "
                          "they run only when its build directory is not there), or remove `build_from:`",
                          file=rec.file, line=_graph_line(rec, "build_from"), field="build_from")


def _graph_line(rec: Recipe, key: str, item: str | None = None) -> int | None:
    """The line of ``key`` (or of list item ``item`` under it) in ``rec``'s file, for errors
    found only when the whole set is known (the Recipe objects keep no line numbers)."""
    try:
        data = load_yaml(rec.file, RecipeError)
    except RecipeError:
        return None
    nodes = [data]
    if rec.variant is not None and isinstance(data, dict) and isinstance(data.get("variants"), dict):
        nodes.insert(0, data["variants"].get(rec.variant))
    for node in nodes:
        if isinstance(node, LineDict) and key in node:
            value = node[key]
            if item is not None and isinstance(value, LineList) and item in value:
                return value.line_of(value.index(item))
            return node.line_of(key)
    return None


def _stable_topo(graph: Mapping[str, set[str]]) -> tuple[str, ...]:
    ts = graphlib.TopologicalSorter(graph)
    ts.prepare()
    order: list[str] = []
    while ts.is_active():
        ready = sorted(ts.get_ready())
        for n in ready:
            order.append(n)
            ts.done(n)
    return tuple(order)
