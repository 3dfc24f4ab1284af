"""The installed toolchain as an OCI image: one layer per recipe artifact, the SBOM inside,
pushed to a registry only after the smoke test passed.

Contract:

- :func:`build_toolchain_image` takes the installed toolchain recipes (in dependency order)
  and their artifacts from the local cache (verified while unpacked, as a restore is) and
  builds, with podman, ``FROM`` the ``image_base`` build image (containers/Containerfile.
  <image_base>: what the toolchain needs at run time) one ``COPY`` layer per recipe, then
  the prefix's SPDX SBOM (``<prefix>/share/hermitbuild/sbom.spdx.json``) as the last layer,
  ``PATH`` with the prefix's ``bin`` first and OCI labels naming the recipes and keys.
- File times in the layers and the image's creation time are 0 (``--timestamp 0``; the
  image's date is not its content), so a recipe's layer has the same digest in every image
  that contains the same artifact: variants that differ in one recipe share the other
  layers, in local storage and in a registry.
- Tags: ``<image_name>:<toolchain key[:16]>`` (the key hashes every recipe key and the base
  image) and a readable ``<image_name>:<target>-gcc-<gcc_variant>``.
- :func:`push_toolchain_image` pushes both tags to ``oci://HOST/REPO`` (HTTPS) or
  ``oci+http://HOST/REPO``, with the remote cache's credentials (its token, else the auth
  files of podman/docker) in a private auth file (never in an argv or a log).  With
  ``smoke_gate`` on, every artifact must carry a passed smoke result (``doit toolchain`` or
  ``doit smoke`` records it); otherwise nothing is pushed and the error says so.
- Errors are :class:`~hermitbuild.errors.HermitBuildError` subclasses with the fix: a
  missing artifact, docker instead of podman, a failed build or push (with the log).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from . import cache, container, runner, sbom
from .errors import CommandError, ContainerError, HermitBuildError
from .fsutil import rmtree, write_atomic
from .recipe import RecipeSet
from .settings import Settings

logger = logging.getLogger(__name__)

SBOM_PATH = "share/hermitbuild/sbom.spdx.json"


@dataclass(frozen=True)
class ToolchainImage:
    key: str
    tags: tuple[str, ...]
    recipes: tuple[str, ...]


def _podman(settings: Settings) -> str:
    rt = container.detect_runtime(settings)
    if container.runtime_kind(rt) != "podman":
        raise ContainerError("the toolchain image needs podman", f"the runtime is {rt}: `docker build` has "
                             "no --timestamp, so its layers would differ in every build",
                             "install podman (scripts/setup) or set runtime: podman")
    return rt


def toolchain_key(names: Sequence[str], keys: Mapping[str, str], base_tag: str) -> str:
    data = json.dumps({"base": base_tag, "recipes": [[n, keys[n]] for n in names]}, sort_keys=True)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def _artifacts(names: Sequence[str], keys: Mapping[str, str],
               settings: Settings) -> dict[str, tuple[Path, str]]:
    local, _ = cache.open_caches(settings)
    found: dict[str, tuple[Path, str]] = {}
    for name in names:
        got = local.lookup(keys[name])
        if got is None:
            raise HermitBuildError(f"cannot make the toolchain image: the artifact of {name} "
                                   f"({keys[name][:12]}) is not in the local cache",
                                   "the image is made from the verified artifacts, not from the prefix",
                                   "run `doit toolchain` (it restores or rebuilds the artifact), then "
                                   "retry")
        found[name] = got
    return found


def build_toolchain_image(names: Sequence[str], keys: Mapping[str, str], recipes: RecipeSet,
                          settings: Settings, manifests: Mapping[str, Mapping[str, Any]]) -> ToolchainImage:
    """Build the image of the installed recipes ``names`` (their keys in ``keys``)."""
    rt = _podman(settings)
    base_tag = container.ensure_image(settings.image_base, settings)
    key = toolchain_key(names, keys, base_tag)
    artifacts = _artifacts(names, keys, settings)
    ctx = settings.build_dir / "toolchain-image" / key[:16]
    rmtree(ctx)
    ctx.mkdir(parents=True)
    lines = [f"FROM {base_tag}"]
    try:
        for name in names:
            root = settings.tools if recipes[name].install_root == "tools" else settings.prefix
            path, digest = artifacts[name]
            cache.restore_artifact(path, ctx / name / str(root).lstrip("/"), keys[name], raw_sha256=digest)
            lines.append(f"COPY {name}/ /")
        document = sbom.prefix_sbom(recipes, settings, names, manifests)
        sbom.write_sbom(document, ctx / "sbom" / str(settings.prefix).lstrip("/") / SBOM_PATH)
        lines.append("COPY sbom/ /")
        path_env = f"{settings.prefix}/bin:{settings.tools}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        lines.append(f"ENV PATH={path_env}")
        labels = {"org.opencontainers.image.title": "HermitCore toolchain",
                  "org.opencontainers.image.description": f"{settings.target} toolchain: " + ", ".join(names),
                  "dev.hermitbuild.key": key,
                  "dev.hermitbuild.recipes": ",".join(f"{n}={keys[n]}" for n in names),
                  "dev.hermitbuild.sbom": f"{settings.prefix}/{SBOM_PATH}"}
        lines += [f"LABEL {k}={json.dumps(v)}" for k, v in labels.items()]
        write_atomic(ctx / "Containerfile", "\n".join(lines) + "\n")
        tags = (f"{settings.image_name}:{key[:16]}",
                f"{settings.image_name}:{settings.target}-gcc-{settings.gcc_variant}")
        argv = [rt, "build", *container.build_options(settings), "--timestamp", "0"]
        for tag in tags:
            argv += ["-t", tag]
        log = settings.logs_dir / "containers" / "toolchain-image.log"
        try:
            runner.run(argv + ["-f", str(ctx / "Containerfile"), str(ctx)], log_path=log)
        except CommandError as err:
            raise ContainerError("could not build the toolchain image", err.why,
                                 f"read {log}; the generated Containerfile is {ctx / 'Containerfile'}",
                                 log_path=str(log)) from None
    finally:
        rmtree(ctx)
    logger.info("built the toolchain image %s", ", ".join(tags))
    return ToolchainImage(key, tags, tuple(names))


def _auth_file(directory: Path, host: str, credentials: tuple[str, str] | None) -> Path | None:
    if credentials is None:
        return None
    path = directory / "auth.json"
    blob = base64.b64encode(f"{credentials[0]}:{credentials[1]}".encode()).decode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"auths": {host: {"auth": blob}}}, fh)
    return path


def check_smoke_gate(names: Sequence[str], manifests: Mapping[str, Mapping[str, Any]],
                     settings: Settings) -> None:
    """With ``smoke_gate`` on, every artifact must record a passed smoke test."""
    if not settings.smoke_gate:
        return
    untested = [n for n in names if not (manifests.get(n, {}).get("smoke") or {}).get("passed")]
    if untested:
        raise HermitBuildError("the toolchain image was not pushed: the smoke test has not passed for "
                               + ", ".join(untested),
                               "smoke_gate is on: an image reaches the registry only after `doit smoke` "
                               "booted the examples with exactly these artifacts",
                               "run `doit smoke` (or `doit toolchain`, which runs it), or set smoke_gate: false")


def push_toolchain_image(image: ToolchainImage, url: str, settings: Settings,
                         manifests: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Push both tags of ``image`` to the registry repository ``url``; return the pushed references."""
    from .cache.oci import parse_oci_url, registry_credentials

    check_smoke_gate(image.recipes, manifests, settings)
    api, host, repo = parse_oci_url(url)
    rt = _podman(settings)
    pushed = []
    log = settings.logs_dir / "containers" / "toolchain-image-push.log"
    with tempfile.TemporaryDirectory(prefix="hermitbuild-push-") as tmp:
        auth = _auth_file(Path(tmp), host, registry_credentials(host, settings.remote_cache_token,
                                                                  settings.registry_auth_files))
        for tag in image.tags:
            dest = f"docker://{host}/{repo}:{tag.rsplit(':', 1)[1]}"
            argv = [rt, "push", f"--tls-verify={'false' if api.startswith('http:') else 'true'}"]
            if auth is not None:
                argv += ["--authfile", str(auth)]
            try:
                runner.run(argv + [tag, dest], log_path=log)
            except CommandError as err:
                raise ContainerError(f"could not push the toolchain image to {host}/{repo}", err.why,
                                     f"read {log}; check the registry URL and the credentials "
                                     f"({settings.remote_cache_token_env} or `podman login {host}`)",
                                     log_path=str(log)) from None
            pushed.append(dest.removeprefix("docker://"))
    return pushed
