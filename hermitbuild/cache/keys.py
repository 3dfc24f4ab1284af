"""Cache keys: one sha256 over everything that determines a recipe's installed output.

Contract: see :mod:`hermitbuild.cache` (Keys).  :func:`compute_key` takes the tree and image
identities as functions (the property tests give their own); :func:`recipe_key` and
:func:`definition_key` give it the real ones (:func:`hermitbuild.plan.tree_id`,
:func:`hermitbuild.container.image_hash`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any, Callable

from ..errors import CacheError, ConfigError
from ..recipe import Recipe, RecipeSet
from .. import container, plan
from ..settings import Settings
from ..settings import parse_size as settings_parse_size

logger = logging.getLogger(__name__)


KEY_FORMAT = 1
_KEY_RE = re.compile(r"^[0-9a-f]{64}$")


# --- helpers

def canonical_json(data: Any) -> str:
    """The one JSON rendering that keys are computed from."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def checksum_key(key: str) -> str:
    """The remote name of the checksum object of ``key``: itself 64 hex digits, so that stores
    which accept only sha256-shaped keys (bazel-remote's ``/ac/``) hold it too."""
    return hashlib.sha256(f"hermitbuild-checksum:{check_key(key)}".encode("ascii")).hexdigest()


def check_key(key: str) -> str:
    """Return ``key`` if it is 64 lower-case hex digits, else raise CacheError."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise CacheError(f"invalid cache key {key!r}",
                         "a cache key is the 64 lower-case hex digits of a sha256",
                         "copy the key from `doit cache list`")
    return key


def parse_size(text: str | int, field: str = "cache_max_size") -> int:
    """A size (see :func:`hermitbuild.settings.parse_size`); a ConfigError naming ``field`` if not."""
    try:
        return settings_parse_size(text)
    except ValueError as exc:
        raise ConfigError(f"{field}: {exc}", f"write e.g. `{field}: 20G` (K, M, G, T suffixes; plain "
                          "number = bytes)", field=field) from None


# --- keys

def recipe_definition(recipe: Recipe) -> dict[str, Any]:
    """The canonical, path-free definition of a recipe that enters its key."""
    return {
        "name": recipe.name,
        "version": recipe.version,
        "image": recipe.image,
        "depends": list(recipe.depends),
        "install_root": recipe.install_root,
        "build_in_source": recipe.build_in_source,
        "source_date_epoch": recipe.source_date_epoch,
        "env": [[k, v] for k, v in recipe.env],
        "steps": [{"name": s.name, "kind": s.kind, "args": list(s.args), "cwd": s.cwd,
                   "env": [[k, v] for k, v in s.env],
                   # only when set (as drop_files below): other recipes keep their keys
                   **({"incremental": s.incremental} if s.incremental != "run" else {})}
                  for s in recipe.steps],
        "variant": recipe.variant,
        # only when set, so that recipes without it keep their keys (and their cached artifacts)
        **({"drop_files": list(recipe.drop_files)} if recipe.drop_files else {}),
        **({"build_from": recipe.build_from} if recipe.build_from else {}),
    }


def uses_placeholder(recipe: Recipe, name: str) -> bool:
    """Whether ``{name}`` appears in a step argument or an env value of ``recipe``."""
    mark = "{" + name + "}"
    texts = [v for _, v in recipe.env]
    for step in recipe.steps:
        texts.extend(step.args)
        texts.extend(v for _, v in step.env)
    return any(mark in t for t in texts)


def build_settings(settings: Settings, recipe: Recipe) -> dict[str, Any]:
    """The settings whose values end up inside the files ``recipe`` builds.

    prefix and tools are baked into every recipe's output; ``hermit_languages`` only
    reaches recipes that pass ``{hermit_languages}`` on (and, through the dependency
    keys, what is built on top of them), so changing it does not rebuild binutils."""
    out: dict[str, Any] = {"prefix": str(settings.prefix), "tools": str(settings.tools)}
    if uses_placeholder(recipe, "hermit_languages"):
        out["hermit_languages"] = list(settings.hermit_languages)
    return out


def compute_key(recipe: Recipe, recipes: RecipeSet, settings: Settings, *,
                tree_id: Callable[[Recipe], str],
                image_id: Callable[[str], str],
                empty_table_tree_id: Callable[[Recipe], str] | None = None) -> tuple[str, dict]:
    """(hex key, inputs) of ``recipe``; dependencies' keys are computed recursively (memoised).

    Below a recipe with ``ignores_syscalls`` every tree id comes from
    ``empty_table_tree_id`` (the tree as the empty syscall table leaves it; default
    ``tree_id``), so a table change does not reach that recipe's key."""
    memo: dict[tuple[str, bool], tuple[str, dict]] = {}
    images: dict[str, str] = {}

    def image_of(name: str) -> str:
        if name not in images:
            images[name] = str(image_id(name))
        return images[name]

    def key_of(rec: Recipe, chain: tuple[str, ...], blind: bool) -> tuple[str, dict]:
        if (rec.name, blind) in memo:
            return memo[rec.name, blind]
        if rec.name in chain:
            raise CacheError(f"dependency cycle while computing the key of '{rec.name}'",
                             " -> ".join((*chain, rec.name)), "remove one of these dependencies")
        below = blind or rec.ignores_syscalls
        deps = {dep: key_of(recipes[dep], (*chain, rec.name), below)[0] for dep in rec.depends}
        tree = (empty_table_tree_id or tree_id)(rec) if blind else tree_id(rec)
        inputs = {
            "format": KEY_FORMAT,
            "recipe": recipe_definition(rec),
            "tree": str(tree),
            "image": image_of(rec.image),
            "target": settings.target,
            "build_settings": build_settings(settings, rec),
            "deps": deps,
        }
        key = hashlib.sha256(canonical_json(inputs).encode("ascii")).hexdigest()
        memo[rec.name, blind] = (key, inputs)
        return memo[rec.name, blind]

    return key_of(recipe, (), False)


