"""Settings: read once at the entry point, passed down everywhere.

Contract:
- :func:`load_settings` reads the settings file (``hermitbuild.yaml`` at the
  repository root, or the file named by ``HERMITBUILD_SETTINGS``), then applies
  environment overrides ``HERMITBUILD_<FIELD>`` (upper-case field name), then
  validates.  Unknown keys, wrong types and bad values raise
  :class:`~hermitbuild.errors.ConfigError` naming the file and line (or the
  environment variable).
- The result is a frozen :class:`Settings`; relative directories are resolved
  against the repository root.  No other module reads ``os.environ`` for
  configuration.
- Environment value syntax: booleans ``1/0/true/false/yes/no/on/off``; lists
  (``mirrors``) whitespace- or comma-separated; ``runtime_options`` is split
  like a shell line; ``overrides`` is ``name=path[,name=path...]``.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

from .errors import ConfigError
from .yamlutil import LineDict, load_yaml

ENV_PREFIX = "HERMITBUILD_"
SETTINGS_FILE = "hermitbuild.yaml"

RUNTIMES = ("auto", "podman", "docker")
GCC_VARIANTS = ("upstream", "fork")
GDB_VARIANTS = ("13.1", "8.0")
REMOTE_MODES = ("off", "read", "readwrite")


def repo_root() -> Path:
    """The repository root (the directory holding ``dodo.py`` and ``recipes/``)."""
    return Path(__file__).resolve().parent.parent


def _default_cache_dir(environ: Mapping[str, str]) -> Path:
    base = environ.get("XDG_CACHE_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".cache")
    return Path(base) / "hermitbuild"


# runc and explicit ulimits: what works on every host we know (see hermitbuild.yaml).  The
# default is the shipped file's value, so that a settings file without the field behaves
# the same as the shipped one.
DEFAULT_RUNTIME_OPTIONS: tuple[str, ...] = ("--runtime", "runc", "--ulimit", "nofile=4096:4096",
                                            "--ulimit", "nproc=4096:4096")


@dataclass(frozen=True)
class Settings:
    """All knobs of a build.  See ``hermitbuild.yaml`` for documentation of each."""

    root: Path
    prefix: Path = Path("/opt/hermit")
    target: str = "x86_64-hermit"
    build_dir: Path = Path("build")
    downloads_dir: Path | None = None  # default: <build_dir>/downloads
    cache_dir: Path | None = None  # default: $XDG_CACHE_HOME/hermitbuild
    tools_prefix: Path | None = None  # default: <prefix>/tools (autoconf 2.64, automake 1.11.6)
    mirrors: tuple[str, ...] = ()
    offline: bool = False
    runtime: str = "auto"
    runtime_options: tuple[str, ...] = DEFAULT_RUNTIME_OPTIONS
    base_image: str = "localhost/hermitbuild-base:bookworm"
    jobs: int = 0  # 0: number of CPUs
    step_timeout: str = "0"  # a build step running longer is killed: 45s, 90m, 3h; 0 = no limit
    overrides: Mapping[str, Path] = field(default_factory=dict)
    override_watch: str = "4h"  # how long an override's watcher waits unasked; 0 = no watchers
    gcc_variant: str = "upstream"
    gdb_variant: str = "13.1"  # 13.1 (a current GDB, proven by a build) or 8.0 (the guide's, 'g' patch)
    hermit_languages: tuple[str, ...] = ("C", "CXX")
    skip: tuple[str, ...] = ()  # recipes `doit toolchain` leaves out
    remote_cache: str = ""
    remote_cache_mode: str = "off"
    remote_cache_token_env: str = "HERMITBUILD_CACHE_TOKEN"
    remote_cache_token: str = ""  # read from the variable named above, never from the file
    # podman's / docker's credential files, in lookup order (from the environment at load)
    registry_auth_files: tuple[Path, ...] = ()
    cache_max_size: str = "20G"
    ccache: bool = False  # compile host code through ccache in build containers
    ccache_dir: Path | None = None  # default: <cache_dir>/ccache
    smoke_gate: bool = True
    image_base: str = "runtime"  # containers/Containerfile.<image_base>: the toolchain image's base
    image_name: str = "localhost/hermit-toolchain"  # the toolchain image (`doit toolchain_image`)
    kvm: str = "auto"  # auto | on | off: KVM for booting unikernels (doit boot / smoke)
    download_stall: str = "60s"  # a transfer below download_min_rate over this long is cut and retried
    download_min_rate: str = "1K"  # bytes per second (K, M suffixes)
    download_deadline: str = "2h"  # one file, all attempts and URLs; 0 = no limit
    file: Path | None = None  # the settings file that was read
    # where each setting that is not a default came from: "<file>:<line>" or "HERMITBUILD_<NAME>"
    origins: Mapping[str, str] = field(default_factory=dict, compare=False)

    # ---- derived locations -------------------------------------------------
    @property
    def downloads(self) -> Path:
        return self.downloads_dir or self.build_dir / "downloads"

    @property
    def src_dir(self) -> Path:
        return self.build_dir / "src"

    @property
    def work_dir(self) -> Path:
        return self.build_dir / "work"

    @property
    def logs_dir(self) -> Path:
        return self.build_dir / "logs"

    @property
    def stamps_dir(self) -> Path:
        return self.build_dir / "stamps"

    @property
    def dep_file(self) -> Path:
        return self.build_dir / "doit.db"

    @property
    def ccache_root(self) -> Path:
        """ccache's directory (``ccache_dir``, default ``<cache_dir>/ccache``)."""
        if self.ccache_dir is not None:
            return self.ccache_dir
        return (self.cache_dir or self.build_dir) / "ccache"

    @property
    def tools(self) -> Path:
        return self.tools_prefix or self.prefix / "tools"

    @property
    def recipes_dir(self) -> Path:
        return self.root / "recipes"

    @property
    def patches_dir(self) -> Path:
        return self.root / "patches"

    @property
    def syscalls_dir(self) -> Path:
        return self.root / "syscalls"

    @property
    def containers_dir(self) -> Path:
        return self.root / "containers"

    @property
    def step_timeout_seconds(self) -> float | None:
        """``step_timeout`` in seconds; None when there is no limit."""
        seconds = parse_duration(self.step_timeout)
        return seconds or None

    @property
    def override_watch_seconds(self) -> float:
        """``override_watch`` in seconds (0: no watchers)."""
        return parse_duration(self.override_watch) or 0.0

    @property
    def parallel_jobs(self) -> int:
        return self.jobs if self.jobs > 0 else (os.cpu_count() or 1)

    def where(self, name: str) -> dict[str, Any]:
        """Where setting ``name`` came from, as ConfigError keywords (file and line, or the variable)."""
        origin = self.origins.get(name, "")
        if origin.startswith(ENV_PREFIX):
            return {"field": origin}
        file, _, line = origin.rpartition(":")
        if file and line.isdigit():
            return {"file": file, "line": int(line), "field": name}
        return {"file": self.file, "field": name}

    @property
    def variant_values(self) -> dict[str, Any]:
        """The settings recipes may select variants by."""
        return {"gcc_variant": self.gcc_variant, "gdb_variant": self.gdb_variant}

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


