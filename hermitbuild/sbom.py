"""SPDX 2.3 software bills of materials, written and validated with spdx-tools.

Contract:

- :func:`recipe_sbom` is one recipe's artifact as an SPDX 2.3 JSON document (a dict): a package
  for the recipe with its version, declared license (the recipe's ``license``; a
  ``LicenseRef-`` carries the recipe's ``license_note`` as extracted text), download location
  (``git+URL@COMMIT`` for git, the URL for a tarball with its sha256 as the package checksum,
  NOASSERTION for a local override, whose content hash is named instead), every further
  source in ``sourceInfo``, one file per installed regular file with the SHA1 and SHA256 of the
  artifact manifest (``CONTAINS``), and one file per patch applied, with its checksums and
  ``What:`` header (``PATCH_APPLIED``).  The build stores it in the artifact's manifest
  (field ``sbom``), so every artifact, local, remote or in a registry, carries its own.
- :func:`prefix_sbom` merges the documents of every installed recipe into one (the recipe
  packages, ``BUILD_DEPENDENCY_OF`` between them); artifacts from before this field are
  described anew from the installed files.  :func:`write_sbom` writes it atomically.
- Every document is validated with spdx-tools before it is returned or written; a document
  that does not validate is a :class:`~hermitbuild.errors.HermitBuildError` naming the first
  problems (nothing is written).
- spdx-tools is imported only here and only when a document is made (0.4 s of imports);
  :func:`import_in_background` starts those imports in a thread, so a build imports them
  while its steps run in their containers instead of after them.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

import importlib
import threading

from . import __version__
from .errors import HermitBuildError
from .fsutil import read_json, write_atomic
from .recipe import Recipe, RecipeSet, check_patch_header
from .settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from spdx_tools.spdx.model import Document

logger = logging.getLogger(__name__)

NAMESPACE = "https://hermitbuild.invalid/spdx"
SBOM_FIELD = "sbom"


def _pkg_id(name: str) -> str:
    return "SPDXRef-Package-" + "".join(c if c.isalnum() or c in ".-" else "-" for c in name)


def _download(recipe: Recipe, recipes: RecipeSet, settings: Settings, tree: str) -> tuple[Any, list, str]:
    """(download location, package checksums, source info) of a recipe's tree."""
    from spdx_tools.spdx.model import Checksum, ChecksumAlgorithm, SpdxNoAssertion

    owner = recipes[recipe.tree_owner]
    override = owner.override_name(settings.overrides)
    if override is not None:
        return (SpdxNoAssertion(), [], f"built from a local source override ({settings.overrides[override]}); "
                f"tree content hash {tree or 'unknown'}")
    described = []
    for src in owner.sources:
        if src.kind == "git":
            described.append((f"git+{src.url}@{src.commit}", None,
                              f"git {src.url} at {src.commit}" + (" with submodules" if src.submodules else "")))
        else:
            described.append((src.url, src.sha256, f"tarball {src.url} sha256 {src.sha256}"))
    if not described:
        return SpdxNoAssertion(), [], "no sources declared"
    location, sha256, _ = described[0]
    checksums = [Checksum(ChecksumAlgorithm.SHA256, sha256)] if sha256 else []
    info = "; ".join(d[2] for d in described)
    from spdx_tools.spdx.validation.uri_validators import validate_download_location

    if validate_download_location(location):  # e.g. a local path or host:port, which SPDX's form refuses
        location = SpdxNoAssertion()
    if owner.name != recipe.name:
        info += f" (the tree of recipe {owner.name})"
    return location, checksums, info


def _license(recipe: Recipe) -> tuple[Any, list]:
    from spdx_tools.common.spdx_licensing import spdx_licensing
    from spdx_tools.spdx.model import ExtractedLicensingInfo, SpdxNoAssertion

    if not recipe.license:
        return SpdxNoAssertion(), []
    extracted = [ExtractedLicensingInfo(license_id=word.strip("()"), extracted_text=recipe.license_note,
                                        license_name=f"{recipe.name} license")
                 for word in recipe.license.split() if word.strip("()").startswith("LicenseRef-")]
    return spdx_licensing.parse(recipe.license), extracted


_SPDX_MODULES = ("spdx_tools.spdx.model", "spdx_tools.common.spdx_licensing",
                 "spdx_tools.spdx.spdx_element_utils", "spdx_tools.spdx.validation.document_validator",
                 "spdx_tools.spdx.jsonschema.document_converter")
_WARMING: list[threading.Thread] = []


def _import_spdx() -> None:
    for name in _SPDX_MODULES:
        try:
            importlib.import_module(name)
        except Exception as exc:  # the document's own import will raise it where it is handled
            logger.debug("importing %s ahead failed: %s", name, exc)
            return