# --- the identities of the real trees and images

def _tree_id_fn(recipes: RecipeSet, settings: Settings, blank_owner: str | None = None,
                empty_table: bool = False) -> Callable[[Recipe], str]:
    memo: dict[str, str] = {}

    def tree_id(rec: Recipe) -> str:
        if blank_owner is not None and rec.tree_owner == blank_owner:
            return ""
        if rec.name not in memo:
            memo[rec.name] = plan.tree_id(rec, recipes, settings, empty_table=empty_table)
        return memo[rec.name]

    return tree_id


def _key(rec: Recipe, recipes: RecipeSet, settings: Settings, blank_owner: str | None = None,
         empty_table: bool = False) -> tuple[str, dict]:
    return compute_key(rec, recipes, settings,
                       tree_id=_tree_id_fn(recipes, settings, blank_owner, empty_table),
                       image_id=_image_id_fn(settings),
                       empty_table_tree_id=_tree_id_fn(recipes, settings, blank_owner, empty_table=True))


def _image_id_fn(settings: Settings) -> Callable[[str], str]:
    return lambda image: container.image_hash(image, settings)


def recipe_key(name: str, recipes: RecipeSet, settings: Settings) -> tuple[str, dict]:
    """(key, inputs) of a recipe from the identities of its prepared tree (:func:`plan.tree_id`)
    and its build image (:func:`container.image_hash`): what the build and the cache use."""
    return _key(recipes[name], recipes, settings)


def definition_key(name: str, recipes: RecipeSet, settings: Settings) -> str:
    """The key with this recipe's own tree left out and every other tree as the empty syscall
    table leaves it (for incremental rebuilds: a syscall change that also rebuilt the kernel
    below newlib is still one make in newlib's build directory)."""
    return _key(recipes[name], recipes, settings, blank_owner=recipes[name].tree_owner,
                empty_table=True)[0]


def compiler_identity(name: str, recipes: RecipeSet, settings: Settings) -> str:
    """What decides the compilers a recipe's build runs: its build image (the host compiler)
    and the keys of its dependencies marked ``provides_compiler`` (the cross binutils and
    compiler, with every tree as the empty syscall table leaves it), but not the recipe's own
    tree or definition, nor dependencies that only install headers and libraries (ccache
    hashes every header a compile reads, and a compile links nothing): an edit of libhermit
    rebuilds newlib with ccache hits.

    ccache checks compilers by this string instead of their mtimes (``compiler_check``): a
    cross compiler rebuilt from the same inputs (a wiped cache, another checkout) is the same
    compiler, and its objects are hits; a changed one (a patch to cc1 that leaves the driver's
    bytes alone, too) is another compiler."""
    inputs = _key(recipes[name], recipes, settings, empty_table=True)[1]
    compilers = {dep: key for dep, key in inputs["deps"].items() if recipes[dep].provides_compiler}
    return hashlib.sha256(canonical_json({"image": inputs["image"], "target": inputs["target"],
                                          "compilers": compilers}).encode("ascii")).hexdigest()
