"""A resident watcher per override tree: "nothing under it changed" without listing it.

Contract:
- :func:`ask` ``(root)`` returns the :class:`Status` of ``root``'s watcher (its id, its
  generation and the digest recorded for that generation, or None), starting the watcher when
  none runs; it answers once every directory under ``root`` is watched.  It returns None when
  watching is off (:func:`configure`, the ``override_watch`` setting) or cannot work here: not
  Linux, no inotify, a file system that is not local (:data:`LOCAL_FS`), a run directory that is
  not this user's alone, the kernel's watch limit.  None means: list the tree, as without
  a watcher.  Nothing here raises: a failure is logged at DEBUG and gives None.
- The generation counts inotify events under ``root`` (``.git`` left out).  The watcher reads
  every pending event before it answers, and the kernel queues an event before the write,
  rename or unlink that caused it returns, so whatever was finished before :func:`ask`
  returned has moved the generation.  A digest taken *after* ``ask`` gave generation G
  describes the tree at G or later; :func:`record` keeps it in the watcher only while G is
  still the generation, and the next ``ask`` at G returns it: an unchanged tree costs one
  round trip on a Unix socket instead of a listing.
- The watcher (``python -m hermitbuild.treewatch ROOT SOCKET IDLE``) removes its socket and
  exits, so that the next run lists the tree and starts a new one, when the kernel's event
  queue overflowed, a directory was moved (its subdirectories' paths would go stale) or could
  not be watched, ``root`` was deleted or moved, its socket was removed or replaced, or nobody
  asked for IDLE seconds.  Sockets, locks and the watchers' logs are in
  ``$XDG_RUNTIME_DIR/hermitbuild`` or ``/tmp/hermitbuild-<uid>`` (mode 0700).
- Not seen, as with git's fsmonitor: writes through ``mmap``, changes made on another machine
  (network file systems are never watched), and files changed through a hard link from
  outside the tree (:mod:`hermitbuild.treedigest` records no digest for a tree whose listing
  shows a hard-linked file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import selectors
import socket
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from .fsutil import file_lock
from .runner import spawn_detached

logger = logging.getLogger(__name__)

LOCAL_FS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "zfs", "f2fs", "bcachefs",
                      "jfs", "reiserfs", "overlay"})
SKIP_NAME = ".git"
_START_TIMEOUT = 10.0  # seconds for a new watcher to watch every directory and answer
_ANSWER_TIMEOUT = 5.0
_CHECK_EVERY = 5.0  # the watcher checks its socket and idle time this often

_IDLE: float = 0.0  # 0: no watchers (the library default; the doit entry point configures)
_UNAVAILABLE: set[str] = set()  # roots whose watcher could not start in this process
_SPAWNED: list = []  # the watchers this process started (kept: never waited for)


@dataclass(frozen=True)
class Status:
    """What a watcher said: who it is, how many changes it saw, the digest kept for now."""

    root: str
    watcher: str
    generation: int
    digest: str | None


def configure(idle_seconds: float) -> None:
    """Watch override trees from now on, each watcher staying ``idle_seconds`` without being
    asked (0: no watching)."""
    global _IDLE
    _IDLE = max(0.0, idle_seconds)


def run_dir() -> Path:
    """Where sockets, locks and logs live (private to this user)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        return Path(runtime) / "hermitbuild"
    return Path("/tmp") / f"hermitbuild-{os.getuid()}"


def _private_dir() -> Path | None:
    path = run_dir()
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = path.lstat()
    except OSError as exc:
        logger.debug("no override watchers: cannot make %s: %s", path, exc)
        return None
    if not path.is_dir() or path.is_symlink() or st.st_uid != os.getuid() or st.st_mode & 0o077:
        logger.debug("no override watchers: %s is not a directory of this user's alone", path)
        return None
    return path


def _name(root: str) -> str:
    return hashlib.sha256(root.encode("utf-8", "surrogateescape")).hexdigest()[:24]


def fs_type(path: Path) -> str | None:
    """The file system type of the mount holding ``path`` (from /proc/self/mountinfo)."""
    best, kind = -1, None
    try:
        lines = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    text = str(path)
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right.split():
            continue
        mount = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), fields[4])  # \040: a space
        inside = text == mount or mount == "/" or text.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > best:
            best, kind = len(mount), right.split()[0]
    return kind


