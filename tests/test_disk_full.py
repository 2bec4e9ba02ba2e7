"""A full disk, for real: output_dir on a small tmpfs. The stage that runs out of space ends the run in one line
that names its folder and the space; it records no result, so after the disk grows the re-run recomputes that
stage (no partial folder taken for a cache hit) and keeps every stage that finished before it."""
import re
import subprocess

import pytest

from s3ft_cli import TINY_RANDOM, recomputed, run_s3ft, summary_of

SIZE_MB = 12  # holds the early stages, MLflow's database and Prefect's records, not the 26 MB benchmark_data


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE_MB}m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}): needs root or CAP_SYS_ADMIN; the ENOSPC "
                    f"path is also tested with a simulated error in tests/test_hostile_input.py")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_full_disk_is_one_line_and_the_stage_is_redone(small_disk, tiny_model_dir, mirror, prefect_server):
    out = small_disk / "out"
    proc = run_s3ft(out, tiny_model_dir, TINY_RANDOM, server=prefect_server)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("s3ft: error:")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    found = re.search(r"stage (\S+): no space left to write in (\S+) \(.*MiB free, \d+ MiB written there", errors[0])
    assert found, errors[0]
    stage, folder = found.groups()
    assert folder.startswith(str(out / "store" / stage.split(":")[0]))

    subprocess.run(["mount", "-o", "remount,size=512m", str(small_disk)], check=True)
    summary = summary_of(run_s3ft(out, tiny_model_dir, TINY_RANDOM, server=prefect_server))
    assert stage in recomputed(summary)  # its partial folder was not a cache hit
    before = [s["stage"] for s in summary["stages"]]
    assert not recomputed(summary) & set(before[:before.index(stage)])  # what finished before it stayed cached
