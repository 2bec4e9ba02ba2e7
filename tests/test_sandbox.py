"""The code sandbox: gold solutions pass, wrong and hostile programs fail within the limits, and the
host is intact afterwards (files outside the sandbox unchanged, no process left behind)."""
import os
import subprocess
import time
from pathlib import Path

import pytest

from judges.code import CodeJudge, extract_code, program_for
from judges.sandbox import Limits, run_program
from tasks.core.records import Example
from tasks.data import read_examples

LIMITS = Limits(timeout_s=4, cpu_s=4, memory_mib=512)

HOSTILE = {  # name -> (program, expected status)
    "infinite loop": ("while True:\n    pass\n", "timeout"),
    "sleeps forever": ("import time\ntime.sleep(3600)\n", "timeout"),
    "fork bomb": ("import os\nwhile True:\n    os.fork()\n", "refused"),
    "multiprocessing": ("import multiprocessing as m\np = m.Process(target=print)\np.start()\np.join()\n", "refused"),
    "memory bomb": ("x = bytearray(16 << 30)\n", "resource_limit"),
    "growing memory": ("a = []\nwhile True:\n    a.append(' ' * 10**7)\n", "resource_limit"),
    "huge output": ("while True:\n    print('x' * 100000)\n", "resource_limit"),
    "writes outside": ("open({victim_dir!r} + '/new.txt', 'w').write('x')\n", "refused"),
    "overwrites a file": ("open({victim!r}, 'a').write('x')\n", "refused"),
    "deletes a file": ("import os\nos.remove({victim!r})\n", "refused"),
    "deletes a tree": ("import shutil\nshutil.rmtree({victim_dir!r})\n", "refused"),
    "opens a socket": ("import socket\nsocket.create_connection(('127.0.0.1', 22), timeout=1)\n", "refused"),
    "raw socket": ("import _socket\n_socket.socket()\n", "refused"),
    "runs a shell": ("import os\nos.system('touch ' + {victim_dir!r} + '/shell')\n", "refused"),
    "subprocess": ("import subprocess\nsubprocess.run(['rm', '-rf', {victim_dir!r}])\n", "refused"),
    "kills the parent": ("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n", "refused"),
    "kills its group": ("import os, signal\nos.killpg(0, signal.SIGKILL)\n", "refused"),
    "sys.exit(0) first": ("import sys\nsys.exit(0)\nassert 1 == 2\n", "early_exit"),
    "os._exit(0) first": ("import os\nos._exit(0)\nassert 1 == 2\n", "early_exit"),
    "patches AssertionError": ("import builtins\nbuiltins.AssertionError = type('A', (Exception,), {{}})\n"
                               "assert 1 == 2\n", "assertion"),
    "patches a builtin": ("import builtins\nbuiltins.len = lambda x: 3\nassert len([]) == 3\n", "refused"),
    "forges completion": ("import sys, os\nsys.audit('s3ft.done')\nos._exit(0)\n", "early_exit"),
    "reads secrets": ("import os\nassert os.environ['S3FT_TEST_SECRET'] == 'hunter2'\n", "crash"),
    "reads /proc environ": ("s = open('/proc/self/environ').read()\nassert 'hunter2' in s\n", "refused"),
    "ctypes": ("import ctypes\nctypes.CDLL(None).exit(0)\n", "refused"),
    "raises rlimits": ("import resource\nresource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n", "refused"),
}


def _runner_processes() -> list[str]:
    out = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if "sandbox_runner.py" in l]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_program_is_judged_incorrect_and_the_host_is_intact(name, tmp_path, monkeypatch):
    monkeypatch.setenv("S3FT_TEST_SECRET", "hunter2")
    victim_dir = tmp_path / "outside"
    victim_dir.mkdir()
    victim = victim_dir / "keep.txt"
    victim.write_text("precious")
    program, expected = HOSTILE[name]
    parent = os.getppid()
    bystander = subprocess.Popen(["sleep", "60"])  # in the test's own process group
    start = time.monotonic()
    try:
        outcome = run_program(program.format(victim=str(victim), victim_dir=str(victim_dir)), LIMITS)
        assert not outcome.passed
        assert outcome.status == expected, outcome
        assert outcome.reason
        assert time.monotonic() - start < LIMITS.timeout_s + 6
        assert sorted(p.name for p in victim_dir.iterdir()) == ["keep.txt"]
        assert victim.read_text() == "precious"
        assert _runner_processes() == []
        assert bystander.poll() is None and os.getppid() == parent  # no signal left the sandbox's own group
    finally:
        bystander.kill()
        bystander.wait()


