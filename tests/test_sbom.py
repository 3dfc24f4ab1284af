"""SPDX 2.3 SBOMs: every real recipe's document validates with spdx-tools and names its source,
patches and license; a document that does not validate is an error, never written; the SBOM of
an installed fixture toolchain (real podman builds) names every recipe, source, patch and file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
from spdx_tools.spdx.parser.parse_anything import parse_file
from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

from hermitbuild import sbom
from hermitbuild.errors import HermitBuildError
from hermitbuild.recipe import load_recipes
from hermitbuild.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
FILES = [{"path": "bin/x86_64-hermit-gcc", "type": "file", "sha256": "a" * 64, "sha1": "b" * 40},
         {"path": "lib/libfoo.a", "type": "file", "sha256": "c" * 64, "sha1": "d" * 40},
         {"path": "bin", "type": "dir"}, {"path": "bin/cc", "type": "symlink", "target": "gcc"}]


def _real():
    settings = load_settings(ROOT, environ={})
    return settings, load_recipes(settings.recipes_dir, settings.patches_dir, settings.variant_values)


def _parsed(document: dict):
    doc = JsonLikeDictParser().parse(json.loads(json.dumps(document)))
    assert [m.validation_message for m in validate_full_spdx_document(doc)] == []
    return doc


@pytest.mark.parametrize("name", ["binutils", "gcc-stage1", "gcc", "newlib", "pthread-embedded", "hermit",
                                  "hermit-bootstrap", "gdb", "autoconf", "automake"])
def test_every_real_recipe_sbom_validates_and_names_source_patches_license(name: str) -> None:
    settings, rs = _real()
    recipe = rs[name]
    doc = _parsed(sbom.recipe_sbom(recipe, rs, settings, "e" * 64, FILES, tree="t" * 64))
    (pkg,) = doc.packages
    assert pkg.name == name and pkg.version == recipe.version
    assert str(pkg.license_declared) == recipe.license
    src = rs[recipe.tree_owner].sources[0]
    if src.kind == "git":
        assert pkg.download_location == f"git+{src.url}@{src.commit}"
    else:
        assert pkg.download_location == src.url
        assert [c.value for c in pkg.checksums] == [src.sha256]
    assert {f.name for f in doc.files if f.spdx_id.startswith("SPDXRef-File-")} == {
        "./bin/x86_64-hermit-gcc", "./lib/libfoo.a"}
    patches = rs[recipe.tree_owner].patches
    patch_files = {f.spdx_id: f for f in doc.files if f.spdx_id.startswith("SPDXRef-Patch-")}
    assert len(patch_files) == len(patches)
    for spec in patches:
        digest = hashlib.sha256(spec.path.read_bytes()).hexdigest()
        assert any(c.value == digest for f in patch_files.values() for c in f.checksums), spec.name
    applied = [r for r in doc.relationships if r.relationship_type.name == "PATCH_APPLIED"]
    assert len(applied) == len(patches) and all(r.related_spdx_element_id == pkg.spdx_id for r in applied)
    if recipe.license.startswith("LicenseRef-"):
        assert [e.license_id for e in doc.extracted_licensing_info] == [recipe.license]


def test_a_document_that_does_not_validate_is_an_error_and_nothing_is_written(tmp_path: Path) -> None:
    import dataclasses

    settings, rs = _real()
    bad = dataclasses.replace(rs["binutils"], license="GPL-3.0-or-later AND NotAnSpdxLicense")
    out = tmp_path / "sbom.json"
    with pytest.raises(HermitBuildError) as info:
        sbom.write_sbom(sbom.recipe_sbom(bad, rs, settings, "e" * 64, FILES), out)
    assert "does not validate" in str(info.value) and not out.exists()
    broken = [dict(FILES[0], sha1="not-a-sha1")]
    with pytest.raises(HermitBuildError):
        sbom.recipe_sbom(rs["binutils"], rs, settings, "e" * 64, broken)


def test_the_fast_id_index_still_finds_dangling_references() -> None:
    from spdx_tools.spdx.model import Relationship, RelationshipType

    settings, rs = _real()
    doc = JsonLikeDictParser().parse(sbom.recipe_sbom(rs["newlib"], rs, settings, "e" * 64, FILES))
    doc.relationships.append(Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, "SPDXRef-Nowhere"))
    with pytest.raises(HermitBuildError, match="does not validate"):
        sbom._validated(doc)


def test_prefix_sbom_of_a_built_fixture_toolchain(tmp_path_factory) -> None:
    """Real podman builds; then `doit sbom`'s code path on the installed prefix."""
    from hermitbuild import build, cli
    from helpers_podman import FixtureWorld, ensure_base_image, podman_settings, require_podman

    require_podman()
    base = tmp_path_factory.mktemp("sbomworld")
    ensure_base_image(base)
    world = FixtureWorld(base)
    try:
        root = world.make_root("sbom")
        s = podman_settings(root, base / "ws")
        rs = load_recipes(s.recipes_dir, s.patches_dir)
        build.build_all(["greeter"], rs, s)
        names, manifests = cli.installed_manifests(s, rs)
        assert names == ["libgreet", "greeter"] and all("sbom" in manifests[n] for n in names), \
            "every artifact carries its own SBOM"
        _parsed(manifests["libgreet"]["sbom"])
        cli._CONTEXT = None
        out = tmp_path_factory.mktemp("out") / "sbom.spdx.json"
        assert cli.cmd_sbom(s, ["--output", str(out)]) == 0
        doc = parse_file(str(out))
        assert validate_full_spdx_document(doc) == []
        by_name = {p.name: p for p in doc.packages}
        assert set(by_name) == {"libgreet", "greeter"}
        assert [c.value for c in by_name["libgreet"].checksums] == [world.values["libgreet"]["@SHA256@"]]
        assert str(by_name["libgreet"].license_declared) == "MIT"
        # a local path (and 127.0.0.1:PORT) is no SPDX download location: NOASSERTION, the source
        # itself in sourceInfo
        assert str(by_name["greeter"].download_location) == "NOASSERTION"
        assert f"git {world.greeter_repo} at {world.greeter_commit}" in by_name["greeter"].source_info
        assert world.values["libgreet"]["@URL@"] in by_name["libgreet"].source_info
        patch = root / "patches" / "libgreet" / "0001-greet-exclaim.patch"
        assert any(f.name == "./patches/libgreet/0001-greet-exclaim.patch" and
                   hashlib.sha256(patch.read_bytes()).hexdigest() in [c.value for c in f.checksums]
                   for f in doc.files)
        greeter_bin = s.prefix / "bin" / "greeter"
        entry = next(f for f in doc.files if f.name == "./bin/greeter")
        assert hashlib.sha256(greeter_bin.read_bytes()).hexdigest() in [c.value for c in entry.checksums]
        deps = [(r.spdx_element_id, r.relationship_type.name, r.related_spdx_element_id)
                for r in doc.relationships if r.relationship_type.name == "BUILD_DEPENDENCY_OF"]
        assert deps == [("SPDXRef-Package-libgreet", "BUILD_DEPENDENCY_OF", "SPDXRef-Package-greeter")]
    finally:
        world.close()


def test_spdx_tools_can_be_imported_ahead_in_a_thread():
    """A build starts the imports before its steps run; the document functions then find them.
    In a fresh interpreter (this test process may have imported spdx-tools already)."""
    import subprocess
    import sys

    code = ("import sys\n"
            "from hermitbuild import sbom\n"
            "assert not any(m.startswith('spdx_tools') for m in sys.modules), 'imported at import time'\n"
            "sbom.import_in_background(); sbom.import_in_background()\n"
            "assert len(sbom._WARMING) == 1\n"
            "sbom._WARMING[0].join(timeout=60)\n"
            "missing = [m for m in sbom._SPDX_MODULES if m not in sys.modules]\n"
            "assert not missing, missing\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
