"""Run untrusted Python (model-written code + its unit tests) so that it cannot harm the host.

Each program runs in a fresh child process:
- `python -I -S -B` (isolated: no user site, no site-packages, no PYTHON* variables, no .pyc writes),
  in a throw-away working directory that is deleted afterwards, with an empty environment (no secrets);
- in its own process group (`start_new_session`), killed as a group on timeout or when it finishes;
- without network: in a fresh network namespace (`unshare --net`) when the host allows it, and in
  any case behind an audit hook that refuses sockets;
- with rlimits (address space, CPU seconds, file size, open files, processes, no core files);
- with stdin at /dev/null and stdout/stderr going to capped files in its working directory;
- behind an audit hook (`judges/sandbox_runner.py`) that refuses forking, exec, signals, ctypes,
  frame/gc introspection and writes or deletions outside the working directory.
A program passes only if it runs to its end and then writes a per-run nonce to a private pipe, so
`sys.exit(0)` before the asserts, `os._exit`, crashes and kills all count as failures.
"""
from __future__ import annotations

import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

RUNNER = Path(__file__).with_name("sandbox_runner.py")


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 10.0
    """Wall-clock limit; the process group is killed when it passes."""
    cpu_s: int = 10
    memory_mib: int = 1024
    file_mib: int = 8
    """Largest file (stdout/stderr included) the program may write."""
    processes: int = 64
    output_chars: int = 2000
    """How much of stdout/stderr is kept for the verdict's reason."""


@dataclass(frozen=True)
class Outcome:
    passed: bool
    status: str
    """passed | assertion | syntax_error | timeout | resource_limit | crash | refused | early_exit"""
    reason: str
    seconds: float


@functools.lru_cache(maxsize=1)
def network_isolation() -> list[str]:
    """The command prefix that gives a child its own empty network namespace, if the host allows it."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    try:
        ok = subprocess.run([unshare, "--net", "--", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return [unshare, "--net", "--"] if ok else []


def _tail(path: Path, limit: int) -> str:
    try:
        with path.open("rb") as fh:
            data = fh.read(limit)
    except OSError:
        return ""
    return data.decode("utf-8", "replace")


def _classify(rc: int | None, timed_out: bool, stderr: str, nonce_ok: bool) -> tuple[str, str]:
    last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if timed_out:
        return "timeout", "killed after the wall-clock limit"
    if nonce_ok and rc == 0:
        return "passed", ""
    refusals = [l.strip() for l in stderr.splitlines() if l.startswith("PermissionError: sandbox:")
                or l.startswith("sandbox:")]
    if refusals:
        return "refused", refusals[0].removeprefix("PermissionError: ")[:300]
    if "AssertionError" in stderr:
        return "assertion", "a test failed"
    if "SyntaxError" in last or "IndentationError" in last:
        return "syntax_error", last[:300]
    if "[Errno 27] File too large" in last:
        return "resource_limit", "output or file over the size limit"
    if rc == -signal.SIGXCPU:  # the CPU-time limit: the same verdict as the wall clock, whichever fires first
        return "timeout", "over the CPU-time limit"
    if "MemoryError" in last or rc in (-signal.SIGXFSZ, -signal.SIGSEGV):
        name = signal.Signals(-rc).name if rc is not None and rc < 0 else "MemoryError"
        return "resource_limit", name
    if rc == -signal.SIGKILL:  # not ours (we only kill after the wall clock): the CPU hard limit or the OOM killer
        return "resource_limit", "killed by SIGKILL (CPU-time hard limit or out of memory)"
    if rc is not None and rc < 0:
        return "crash", f"killed by {signal.Signals(-rc).name}"
    if rc == 0:
        return "early_exit", "exited before its tests finished"
    return "crash", (last or f"exit code {rc}")[:300]


def run_program(program: str, limits: Limits = Limits()) -> Outcome:
    """Run `program` (code and asserts in one script) in the sandbox and say whether it passed."""
    start = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="s3ft-sandbox-"))
    nonce = secrets.token_hex(16)
    read_fd, write_fd = os.pipe()
    stdout, stderr = work / ".stdout", work / ".stderr"
    job = json.dumps({"program": program, "nonce": nonce, "limits": asdict(limits)})
    timed_out = False
    proc = None
    try:
        with stdout.open("wb") as out, stderr.open("wb") as err:
            proc = subprocess.Popen(
                [*network_isolation(), sys.executable, "-I", "-S", "-B", str(RUNNER), str(write_fd)],
                cwd=work, env={"PATH": "/usr/bin:/bin", "HOME": str(work), "LANG": "C.UTF-8"},
                stdin=subprocess.PIPE, stdout=out, stderr=err, pass_fds=(write_fd,), start_new_session=True,
                close_fds=True)
            os.close(write_fd)
            write_fd = -1
            try:
                proc.stdin.write(job.encode())
                proc.stdin.close()
            except BrokenPipeError:
                pass
            try:
                proc.wait(timeout=limits.timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
        got = b""
        os.set_blocking(read_fd, False)
        try:
            got = os.read(read_fd, 64)
        except BlockingIOError:
            pass
        text = _tail(stderr, limits.output_chars)
        status, reason = _classify(proc.returncode, timed_out, text, got == nonce.encode())
        return Outcome(status == "passed", status, reason, round(time.perf_counter() - start, 3))
    finally:
        if proc is not None:
            _kill_group(proc)
        for fd in (read_fd, write_fd):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        shutil.rmtree(work, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the child's whole process group (anything it started too) and reap the child."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def run_many(programs: list[str], limits: Limits = Limits(), workers: int | None = None,
             progress: bool = False) -> list[Outcome]:
    """Run programs in parallel (one child each, `workers` at a time; default: one per core)."""
    workers = workers or os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = pool.map(lambda p: run_program(p, limits), programs)
        if progress:
            from tqdm.auto import tqdm

            results = tqdm(results, total=len(programs), desc="sandbox", unit="program")
        return list(results)
