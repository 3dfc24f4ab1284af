"""The toolchain as an OCI image, with real podman and a real registry: one layer per recipe
artifact (shared between two toolchains that differ in one recipe), the fixture's compiler and
program run from it the way the README shows, the SBOM inside validates, and a push happens
only after a passed smoke test."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import requests
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from hermitbuild import build, cli, gate, toolchain_image
from hermitbuild.cache.oci import MANIFEST_TYPE
from hermitbuild.errors import HermitBuildError
from hermitbuild.recipe import load_recipes

from helpers_podman import RUNTIME_OPTIONS, FixtureWorld, ensure_base_image, podman_settings, require_podman
from helpers_registry import Registry, registry  # noqa: F401 (fixture)

pytestmark = pytest.mark.podman
IMAGE = "localhost/hermitbuild-test-toolchain"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    require_podman()
    base = tmp_path_factory.mktemp("imageworld")
    ensure_base_image(base)
    w = FixtureWorld(base)
    yield w
    w.close()
    subprocess.run(["podman", "rmi", "-f", *_tags()], capture_output=True)


def _tags() -> list[str]:
    out = subprocess.run(["podman", "images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE],
                         capture_output=True, text=True).stdout
    return out.split()


def toolchain(world: FixtureWorld, name: str, greeter_version: str = "0.1", **changes):
    """Build (or restore) the fixture toolchain in its own checkout; the prefix and the local
    cache are shared, as on one machine that builds two variants."""
    root = world.make_root(name)
    recipe = root / "recipes" / "greeter.yaml"
    if greeter_version != "0.1":  # another version, built differently (other bytes)
        recipe.write_text(recipe.read_text().replace(
            'version: "0.1"', f'version: "{greeter_version}"\nenv:\n  CFLAGS: "-O0 -g"'))
    s = podman_settings(root, world.base / f"{name}-ws", prefix=world.base / "opt" / "hermit",
                        cache_dir=world.base / "cache", image_base="fixture", image_name=IMAGE, **changes)
    rs = load_recipes(s.recipes_dir, s.patches_dir)
    build.build_all(["greeter"], rs, s)
    names, manifests = cli.installed_manifests(s, rs)
    keys = {n: build.recipe_key(n, rs, s)[0] for n in names}
    return s, rs, names, manifests, keys


def layers(tag: str) -> list[str]:
    out = subprocess.run(["podman", "image", "inspect", "--format", "{{json .RootFS.Layers}}", tag],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def test_image_runs_the_toolchain_and_carries_its_sbom(world, tmp_path: Path) -> None:
    s, rs, names, manifests, keys = toolchain(world, "img1")
    img = toolchain_image.build_toolchain_image(names, keys, rs, s, manifests)
    assert img.tags == (f"{IMAGE}:{img.key[:16]}", f"{IMAGE}:x86_64-hermit-gcc-upstream")
    base_layers = layers(subprocess.run(["podman", "image", "inspect", "--format", "{{.Id}}",
                                         f"localhost/hermitbuild-fixture:{_fixture_hash(s)}"],
                                        capture_output=True, text=True, check=True).stdout.strip())
    assert len(layers(img.tags[0])) == len(base_layers) + len(names) + 1, "a layer per recipe, and the SBOM"

    # the README's way: the work directory mounted at the same path
    (tmp_path / "hello.c").write_text(
        '#include <stdio.h>\n#include <greet.h>\nint main(void) { char b[64]; puts(greet("image", b, sizeof b)); }\n')
    prefix = s.prefix
    # (with this machine's runtime options: runc and explicit ulimits)
    run = ["podman", "run", "--rm", *RUNTIME_OPTIONS, "-v", f"{tmp_path}:{tmp_path}", "-w", str(tmp_path),
           img.tags[1]]
    subprocess.run(run + ["gcc", "hello.c", f"-I{prefix}/include", f"-L{prefix}/lib", "-lgreet",
                          f"-Wl,-rpath,{prefix}/lib", "-o", "hello"], check=True, capture_output=True)
    assert subprocess.run(run + ["./hello"], capture_output=True, text=True, check=True).stdout.startswith(
        "Hello, image")
    assert subprocess.run(run + ["greeter", "world"], capture_output=True, text=True,
                          check=True).stdout.startswith("Hello, world")

    text = subprocess.run(run + ["cat", f"{prefix}/{toolchain_image.SBOM_PATH}"], capture_output=True,
                          text=True, check=True).stdout
    doc = JsonLikeDictParser().parse(json.loads(text))
    assert validate_full_spdx_document(doc) == []
    assert {p.name for p in doc.packages} == set(names)


def _fixture_hash(s) -> str:
    from hermitbuild import container

    return container.image_hash("fixture", s)[:16]


def test_variants_share_the_layers_of_unchanged_recipes(world) -> None:
    s1, rs1, names, m1, k1 = toolchain(world, "var1")
    one = toolchain_image.build_toolchain_image(names, k1, rs1, s1, m1)
    s2, rs2, _, m2, k2 = toolchain(world, "var2", greeter_version="0.2")
    assert k1["libgreet"] == k2["libgreet"] and k1["greeter"] != k2["greeter"]
    two = toolchain_image.build_toolchain_image(names, k2, rs2, s2, m2)
    assert one.key != two.key
    a, b = layers(one.tags[0]), layers(two.tags[0])
    n_base = len(a) - len(names) - 1
    assert a[:n_base + 1] == b[:n_base + 1], "the base and libgreet's layer are shared"
    assert a[n_base + 1] != b[n_base + 1], "greeter's layer differs"


def test_push_only_after_a_passed_smoke_test(world, registry: Registry) -> None:
    s, rs, names, manifests, keys = toolchain(world, "push1", remote_cache_token=registry.token)
    img = toolchain_image.build_toolchain_image(names, keys, rs, s, manifests)
    url = registry.url("hermit/toolchain")
    gate.record_and_push(names, s, {"passed": False, "summary": "one example failed"})
    _, manifests = cli.installed_manifests(s, rs)
    with pytest.raises(HermitBuildError, match="smoke test has not passed"):
        toolchain_image.push_toolchain_image(img, url, s, manifests)
    assert "POST /v2/hermit/toolchain" not in registry.log

    gate.record_and_push(names, s, {"passed": True})
    _, manifests = cli.installed_manifests(s, rs)
    pushed = toolchain_image.push_toolchain_image(img, url, s, manifests)
    host = f"127.0.0.1:{registry.port}"
    assert pushed == [f"{host}/hermit/toolchain:{img.key[:16]}", f"{host}/hermit/toolchain:x86_64-hermit-gcc-upstream"]
    resp = requests.get(f"http://{host}/v2/hermit/toolchain/manifests/{img.key[:16]}",
                        headers={"Accept": f"{MANIFEST_TYPE}, application/vnd.docker.distribution.manifest.v2+json"},
                        auth=(registry.user, registry.password), timeout=10)
    assert resp.status_code == 200
    assert len(resp.json()["layers"]) == len(layers(img.tags[0]))


def test_a_missing_artifact_and_no_install_are_clear_errors(world) -> None:
    s, rs, names, manifests, keys = toolchain(world, "miss1")
    shutil.rmtree(s.cache_dir)
    with pytest.raises(HermitBuildError, match="not in the local cache") as info:
        toolchain_image.build_toolchain_image(names, keys, rs, s, manifests)
    assert "doit toolchain" in info.value.fix