def import_in_background() -> None:
    """Import spdx-tools in a daemon thread (once per process); the imports of the document
    functions then find the modules loaded (Python's import lock makes them wait for a
    module the thread is still importing, never import it twice)."""
    if not _WARMING:
        thread = threading.Thread(target=_import_spdx, name="spdx-import", daemon=True)
        _WARMING.append(thread)
        thread.start()


def _document(name: str, namespace: str, created: _dt.datetime) -> "Document":
    from spdx_tools.spdx.model import Actor, ActorType, CreationInfo, Document

    info = CreationInfo(spdx_version="SPDX-2.3", spdx_id="SPDXRef-DOCUMENT", name=name,
                        document_namespace=namespace, created=created.replace(microsecond=0, tzinfo=None),
                        creators=[Actor(ActorType.TOOL, f"hermitbuild-{__version__}")], data_license="CC0-1.0")
    return Document(info)


def _add_recipe(doc: "Document", recipe: Recipe, recipes: RecipeSet, settings: Settings, key: str,
                files: Sequence[Mapping[str, Any]], tree: str) -> None:
    from spdx_tools.spdx.model import (Checksum, ChecksumAlgorithm, File, Package, Relationship,
                                       RelationshipType, SpdxNoAssertion)
    from spdx_tools.spdx.spdx_element_utils import calculate_package_verification_code

    location, checksums, info = _download(recipe, recipes, settings, tree)
    declared, extracted = _license(recipe)
    pkg_id = _pkg_id(recipe.name)
    spdx_files = []
    for n, item in enumerate(f for f in files if f.get("type") == "file"):
        spdx_files.append(File(name=f"./{item['path']}", spdx_id=f"SPDXRef-File-{recipe.name}-{n}",
                               checksums=[Checksum(ChecksumAlgorithm.SHA1, item["sha1"]),
                                          Checksum(ChecksumAlgorithm.SHA256, item["sha256"])]))
    pkg = Package(spdx_id=pkg_id, name=recipe.name, download_location=location, version=recipe.version,
                  supplier=SpdxNoAssertion(), files_analyzed=bool(spdx_files),
                  verification_code=calculate_package_verification_code(spdx_files) if spdx_files else None,
                  checksums=checksums, source_info=info, license_declared=declared,
                  license_concluded=SpdxNoAssertion(), copyright_text=SpdxNoAssertion(),
                  summary=recipe.description or None,
                  comment=f"hermitbuild artifact {key} for target {settings.target}, installed under "
                          f"{settings.tools if recipe.install_root == 'tools' else settings.prefix}")
    doc.packages.append(pkg)
    doc.files.extend(spdx_files)
    doc.relationships.append(Relationship("SPDXRef-DOCUMENT", RelationshipType.DESCRIBES, pkg_id))
    doc.relationships.extend(Relationship(pkg_id, RelationshipType.CONTAINS, f.spdx_id) for f in spdx_files)
    owner = recipes[recipe.tree_owner]
    for n, spec in enumerate(owner.patches):
        data = spec.path.read_bytes()
        what = check_patch_header(spec.path).get("what", "")
        patch_id = f"SPDXRef-Patch-{recipe.name}-{n}"
        try:
            shown = spec.path.resolve().relative_to(settings.patches_dir.resolve()).as_posix()
        except ValueError:
            shown = f"{spec.path.parent.name}/{spec.name}"
        doc.files.append(File(name=f"./patches/{shown}", spdx_id=patch_id,
                              checksums=[Checksum(ChecksumAlgorithm.SHA1, hashlib.sha1(data).hexdigest()),
                                         Checksum(ChecksumAlgorithm.SHA256, hashlib.sha256(data).hexdigest())],
                              comment=f"What: {what}" if what else None))
        doc.relationships.append(Relationship(patch_id, RelationshipType.PATCH_APPLIED, pkg_id))
    known = {e.license_id for e in doc.extracted_licensing_info}
    doc.extracted_licensing_info.extend(e for e in extracted if e.license_id not in known)


@contextlib.contextmanager
def _indexed_ids(doc: "Document") -> Iterator[None]:
    """spdx-tools looks every referenced id up in a list rebuilt per lookup (quadratic: 25 s for
    gcc's 5,000 files); answer those two lookups from sets for this document, same results."""
    from spdx_tools.spdx.validation import spdx_id_validators as ids

    saved = ids.is_spdx_id_present_in_document, ids.is_spdx_id_present_in_files
    everything = set(ids.get_list_of_all_spdx_ids(doc))
    file_ids = {f.spdx_id for f in doc.files}

    def in_document(spdx_id: str, document: "Document") -> bool:
        return spdx_id in everything if document is doc else saved[0](spdx_id, document)

    def in_files(spdx_id: str, files: list) -> bool:
        return spdx_id in file_ids if files is doc.files else saved[1](spdx_id, files)

    ids.is_spdx_id_present_in_document, ids.is_spdx_id_present_in_files = in_document, in_files
    try:
        yield
    finally:
        ids.is_spdx_id_present_in_document, ids.is_spdx_id_present_in_files = saved


