"""What the pinned trees already have (libhermit b27b194, newlib 02d2b87): pure data.

Contract: :data:`KERNEL_SYSCALLS` (``sys_<name>`` the kernel defines, and where),
:data:`NR_NUMBERS` (syscall numbers taken), :data:`NEWLIB_SOURCES` (files newlib's
``libc/sys/hermit`` builds), and the two pins.  The table model validates against these
by default and the catalog re-exports them; nothing here imports the rest of the package.
"""

from __future__ import annotations

PINNED_HERMIT = "b27b19458cce322fbeb37e9bccfb47df4888659b"
PINNED_NEWLIB = "02d2b8799abdf827adc74e3513c40b3c3fbb9a45"


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