# HERMITBUILD_* variables that are not settings (HERMITBUILD_TEST_* belong to the test suite)
EXTRA_VARIABLES = frozenset({ENV_PREFIX + "SETTINGS", ENV_PREFIX + "VERBOSE", ENV_PREFIX + "CACHE_TOKEN"})


def _did_you_mean(word: str, known: Any, tail: str) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}?{tail}"
    return "valid names: " + ", ".join(sorted(known)) + tail


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgGtTpP]?)(?:i?[bB])?\s*$")


def parse_size(text: str | int) -> int:
    """``20G``, ``512M``, ``1.5GiB`` or ``1000`` (bytes; powers of 1024); ValueError otherwise."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise ValueError(f"size {text} is negative")
        return text
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"{text!r} is not a size")
    number, unit = float(m.group(1)), m.group(2).lower()
    return int(number * (1024 ** ("kmgtp".index(unit) + 1) if unit else 1))


def format_size(n: float) -> str:
    """A byte count for people: ``512 B``, ``1.5 MiB``, ``20.0 GiB``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            break
        n /= 1024
    return f"{int(n)} B" if unit == "B" else f"{n:.1f} {unit}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*$")


def parse_duration(text: str) -> float | None:
    """``"90"``/``"90s"``, ``"15m"``, ``"2h"`` -> seconds; None if ``text`` is not a duration."""
    match = _DURATION.match(str(text))
    if not match:
        return None
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600}[match.group(2)]