def test_the_cpu_limit_is_a_timeout_even_when_the_program_ignores_its_signal():
    limits = Limits(timeout_s=30, cpu_s=1, memory_mib=512)
    start = time.monotonic()
    loop = run_program("while True:\n    pass\n", limits)
    assert (loop.status, loop.reason) == ("timeout", "over the CPU-time limit")
    stubborn = run_program("import signal\nsignal.signal(signal.SIGXCPU, signal.SIG_IGN)\nwhile True:\n    pass\n",
                           limits)
    assert stubborn.status == "resource_limit" and "SIGKILL" in stubborn.reason, stubborn
    assert time.monotonic() - start < 15  # both ended on CPU time, long before the 30 s wall clock
    assert _runner_processes() == []


def test_passing_and_failing_programs_carry_their_reason():
    assert run_program("def f(x):\n    return x + 1\nassert f(1) == 2\n", LIMITS).passed
    wrong = run_program("def f(x):\n    return x\nassert f(1) == 2\n", LIMITS)
    assert (wrong.passed, wrong.status) == (False, "assertion")
    syntax = run_program("def f(:\n", LIMITS)
    assert (syntax.status, "SyntaxError" in syntax.reason) == ("syntax_error", True)
    crash = run_program("raise ValueError('boom')\n", LIMITS)
    assert (crash.status, crash.reason) == ("crash", "ValueError: boom")


def test_the_working_directory_is_private_and_thrown_away():
    first = run_program("open('scratch.txt', 'w').write('x')\nimport os\nassert os.listdir('.') != []\n", LIMITS)
    second = run_program("import os\nassert 'scratch.txt' not in os.listdir('.')\n", LIMITS)
    assert first.passed and second.passed


@pytest.mark.parametrize("text, expected", [
    ("```python\ndef f():\n    return 1\n```\nThis returns 1.", "def f():\n    return 1"),
    ("Here:\n```py\nimport math\n```\nand\n```python\ndef g(x):\n    return math.sqrt(x)\n```",
     "import math\n\ndef g(x):\n    return math.sqrt(x)"),
    ("def f(a):\n    return a * 2\n\nThis function doubles its input.", "def f(a):\n    return a * 2"),
    ("```python\ndef f():\n    return 1\n", "def f():\n    return 1"),  # unterminated fence
    ("I cannot solve this.", None),
    ("```\ndef h():\n    pass\n```", "def h():\n    pass"),
])
def test_code_extraction(text, expected):
    assert extract_code(text) == expected


def _examples(task: str, mirror: Path, splits: tuple[str, ...]) -> list[Example]:
    return [e for s in splits for e in read_examples(task, s, None, 0, mirror, None)]


def test_every_gold_solution_passes_its_own_tests(mirror):
    """All of MBPP (974), sanitized MBPP (427) and HumanEval (164): the judge accepts the references."""
    judge = CodeJudge()
    for task, splits in (("mbpp", ("prompt", "train", "validation", "test")),
                         ("mbpp_sanitized", ("prompt", "train", "validation", "test")), ("humaneval", ("test",))):
        examples = _examples(task, mirror, splits)
        assert len(examples) == {"mbpp": 974, "mbpp_sanitized": 427, "humaneval": 164}[task]
        verdicts = judge.judge_many([(e, e.gold) for e in examples])
        failed = [(v.example_id, v.reason) for v in verdicts if v.outcome != "correct"]
        assert failed == [], failed[:5]
    assert _runner_processes() == []


def test_a_wrong_solution_fails_with_its_reason(mirror):
    example = _examples("mbpp", mirror, ("test",))[0]
    wrong = "```python\n" + example.gold.split("\n", 1)[1].replace("return", "return None and", 1)
    verdict = CodeJudge(LIMITS).judge(example, wrong)
    assert verdict.outcome == "incorrect" and verdict.reason.startswith(("assertion", "crash")), verdict
    assert program_for(example, "x = 1").startswith("x = 1\n\n")
    assert CodeJudge(LIMITS).judge(example, "no code here").reason == "no code in answer"
