"""The kernel's confinement of a sandboxed child (``localsym/sandbox.py`` applies it between
fork and exec): namespaces, a small noexec tmpfs for its working directory, cgroups for its
processes and memory, a Landlock domain for its files, signals and TCP, and a seccomp filter
that closes every socket call. Each is best effort: ``sandbox.containment()`` says which hold."""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import time
import uuid
from pathlib import Path

CLONE_NEWUSER, CLONE_NEWNET, CLONE_NEWNS = 0x10000000, 0x40000000, 0x00020000
MS_NOSUID, MS_NODEV, MS_NOEXEC = 2, 4, 8


def unshare(flags: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(flags) == 0
    except (OSError, AttributeError):
        return False


def map_ids(uid: int, gid: int) -> None:
    """In a new user namespace, be the same user and group as outside (files made in the
    child's own tmpfs then have an owner)."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"),
                       ("gid_map", f"{gid} {gid} 1")):
        try:
            with open(f"/proc/self/{name}", "w") as f:
                f.write(text)
        except OSError:
            pass


def small_disk(directory: str, megabytes: int) -> bool:
    """Mount a tmpfs of ``megabytes`` over ``directory`` in a mount namespace of the child's
    own (all it writes there together is capped, not each file; nothing there runs or loads as
    native code); whether it held."""
    if not unshare(CLONE_NEWNS):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.mount(b"tmpfs", directory.encode(), b"tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                      f"size={megabytes}m,mode=1777".encode()) != 0:
            return False
        os.chdir(directory)  # into the tmpfs (the working directory was the one beneath it)
        return True
    except (OSError, AttributeError):
        return False


def user_processes(uid: int) -> int:
    n = 0
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("Uid:"):
                            n += int(line.split()[1]) == uid
                            break
            except OSError:
                continue
    return n


def pids_cgroup(limit: int) -> Path | None:
    """A new cgroup capping the number of processes, where this process may create one."""
    for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):  # cgroup v1, v2
        if not (base / "cgroup.procs").is_file() or not os.access(base, os.W_OK):
            continue
        group = new_cgroup(base, "localsym-sandbox", {"pids.max": str(limit)})
        if group is not None:
            return group
    return None


def new_cgroup(base: Path, prefix: str, limits: dict[str, str],
                optional: dict[str, str] | None = None) -> Path | None:
    """A new cgroup under ``base`` with ``limits`` written (and ``optional`` ones where the
    kernel has the file); None, and nothing left behind, where that cannot be done."""
    group = base / f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        group.mkdir()
        for name, value in limits.items():
            (group / name).write_text(value)
        for name, value in (optional or {}).items():
            if (group / name).exists():
                (group / name).write_text(value)
        return group
    except OSError:
        try:
            group.rmdir()
        except OSError:
            pass
        return None


def memory_cgroup(memory_bytes: int, pids: Path | None) -> Path | None:
    """A new cgroup capping the memory of the child and everything it starts together (memfd
    pages and page cache included, which an address-space limit does not count), swap too,
    where one is writable (cgroup v2: the unified group; v1: the memory controller). On v2 a
    process is in one group: the limits go into the pids group ``pids`` where it is there."""
    v2, v1 = Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/memory")
    if pids is not None and pids.parent == v2:
        try:
            (pids / "memory.max").write_text(str(memory_bytes))
            (pids / "memory.swap.max").write_text("0")
        except OSError:
            pass
        return None
    options = []
    if (v2 / "cgroup.controllers").is_file() and "memory" in \
            (v2 / "cgroup.subtree_control").read_text(errors="replace").split():
        options.append((v2, ("memory.max", "memory.swap.max")))
    if (v1 / "memory.limit_in_bytes").is_file():
        options.append((v1, ("memory.limit_in_bytes", "memory.memsw.limit_in_bytes")))
    for base, limits in options:
        if not os.access(base, os.W_OK):
            continue
        swap = "0" if limits[1] == "memory.swap.max" else str(memory_bytes)
        group = new_cgroup(base, "localsym-memory", {limits[0]: str(memory_bytes)},
                            {limits[1]: swap})
        if group is not None:
            return group
    return None


def empty_cgroup(group: Path) -> None:
    """Kill everything left in ``group`` (escaped process groups too) and remove it."""
    for _ in range(200):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            break
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    try:
        group.rmdir()
    except OSError:
        pass


# Landlock (include/uapi/linux/landlock.h): syscalls, access rights, scopes.
_LL_CREATE, _LL_ADD_RULE, _LL_RESTRICT = 444, 445, 446
_LL_RULE_PATH_BENEATH, _LL_CREATE_VERSION, _PR_SET_NO_NEW_PRIVS = 1, 1, 38
_FS_EXECUTE, _FS_READ_FILE, _FS_READ_DIR = 1 << 0, 1 << 2, 1 << 3
_FS_READ = _FS_EXECUTE | _FS_READ_FILE | _FS_READ_DIR
_FS_WRITE_FILE, _FS_REMOVE_DIR, _FS_REMOVE_FILE = 1 << 1, 1 << 4, 1 << 5
_FS_MAKE = sum(1 << b for b in range(6, 13))  # char, dir, reg, sock, fifo, block, sym
_FS_REFER, _FS_TRUNCATE, _FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
_NET_ALL = (1 << 0) | (1 << 1)  # bind and connect TCP
_SCOPE_ALL = (1 << 0) | (1 << 1)  # abstract unix sockets, signals


class _RulesetAttr(ctypes.Structure):
    _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                ("scoped", ctypes.c_uint64)]


class _PathBeneath(ctypes.Structure):
    _pack_ = 1
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


def landlock_abi() -> int:
    """The Landlock ABI version this kernel offers (0: none)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return max(0, libc.syscall(_LL_CREATE, None, ctypes.c_size_t(0), _LL_CREATE_VERSION))
    except (OSError, AttributeError):
        return 0


def landlock(writable: str, readable: tuple[str, ...] = ()) -> int:
    """Confine this process and everything it starts: read only beneath ``readable`` and
    ``writable``, create, write and delete only beneath ``writable``; no TCP; no signals or
    abstract sockets outside its domain (ABI 6+). Returns the ABI applied (0: not applied).
    Runs in the child before exec."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    fs = _FS_READ | _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE | \
        (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0) | \
        (_FS_IOCTL_DEV if abi >= 5 else 0)
    attr = _RulesetAttr(fs, _NET_ALL if abi >= 4 else 0, _SCOPE_ALL if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else \
        (16 if abi >= 4 else 8)  # the struct as this ABI knows it
    ruleset = libc.syscall(_LL_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        return 0
    try:
        rules = [(writable, fs & ~_FS_EXECUTE),  # nothing written here is run
                 ("/dev/null", _FS_READ_FILE | _FS_WRITE_FILE |
                                  (_FS_TRUNCATE if abi >= 3 else 0))]
        for root in readable:  # a file (not a directory) takes the rights a file can have
            rules.append((root, _FS_READ if os.path.isdir(root) else _FS_READ_FILE |
                          _FS_EXECUTE))
        for path, allowed in rules:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rule = _PathBeneath(allowed, fd)
                if libc.syscall(_LL_ADD_RULE, ruleset, _LL_RULE_PATH_BENEATH,
                                ctypes.byref(rule), 0) < 0:
                    return 0
            finally:
                os.close(fd)
        if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 or \
                libc.syscall(_LL_RESTRICT, ruleset, 0) < 0:
            return 0
        return abi
    finally:
        os.close(ruleset)


SOCKET_CALLS = ("socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
                "sendto", "sendmsg", "sendmmsg", "io_uring_setup", "io_uring_enter",
                "io_uring_register")


def no_sockets() -> bool:
    """A seccomp filter on this process and everything it starts: every socket call fails with
    EPERM (``SOCKET_CALLS``); whether it was applied (libseccomp present)."""
    try:
        import pyseccomp  # noqa: PLC0415 - Linux only, and only in the child

        rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for name in SOCKET_CALLS:
            try:
                rules.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
            except (OSError, ValueError):
                pass  # a call this kernel or architecture does not have
        rules.load()
        return True
    except (ImportError, OSError, RuntimeError, AttributeError):
        return False
