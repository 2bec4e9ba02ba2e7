"""Hostile input at the command-line boundary: every command that reads a config or a run folder, fed files
and values nobody listed as bad. Each must exit non-zero with exactly one `s3ft: error:` line, print no
traceback, and write nothing outside `output_dir` (here: nothing at all, since each fails before work)."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from flows.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART = (ROOT / "configs" / "quickstart.yaml").read_text()


def _bytes(tmp: Path) -> Path:
    p = tmp / "random.yaml"
    p.write_bytes(bytes(random.Random(0).randrange(128, 256) for _ in range(300)))
    return p


def _empty(tmp: Path) -> Path:
    p = tmp / "empty.yaml"
    p.write_text("")
    return p


def _huge(tmp: Path) -> Path:
    p = tmp / "huge.yaml"
    p.write_text(QUICKSTART + "".join(f"# padding {i}\n" for i in range(200_000)))
    return p


def _folder(tmp: Path) -> Path:
    (tmp / "configs-folder").mkdir()
    return tmp / "configs-folder"


def _anchor_bomb(tmp: Path) -> Path:
    """`arms` as a billion-laughs list: 10 nested levels of 9 aliases, ~3.9e8 strings once expanded."""
    levels = ['&a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    p = tmp / "bomb.yaml"
    p.write_text(QUICKSTART.replace("arms: [base, sft, s3ft]", f"arms: [{', '.join(levels)}]"))
    return p


def _self_reference(tmp: Path) -> Path:
    p = tmp / "loop.yaml"
    p.write_text(QUICKSTART.replace("arms: [base, sft, s3ft]", "arms: &arms [base, *arms]"))
    return p


def _with(text: str) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        p = tmp / "config.yaml"
        p.write_text(QUICKSTART + text)
        return p
    return make


FILES = {
    "non-UTF-8 bytes": _bytes,
    "empty file": _empty,
    "huge file": _huge,
    "a folder": _folder,
    "YAML anchors that blow up": _anchor_bomb,
    "a list that contains itself": _self_reference,
    "unknown root key": _with("colour: blue\n"),
    "unknown key in a section": _with("drift:\n  prompts: 96\n  promts: 3\n"),
    "unknown key two levels down": _with("judge:\n  name: qa\n  llm:\n    enabled: true\n    temprature: 0\n"),
    "unknown key in a nested setting": _with("generation:\n  repetition_stop: {max_pattern: 8, count: 3}\n"),
    "name with a slash": _with("name: a/b\n"),
    "name that climbs out": _with('name: "../../etc"\n'),
    "name with NUL": _with('name: "run\\0x"\n'),
    "name with a leading dash": _with('name: "-rf"\n'),
    "name that is dots": _with('name: ".."\n'),
}
SETS = {
    "--set without =": ["training.learning_rate"],
    "--set name climbing out": ["name=../../x"],
    "--set anchor bomb": ["arms=&a [base, *a]"],
    "--set unknown key": ["training.lr=1"],
}


def _argv(command: str, config: Path, sets: list[str], out: Path) -> list[str]:
    argv = [command, str(config), "--set", f"output_dir={out}"]
    for item in sets:
        argv += ["--set", item]
    return argv


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _check(code: int, err: str, before: set[str], tmp: Path, what: str) -> None:
    lines = [l for l in err.splitlines() if l.strip()]
    assert code not in (0, None), what
    assert len([l for l in lines if l.startswith("s3ft: error:")]) == 1, (what, err)
    assert "Traceback" not in err, (what, err)
    assert _files(tmp) == before, (what, _files(tmp) - before)


@pytest.fixture(autouse=True)
def _no_reexec(monkeypatch):
    monkeypatch.setenv("S3FT_PRELOADED", "1")  # `run` would re-exec the test process with preloaded libraries


@pytest.mark.parametrize("command", ["validate", "preview", "run", "judge-check"])
@pytest.mark.parametrize("case", sorted(FILES))
def test_every_command_refuses_a_hostile_config_file_in_one_line(command, case, tmp_path, capsys):
    config = FILES[case](tmp_path)
    before = _files(tmp_path)
    code = main(_argv(command, config, [], tmp_path / "out"))
    err = capsys.readouterr().err
    _check(code, err, before, tmp_path, f"{command} / {case}")


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(SETS))
def test_every_command_refuses_a_hostile_override_in_one_line(command, case, tmp_path, capsys):
    config = tmp_path / "quickstart.yaml"
    config.write_text(QUICKSTART)
    before = _files(tmp_path)
    code = main(_argv(command, config, SETS[case], tmp_path / "out"))
    _check(code, capsys.readouterr().err, before, tmp_path, f"{command} / {case}")


@pytest.mark.parametrize("case", ["non-UTF-8 bytes", "a folder", "missing summary", "summary not JSON"])
def test_export_refuses_a_hostile_run_folder_in_one_line(case, tmp_path, capsys):
    run_dir = tmp_path / "run"
    if case == "non-UTF-8 bytes":
        run_dir = _bytes(tmp_path)
    elif case == "a folder":
        run_dir = _folder(tmp_path)
    else:
        run_dir.mkdir()
        if case == "summary not JSON":
            (run_dir / "summary.json").write_bytes(b"\xff\xfe{")
    before = _files(tmp_path)
    code = main(["export", str(run_dir), str(tmp_path / "exported")])
    _check(code, capsys.readouterr().err, before, tmp_path, f"export / {case}")


def test_a_name_becomes_the_run_folder_and_stays_inside_output_dir():
    from tasks.core.config_file import load_config

    cfg = load_config(ROOT / "configs" / "quickstart.yaml", ["name=nq.v2_small-1"])
    assert cfg.name == "nq.v2_small-1"


def test_the_real_command_line_prints_one_line_for_a_non_utf8_config(tmp_path):
    """The same boundary through the installed entry point: a child process, its exit code and stderr."""
    config = _bytes(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "flows.cli", "validate", str(config)], capture_output=True,
                          text=True, cwd=ROOT, env=dict(os.environ), timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("s3ft: error:") == 1 and "Traceback" not in proc.stderr
    assert "UTF-8" in proc.stderr and str(config) in proc.stderr


def test_an_internal_error_says_bug_and_where_the_traceback_is(tmp_path, capsys, monkeypatch):
    """Not an input problem: one line that says it is a bug, where to report it and where the traceback went."""
    import flows.cli as cli

    def broken(_args):
        raise ZeroDivisionError("division by zero")

    import tempfile

    monkeypatch.setattr(cli, "read_config", broken)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    config = tmp_path / "quickstart.yaml"
    config.write_text(QUICKSTART)
    code = main(["validate", str(config)])
    err = capsys.readouterr().err
    assert code == 70 and err.count("s3ft: error:") == 1 and "Traceback" not in err
    assert "bug" in err and "ZeroDivisionError" in err
    log = Path(err.split("traceback in ")[1].split()[0].rstrip(";,."))
    assert "ZeroDivisionError" in log.read_text() and "Traceback" in log.read_text()


def test_the_mirror_beside_the_checkout_is_the_default_and_an_empty_setting_means_the_hub(monkeypatch, tmp_path):
    """README's `s3ft run configs/quickstart.yaml` works as typed, as under make: ../shared/data when present."""
    import flows.environment as environment
    from tasks.core.config_file import load_config

    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    monkeypatch.setattr(environment, "SHARED_MIRROR", shared)
    monkeypatch.delenv("S3FT_DATA_MIRROR", raising=False)
    assert environment.default_mirror() == shared and os.environ["S3FT_DATA_MIRROR"] == str(shared)
    assert load_config(ROOT / "configs" / "quickstart.yaml").data.mirror_path() == shared
    monkeypatch.setenv("S3FT_DATA_MIRROR", "")  # explicitly none: the hub, as for a user without the mirror
    assert environment.default_mirror() is None
    assert load_config(ROOT / "configs" / "quickstart.yaml").data.mirror_path() is None
    monkeypatch.delenv("S3FT_DATA_MIRROR")
    monkeypatch.setattr(environment, "SHARED_MIRROR", tmp_path / "absent")
    assert environment.default_mirror() is None and "S3FT_DATA_MIRROR" not in os.environ