def _validated(doc: "Document") -> dict:
    from spdx_tools.spdx.jsonschema.document_converter import DocumentConverter
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    with _indexed_ids(doc):
        problems = validate_full_spdx_document(doc)
    if problems:
        shown = "; ".join(p.validation_message for p in problems[:3])
        raise HermitBuildError(f"the SBOM {doc.creation_info.name!r} does not validate as SPDX 2.3",
                               f"{len(problems)} problem(s): {shown}",
                               "this is a bug in hermitbuild's SBOM writer (or a recipe's license "
                               "field); please report it with this message")
    return DocumentConverter().convert(doc)


def recipe_sbom(recipe: Recipe, recipes: RecipeSet, settings: Settings, key: str,
                files: Sequence[Mapping[str, Any]], tree: str = "",
                created: _dt.datetime | None = None) -> dict:
    """The validated SPDX 2.3 document (JSON dict) of one recipe's artifact."""
    created = created or _dt.datetime.now(_dt.timezone.utc)
    doc = _document(f"hermitbuild {recipe.name} {recipe.version}", f"{NAMESPACE}/{recipe.name}-{key}", created)
    _add_recipe(doc, recipe, recipes, settings, key, files, tree)
    return _validated(doc)


def _installed_files(root: Path, paths: Sequence[str]) -> list[dict[str, Any]]:
    """Manifest-like entries for installed files (for artifacts that carry no SBOM)."""
    out = []
    for rel in paths:
        path = root / rel
        if path.is_symlink() or not path.is_file():
            continue
        h256, h1 = hashlib.sha256(), hashlib.sha1()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h256.update(chunk)
                h1.update(chunk)
        out.append({"path": rel, "type": "file", "sha256": h256.hexdigest(), "sha1": h1.hexdigest()})
    return out


def prefix_sbom(recipes: RecipeSet, settings: Settings, names: Sequence[str],
                artifact_manifests: Mapping[str, Mapping[str, Any]]) -> dict:
    """One validated document for the installed recipes ``names`` (in order).

    ``artifact_manifests``: recipe -> its artifact manifest (key, files[, sbom]) as installed;
    a recipe missing there is described from its install stamp and the files on disk."""
    from spdx_tools.spdx.model import Relationship, RelationshipType

    keys = []
    doc = _document("hermitbuild toolchain", "", _dt.datetime.now(_dt.timezone.utc))
    for name in names:
        recipe = recipes[name]
        manifest = artifact_manifests.get(name)
        root = settings.tools if recipe.install_root == "tools" else settings.prefix
        if manifest is not None and all("sha1" in f for f in manifest.get("files", []) if f.get("type") == "file"):
            key, files = manifest["key"], manifest["files"]
            tree = str((manifest.get("inputs") or {}).get("tree", ""))
        else:
            stamp = read_json(settings.stamps_dir / "install" / f"{name}.json") or {}
            key, files, tree = str(stamp.get("key", "")), _installed_files(root, stamp.get("files", [])), ""
        keys.append(key)
        _add_recipe(doc, recipe, recipes, settings, key, files, tree)
    present = set(names)
    for name in names:
        for dep in recipes[name].depends:
            if dep in present:
                doc.relationships.append(Relationship(_pkg_id(dep), RelationshipType.BUILD_DEPENDENCY_OF,
                                                      _pkg_id(name)))
    digest = hashlib.sha256(json.dumps(keys).encode()).hexdigest()
    doc.creation_info.document_namespace = f"{NAMESPACE}/toolchain-{digest}"
    return _validated(doc)


def write_sbom(document: Mapping[str, Any], path: Path) -> Path:
    """Write a document as JSON, atomically (nothing is left half-written)."""
    write_atomic(Path(path), (json.dumps(document, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    logger.info("wrote the SBOM %s", path)
    return Path(path)


def describe_artifact(recipe: Recipe, recipes: RecipeSet, settings: Settings, key: str, tree: str,
                      created: _dt.datetime) -> Any:
    """The ``describe`` hook of :func:`hermitbuild.cache.pack_artifact` for one recipe.

    An SBOM that cannot be made is a warning here, not a failed build: the artifact is packed
    without it, and `doit sbom` describes that recipe from its installed files (and says why)."""
    def describe(files: Sequence[Mapping[str, Any]]) -> dict:
        try:
            return {SBOM_FIELD: recipe_sbom(recipe, recipes, settings, key, files, tree, created)}
        except HermitBuildError as exc:
            logger.warning("%s: no SBOM in the artifact: %s", recipe.name, exc)
            return {}
    return describe


__all__ = ["recipe_sbom", "prefix_sbom", "write_sbom", "describe_artifact", "SBOM_FIELD"]
