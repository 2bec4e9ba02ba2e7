"""Runs inside the sandbox child (`python -I -S`, standard library only): untrusted code + its tests.

Protocol: the parent writes one JSON job to stdin ({"program", "nonce", "limits"}); the runner reads
it, points stdin at /dev/null, sets rlimits, installs an audit hook (which no Python code can remove),
runs the program, and only if it ran to its end writes the nonce to the result file descriptor.
A program that exits early (`sys.exit(0)`, `os._exit(0)`) or is killed never writes the nonce, so
it cannot pass. The nonce lives only in the audit hook's closure, which Python code cannot reach
(the hook refuses garbage-collector introspection and tracing); the hook releases it only for a
`sys.audit("s3ft.done")` made by the runner's own frame.
"""
import json
import os
import resource
import sys


def _limits(lim):
    mib = 1 << 20
    # CPU: the soft limit sends SIGXCPU (reported as a timeout); the hard one, a second later, SIGKILL.
    for name, soft, hard in (("RLIMIT_AS", lim["memory_mib"] * mib, None),
                             ("RLIMIT_CPU", lim["cpu_s"], lim["cpu_s"] + 1),
                             ("RLIMIT_FSIZE", lim["file_mib"] * mib, None), ("RLIMIT_NOFILE", 64, None),
                             ("RLIMIT_CORE", 0, None), ("RLIMIT_NPROC", lim["processes"], None)):
        try:
            resource.setrlimit(getattr(resource, name), (soft, soft if hard is None else hard))
        except (ValueError, OSError):  # a lower hard limit already applies
            pass


_BLOCKED = {
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.kill", "os.killpg",
    "os.setsid", "os.setpgid", "os.putenv", "os.unsetenv", "os.chmod", "os.chown", "os.link", "os.symlink",
    "subprocess.Popen", "pty.spawn", "ctypes.dlopen", "ctypes.dlsym", "ctypes.cdata", "ctypes.call_function",
    "socket.__new__", "socket.connect", "socket.bind", "socket.getaddrinfo", "socket.gethostbyname",
    "urllib.Request", "sys._current_frames", "sys.settrace", "sys.setprofile",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "sys.addaudithook", "signal.pthread_kill",
    "resource.setrlimit", "resource.prlimit", "mmap.__new__", "code.__new__", "function.__new__",
    "os.chroot", "os.mkfifo", "os.mknod", "shutil.rmtree",
}
_PATH_EVENTS = {"os.remove", "os.rmdir", "os.rename", "os.truncate", "os.mkdir", "os.utime", "os.chdir"}


def _inside(path, root):
    try:
        full = os.path.realpath(os.fsdecode(path) if not isinstance(path, int) else root)
    except (TypeError, ValueError):
        return False
    return full == root or full.startswith(root + os.sep)


def _install_hook(root, nonce, result_fd, runner_frame):
    """The audit hook. It alone holds the nonce (in its closure, unreachable from Python once
    installed) and writes it when `sys.audit("s3ft.done")` is called from the runner's own frame,
    i.e. only when control flow really got past the program and the checks."""
    import sys as _sys
    write, close, getframe = os.write, os.close, _sys._getframe

    def hook(event, args):
        if event == "s3ft.done":
            if getframe(1) is runner_frame:
                write(result_fd, nonce)
                close(result_fd)
            return
        if event in _BLOCKED or event.startswith("socket.") or event.startswith("ctypes."):
            raise PermissionError(f"sandbox: {event} is not allowed")
        if event == "open" and args:
            path, mode, flags = (list(args) + [None, None])[:3]
            if isinstance(path, int):
                return
            if isinstance(mode, str):
                reads = not any(c in mode for c in "wax+")
            else:
                reads = not (flags or 0) & (os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND)
            if reads and not str(path).startswith("/proc"):
                return
            if not _inside(path, root):
                raise PermissionError(f"sandbox: opening {path!r} ({mode}) is not allowed")
        if event in _PATH_EVENTS and args and not isinstance(args[0], int) and not _inside(args[0], root):
            raise PermissionError(f"sandbox: {event} on {args[0]!r} outside the working directory")

    sys.addaudithook(hook)


def main():
    job = json.loads(sys.stdin.read())
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    result_fd = int(sys.argv[1])
    nonce = job["nonce"].encode()
    program = compile(job["program"], "<program>", "exec")
    _limits(job["limits"])
    root = os.path.realpath(os.getcwd())
    del job
    import builtins
    before, _vars, _sorted, _audit, _exit, _write = dict(vars(builtins)), vars, sorted, sys.audit, sys.exit, sys.stderr.write
    _install_hook(root, nonce, result_fd, sys._getframe())
    del nonce
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(program, namespace)
    except AssertionError:
        sys.stderr.write("AssertionError: a test assertion failed\n")
        raise SystemExit(1)
    now = _vars(builtins)
    changed = [k for k, v in now.items() if before.get(k, before) is not v] + [k for k in before if k not in now]
    if changed:
        _write(f"sandbox: the program replaced builtins {_sorted(changed)[:5]}\n")
        _exit(3)
    _audit("s3ft.done")


if __name__ == "__main__":
    main()
