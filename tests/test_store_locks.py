"""The stage store's locks (flows/store_locks.py): exclusive across processes, dropped when their holder dies,
and used by Prefect's SERIALIZABLE cache isolation so that a second caller waits, then reuses the record."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from flows.store_locks import StoreLocks

ROOT = Path(__file__).resolve().parents[1]

HOLD = """
import sys, time
from flows.store_locks import StoreLocks
assert StoreLocks(sys.argv[1]).acquire_lock("generate-abc", "child")
print("held", flush=True)
time.sleep(600)
"""


def _holding_child(directory: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "held"
    return child


def test_a_lock_is_exclusive_and_reentrant_for_its_holder(tmp_path):
    locks = StoreLocks(tmp_path)
    assert not locks.is_locked("k")
    assert locks.acquire_lock("k", "a")
    assert locks.is_locked("k") and locks.is_lock_holder("k", "a") and not locks.is_lock_holder("k", "b")
    assert locks.acquire_lock("k", "a", acquire_timeout=0)  # the holder again: no deadlock
    assert not locks.acquire_lock("k", "b", acquire_timeout=0.3)
    with pytest.raises(ValueError):
        locks.release_lock("k", "b")
    locks.release_lock("k", "a")
    assert not locks.is_locked("k")
    assert locks.acquire_lock("k", "b", acquire_timeout=0)
    locks.release_lock("k", "b")


def test_another_process_waits_and_a_killed_holder_frees_the_lock(tmp_path):
    child = _holding_child(tmp_path)
    try:
        locks = StoreLocks(tmp_path)
        assert locks.is_locked("generate-abc")
        assert not locks.acquire_lock("generate-abc", "me", acquire_timeout=0.5)
        assert "pid" in locks._holder_of("generate-abc")
        os.kill(child.pid, signal.SIGKILL)  # no cleanup runs: the kernel drops the flock
        child.wait()
        start = time.monotonic()
        assert locks.acquire_lock("generate-abc", "me", acquire_timeout=5)
        assert time.monotonic() - start < 2
        locks.release_lock("generate-abc", "me")
    finally:
        child.kill()


def test_a_copied_lock_manager_names_the_same_locks(tmp_path):
    import copy
    import pickle

    locks = StoreLocks(tmp_path)
    assert locks.acquire_lock("k", "a")
    assert copy.deepcopy(locks).is_lock_holder("k", "a") and pickle.loads(pickle.dumps(locks)).is_lock_holder("k", "a")
    locks.release_lock("k", "a")
    with pytest.raises(ValueError):
        locks.acquire_lock("../k", "a")


def test_prefect_serializable_isolation_waits_then_reuses_the_record(tmp_path):
    """Two processes run the same cached task at once: one computes, the other waits and gets a cache hit."""
    script = tmp_path / "task.py"
    script.write_text(f"""
import sys, time
from pathlib import Path
from prefect import flow, task
from prefect.cache_policies import CachePolicy
from flows.store_locks import StoreLocks

log = Path(sys.argv[1])

@task(cache_policy=CachePolicy.from_cache_key_fn(lambda c, p: "stage-key").configure(
    isolation_level="SERIALIZABLE", lock_manager=StoreLocks({str(tmp_path / 'locks')!r})), persist_result=True)
def work():
    with log.open("a") as f:
        f.write("start\\n")
    time.sleep(3)
    with log.open("a") as f:
        f.write("end\\n")
    return 42

@flow
def run():
    ready = log.with_name("ready")
    with ready.open("a") as f:
        f.write("x")
    while len(ready.read_text()) < 2:  # both processes call the task at the same moment
        time.sleep(0.05)
    state = work(return_state=True)
    print(state.name, state.result(), flush=True)

run()
""")
    env = dict(os.environ, PREFECT_HOME=str(tmp_path / "home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_RESULTS_LOCAL_STORAGE_PATH=str(tmp_path / "results"), PYTHONPATH=str(ROOT))
    env.pop("PREFECT_API_URL", None)
    log = tmp_path / "calls.log"
    procs = [subprocess.Popen([sys.executable, str(script), str(log)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(outputs)
    assert log.read_text() == "start\nend\n"  # computed once, never twice at the same time
    finals = sorted(line for o in outputs for line in o.splitlines() if line.endswith(" 42"))
    assert finals == ["Cached 42", "Completed 42"], outputs
