"""Prefect's lock manager for the stage store: one stage key is computed by one process at a time.

Two `s3ft run` on one output_dir (a schedule firing during a manual run) reach the same stage keys. Prefect's
SERIALIZABLE cache isolation takes a lock on the key before it looks for the cache record, so the second run
waits while the first computes, then finds the record and reuses it. Prefect's own FileSystemLockManager
writes lock files that outlive a killed process (no expiry is set), so a SIGKILLed run would block every later
one; these locks are `flock`s, which the kernel drops when their process dies.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import anyio

from tasks.core.stage import run_logger

POLL_SECONDS = 0.2

_held: dict[tuple[str, str], tuple[str, int]] = {}
"""(directory, key) -> (holder, file descriptor) for the locks this process holds."""
_guard = threading.Lock()


class StoreLocks:
    """`prefect.locking.protocol.LockManager` over `flock` on `<directory>/<key>.lock`."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = str(Path(directory).expanduser().resolve())

    def __reduce__(self) -> tuple[Any, ...]:  # copies and pickles name the same locks
        return (StoreLocks, (self.directory,))

    def __deepcopy__(self, _memo: dict) -> StoreLocks:
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StoreLocks) and other.directory == self.directory

    def __hash__(self) -> int:
        return hash(self.directory)

    def _path(self, key: str) -> str:
        if "/" in key or key.startswith("."):
            raise ValueError(f"lock key {key!r} is not a file name")
        return os.path.join(self.directory, f"{key}.lock")

    def _try(self, key: str, mode: int) -> int | None:
        """An fd holding the lock in `mode`, or None when another holder has it."""
        os.makedirs(self.directory, exist_ok=True)
        fd = os.open(self._path(key), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            os.close(fd)
            return None

    def acquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                     hold_timeout: float | None = None) -> bool:
        """Block until the key is ours (or `acquire_timeout` passes). A dead holder's lock is already gone."""
        if self.is_lock_holder(key, holder):
            return True
        deadline = None if acquire_timeout is None else time.monotonic() + acquire_timeout
        waiting = False
        while (fd := self._try(key, fcntl.LOCK_EX)) is None:
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if not waiting:
                waiting = True
                run_logger().info("stage %s is being computed by another run (%s); waiting for it", key,
                                  self._holder_of(key))
            time.sleep(POLL_SECONDS)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%H:%M:%S')}\n".encode())
        with _guard:
            _held[(self.directory, key)] = (holder, fd)
        return True

    async def aacquire_lock(self, key: str, holder: str, acquire_timeout: float | None = None,
                            hold_timeout: float | None = None) -> bool:
        return await anyio.to_thread.run_sync(self.acquire_lock, key, holder, acquire_timeout, hold_timeout)

    def _holder_of(self, key: str) -> str:
        try:
            return Path(self._path(key)).read_text().strip() or "holder unknown"
        except OSError:
            return "holder unknown"

    def release_lock(self, key: str, holder: str) -> None:
        with _guard:
            held = _held.get((self.directory, key))
            if held is None or held[0] != holder:
                raise ValueError(f"no lock held by {holder} for key {key}")
            del _held[(self.directory, key)]
        fcntl.flock(held[1], fcntl.LOCK_UN)
        os.close(held[1])

    def is_locked(self, key: str) -> bool:
        if (self.directory, key) in _held:
            return True
        fd = self._try(key, fcntl.LOCK_SH)
        if fd is None:
            return True
        os.close(fd)
        return False

    def is_lock_holder(self, key: str, holder: str) -> bool:
        held = _held.get((self.directory, key))
        return held is not None and held[0] == holder

    def wait_for_lock(self, key: str, timeout: float | None = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.is_locked(key):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(POLL_SECONDS)
        return True

    async def await_for_lock(self, key: str, timeout: float | None = None) -> bool:
        return await anyio.to_thread.run_sync(self.wait_for_lock, key, timeout)


@contextlib.contextmanager
def exclusive(directory: str | Path, key: str) -> Iterator[None]:
    """Hold `key`'s lock in `directory` for the block (one process at a time, e.g. creating a database)."""
    locks, holder = StoreLocks(directory), f"{os.getpid()}-{threading.get_ident()}"
    locks.acquire_lock(key, holder)
    try:
        yield
    finally:
        locks.release_lock(key, holder)
