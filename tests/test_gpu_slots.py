"""GPU slots on fake devices: concurrent GPU jobs each get a device of their own, freed when the
job ends or is killed; and under Snakemake with --resources gpu=2, four jobs never share one."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from saeflow import gpu_slots
from saeflow.errors import SaeflowError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """A clean working directory and environment: the slot files live under the working directory."""
    monkeypatch.chdir(tmp_path)
    for name in ("SAEFLOW_GPU_SLOTS", "CUDA_VISIBLE_DEVICES"):
        monkeypatch.setenv(name, "")  # recorded first, so that what a claim sets is undone afterwards
        monkeypatch.delenv(name)
    return tmp_path


def test_concurrent_claims_get_different_slots_and_a_third_waits(workdir):
    first, second = gpu_slots.claim_slot(["0", "1"]), gpu_slots.claim_slot(["0", "1"])
    assert (first.index, second.index) == (0, 1)
    threading.Timer(0.3, second.release).start()
    start = time.monotonic()
    third = gpu_slots.claim_slot(["0", "1"], wait_s=10, poll_s=0.05)
    assert third.index == 1 and time.monotonic() - start >= 0.25
    with pytest.raises(SaeflowError, match="--resources gpu=N"):
        gpu_slots.claim_slot(["0", "1"], wait_s=0.2, poll_s=0.05)


def test_a_killed_job_frees_its_slot(workdir):
    holder = subprocess.Popen(
        [sys.executable, "-c", "from saeflow import gpu_slots\n"
         "slot = gpu_slots.claim_slot(['0'])\nprint(slot.index, flush=True)\ninput()"],
        cwd=workdir, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "0"
        with pytest.raises(SaeflowError, match="busy"):
            gpu_slots.claim_slot(["0"], wait_s=0)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert gpu_slots.claim_slot(["0"], wait_s=0).index == 0


def test_slots_map_to_the_listed_devices(workdir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    first = gpu_slots.claim_device()
    assert (first.index, first.device, os.environ["CUDA_VISIBLE_DEVICES"]) == (0, "3", "3")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # each job starts from the full list
    second = gpu_slots.claim_device()
    assert (second.index, second.device, os.environ["CUDA_VISIBLE_DEVICES"]) == (1, "5", "5")
    assert gpu_slots.shared_devices({"SAEFLOW_GPU_SLOTS": "2"}) == ["0", "1"]
    assert gpu_slots.shared_devices({"SAEFLOW_GPU_SLOTS": "1", "CUDA_VISIBLE_DEVICES": "3,5"}) == ["3"]
    with pytest.raises(SaeflowError, match="lists 2 devices"):
        gpu_slots.shared_devices({"SAEFLOW_GPU_SLOTS": "3", "CUDA_VISIBLE_DEVICES": "3,5"})
    with pytest.raises(SaeflowError, match="SAEFLOW_GPU_SLOTS='two'"):
        gpu_slots.shared_devices({"SAEFLOW_GPU_SLOTS": "two"})


@pytest.mark.parametrize("env", [{}, {"SAEFLOW_GPU_SLOTS": "0"}, {"SAEFLOW_GPU_SLOTS": "1"},
                                 {"CUDA_VISIBLE_DEVICES": ""}, {"CUDA_VISIBLE_DEVICES": "2"}])
def test_with_no_choice_of_device_nothing_is_claimed(workdir, monkeypatch, env):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    before = dict(os.environ)
    assert gpu_slots.claim_device() is None  # {}: this CPU machine, where torch counts no GPU
    assert dict(os.environ) == before and not (workdir / ".snakemake").exists()


def test_cuda_started_before_the_claim_is_an_error(workdir, monkeypatch):
    import torch

    monkeypatch.setenv("SAEFLOW_GPU_SLOTS", "2")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)  # what CUDA started early still sees
    with pytest.raises(SaeflowError, match="CUDA started"):
        gpu_slots.claim_device()
    assert gpu_slots.claim_slot(["0"], wait_s=0).index == 0  # and the slot was given back


JOB = '''
import json, os, time
from saeflow import jobs

def held_slots():
    """The slot files this process has open, read from outside gpu_slots."""
    slots = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if path.endswith(".lock"):
            slots.append(int(path.rsplit("slot-", 1)[1].split(".")[0]))
    return slots

def main():
    start = time.time()
    time.sleep(1.0)
    record = {"slots": held_slots(), "device": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": time.time()}
    with open(snakemake.output[0], "w") as out:
        json.dump(record, out)

jobs.run_job(snakemake.log[0], main, gpu=snakemake.resources.gpu)
'''

SNAKEFILE = '''
rule all:
    input: expand("done/{i}.json", i=range(4))

rule gpu_job:
    output: "done/{i}.json"
    log: "logs/{i}.log"
    resources: gpu=1
    script: "job.py"
'''


def test_snakemake_gives_concurrent_gpu_jobs_their_own_devices(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "job.py").write_text(JOB)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SAEFLOW_GPU_SLOTS": "2", "CUDA_VISIBLE_DEVICES": "3,5"}
    # Run from tmp_path, where no workflow profile of the repository applies.
    result = subprocess.run([sys.executable, "-m", "snakemake", "--resources", "gpu=2", "--cores", "4"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    runs = [json.loads(path.read_text()) for path in sorted((tmp_path / "done").glob("*.json"))]
    assert len(runs) == 4
    assert all(len(run["slots"]) == 1 for run in runs)
    assert all(run["device"] == {0: "3", 1: "5"}[run["slots"][0]] for run in runs)
    assert {run["slots"][0] for run in runs} == {0, 1}
    for a in runs:
        running = [b for b in runs if b["start"] <= a["start"] < b["end"]]  # a included
        assert len(running) <= 2
        overlapping = [b for b in runs if b is not a and b["start"] < a["end"] and a["start"] < b["end"]]
        assert all(b["slots"] != a["slots"] for b in overlapping)
    assert "gpu slot" in (tmp_path / "logs" / "0.log").read_text()
