"""Settings: defaults, the settings file, environment overrides, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from hermitbuild.errors import ConfigError
from hermitbuild.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent


def test_repo_settings_file_loads_with_documented_defaults():
    s = load_settings(ROOT, environ={"HOME": "/home/u"})
    assert s.prefix == Path("/opt/hermit")
    assert s.target == "x86_64-hermit"
    assert s.build_dir == ROOT / "build"
    assert s.dep_file == ROOT / "build" / "doit.db"
    assert s.downloads == ROOT / "build" / "downloads"
    assert s.cache_dir == Path("/home/u/.cache/hermitbuild")
    assert s.tools == Path("/opt/hermit/tools")
    assert s.gcc_variant == "upstream"
    assert s.file == ROOT / "hermitbuild.yaml"


def test_every_setting_is_documented_in_the_settings_file():
    from hermitbuild.settings import FILE_FIELDS

    text = (ROOT / "hermitbuild.yaml").read_text()
    for name in FILE_FIELDS:
        assert f"\n{name}:" in text, f"{name} is not documented in hermitbuild.yaml"


def test_environment_overrides(tmp_path):
    env = {
        "HOME": "/h",
        "HERMITBUILD_PREFIX": str(tmp_path / "p"),
        "HERMITBUILD_OFFLINE": "yes",
        "HERMITBUILD_JOBS": "3",
        "HERMITBUILD_MIRRORS": "http://a/ , /srv/mirror",
        "HERMITBUILD_RUNTIME_OPTIONS": "--runtime runc --ulimit nofile=4096:4096",
        "HERMITBUILD_OVERRIDES": "hermit-bootstrap=../libhermit,newlib=/src/newlib",
        "HERMITBUILD_BUILD_DIR": "out",
        "HERMITBUILD_CACHE_TOKEN": "sekrit",
    }
    s = load_settings(ROOT, environ=env)
    assert s.prefix == tmp_path / "p"
    assert s.offline is True and s.jobs == 3 and s.parallel_jobs == 3
    assert s.mirrors == ("http://a/", "/srv/mirror")
    assert s.runtime_options == ("--runtime", "runc", "--ulimit", "nofile=4096:4096")
    assert s.overrides == {"hermit-bootstrap": (ROOT / "../libhermit"), "newlib": Path("/src/newlib")}
    assert s.build_dir == ROOT / "out"
    assert s.remote_cache_token == "sekrit"


def test_unknown_key_names_file_and_line(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("prefix: /opt/hermit\n\nprefx: /oops\n")
    with pytest.raises(ConfigError) as info:
        load_settings(ROOT, environ={}, file=f)
    msg = str(info.value)
    assert f"{f}:3" in msg and "prefx" in msg and "valid settings" in msg


@pytest.mark.parametrize("text,needle", [
    ("offline: maybe\n", "true or false"),
    ("jobs: -2\n", "whole number"),
    ("runtime: lxc\n", "runtime must be one of"),
    ("gcc_variant: old\n", "gcc_variant must be one of"),
    ("remote_cache_mode: readwrite\n", "remote_cache (the base URL) is empty"),
    ("mirrors: {a: b}\n", "list of strings"),
    ("prefix: [1\n", "malformed YAML"),
])
def test_bad_values(tmp_path, text, needle):
    f = tmp_path / "s.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_settings(ROOT, environ={}, file=f)
    assert needle in str(info.value)
    assert "fix:" in str(info.value)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(ConfigError) as info:
        load_settings(ROOT, environ={"HERMITBUILD_JOBS": "many"})
    assert "HERMITBUILD_JOBS" in str(info.value)


def test_missing_explicit_settings_file():
    with pytest.raises(ConfigError) as info:
        load_settings(ROOT, environ={"HERMITBUILD_SETTINGS": "/nonexistent/x.yaml"})
    assert "does not exist" in str(info.value)


def test_shipped_file_holds_the_defaults(tmp_path: Path) -> None:
    """A settings file that leaves a field out gets the same value as the shipped hermitbuild.yaml
    (a custom HERMITBUILD_SETTINGS file must not silently lose e.g. the runc/ulimit options)."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    shipped = load_settings(environ={})
    bare = load_settings(environ={"HERMITBUILD_SETTINGS": str(empty)})
    assert shipped.file is not None and bare.file == empty
    assert shipped.replace(file=None) == bare.replace(file=None)


@pytest.mark.parametrize("text, seconds", [("0", None), ("600", 600), ("45s", 45), ("90m", 5400),
                                           ("2.5h", 9000), (3600, 3600)])
def test_step_timeout_durations(tmp_path: Path, text, seconds) -> None:
    f = tmp_path / "s.yaml"
    f.write_text(f"step_timeout: {text}\n")
    assert load_settings(tmp_path, environ={"HERMITBUILD_SETTINGS": str(f)}).step_timeout_seconds == seconds
    env = {"HERMITBUILD_SETTINGS": str(f), "HERMITBUILD_STEP_TIMEOUT": "3h"}
    assert load_settings(tmp_path, environ=env).step_timeout_seconds == 10800


def test_bad_step_timeout_names_file_line_and_the_form(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("jobs: 2\nstep_timeout: two hours\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(tmp_path, environ={"HERMITBUILD_SETTINGS": str(f)})
    text = str(exc.value)
    assert f"{f}:2" in text and "'two hours'" in text and "3h" in text
    with pytest.raises(ConfigError, match="HERMITBUILD_STEP_TIMEOUT"):
        load_settings(tmp_path, environ={"HERMITBUILD_SETTINGS": str(f), "HERMITBUILD_STEP_TIMEOUT": "soon"})


@pytest.mark.parametrize("name", ["localhost/hermit-toolchain:latest", "Upper/case", "ghcr.io/o/t/"])
def test_image_name_is_a_repository_without_a_tag(tmp_path, name):
    (tmp_path / "hermitbuild.yaml").write_text(f'image_base: runtime\nimage_name: "{name}"\n')
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path, environ={})
    assert info.value.line == 2 and "image_name" in str(info.value)
    assert load_settings(tmp_path, environ={"HERMITBUILD_IMAGE_NAME": "127.0.0.1:5000/hermit/tc"}).image_name \
        == "127.0.0.1:5000/hermit/tc"
