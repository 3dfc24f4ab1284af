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

PINNED_HERMIT = "b27b19458cce322fbeb37e9bccfb47df4888659b"
PINNED_NEWLIB = "02d2b8799abdf827adc74e3513c40b3c3fbb9a45"

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


#: sys_<name> symbols of the pinned kernel (name -> file:line), see the module docstring.
KERNEL_SYSCALLS: dict[str, str] = {
    "arch_mbox_fetch": "lwip/src/arch/sys_arch.c:191",
    "arch_mbox_tryfetch": "lwip/src/arch/sys_arch.c:218",
    "arch_netconn_sem_alloc": "lwip/src/arch/sys_arch.c:665",
    "arch_netconn_sem_free": "lwip/src/arch/sys_arch.c:680",
    "arch_netconn_sem_get": "lwip/src/arch/sys_arch.c:660",
    "arch_protect": "lwip/src/arch/sys_arch.c:314",
    "arch_sem_wait": "lwip/src/arch/sys_arch.c:166",
    "arch_unprotect": "lwip/src/arch/sys_arch.c:320",
    "check_timeouts": "lwip/src/include/lwip/timeouts.h:114", "clone": "kernel/syscall.c:581",
    "close": "kernel/syscall.c:417", "execve": "include/hermit/syscall.h:70",
    "exit": "kernel/syscall.c:121", "fork": "include/hermit/syscall.h:68",
    "get_ticks": "kernel/syscall.c:787", "getpid": "kernel/syscall.c:92",
    "getprio": "kernel/syscall.c:99", "init": "lwip/src/arch/sys_arch.c:73",
    "jiffies": "lwip/src/arch/sys_arch.c:63", "kill": "kernel/syscall.c:808",
    "lseek": "kernel/syscall.c:599", "mbox_fetch": "lwip/src/include/lwip/sys.h:70",
    "mbox_free": "lwip/src/arch/sys_arch.c:206", "mbox_new": "lwip/src/arch/sys_arch.c:229",
    "mbox_post": "lwip/src/arch/sys_arch.c:272",
    "mbox_set_invalid": "lwip/src/arch/sys_arch.c:248",
    "mbox_set_invalid_val": "lwip/src/include/lwip/sys.h:78",
    "mbox_tryfetch": "lwip/src/include/lwip/sys.h:71",
    "mbox_trypost": "lwip/src/arch/sys_arch.c:256",
    "mbox_trypost_fromisr": "lwip/src/arch/sys_arch.c:277",
    "mbox_valid": "lwip/src/arch/sys_arch.c:180",
    "mbox_valid_val": "lwip/src/include/lwip/sys.h:76", "msleep": "kernel/syscall.c:507",
    "mutex_free": "lwip/src/include/lwip/sys.h:66", "mutex_lock": "lwip/src/arch/sys_arch.c:287",
    "mutex_new": "lwip/src/arch/sys_arch.c:303",
    "mutex_set_invalid": "lwip/src/include/lwip/sys.h:68",
    "mutex_unlock": "lwip/src/arch/sys_arch.c:295",
    "mutex_valid": "lwip/src/include/lwip/sys.h:67", "now": "lwip/src/arch/sys_arch.c:58",
    "open": "kernel/syscall.c:346", "rcce_fini": "kernel/syscall.c:739",
    "rcce_init": "kernel/syscall.c:629", "rcce_malloc": "kernel/syscall.c:686",
    "read": "kernel/syscall.c:163", "restart_timeouts": "lwip/src/include/lwip/timeouts.h:113",
    "sbrk": "kernel/syscall.c:303", "sem_cancelablewait": "kernel/syscall.c:573",
    "sem_destroy": "kernel/syscall.c:535", "sem_free": "lwip/src/arch/sys_arch.c:107",
    "sem_init": "kernel/syscall.c:515", "sem_new": "lwip/src/arch/sys_arch.c:129",
    "sem_post": "kernel/syscall.c:557", "sem_set_invalid": "lwip/src/arch/sys_arch.c:149",
    "sem_set_invalid_val": "lwip/src/include/lwip/sys.h:62",
    "sem_signal": "lwip/src/arch/sys_arch.c:157", "sem_timedwait": "kernel/syscall.c:565",
    "sem_valid": "lwip/src/arch/sys_arch.c:119", "sem_valid_val": "lwip/src/include/lwip/sys.h:60",
    "sem_wait": "kernel/syscall.c:549", "setprio": "kernel/syscall.c:108",
    "signal": "kernel/syscall.c:816", "spinlock_destroy": "kernel/syscall.c:477",
    "spinlock_init": "kernel/syscall.c:457", "spinlock_lock": "kernel/syscall.c:491",
    "spinlock_unlock": "kernel/syscall.c:499", "stat": "kernel/syscall.c:792",
    "thread_new": "lwip/src/arch/sys_arch.c:88", "timeout": "lwip/src/include/lwip/timeouts.h:107",
    "timeout_debug": "lwip/src/include/lwip/timeouts.h:106",
    "timeouts_get_next_timeout": "lwip/src/include/lwip/timeouts.h:118",
    "timeouts_init": "lwip/src/core/timeouts.c:264",
    "timeouts_sleeptime": "lwip/src/include/lwip/timeouts.h:115",
    "untimeout": "lwip/src/include/lwip/timeouts.h:112", "wait": "include/hermit/syscall.h:69",
    "write": "kernel/syscall.c:230", "yield": "kernel/syscall.c:797",
}

#: __NR_ numbers of the pinned kernel's include/hermit/syscall.h.
NR_NUMBERS: dict[int, str] = {
    0: "exit", 1: "write", 2: "open", 3: "close", 4: "read", 5: "lseek", 6: "unlink", 7: "getpid",
    8: "kill", 9: "fstat", 10: "sbrk", 11: "fork", 12: "wait", 13: "execve", 14: "times",
    15: "stat", 16: "dup", 17: "dup2", 18: "msleep", 19: "yield", 20: "sem_init",
    21: "sem_destroy", 22: "sem_wait", 23: "sem_post", 24: "sem_timedwait", 25: "getprio",
    26: "setprio", 27: "clone", 28: "sem_cancelablewait", 29: "get_ticks",
}

#: lib_a_SOURCES of the pinned newlib's libc/sys/hermit/Makefile.am (patched: + sleep, usleep).
NEWLIB_SOURCES: tuple[str, ...] = (
    "errno.c", "chown.c", "environ.c", "execve.c", "fork.c", "getpid.c", "kill.c", "lseek.c",
    "readlink.c", "stat.c", "times.c", "wait.c", "close.c", "_exit.c", "fstat.c", "gettod.c",
    "isatty.c", "link.c", "open.c", "read.c", "sbrk.c", "symlink.c", "unlink.c", "write.c",
    "signal.c", "sleep.c", "usleep.c",
)