_PATH_FIELDS = {"prefix", "build_dir", "downloads_dir", "cache_dir", "tools_prefix", "ccache_dir"}
_BOOL_FIELDS = {"offline", "smoke_gate", "ccache"}
_INT_FIELDS = {"jobs"}
_LIST_FIELDS = {"mirrors", "runtime_options", "hermit_languages", "skip"}
_STR_FIELDS = {"target", "runtime", "base_image", "gcc_variant", "gdb_variant", "remote_cache", "kvm", "step_timeout",
               "override_watch",
               "download_stall", "download_min_rate", "download_deadline",
               "remote_cache_mode", "remote_cache_token_env", "cache_max_size", "image_base", "image_name"}
_MAP_FIELDS = {"overrides"}
FILE_FIELDS = _PATH_FIELDS | _BOOL_FIELDS | _INT_FIELDS | _LIST_FIELDS | _STR_FIELDS | _MAP_FIELDS


def _parse_bool(text: str) -> bool | None:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    return None


def _from_env(name: str, text: str) -> Any:
    var = ENV_PREFIX + name.upper()
    if name in _BOOL_FIELDS:
        value = _parse_bool(text)
        if value is None:
            raise ConfigError(f"{var}={text!r} is not a boolean",
                              f"set {var} to 1 or 0 (true/false, yes/no)", field=var)
        return value
    if name in _INT_FIELDS:
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"{var}={text!r} is not a whole number",
                              f"set {var} to a number such as 4", field=var) from None
    if name == "runtime_options":
        try:
            return shlex.split(text)
        except ValueError as exc:  # an unclosed quote
            raise ConfigError(f"{var}={text!r} cannot be split like a shell line: {exc}",
                              f"close the quote, e.g. {var}='--runtime runc --ulimit nofile=4096:4096'",
                              field=var) from None
    if name in _LIST_FIELDS:
        return [item for item in text.replace(",", " ").split() if item]
    if name in _MAP_FIELDS:
        result: dict[str, str] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            key, sep, value = item.partition("=")
            if not sep or not key or not value:
                raise ConfigError(f"{var} entry {item!r} is not name=path",
                                  f"write {var}=hermit=/path/to/libhermit,newlib=/path/to/newlib",
                                  field=var)
            result[key.strip()] = value.strip()
        return result
    return text


def _check_type(name: str, value: Any, file: Path | None, line: int | None,
                field: str | None = None) -> Any:
    def bad(expected: str, example: str) -> ConfigError:
        if field:  # an environment variable
            return ConfigError(f"{field}={value!r}: must be {expected}",
                               f"set e.g. {field}={example.strip('[]')}", field=field)
        return ConfigError(f"'{name}' must be {expected}, got {value!r}",
                           f"write e.g. `{name}: {example}`", file=file, line=line, field=name)

    if name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            raise bad("true or false", "false")
        return value
    if name in _INT_FIELDS:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad("a whole number >= 0", "4")
        return value
    if name in _LIST_FIELDS:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise bad("a list of strings", "[a, b]")
        return tuple(value)
    if name in _MAP_FIELDS:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise bad("a mapping of recipe name to directory", "{hermit: ../libhermit}")
        return dict(value)
    if name in _PATH_FIELDS:
        if value is None and name != "prefix" and name != "build_dir":
            return None
        if not isinstance(value, str) or not value:
            raise bad("a directory path", "/opt/hermit")
        return value
    if name in ("step_timeout", "gdb_variant", "override_watch") and isinstance(value, (int, float)) \
            and not isinstance(value, bool):
        return str(value)  # plain seconds; a version written without quotes
    if not isinstance(value, str):
        if value is None:
            return ""
        raise bad("a string", '"..."')
    return value


