"""Bundled knowledge: POSIX/Linux prototypes, and what the pinned trees already have.

Contract:
- :data:`CATALOG` maps a well-known call name to ``(signature, header, newlib mode)``:
  the prototype exactly as newlib declares it (so the generated definition is
  checked against newlib's own declaration when the header is included), the
  standard header that declares it, and ``reentrant`` (``name()`` calling
  ``_name_r()`` which sets errno) or ``plain``.  :func:`catalog_entry` turns one
  into an :class:`~hermitbuild.syscalls.model.Entry` with a kernel stub.
- :data:`KERNEL_SYSCALLS` maps every ``sys_<name>`` symbol that libhermit
  b27b19458cce (with its lwIP submodule d4d77f78) defines or declares in the code
  that goes into the kernel to where it is; used for the clash check when no
  prepared kernel tree is at hand.  :data:`NR_NUMBERS` are its ``__NR_`` numbers.
- :data:`NEWLIB_SOURCES` are the files of ``lib_a_SOURCES`` in
  olivierpierre/newlib 02d2b8799abd ``newlib/libc/sys/hermit``, with
  ``patches/newlib`` applied (which adds sleep.c and usleep.c).
"""

from __future__ import annotations

from .model import Entry, TypeProblem, parse_signature
from .pinned import KERNEL_SYSCALLS, NEWLIB_SOURCES, NR_NUMBERS, PINNED_HERMIT, PINNED_NEWLIB

__all__ = ["CATALOG", "catalog_entry", "KERNEL_SYSCALLS", "NEWLIB_SOURCES", "NR_NUMBERS", "PINNED_HERMIT",
           "PINNED_NEWLIB"]


R, P = "reentrant", "plain"

CATALOG: dict[str, tuple[str, str, str]] = {
    # files and directories
    "rename": ("int rename(const char *oldpath, const char *newpath)", "stdio.h", R),
    "mkdir": ("int mkdir(const char *path, mode_t mode)", "sys/stat.h", R),
    "rmdir": ("int rmdir(const char *path)", "unistd.h", R),
    "access": ("int access(const char *path, int amode)", "unistd.h", R),
    "chdir": ("int chdir(const char *path)", "unistd.h", R),
    "fchdir": ("int fchdir(int fd)", "unistd.h", R),
    "getcwd": ("char *getcwd(char *buf, size_t size)", "unistd.h", R),
    "chroot": ("int chroot(const char *path)", "unistd.h", R),
    "truncate": ("int truncate(const char *path, off_t length)", "unistd.h", R),
    "ftruncate": ("int ftruncate(int fd, off_t length)", "unistd.h", R),
    "fsync": ("int fsync(int fd)", "unistd.h", R),
    "fdatasync": ("int fdatasync(int fd)", "unistd.h", R),
    "sync": ("void sync(void)", "unistd.h", P),
    "dup": ("int dup(int fd)", "unistd.h", R),
    "dup2": ("int dup2(int oldfd, int newfd)", "unistd.h", R),
    "pipe": ("int pipe(int fildes[2])", "unistd.h", R),
    "chmod": ("int chmod(const char *path, mode_t mode)", "sys/stat.h", R),
    "fchmod": ("int fchmod(int fd, mode_t mode)", "sys/stat.h", R),
    "fchown": ("int fchown(int fd, uid_t owner, gid_t group)", "unistd.h", R),
    "lchown": ("int lchown(const char *path, uid_t owner, gid_t group)", "unistd.h", R),
    "utime": ("int utime(const char *path, const struct utimbuf *times)", "utime.h", R),
    "utimes": ("int utimes(const char *path, const struct timeval *times)", "sys/time.h", R),
    "umask": ("mode_t umask(mode_t mask)", "sys/stat.h", P),
    "lstat": ("int lstat(const char *path, struct stat *buf)", "sys/stat.h", R),
    "mkfifo": ("int mkfifo(const char *path, mode_t mode)", "sys/stat.h", R),
    "mknod": ("int mknod(const char *path, mode_t mode, dev_t dev)", "sys/stat.h", R),
    "creat": ("int creat(const char *path, mode_t mode)", "fcntl.h", R),
    "pread": ("ssize_t pread(int fd, void *buf, size_t count, off_t offset)", "unistd.h", R),
    "pwrite": ("ssize_t pwrite(int fd, const void *buf, size_t count, off_t offset)", "unistd.h", R),
    "pathconf": ("long pathconf(const char *path, int name)", "unistd.h", R),
    "fpathconf": ("long fpathconf(int fd, int name)", "unistd.h", R),
    # processes and identity
    "getppid": ("pid_t getppid(void)", "unistd.h", R),
    "getpgrp": ("pid_t getpgrp(void)", "unistd.h", R),
    "setpgid": ("int setpgid(pid_t pid, pid_t pgid)", "unistd.h", R),
    "setsid": ("pid_t setsid(void)", "unistd.h", R),
    "getuid": ("uid_t getuid(void)", "unistd.h", P),
    "geteuid": ("uid_t geteuid(void)", "unistd.h", P),
    "getgid": ("gid_t getgid(void)", "unistd.h", P),
    "getegid": ("gid_t getegid(void)", "unistd.h", P),
    "setuid": ("int setuid(uid_t uid)", "unistd.h", R),
    "setgid": ("int setgid(gid_t gid)", "unistd.h", R),
    "nice": ("int nice(int inc)", "unistd.h", R),
    "sched_yield": ("int sched_yield(void)", "sched.h", R),
    # time
    "nanosleep": ("int nanosleep(const struct timespec *req, struct timespec *rem)", "time.h", R),
    "alarm": ("unsigned int alarm(unsigned int seconds)", "unistd.h", P),
    "pause": ("int pause(void)", "unistd.h", R),
    # system
    "gethostname": ("int gethostname(char *name, size_t len)", "unistd.h", R),
    "sethostname": ("int sethostname(const char *name, size_t len)", "unistd.h", R),
    "sysconf": ("long sysconf(int name)", "unistd.h", R),
    "getpagesize": ("int getpagesize(void)", "unistd.h", R),
}


def catalog_entry(name: str, *, stub: str | None = None, body: str | None = None,
                  number: int | None = None) -> Entry | None:
    """The catalog's entry for ``name`` (kernel stub returning 0/NULL unless told), or None."""
    known = CATALOG.get(name)
    if known is None:
        return None
    signature, header, mode = known
    try:
        returns, _, params = parse_signature(signature)
    except TypeProblem as exc:  # pragma: no cover - the catalog is tested
        raise AssertionError(f"bad catalog signature {signature!r}: {exc}") from None
    if body is None and stub is None:
        stub = "" if returns.is_void else ("NULL" if returns.is_pointer else "0")
    return Entry(name=name, returns=returns, params=params, newlib=mode, header=(header,),
                 stub=stub, body=body, number=number)
