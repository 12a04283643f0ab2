"""Run model-written Python contained. A failure, a hang or a blocked action is a result, never
an exception, and never harms the caller.

Layers, each used where the platform allows (``containment()`` says which are active here):

- a child process in its own session, killed with its whole process group at the wall-clock
  timeout; CPU-time, address-space, file-size, open-file and process-count limits (rlimits);
  where a pids cgroup is writable (root, e.g. in a container, where the process-count rlimit
  does not hold), a cgroup of its own that caps its processes and is emptied afterwards;
- a fresh temporary working directory (HOME and TMPDIR point into it), deleted afterwards, and an
  environment without any of the parent's variables (no inherited secrets), ``python -I``;
  where a mount namespace is allowed, a small tmpfs mounted ``noexec`` over it: nothing the
  code writes there can be run or loaded as native code (an extension module it compiles, a
  shared library it drops);
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
- **no sockets**: a seccomp filter (through libseccomp, applied last, inherited by everything
  it starts, never lifted) makes ``socket``, ``socketpair``, ``connect``, ``bind``, ``listen``,
  ``accept``, ``sendto``, ``sendmsg`` and io_uring fail with EPERM in the kernel: no route to a
  socket of any family, whatever makes the call (Python, cffi, ctypes, an extension module);
- inside the interpreter, an audit hook (PEP 578) that refuses writes, deletes and renames
  outside the working directory, sockets, starting processes, forking, ctypes, signals
  (``os.kill``, ``pthread_kill``, ``pidfd_open``/``pidfd_send_signal``) and ``dir_fd`` forms. A
  hook is not a security boundary on its own (it is the in-process layer); the OS layers above
  are, and ``containment()`` says which of them hold on this machine.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from localsym.confine import (CLONE_NEWNET, CLONE_NEWUSER, empty_cgroup, landlock,
                              landlock_abi, map_ids, memory_cgroup, no_sockets, pids_cgroup,
                              small_disk, unshare, user_processes)

DISK_MB = 64  # what the child may write in all, its working directory a tmpfs of this size
MAX_PROCESSES = 32  # processes and threads the child may add to its user's count
KEEP = 1 << 16  # bytes of the child's output kept while it runs (the last ones)
TAIL = 2000  # characters of it a result holds

# Runs first in the child: installs the audit hook, then runs the code as __main__. Everything
# the hook reads lives in the closure of one function (frozen sets, a state cell no code can
# reach): no global to clear. The first line of stdin is a secret from the parent, read before
# the code runs and kept in a local of that function; the code runs in a thread of its own, so
# no chain of frames leads from it to that function (sys._getframe stays: the standard library's
# namedtuple and enum need it), and the gc's object lists and tracers are refused; when the code
# returns normally, and only then, the guard itself writes the secret as the last line
# (``RunResult.completed``): an early exit(0), a fake marker or an excepthook cannot pass for a
# run that reached its end. The process's own memory (/proc/self/mem) holds the secret: where
# that matters (HumanEval), the code that must complete runs in a process of its own, apart
# from the model's (``metrics/humaneval.py``, ``run_tests``).
_GUARD = r'''
def _main():
    globals().pop("_main")  # nothing of the guard stays in the module the code can see
    import os, sys
    root = os.path.realpath(os.getcwd())
    blocked = frozenset({"socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg",
        "subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork",
        "os.forkpty", "os.kill", "os.killpg", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata",
        "ctypes.call_function", "sys.addaudithook", "os.chroot", "os.setuid",
        "signal.pthread_kill", "sys._current_frames", "gc.get_objects", "gc.get_referrers",
        "gc.get_referents", "sys.settrace", "sys.setprofile"})
    modules = frozenset({"_posixsubprocess", "_ctypes", "ctypes", "multiprocessing",
                         "_multiprocessing"})
    paths = {"os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,),
             "os.symlink": (0, 1), "os.link": (0, 1), "os.chmod": (0,), "os.chown": (0,),
             "os.truncate": (0,), "shutil.rmtree": (0,), "os.utime": (0,)}
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def inside(path):
        if isinstance(path, int):
            return True
        try:
            p = os.path.realpath(os.fsdecode(path))
        except Exception:
            return False
        return p == root or p.startswith(root + os.sep)

    def hook(event, args):
        if event in blocked or (event == "import" and args[0] in modules):
            raise PermissionError(f"sandbox: {event} {args[0] if event == 'import' else ''} "
                                  f"is not allowed")
        if event == "open" and len(args) >= 3:
            path, mode, flags = args[0], args[1], args[2]
            writing = (mode is not None and any(c in str(mode) for c in "wax+")) or \
                (mode is None and isinstance(flags, int) and flags & write_flags)
            if writing and not inside(path):
                raise PermissionError(f"sandbox: writing {path!r} outside the working "
                                      "directory")
        elif event in paths:
            for i in paths[event]:
                if i < len(args) and not inside(args[i]):
                    raise PermissionError(f"sandbox: {event} on {args[i]!r} outside the "
                                          "working directory")

    def refuse(name):
        def refused(*args, **kwargs):
            raise PermissionError(f"sandbox: {name} is not allowed")
        return refused

    def no_dir_fd(name, fn):
        def guarded(*args, **kwargs):
            if any(kwargs.get(k) is not None for k in ("dir_fd", "src_dir_fd", "dst_dir_fd")):
                raise PermissionError(f"sandbox: {name} with a dir_fd is not allowed")
            return fn(*args, **kwargs)
        return guarded

    import posix, signal
    for mod in (os, posix):
        for name in ("open", "mkdir", "remove", "unlink", "rename", "replace", "rmdir",
                     "symlink", "link", "chmod", "chown", "utime", "mkfifo", "mknod",
                     "truncate"):
            if hasattr(mod, name):
                setattr(mod, name, no_dir_fd(name, getattr(mod, name)))
        if hasattr(mod, "pidfd_open"):
            setattr(mod, "pidfd_open", refuse("pidfd_open"))
    for name in ("pidfd_send_signal", "pthread_kill", "killpg"):
        if hasattr(signal, name):
            setattr(signal, name, refuse(name))
    import threading, traceback
    secret = sys.stdin.readline().strip()
    code = sys.stdin.read()
    write, flush, leave, format_exc = os.write, sys.stdout.flush, os._exit, traceback.format_exc
    finished = []  # the code returned normally: the one way to the secret line

    def run(source):  # in a thread of its own: no frame of it leads to this function's locals
        try:
            exec(compile(source, "<solution>", "exec"), {"__name__": "__main__"})
            finished.append(True)
        except SystemExit as err:  # an exit is never a completion, whatever its status
            flush()
            leave(err.code if isinstance(err.code, int) and 0 < err.code < 256 else
                  (0 if err.code in (None, 0) else 1))
        except BaseException:
            try:
                sys.stderr.write(format_exc())
                sys.stderr.flush()
                flush()
            finally:
                leave(1)

    sys.addaudithook(hook)
    worker = threading.Thread(target=run, args=(code,), name="solution")
    del code
    try:
        worker.start()
        worker.join()
    except BaseException:
        leave(1)
    flush()
    if finished:
        write(1, ("\n" + secret + "\n").encode())

_main()
'''


@dataclass(frozen=True)
class RunResult:
    ok: bool
    returncode: int | None
    output: str  # the tail of stdout + stderr (the guard's completion line left out)
    timed_out: bool = False
    completed: bool = False  # the code returned normally, attested by the guard's secret


def read_roots(extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """What the child may read beside its own directory: Python (its prefixes, where its
    interpreter is), the system's programs and libraries, a few devices, and ``extra`` (an
    isolated tool's directory and packages); not the caller's home, keys or /etc."""
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)), "/usr", "/lib", "/lib64", "/bin",
             "/etc/ld.so.cache", "/etc/localtime", "/dev/urandom", "/dev/random", "/dev/zero",
             "/proc/self", *extra}
    return tuple(sorted(r for r in roots if r and os.path.exists(r)))


def _limits(cpu_seconds: int, memory_bytes: int, nproc: int, groups: tuple[Path, ...],
            writable: str, readable: tuple[str, ...] = (), sockets_closed: bool = True):
    def apply():  # runs in the child, before exec
        import resource  # noqa: PLC0415 (POSIX only)

        for group in groups:
            with open(group / "cgroup.procs", "w") as f:
                f.write("0")  # this process, and everything it starts
        os.setsid()  # its own process group: a timeout kills everything it started
        uid, gid = os.getuid(), os.getgid()
        if unshare(CLONE_NEWUSER | CLONE_NEWNET):  # best effort: not every kernel allows it
            map_ids(uid, gid)
        small_disk(writable, DISK_MB)  # best effort too; the file-size limit holds anyway
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds))
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (16 << 20, 16 << 20))
        resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
        landlock(writable, readable)  # the boundary the code starts inside
        if sockets_closed:
            no_sockets()  # last: its filter is inherited by everything the code starts
    return apply


@lru_cache(maxsize=1)
def containment() -> dict:
    """Which layers are active on this machine (checked once, by a real sandboxed run)."""
    probe = ("import socket, os\ntry:\n    socket.if_nameindex\n    names = [n for _, n in "
             "socket.if_nameindex()]\nexcept OSError:\n    names = []\n"
             "print(os.statvfs('.').f_blocks * os.statvfs('.').f_frsize)\nprint(names)")
    result = run_python(probe, timeout=10, audit=False, allow_sockets=True)
    closed = run_python("import os, socket\ntry:\n    socket.socket(socket.AF_UNIX)\n"
                        "    print('open')\nexcept PermissionError:\n    print('closed')\n"
                        "print(bool(os.statvfs('.').f_flag & os.ST_NOEXEC))",
                        timeout=10, audit=False).output.split()
    lines = result.output.strip().splitlines() or [""]
    names = lines[-1]
    disk = int(lines[0]) if len(lines) > 1 and lines[0].isdigit() else 0
    group = pids_cgroup(MAX_PROCESSES)
    memory = memory_cgroup(64 << 20, group)
    capped = memory is not None or (group is not None and (group / "memory.max").exists())
    for g in (group, memory):
        if g is not None:
            empty_cgroup(g)
    abi = landlock_abi()
    return {"network_namespace": result.ok and names in ("['lo']", "[]"),
            "interfaces_seen": names, "pids_cgroup": group is not None,
            "memory_cgroup": capped, "disk_cap": 0 < disk <= DISK_MB << 20,
            "process_rlimit": os.geteuid() != 0, "audit_hook": True,
            "landlock_files": abi >= 1, "landlock_reads": abi >= 1,
            "landlock_signals": abi >= 6, "landlock_abi": abi,
            "seccomp_sockets": closed[:1] == ["closed"], "noexec_dir": closed[1:2] == ["True"]}


def run_python(code: str, timeout: float = 10.0, memory_mb: int = 1024,
               audit: bool = True, readable: tuple[str, ...] = (),
               allow_sockets: bool = False, fds: tuple[int, ...] = ()) -> RunResult:
    """Run ``code`` contained (see the module doc); ok when it exits 0 in time. ``readable``:
    more paths the code may read (beside Python's and the system's, ``read_roots``);
    ``allow_sockets``: no socket filter (``containment()``'s probe of the network namespace
    only); ``fds``: descriptors handed to the child (and closed here once it has them)."""
    nproc = user_processes(os.getuid()) + MAX_PROCESSES
    pids = pids_cgroup(MAX_PROCESSES)
    groups = tuple(g for g in (pids, memory_cgroup(memory_mb << 20, pids)) if g is not None)
    try:
        return _run(code, timeout, memory_mb, audit, nproc, groups, read_roots(readable),
                    not allow_sockets, fds)
    finally:
        for group in groups:
            empty_cgroup(group)


def _run(code: str, timeout: float, memory_mb: int, audit: bool, nproc: int,
         groups: tuple[Path, ...], readable: tuple[str, ...], sockets_closed: bool,
         fds: tuple[int, ...] = ()) -> RunResult:
    with tempfile.TemporaryDirectory(prefix="localsym-run-") as cwd:
        env = {"PATH": "/usr/bin:/bin", "HOME": cwd, "TMPDIR": cwd, "LANG": "C.UTF-8"}
        argv = [sys.executable, "-I", "-B", "-c", _GUARD] if audit else \
            [sys.executable, "-I", "-B", "-"]
        secret = f"localsym-completed-{secrets.token_hex(16)}"
        try:
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                    pass_fds=fds,
                                    preexec_fn=_limits(int(timeout) + 1, memory_mb << 20, nproc,
                                                       groups, os.path.realpath(cwd), readable,
                                                       sockets_closed))
        finally:
            for fd in fds:  # the child's now: the other end sees its end of file with it
                os.close(fd)
        try:
            out, timed_out = _exchange(proc, ((secret + "\n") if audit else "") + code, timeout)
            if timed_out:
                _kill_group(proc.pid)
                for group in groups:  # and whatever left the process group (setsid)
                    empty_cgroup(group)
                proc.kill()
            proc.wait()
        finally:
            _kill_group(proc.pid)  # whatever it left running (a fork bomb's survivors)
        text = out.decode("utf-8", errors="replace")
        completed = audit and text.rstrip().endswith(secret)
        if completed:
            text = text.rstrip()[:-len(secret)].rstrip("\n")
        tail = text[-TAIL:]
        if timed_out:
            return RunResult(False, None, tail, timed_out=True)
        return RunResult(proc.returncode == 0, proc.returncode, tail, completed=completed)


def _exchange(proc: subprocess.Popen, data: str, timeout: float) -> tuple[bytes, bool]:
    """Send ``data`` to the child's stdin and read its output until it closes it or
    ``timeout`` passes, keeping only the last KEEP bytes (a child that prints without end
    cannot fill the caller's memory); the output kept and whether it timed out."""
    def feed() -> None:
        try:
            assert proc.stdin is not None
            proc.stdin.write(data.encode("utf-8", errors="replace"))
            proc.stdin.close()
        except (BrokenPipeError, OSError, ValueError):
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    assert proc.stdout is not None
    fd, kept, deadline = proc.stdout.fileno(), bytearray(), time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(kept), True
        ready, _, _ = select.select([fd], [], [], min(left, 0.5))
        if not ready:
            continue
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return bytes(kept), False
        kept += chunk
        if len(kept) > KEEP:
            del kept[:len(kept) - KEEP]


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