HERMIT_LANGUAGES = ("C", "CXX", "Fortran", "Go")
_TARGET_RE = re.compile(r"^[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)+$")


def _validate(kwargs: Mapping[str, Any], where: Callable[[str], dict[str, Any]]) -> None:
    """Every value check of the settings (types were checked while reading); ``where(name)``
    names the file and line, or the variable, of a setting."""
    if not Path(kwargs.get("prefix", "/opt/hermit")).is_absolute():
        raise ConfigError("prefix must be absolute", "write e.g. `prefix: /opt/hermit`", **where("prefix"))
    if kwargs.get("runtime", "auto") not in RUNTIMES:
        raise ConfigError(f"runtime must be one of {', '.join(RUNTIMES)}, got {kwargs['runtime']!r}",
                          "write `runtime: auto` to pick podman or docker automatically",
                          **where("runtime"))
    if kwargs.get("gcc_variant", "upstream") not in GCC_VARIANTS:
        raise ConfigError(f"gcc_variant must be one of {', '.join(GCC_VARIANTS)}, "
                          f"got {kwargs['gcc_variant']!r}",
                          "write `gcc_variant: upstream` (GCC 12.2 + patches) or `fork` (hermitcore/gcc)",
                          **where("gcc_variant"))
    if kwargs.get("gdb_variant", "13.1") not in GDB_VARIANTS:
        raise ConfigError(f"gdb_variant must be one of {', '.join(GDB_VARIANTS)}, "
                          f"got {kwargs['gdb_variant']!r}",
                          'write `gdb_variant: "13.1"` (a current GDB) or `"8.0"` (the guide\'s, patched)',
                          **where("gdb_variant"))
    if kwargs.get("kvm", "auto") not in ("auto", "on", "off"):
        raise ConfigError(f"kvm must be auto, on or off, got {kwargs['kvm']!r}",
                          "write `kvm: auto` (use /dev/kvm when usable), `on` or `off`", **where("kvm"))
    if parse_duration(kwargs.get("step_timeout", "0")) is None:
        raise ConfigError(f"step_timeout must be a duration, got {kwargs['step_timeout']!r}",
                          "write e.g. `step_timeout: 3h` (or 90m, 600s; 0 for no limit)",
                          **where("step_timeout"))
    if parse_duration(kwargs.get("override_watch", "4h")) is None:
        raise ConfigError(f"override_watch must be a duration, got {kwargs['override_watch']!r}",
                          "write e.g. `override_watch: 4h` (or 30m, 600s; 0 for no watchers)",
                          **where("override_watch"))
    if kwargs.get("remote_cache_mode", "off") not in REMOTE_MODES:
        raise ConfigError(f"remote_cache_mode must be one of {', '.join(REMOTE_MODES)}, "
                          f"got {kwargs['remote_cache_mode']!r}",
                          "write `remote_cache_mode: read` or `readwrite`", **where("remote_cache_mode"))
    if kwargs.get("remote_cache_mode", "off") != "off" and not kwargs.get("remote_cache"):
        raise ConfigError("remote_cache_mode is on but remote_cache (the base URL) is empty",
                          "set remote_cache to e.g. https://cache.example.org/hermit or the mode to off",
                          **where("remote_cache"))
    for name, default in (("download_stall", "60s"), ("download_deadline", "2h")):
        if parse_duration(kwargs.get(name, default)) is None:
            raise ConfigError(f"{name} must be a duration, got {kwargs[name]!r}",
                              f"write e.g. `{name}: {default}` (s, m, h suffixes)", **where(name))
    if parse_duration(kwargs.get("download_stall", "60s")) == 0:
        raise ConfigError("download_stall must be more than 0", "write e.g. `download_stall: 60s`",
                          **where("download_stall"))
    try:
        parse_size(kwargs.get("download_min_rate", "1K"))
    except ValueError as exc:
        raise ConfigError(f"download_min_rate: {exc}", "write e.g. `download_min_rate: 1K` (bytes per "
                          "second)", **where("download_min_rate")) from None
    if kwargs.get("jobs", 0) < 0:
        raise ConfigError(f"jobs must be 0 (all CPUs) or more, got {kwargs['jobs']}",
                          "write e.g. `jobs: 4`", **where("jobs"))
    try:
        parse_size(kwargs.get("cache_max_size", "20G"))
    except ValueError as exc:
        raise ConfigError(str(exc), "write e.g. `cache_max_size: 20G` (K, M, G, T suffixes; a plain "
                          "number is bytes)", **where("cache_max_size")) from None
    remote = kwargs.get("remote_cache", "")
    if kwargs.get("remote_cache_mode", "off") != "off" and remote.startswith(("oci://", "oci+http://")):
        if not re.match(r"^oci(\+http)?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/[a-z0-9]+([._/-]+[a-z0-9]+)*/?$", remote):
            raise ConfigError(f"remote_cache {remote!r} is not an OCI registry URL with a repository",
                              "write e.g. `remote_cache: oci://ghcr.io/OWNER/hermit-cache` (HTTPS) or "
                              "`oci+http://127.0.0.1:5000/hermit/cache` (a registry on loopback); "
                              "repository names are lower case", **where("remote_cache"))
    elif kwargs.get("remote_cache_mode", "off") != "off" and not re.match(r"^https?://[^/\s]+", remote):
        raise ConfigError(f"remote_cache must be an http(s) or oci:// URL, got {remote!r}",
                          "write e.g. `remote_cache: https://cache.example.org/hermit` or "
                          "`remote_cache: oci://ghcr.io/OWNER/hermit-cache`", **where("remote_cache"))
    unknown = [lang for lang in kwargs.get("hermit_languages", ()) if lang not in HERMIT_LANGUAGES]
    if unknown:
        raise ConfigError(f"hermit_languages has {', '.join(map(repr, unknown))}, which HermitCore's "
                          "cmake does not know", "use some of: " + ", ".join(HERMIT_LANGUAGES),
                          **where("hermit_languages"))
    if not re.match(r"^[a-z0-9][a-z0-9._-]*$", kwargs.get("image_base", "runtime")):
        raise ConfigError(f"image_base must name a containers/Containerfile.<name>, got {kwargs['image_base']!r}",
                          "write `image_base: runtime`", **where("image_base"))
    if not re.match(r"^[a-z0-9][a-z0-9._/:-]*[a-z0-9]$", kwargs.get("image_name", "localhost/hermit-toolchain")) \
            or ":" in kwargs.get("image_name", "x").rsplit("/", 1)[-1]:
        raise ConfigError(f"image_name must be an image repository without a tag, got {kwargs['image_name']!r}",
                          "write e.g. `image_name: localhost/hermit-toolchain` (tags are added: the "
                          "toolchain's key and a readable name)", **where("image_name"))
    if not _TARGET_RE.match(kwargs.get("target", "x86_64-hermit")):
        raise ConfigError(f"target {kwargs['target']!r} is not a target triple",
                          "write `target: x86_64-hermit`", **where("target"))


