"""scripts/setup on a truly fresh Debian bookworm: the base image (debootstrap minbase, nothing
else installed) in a privileged container, a clean copy of the repository's files, then
scripts/setup, which ends with the doctor's runtime check: a real container run, nested,
with exactly the options build steps use (--init, --network=none, --user, runc, ulimits,
same-path mounts).  A package that a bare machine lacks (catatonit was one) fails it.

The container gets the host's CA bundle (this network's package registries may sit behind
a proxy whose certificate the host trusts) and nothing else of the host's.
"""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.helpers_podman import BASE_IMAGE, RUNTIME_OPTIONS, ensure_base_image, require_podman

ROOT = Path(__file__).resolve().parent.parent
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")

SCRIPT = """set -e
mkdir /tmp/repo && tar -C /tmp/repo -xf /src/repo.tar && cd /tmp/repo
export STORAGE_DRIVER=vfs  # podman inside podman: no overlay on overlay
scripts/setup
echo FRESH-SETUP-OK
"""


def _repository_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, capture_output=True, check=True).stdout.decode()
    return [name for name in listed.split("\0") if name and (ROOT / name).is_file()]


@pytest.mark.podman
@pytest.mark.slow
def test_scripts_setup_on_a_fresh_bookworm_ends_with_a_working_runtime(tmp_path):
    require_podman()
    ensure_base_image(tmp_path)
    src = tmp_path / "src"
    src.mkdir()
    with tarfile.open(src / "repo.tar", "w") as tar:
        for name in _repository_files():
            tar.add(ROOT / name, arcname=name)
    (src / "run.sh").write_text(SCRIPT)
    argv = ["podman", "run", "--rm", "--privileged", *RUNTIME_OPTIONS, "-v", f"{src}:/src:ro"]
    if HOST_CA.is_file():
        argv += ["-v", f"{HOST_CA}:/etc/hermitbuild-host-ca.crt:ro"]
        for var in ("PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
            argv += ["-e", f"{var}=/etc/hermitbuild-host-ca.crt"]
    argv += [BASE_IMAGE, "bash", "/src/run.sh"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=1800, stdin=subprocess.DEVNULL)
    out = done.stdout + done.stderr
    tail = "\n".join(out.splitlines()[-40:])
    assert done.returncode == 0, tail
    assert "[ok  ] container run (build-step options)" in out, tail
    assert "FRESH-SETUP-OK" in out, tail
