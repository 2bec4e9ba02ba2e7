"""Two `s3ft run` of one config started at once on one output_dir (a schedule firing during a manual run): both
finish with the same results, every stage is computed by one of them only (the other waited on the stage's lock,
then reused it), each has its own run folder, and a third run is all cache hits over intact files."""
import json
import subprocess

import pytest

from s3ft_cli import ROOT, TINY_RANDOM, command, recomputed, run_s3ft, summary_of


@pytest.mark.slow
def test_two_runs_at_once_compute_each_stage_once(tmp_path, tiny_model_dir, mirror, prefect_server):
    out = tmp_path / "out"
    procs = []
    for n in range(2):
        args, env = command(out, tiny_model_dir, TINY_RANDOM, server=prefect_server)
        procs.append(subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True))
    outputs = [p.communicate(timeout=900) for p in procs]
    done = [subprocess.CompletedProcess(p.args, p.returncode, *o) for p, o in zip(procs, outputs)]
    first, second = (summary_of(p) for p in done)

    assert first["run_dir"] != second["run_dir"]
    assert first["results"] == second["results"] and first["comparisons"] == second["comparisons"]
    both = recomputed(first) & recomputed(second)
    assert not both, f"computed by both runs: {sorted(both)}"
    labels = {s["stage"] for s in first["stages"]}
    assert recomputed(first) | recomputed(second) == labels  # each stage computed once, by one of the two
    assert "waiting for it" in done[0].stderr + done[1].stderr + done[0].stdout + done[1].stdout
    for record in (out / "prefect-results").glob("*"):
        if record.is_file():
            json.loads(record.read_text())  # no torn cache record

    third = summary_of(run_s3ft(out, tiny_model_dir, TINY_RANDOM, server=prefect_server))
    assert not recomputed(third)  # every cached file still matches the sha256 its stage recorded
    assert third["results"] == first["results"]