def test_a_full_disk_in_a_stage_names_the_folder_and_what_it_had_written(tmp_path):
    """ENOSPC inside a stage is the operator's to fix: one DiskFullError naming the stage folder; the stage
    returns no result (so Prefect records no cache entry) and the next attempt computes it in full."""
    import errno

    from tasks.core.errors import DiskFullError
    from tasks.core.stage import stage

    attempts = []

    @stage("disk_probe", version="1", outputs=("out.bin",))
    def disk_probe(out: Path, size: int):
        (out / "out.bin.tmp").write_bytes(b"x" * size)
        attempts.append(size)
        if len(attempts) == 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        (out / "out.bin.tmp").replace(out / "out.bin")
        return str(out / "out.bin")

    with pytest.raises(DiskFullError, match=r"stage disk_probe: no space left to write in .*disk_probe.* 2 MiB "
                                            r"written there.*Fix: free space"):
        disk_probe.fn(size=2 << 20, store=str(tmp_path / "store"))
    assert not list((tmp_path / "store").rglob("out.bin"))  # nothing a later run could mistake for the output
    assert Path(disk_probe.fn(size=2 << 20, store=str(tmp_path / "store"))).stat().st_size == 2 << 20


def test_a_full_disk_outside_a_stage_is_one_line_not_a_bug(tmp_path, capsys, monkeypatch):
    import errno

    import flows.cli as cli

    def full(_args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "report.md"))

    monkeypatch.setattr(cli, "read_config", full)
    config = tmp_path / "quickstart.yaml"
    config.write_text(QUICKSTART)
    code = main(["validate", str(config)])
    err = capsys.readouterr().err
    assert code == 1 and err.count("s3ft: error:") == 1 and "bug" not in err
    assert f"writing {tmp_path / 'report.md'}: no space left to write in {tmp_path}" in err