def _exchange(sock_path: Path, request: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(_ANSWER_TIMEOUT)
        conn.connect(str(sock_path))
        conn.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = conn.recv(4096)
            if not chunk:
                raise OSError("the watcher closed the connection")
            data += chunk
    answer = json.loads(data)
    if not isinstance(answer, dict):
        raise ValueError("not an object")
    return answer


def _status(root: str, answer: dict) -> Status:
    watcher, generation, digest = answer.get("watcher"), answer.get("generation"), answer.get("digest")
    if not isinstance(watcher, str) or not isinstance(generation, int) \
            or not (digest is None or isinstance(digest, str)):
        raise ValueError(f"unexpected answer {answer!r}")
    return Status(root, watcher, generation, digest)


def ask(root: Path) -> Status | None:
    """The status of ``root``'s watcher, starting one if needed; see the module docstring."""
    if _IDLE <= 0 or not sys.platform.startswith("linux"):
        return None
    try:
        key = str(root.resolve())
        if key in _UNAVAILABLE:
            return None
        directory = _private_dir()
        if directory is None:
            _UNAVAILABLE.add(key)
            return None
        sock_path = directory / f"{_name(key)}.sock"
        try:
            return _status(key, _exchange(sock_path, {"ask": True}))
        except (OSError, ValueError):
            pass
        status = _start(key, directory, sock_path)
        if status is None:
            _UNAVAILABLE.add(key)
        return status
    except Exception as exc:  # a cache only: never fail a build over it
        logger.debug("override watcher of %s: %s", root, exc)
        return None


def _start(key: str, directory: Path, sock_path: Path) -> Status | None:
    kind = fs_type(Path(key))
    if kind not in LOCAL_FS:
        logger.debug("no watcher for %s: its file system (%s) is not a local one", key, kind)
        return None
    with file_lock(directory / f"{_name(key)}.lock"):
        try:  # another run may have started it meanwhile
            return _status(key, _exchange(sock_path, {"ask": True}))
        except (OSError, ValueError):
            pass
        try:
            sock_path.unlink()
        except FileNotFoundError:
            pass
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = {"PYTHONPATH": os.pathsep.join(p for p in (package_parent, os.environ.get("PYTHONPATH", "")) if p)}
        proc = spawn_detached([sys.executable, "-m", "hermitbuild.treewatch", key, str(sock_path), str(_IDLE)],
                              log_path=directory / f"{_name(key)}.log", env=env)
        _SPAWNED.append(proc)
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                return _status(key, _exchange(sock_path, {"ask": True}))
            except (OSError, ValueError):
                if proc.poll() is not None:
                    logger.debug("the watcher of %s exited (%s); see %s", key, proc.returncode,
                                 directory / f"{_name(key)}.log")
                    return None
                time.sleep(0.01)
        logger.debug("the watcher of %s did not answer within %.0f s", key, _START_TIMEOUT)
        return None


def record(status: Status, digest: str) -> None:
    """Keep ``digest`` in the watcher while its generation is still ``status.generation``."""
    directory = run_dir()
    try:
        _exchange(directory / f"{_name(status.root)}.sock",
                  {"record": status.generation, "watcher": status.watcher, "digest": digest})
    except Exception as exc:  # a cache only
        logger.debug("cannot record the digest of %s: %s", status.root, exc)


# ---------------------------------------------------------------------------- the watcher

class _Stop(Exception):
    """The watcher must exit (the reason is the message)."""


class _Watcher:
    def __init__(self, root: Path) -> None:
        from inotify_simple import INotify, flags  # only the watcher process needs it
        self.flags = flags
        self.inotify = INotify(nonblocking=True)
        self.mask = (flags.MODIFY | flags.ATTRIB | flags.CREATE | flags.DELETE | flags.MOVED_FROM
                     | flags.MOVED_TO | flags.DELETE_SELF | flags.MOVE_SELF | flags.ONLYDIR
                     | flags.DONT_FOLLOW | flags.EXCL_UNLINK)
        self.paths: dict[int, Path] = {}
        self.id = uuid.uuid4().hex
        self.generation = 0
        self.digest: str | None = None
        self.root_wd = self.watch_tree(root)

    def watch_tree(self, top: Path) -> int:
        """Watch ``top`` and every directory under it (``.git`` left out)."""
        first = -1
        stack = [top]
        while stack:
            directory = stack.pop()
            try:
                wd = self.inotify.add_watch(directory, self.mask)
            except FileNotFoundError:
                continue  # removed meanwhile: its removal was an event
            except OSError as exc:
                raise _Stop(f"cannot watch {directory}: {exc}") from None
            if first < 0:
                first = wd
            self.paths[wd] = directory
            try:
                with os.scandir(directory) as entries:
                    stack.extend(Path(e.path) for e in entries
                                 if e.name != SKIP_NAME and e.is_dir(follow_symlinks=False))
            except (FileNotFoundError, NotADirectoryError):
                continue
        if first < 0:
            raise _Stop(f"{top} is gone")
        return first

    def drain(self) -> None:
        f = self.flags
        for event in self.inotify.read(timeout=0):
            if event.mask & f.Q_OVERFLOW:
                raise _Stop("the kernel's event queue overflowed")
            if event.wd == self.root_wd and event.mask & (f.DELETE_SELF | f.MOVE_SELF | f.IGNORED):
                raise _Stop("the tree was deleted or moved")
            if event.mask & f.IGNORED:
                self.paths.pop(event.wd, None)  # a removed directory (its removal was counted)
                continue
            if event.name == SKIP_NAME:
                continue
            self.generation += 1
            self.digest = None
            if event.mask & f.ISDIR and event.mask & (f.MOVED_FROM | f.MOVED_TO | f.MOVE_SELF):
                raise _Stop("a directory was moved")
            if event.mask & f.ISDIR and event.mask & f.CREATE and event.wd in self.paths:
                self.watch_tree(self.paths[event.wd] / event.name)

    def answer(self, request: object) -> dict:
        self.drain()
        if isinstance(request, dict) and "record" in request:
            if request.get("watcher") == self.id and request["record"] == self.generation \
                    and isinstance(request.get("digest"), str):
                self.digest = request["digest"]
            return {"ok": True}
        return {"watcher": self.id, "generation": self.generation, "digest": self.digest}


def _serve_one(server: socket.socket, watcher: _Watcher) -> None:
    """Read one question (a JSON line) and answer it."""
    conn, _ = server.accept()
    with conn:
        conn.settimeout(_ANSWER_TIMEOUT)
        data = b""
        while not data.endswith(b"\n") and len(data) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
        try:
            request = json.loads(data)
        except ValueError:
            return
        conn.sendall(json.dumps(watcher.answer(request)).encode() + b"\n")


def serve(root: Path, sock_path: Path, idle: float) -> str:
    """Watch ``root`` and answer on ``sock_path`` until a reason to stop; returns the reason."""
    watcher = _Watcher(root)
    tmp = sock_path.with_name(f"{sock_path.name}.{os.getpid()}.tmp")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(tmp))
    server.listen(16)
    os.replace(tmp, sock_path)  # ready: every directory is watched
    ours = os.stat(sock_path).st_ino
    selector = selectors.DefaultSelector()
    selector.register(watcher.inotify.fileno(), selectors.EVENT_READ, "events")
    selector.register(server, selectors.EVENT_READ, "client")
    last_asked = time.monotonic()
    try:
        while True:
            for key, _ in selector.select(timeout=min(_CHECK_EVERY, idle)):
                if key.data == "events":
                    watcher.drain()
                    continue
                try:
                    _serve_one(server, watcher)
                except OSError:  # a client that went away (Ctrl-C of its run): the next one asks
                    pass
                last_asked = time.monotonic()
            if time.monotonic() - last_asked > idle:
                return f"nobody asked for {idle:.0f} s"
            try:
                if os.stat(sock_path).st_ino != ours:
                    return "the socket was replaced"
            except FileNotFoundError:
                return "the socket was removed"
    except _Stop as stop:
        return str(stop)
    finally:
        try:
            if os.stat(sock_path).st_ino == ours:
                os.unlink(sock_path)
        except OSError:
            pass
        server.close()


def main(argv: list[str]) -> int:
    """``python -m hermitbuild.treewatch ROOT SOCKET IDLE``: the watcher process."""
    if len(argv) != 3:
        print("usage: python -m hermitbuild.treewatch ROOT SOCKET IDLE_SECONDS", file=sys.stderr)
        return 2
    started = time.strftime("%Y-%m-%d %H:%M:%S")
    try:
        reason = serve(Path(argv[0]), Path(argv[1]), float(argv[2]))
    except (_Stop, OSError, ValueError, ImportError) as exc:
        print(f"{started} watcher of {argv[0]} could not start: {exc}", file=sys.stderr)
        return 1
    print(f"{started} watcher of {argv[0]} stopped at {time.strftime('%H:%M:%S')}: {reason}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