def registry_auth_files(environ: Mapping[str, str]) -> tuple[Path, ...]:
    """Where podman and docker keep registry credentials, in the order they are consulted."""
    home = Path(environ.get("HOME") or Path.home())
    files = [Path(environ["REGISTRY_AUTH_FILE"])] if environ.get("REGISTRY_AUTH_FILE") else []
    if environ.get("XDG_RUNTIME_DIR"):
        files.append(Path(environ["XDG_RUNTIME_DIR"]) / "containers" / "auth.json")
    files += [home / ".config" / "containers" / "auth.json", home / ".docker" / "config.json"]
    return tuple(files)


def load_settings(root: Path | None = None, environ: Mapping[str, str] | None = None,
                  file: Path | str | None = None) -> Settings:
    """Read, override and validate the settings; see the module docstring."""
    root = (root or repo_root()).resolve()
    environ = os.environ if environ is None else environ
    if file is None:
        file = environ.get(ENV_PREFIX + "SETTINGS") or root / SETTINGS_FILE
    path = Path(file)
    if not path.is_absolute():
        path = root / path

    raw: dict[str, Any] = {}
    lines: dict[str, int] = {}
    origins: dict[str, str] = {}
    if path.exists():
        data = load_yaml(path, ConfigError)
        if data is None:
            data = LineDict()
        if not isinstance(data, dict):
            raise ConfigError("the settings file must be a mapping of setting: value",
                              "see the comments in hermitbuild.yaml", file=path, line=1)
        for key, value in data.items():
            line = data.line_of(key) if isinstance(data, LineDict) else None
            if key not in FILE_FIELDS:
                raise ConfigError(f"unknown setting '{key}'", _did_you_mean(str(key), FILE_FIELDS, ""),
                                  file=path, line=line, field=str(key))
            raw[key] = _check_type(key, value, path, line)
            lines[key] = line or 0
            origins[key] = f"{path}:{line}" if line else str(path)
    elif ENV_PREFIX + "SETTINGS" in environ:
        raise ConfigError(f"settings file {path} does not exist",
                          f"create it or unset {ENV_PREFIX}SETTINGS", file=path)

    token_env = raw.get("remote_cache_token_env", environ.get(ENV_PREFIX + "REMOTE_CACHE_TOKEN_ENV",
                                                                 "HERMITBUILD_CACHE_TOKEN"))
    known_vars = {ENV_PREFIX + f.upper() for f in FILE_FIELDS} | EXTRA_VARIABLES | {token_env}
    for var in sorted(environ):
        if var.startswith(ENV_PREFIX) and var not in known_vars and not var.startswith(ENV_PREFIX + "TEST_"):
            raise ConfigError(f"unknown environment variable {var}",
                              _did_you_mean(var, known_vars - {token_env}, " (or unset it)"), field=var)
    for name in sorted(FILE_FIELDS):
        var = ENV_PREFIX + name.upper()
        if var in environ:
            value = _from_env(name, environ[var])
            raw[name] = _check_type(name, value, None, None, field=var)
            origins[name] = var

    def where(name: str) -> dict[str, Any]:
        var = ENV_PREFIX + name.upper()
        if var in environ:
            return {"field": var}
        return {"file": path, "line": lines.get(name), "field": name}

    def resolve(value: str | None) -> Path | None:
        if value is None:
            return None
        p = Path(value).expanduser()
        return p if p.is_absolute() else (root / p)

    kwargs: dict[str, Any] = {}
    for name, value in raw.items():
        if name in _PATH_FIELDS:
            kwargs[name] = resolve(value)
        elif name == "overrides":
            kwargs[name] = {k: resolve(v) for k, v in value.items()}
        else:
            kwargs[name] = value

    kwargs.setdefault("build_dir", root / "build")
    if kwargs.get("cache_dir") is None:
        kwargs["cache_dir"] = _default_cache_dir(environ)
    if kwargs.get("ccache_dir") is None:
        kwargs["ccache_dir"] = Path(kwargs["cache_dir"]) / "ccache"

    _validate(kwargs, where)
    token_env = kwargs.get("remote_cache_token_env", "HERMITBUILD_CACHE_TOKEN")
    kwargs["remote_cache_token"] = environ.get(token_env, "") if token_env else ""
    kwargs["registry_auth_files"] = registry_auth_files(environ)
    return Settings(root=root, file=path if path.exists() else None, origins=origins, **kwargs)
