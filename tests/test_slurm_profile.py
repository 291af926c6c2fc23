"""profiles/slurm through the real SLURM executor plugin: against stand-in SLURM commands
(tests/slurm_standin, which run each job on this machine), beside a local run of the same config;
a dry run of the profile as a user starts it; and `snakemake --lint`."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from workflow_runner import REPO, STEERING, TRAINING, run_snakemake, tiny_config, write_corpus

PROFILE = REPO / "profiles" / "slurm"
STANDIN = Path(__file__).parent / "slurm_standin"
# The plugin first polls 40 s after a submission; a stand-in job takes seconds. The "cluster" runs
# two GPU jobs at once (run_snakemake's --cores 2 --resources gpu=1 are a local run's).
CLUSTER_ARGS = ("--slurm-init-seconds-before-status-checks", "1", "--seconds-between-status-checks", "1",
                "--latency-wait", "5", "--cores", "4", "--resources", "gpu=2", "--profile", str(PROFILE))


def gpu_rules() -> set[str]:
    """The rules of rules/*.smk that declare gpu=1."""
    text = "\n".join(re.sub(r"#.*", "", path.read_text()) for path in sorted((REPO / "rules").glob("*.smk")))
    parts = re.split(r"^\s*rule (\w+):", text, flags=re.M)
    return {rule for rule, body in zip(parts[1::2], parts[2::2]) if re.search(r"\bgpu=1\b", body)}


def jobs_shown(result) -> list[tuple[str, dict[str, str]]]:
    """(rule, resources) of each job a run or dry run lists; a local job's rule is 'local:<rule>'."""
    blocks = re.findall(r"^(local)?rule (\w+):\n((?:    .*\n)*)", result.stdout + result.stderr, flags=re.M)
    jobs = []
    for local, rule, body in blocks:
        listed = re.search(r"resources: (.*)", body)
        resources = dict(item.split("=", 1) for item in listed.group(1).split(", ")) if listed else {}
        jobs.append((f"local:{rule}" if local else rule, resources))
    return jobs


def submissions(state: Path) -> list[dict]:
    """Each sbatch call the stand-in saw: its rule (from the plugin's --comment), options and job id."""
    calls = []
    for line in (state / "sbatch.jsonl").read_text().splitlines():
        call = json.loads(line)
        comment = call["argv"][call["argv"].index("--comment") + 1]
        rule = comment.removeprefix("rule_").split("_wildcards_")[0]
        options = [arg for arg in call["argv"] if not arg.startswith("--wrap")]
        calls.append({"rule": rule, "comment": comment, "options": options, "jobid": call["jobid"]})
    return calls


def artifacts(workdir: Path) -> dict[str, bytes]:
    """Every file a run wrote under results/, but its logs and benchmarks (which carry times)."""
    results = workdir / "results"
    return {str(path.relative_to(results)): path.read_bytes() for path in sorted(results.rglob("*"))
            if path.is_file() and path.relative_to(results).parts[0] not in ("logs", "benchmarks")}


def test_a_run_through_the_slurm_plugin_submits_every_job_and_matches_a_local_run(tiny_lm, tmp_path, monkeypatch):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    # corpus (CPU), plan (local), capture (GPU, one job per chunk), hook mean (CPU): both kinds, in seconds
    target = "results/activations/layer-1/mean.safetensors"
    config = tiny_config(tiny_lm, write_corpus(tmp_path / "corpus"),
                         saes={"tiny": {"layer": 1, "k": 4, "expansion": 2, **TRAINING}})
    state = tmp_path / "slurm"
    state.mkdir()
    monkeypatch.setenv("PATH", f"{STANDIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("STANDIN_SLURM_STATE", str(state))
    monkeypatch.setenv("STANDIN_SLURM_OOM", "capture_activations")  # its first job is killed, as if out of memory
    # The local run calls no SLURM command; it runs while the plugin sleeps between polls.
    with ThreadPoolExecutor(1) as pool:
        local_run = pool.submit(run_snakemake, tmp_path / "local", config, "-p", target)
        cluster = run_snakemake(tmp_path / "cluster", config, *CLUSTER_ARGS, target)
        local = local_run.result()
    assert local.returncode == 0, local.stderr[-3000:]
    assert cluster.returncode == 0, cluster.stderr[-5000:]

    # Every job the cluster run shows was submitted, and its jobs are the local run's, plus the retry.
    calls = submissions(state)
    shown = Counter(rule for rule, _ in jobs_shown(cluster))
    assert Counter(call["rule"] for call in calls) == Counter({r: n for r, n in shown.items() if ":" not in r})
    ran = Counter(rule.removeprefix("local:") for rule in shown.elements())
    assert ran == Counter(rule.removeprefix("local:") for rule, _ in jobs_shown(local)) + Counter(["capture_activations"])
    records = [json.loads(path.read_text()) for path in (state / "jobs").glob("*.json")]
    finals = {job["raw"]: job["state"] for job in records}
    assert Counter(finals.values()) == Counter({"COMPLETED": len(calls) - 1, "OUT_OF_MEMORY": 1})

    # GPU rules ask for a GPU on the GPU partition, in sbatch and in the job's srun step; CPU rules don't.
    gpus = gpu_rules()
    assert {"capture_activations", "train_sae", "evaluate_sae"} <= gpus and "capture_activations" in shown
    for call in calls:
        on_gpu = call["rule"] in gpus
        assert any(arg.startswith(("--gpus", "--gres")) for arg in call["options"]) == on_gpu, call
        assert call["options"][call["options"].index("-p") + 1] == ("gpu" if on_gpu else "cpu"), call
    steps = [json.loads(line) for line in (state / "srun.jsonl").read_text().splitlines()]
    assert sorted(int(step["job"]) for step in steps) == sorted(j for j, s in finals.items() if s == "COMPLETED")
    assert {int(step["job"]) for step in steps if "--gpus=1" in step["argv"]} == {
        call["jobid"] for call in calls if call["rule"] in gpus and finals[call["jobid"]] == "COMPLETED"}

    # The retry of the killed chunk asked for twice the memory and time.
    (killed,) = [call["comment"] for call in calls if finals[call["jobid"]] == "OUT_OF_MEMORY"]
    tries = [call["options"] for call in calls if call["comment"] == killed]
    assert [(o[o.index("--mem") + 1], o[o.index("-t") + 1]) for o in tries] == [("8000", "120"), ("16000", "240")]

    # Same bytes as the local run: tokens, plan, activation chunks, their mean.
    local_artifacts, cluster_artifacts = artifacts(tmp_path / "local"), artifacts(tmp_path / "cluster")
    assert "activations/layer-1/mean.safetensors" in local_artifacts
    assert cluster_artifacts.keys() == local_artifacts.keys()
    assert [name for name in local_artifacts if cluster_artifacts[name] != local_artifacts[name]] == []


def test_the_slurm_profile_holds_beside_the_default_profile(tiny_lm, tmp_path):
    """`--profile profiles/slurm` also loads profiles/default (the workflow profile: a top-level key
    set in both takes its value from there). Every job still gets its partition, the GPU rules the
    GPU one, and at attempt 1 each rule's own memory and time, as a local plan shows them."""
    pytest.importorskip("snakemake_executor_plugin_slurm")
    config = tiny_config(tiny_lm, write_corpus(tmp_path / "corpus"))
    config["steering"] = STEERING[:1]  # so that steer, a GPU rule, is planned too
    slurm = run_snakemake(tmp_path / "work", config, "--profile", str(PROFILE), "-n")
    local = run_snakemake(tmp_path / "work", config, "-n")
    assert slurm.returncode == 0, slurm.stderr[-3000:]
    assert local.returncode == 0, local.stderr[-3000:]
    assert re.search(r"workflow specific profile \S*profiles/default", slurm.stderr)
    planned, local_plan = ({rule.removeprefix("local:"): resources for rule, resources in jobs_shown(result)}
                           for result in (slurm, local))
    assert planned.keys() == local_plan.keys()
    assert gpu_rules() <= planned.keys(), "plan every gpu=1 rule here, so that its partition is checked"
    for rule, resources in planned.items():
        if rule != "all":
            assert resources.get("slurm_partition") == ("gpu" if resources.get("gpu") == "1" else "cpu"), rule
            same = [resources[name] == local_plan[rule][name] for name in ("mem_mb", "runtime")]
            assert same == [True, True], (rule, resources, local_plan[rule])


def test_lint_is_quiet():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
