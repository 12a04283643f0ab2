"""Run model-written Python contained. A failure, a hang or a blocked action is a result, never
an exception, and never harms the caller.

Layers, each used where the platform allows (``containment()`` says which are active here):

- a child process in its own session, killed with its whole process group at the wall-clock
  timeout; CPU-time, address-space, file-size, open-file and process-count limits (rlimits);
  where a pids cgroup is writable (root, e.g. in a container, where the process-count rlimit
  does not hold), a cgroup of its own that caps its processes and is emptied afterwards;
- a fresh temporary working directory (HOME and TMPDIR point into it), deleted afterwards, and an
  environment without any of the parent's variables (no inherited secrets), ``python -I``;
- a new user namespace and a new, empty network namespace where the kernel allows them (Linux;
  for root too): no network at all, and no capabilities, so even a child of root is held by
  the process limit and cannot trace other processes;
- **the boundary**: a Landlock domain (Linux 5.13+, applied with no_new_privs just before the
  code starts, inherited by everything it starts, and never lifted): it may create, write,
  truncate, rename, link and delete only inside its working directory (writes through a
  ``dir_fd``, a symlink or a hard link are checked on the path the kernel resolves; linking a
  file from outside in is refused), open no TCP connection, and, from Linux 6.12 (Landlock
  ABI 6), send no signal and reach no abstract unix socket outside its own domain: it cannot
  kill or stop the process that runs it;
- inside the interpreter, an audit hook (PEP 578) that refuses writes, deletes and renames
  outside the working directory, sockets, starting processes, forking, ctypes, signals
  (``os.kill``, ``pthread_kill``, ``pidfd_open``/``pidfd_send_signal``) and ``dir_fd`` forms. A
  hook is not a security boundary on its own (it is the in-process layer); the OS layers above
  are, and ``containment()`` says which of them hold on this machine.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

CLONE_NEWUSER, CLONE_NEWNET = 0x10000000, 0x40000000
MAX_PROCESSES = 32  # processes and threads the child may add to its user's count

# Runs first in the child: installs the audit hook, then runs the code as __main__.
_GUARD = r'''
import os, sys
_root = os.path.realpath(os.getcwd())
_blocked = {"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
            "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
            "os.fork", "os.forkpty", "os.kill", "os.killpg", "ctypes.dlopen", "ctypes.dlsym",
            "ctypes.cdata", "ctypes.call_function", "sys.addaudithook", "os.chroot",
            "os.setuid", "signal.pthread_kill"}
_modules = {"_posixsubprocess", "_ctypes", "ctypes", "multiprocessing", "_multiprocessing"}
_paths = {"os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,),
          "os.symlink": (0, 1), "os.link": (0, 1), "os.chmod": (0,), "os.chown": (0,),
          "os.truncate": (0,), "shutil.rmtree": (0,), "os.utime": (0,)}
_WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def _inside(path):
    if isinstance(path, int):
        return True
    try:
        p = os.path.realpath(os.fsdecode(path))
    except Exception:
        return False
    return p == _root or p.startswith(_root + os.sep)

def _hook(event, args):
    if event in _blocked or (event == "import" and args[0] in _modules):
        raise PermissionError(f"sandbox: {event} {args[0] if event == 'import' else ''} "
                              f"is not allowed")
    if event == "open" and len(args) >= 3:
        path, mode, flags = args[0], args[1], args[2]
        writing = (mode is not None and any(c in str(mode) for c in "wax+")) or \
            (mode is None and isinstance(flags, int) and flags & _WRITE)
        if writing and not _inside(path):
            raise PermissionError(f"sandbox: writing {path!r} outside the working directory")
    elif event in _paths:
        for i in _paths[event]:
            if i < len(args) and not _inside(args[i]):
                raise PermissionError(f"sandbox: {event} on {args[i]!r} outside the working "
                                      f"directory")

def _refuse(name):
    def refused(*args, **kwargs):
        raise PermissionError(f"sandbox: {name} is not allowed")
    return refused

def _no_dir_fd(name, fn):
    def guarded(*args, **kwargs):
        if any(kwargs.get(k) is not None for k in ("dir_fd", "src_dir_fd", "dst_dir_fd")):
            raise PermissionError(f"sandbox: {name} with a dir_fd is not allowed")
        return fn(*args, **kwargs)
    return guarded

import posix, signal
for _mod in (os, posix):
    for _name in ("open", "mkdir", "remove", "unlink", "rename", "replace", "rmdir", "symlink",
                  "link", "chmod", "chown", "utime", "mkfifo", "mknod", "truncate"):
        if hasattr(_mod, _name):
            setattr(_mod, _name, _no_dir_fd(_name, getattr(_mod, _name)))
    if hasattr(_mod, "pidfd_open"):
        setattr(_mod, "pidfd_open", _refuse("pidfd_open"))
for _name in ("pidfd_send_signal", "pthread_kill", "killpg"):
    if hasattr(signal, _name):
        setattr(signal, _name, _refuse(_name))
sys.addaudithook(_hook)
_code = sys.stdin.read()
exec(compile(_code, "<solution>", "exec"), {"__name__": "__main__"})
'''


@dataclass(frozen=True)
class RunResult:
    ok: bool
    returncode: int | None
    output: str  # the tail of stdout + stderr
    timed_out: bool = False


def _unshare(flags: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.unshare(flags) == 0
    except (OSError, AttributeError):
        return False


def _user_processes(uid: int) -> int:
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


def _pids_cgroup(limit: int) -> Path | None:
    """A new cgroup capping the number of processes, where this process may create one."""
    for base in (Path("/sys/fs/cgroup/pids"), Path("/sys/fs/cgroup")):  # cgroup v1, v2
        if not (base / "cgroup.procs").is_file() or not os.access(base, os.W_OK):
            continue
        group = base / f"localsym-sandbox-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            group.mkdir()
            (group / "pids.max").write_text(str(limit))
            return group
        except OSError:
            try:
                group.rmdir()
            except OSError:
                pass
    return None


def _empty_cgroup(group: Path) -> None:
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


def _landlock(writable: str) -> int:
    """Confine this process and everything it starts: create, write and delete only beneath
    ``writable``; no TCP; no signals or abstract sockets outside its domain (ABI 6+). Returns
    the ABI applied (0: not applied). Runs in the child before exec."""
    abi = landlock_abi()
    if abi < 1:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    fs = _FS_WRITE_FILE | _FS_REMOVE_DIR | _FS_REMOVE_FILE | _FS_MAKE | \
        (_FS_REFER if abi >= 2 else 0) | (_FS_TRUNCATE if abi >= 3 else 0) | \
        (_FS_IOCTL_DEV if abi >= 5 else 0)
    attr = _RulesetAttr(fs, _NET_ALL if abi >= 4 else 0, _SCOPE_ALL if abi >= 6 else 0)
    size = ctypes.sizeof(_RulesetAttr) if abi >= 6 else \
        (16 if abi >= 4 else 8)  # the struct as this ABI knows it
    ruleset = libc.syscall(_LL_CREATE, ctypes.byref(attr), ctypes.c_size_t(size), 0)
    if ruleset < 0:
        return 0
    try:
        for path, allowed in ((writable, fs), ("/dev/null", _FS_WRITE_FILE |
                                               (_FS_TRUNCATE if abi >= 3 else 0))):
            fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
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


def _limits(cpu_seconds: int, memory_bytes: int, nproc: int, group: Path | None,
            writable: str):
    def apply():  # runs in the child, before exec
        import resource  # noqa: PLC0415 (POSIX only)

        if group is not None:
            with open(group / "cgroup.procs", "w") as f:
                f.write("0")  # this process, and everything it starts
        os.setsid()  # its own process group: a timeout kills everything it started
        _unshare(CLONE_NEWUSER | CLONE_NEWNET)  # best effort: not every kernel allows it
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        _landlock(writable)  # last: the boundary the code starts inside
    return apply


@lru_cache(maxsize=1)
def containment() -> dict:
    """Which layers are active on this machine (checked once, by a real sandboxed run)."""
    probe = ("import socket\ntry:\n    socket.if_nameindex\n    names = [n for _, n in "
             "socket.if_nameindex()]\nexcept OSError:\n    names = []\nprint(names)")
    result = run_python(probe, timeout=10, audit=False)
    names = result.output.strip()
    group = _pids_cgroup(MAX_PROCESSES)
    if group is not None:
        _empty_cgroup(group)
    abi = landlock_abi()
    return {"network_namespace": result.ok and names in ("['lo']", "[]"),
            "interfaces_seen": names, "pids_cgroup": group is not None,
            "process_rlimit": os.geteuid() != 0, "audit_hook": True,
            "landlock_files": abi >= 1, "landlock_signals": abi >= 6, "landlock_abi": abi}


def run_python(code: str, timeout: float = 10.0, memory_mb: int = 1024,
               audit: bool = True) -> RunResult:
    """Run ``code`` contained (see the module doc); ok when it exits 0 in time."""
    nproc = _user_processes(os.getuid()) + MAX_PROCESSES
    group = _pids_cgroup(MAX_PROCESSES)
    try:
        return _run(code, timeout, memory_mb, audit, nproc, group)
    finally:
        if group is not None:
            _empty_cgroup(group)


def _run(code: str, timeout: float, memory_mb: int, audit: bool, nproc: int,
         group: Path | None) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="localsym-run-") as cwd:
        env = {"PATH": "/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8"}
        argv = [sys.executable, "-I", "-B", "-c", _GUARD] if audit else \
            [sys.executable, "-I", "-B", "-"]
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                errors="replace",
                                preexec_fn=_limits(int(timeout) + 1, memory_mb << 20, nproc,
                                                   group, os.path.realpath(cwd)))
        try:
            out, _ = proc.communicate(code, timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            if group is not None:  # and whatever left the process group (setsid)
                _empty_cgroup(group)
            try:
                out, _ = proc.communicate(timeout=2)
            except subprocess.TimeoutExpired:  # a survivor holds the output pipe: let it go
                proc.kill()
                for pipe in (proc.stdout, proc.stdin):
                    if pipe is not None:
                        pipe.close()
                proc.wait()
                out = ""
            return RunResult(False, None, (out or "")[-2000:], timed_out=True)
        finally:
            _kill_group(proc.pid)  # whatever it left running (a fork bomb's survivors)
        return RunResult(proc.returncode == 0, proc.returncode, (out or "")[-2000:])


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
