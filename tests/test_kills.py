"""Kills, determinism and the lock: the shared run's config again in a second folder, every rule's
first job killed by SIGKILL mid-write (saeflow/faults.py) and Snakemake itself killed once; the
reruns must finish with every artifact byte-identical to the uninterrupted run's."""

import json
import os
import re
import signal
import subprocess
import time
from types import SimpleNamespace

import numpy as np

from saeflow import faults, model_source
from tiny_models import build_byte_bpe_tokenizer
from workflow_runner import run_snakemake, snakemake_command, tiny_config, write_corpus

# Seconds-long bookkeeping rules, spared (their markers written beforehand): each kill adds a
# Snakemake start to the chain, and the issue asks for the long rules.
SHORT_RULES = {"corpus", "split_documents", "plan_chunks", "hook_mean", "unembedding", "analysis_params",
               "gather_metrics", "training_curves"}
# Logs and benchmarks hold times, process ids and the kills themselves; they are not artifacts.
NOT_COMPARED = {"logs", "benchmarks"}
KILLED = re.compile(r"non-zero exit status 137|died with <Signals.SIGKILL: 9>")
MAX_INVOCATIONS = 25


def start_snakemake(workdir, config, env, log, *args):
    """A snakemake in a process group of its own, so that killing the group kills its jobs too; its
    output goes to `log` (a pipe nobody reads while it runs could fill and stall it)."""
    with open(log, "w") as out:
        return subprocess.Popen(snakemake_command(workdir, config, *args), env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_for_files(folder, process, log, timeout_s=120):
    """Until `folder` holds a file, while `process` (writing `log`) runs."""
    deadline = time.monotonic() + timeout_s
    while not (folder.is_dir() and any(folder.iterdir())):
        assert process.poll() is None, f"ended before anything appeared in {folder}: {log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"nothing appeared in {folder}"
        time.sleep(0.05)


def failed_jobs(stderr):
    """(rule, outputs) of each 'Error in rule' block of a Snakemake log."""
    jobs = []
    for block in stderr.split("Error in rule ")[1:]:
        rule = block.split(":", 1)[0]
        outputs = re.search(r"^\s+output: (.*)$", block, re.MULTILINE)
        jobs.append((rule, outputs.group(1).split(", ") if outputs else []))
    return jobs


def kill_targets(markers):
    """{rule: the artifact its job was publishing when it died}; an empty marker spares its rule."""
    return dict(line.split("\t") for marker in markers.iterdir() for line in marker.read_text().splitlines())


def planned_rules(log):
    """The rules of the 'Job stats' table a fresh run's log starts with."""
    table = log.split("Job stats:", 1)[1].split("\n\n", 1)[0]
    return {match.group(1) for match in re.finditer(r"^(\w+)\s+\d+$", table, re.MULTILINE)} - {"all", "total"}


def assert_only_kills_failed(result, workdir, markers):
    """Every failed job is one the fault injection killed mid-write (its temporary sibling left
    behind), and none of its outputs was published."""
    jobs = failed_jobs(result.stderr)
    assert jobs, result.stderr[-3000:]
    assert len(KILLED.findall(result.stderr)) == len(jobs), result.stderr[-3000:]
    targets = kill_targets(markers)
    assert {rule for rule, _ in jobs} <= set(targets)
    for rule, _ in jobs:
        target = workdir / targets[rule]
        assert list(target.parent.glob(f".{target.name}.tmp-*")), f"{rule} died before writing {target}"
    published = [path for _, outputs in jobs for path in outputs if (workdir / path).exists()]
    assert not published, f"a killed job's output exists: {published}"


def assert_refused_by_the_lock(result):
    assert result.returncode != 0
    assert "cannot be locked" in result.stderr and "--unlock" in result.stderr, result.stderr[-2000:]


def result_files(workdir):
    results = workdir / "results"
    return {path.relative_to(results): path for path in results.rglob("*")
            if path.is_file() and path.relative_to(results).parts[0] not in NOT_COMPARED
            and path.name != ".snakemake_timestamp"}  # Snakemake's own mark in directory outputs


def assert_same_files(expected_dir, actual_dir):
    expected, actual = result_files(expected_dir), result_files(actual_dir)
    assert sorted(actual) == sorted(expected)
    differing = [name for name, path in expected.items() if path.read_bytes() != actual[name].read_bytes()]
    assert not differing, f"differ from the uninterrupted run: {differing}"
    return sorted(expected)


def test_killed_jobs_and_a_killed_snakemake_resume_to_the_uninterrupted_runs_bytes(finished_run, tmp_path):
    finished, config = finished_run
    workdir, markers = tmp_path / "killed", tmp_path / "markers"
    markers.mkdir()
    for rule in SHORT_RULES:
        faults.marker_path(markers, rule).touch()
    env = {**os.environ, faults.KILL_ONCE_VARIABLE: str(markers)}

    # A second snakemake while the first runs is refused by the lock.
    first_log, crashed_log = tmp_path / "first.log", tmp_path / "crashed.log"
    first = start_snakemake(workdir, config, env, first_log, "--keep-going")
    wait_for_files(workdir / ".snakemake/locks", first, first_log)
    assert_refused_by_the_lock(run_snakemake(workdir, config, env=env))
    first_run = SimpleNamespace(returncode=first.wait(timeout=900), stderr=first_log.read_text())
    assert first_run.returncode != 0
    assert_only_kills_failed(first_run, workdir, markers)
    long_rules = planned_rules(first_run.stderr) - SHORT_RULES

    # Snakemake killed with its jobs (a crash) leaves its lock: refused until --unlock.
    crashed = start_snakemake(workdir, config, env, crashed_log, "--keep-going")
    wait_for_files(workdir / ".snakemake/locks", crashed, crashed_log)
    wait_for_files(workdir / ".snakemake/incomplete", crashed, crashed_log)  # a job is running
    os.killpg(crashed.pid, signal.SIGKILL)
    crashed.wait()
    assert_refused_by_the_lock(run_snakemake(workdir, config, env=env))
    assert run_snakemake(workdir, config, "--unlock", env=env).returncode == 0

    invocations = 5  # the two above, the refused one, the stale-lock one and --unlock
    while (result := run_snakemake(workdir, config, "--keep-going", env=env)).returncode != 0:
        assert_only_kills_failed(result, workdir, markers)
        invocations += 1
        assert invocations < MAX_INVOCATIONS, "the reruns do not converge"
    invocations += 1

    assert long_rules <= set(kill_targets(markers)), f"never killed: {long_rules - set(kill_targets(markers))}"
    assert not [path for path in (workdir / "results").rglob("*") if ".tmp-" in path.name]
    compared = assert_same_files(finished, workdir)
    print(f"{invocations} snakemake invocations; killed {sorted(long_rules)}; compared {len(compared)} files:",
          *compared, sep="\n  ")


def write_tiny_gguf(path, n_layer=2, hidden=16, heads=2, seed=0):
    """A float32 Llama GGUF with random weights and the tests' byte-level BPE tokenizer."""
    import gguf

    tokenizer = build_byte_bpe_tokenizer(path.parent / "tokenizer")
    vocab = sorted(tokenizer.get_vocab(), key=tokenizer.get_vocab().get)
    merges = [merge if isinstance(merge, str) else " ".join(merge)
              for merge in json.loads(tokenizer.backend_tokenizer.to_str())["model"]["merges"]]
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(64)
    writer.add_embedding_length(hidden)
    writer.add_block_count(n_layer)
    writer.add_feed_forward_length(2 * hidden)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(hidden // heads)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(vocab)
    writer.add_token_types([gguf.TokenType.NORMAL] * len(vocab))
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.bos_token_id)
    rng = np.random.default_rng(seed)
    shapes = {"token_embd.weight": (len(vocab), hidden), "output_norm.weight": (hidden,),
              "output.weight": (len(vocab), hidden)}
    for block in range(n_layer):
        shapes |= {f"blk.{block}.{name}.weight": shape for name, shape in [
            ("attn_norm", (hidden,)), ("attn_q", (hidden, hidden)), ("attn_k", (hidden, hidden)),
            ("attn_v", (hidden, hidden)), ("attn_output", (hidden, hidden)), ("ffn_norm", (hidden,)),
            ("ffn_gate", (2 * hidden, hidden)), ("ffn_up", (2 * hidden, hidden)), ("ffn_down", (hidden, 2 * hidden))]}
    for name, shape in shapes.items():
        writer.add_tensor(name, rng.normal(0, 0.1, shape).astype(np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_a_killed_model_conversion_reruns_to_the_uninterrupted_conversion(tmp_path):
    """The GGUF weights' conversion, killed and rerun, against a conversion run in this process.
    (The tokenizer's conversion, a short job, is left out: it would double this test's time.)"""
    gguf_path = write_tiny_gguf(tmp_path / "tiny.gguf")
    config = tiny_config(gguf_path, write_corpus(tmp_path / "corpus"))
    workdir, markers = tmp_path / "work", tmp_path / "markers"
    markers.mkdir()
    env = {**os.environ, faults.KILL_ONCE_VARIABLE: str(markers)}
    killed = run_snakemake(workdir, config, "-p", "results/model", env=env)
    assert killed.returncode != 0
    assert_only_kills_failed(killed, workdir, markers)
    assert set(kill_targets(markers)) == {"convert_model"}
    rerun = run_snakemake(workdir, config, "-p", "results/model", env=env)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    model_source.convert_gguf(gguf_path, tmp_path / "direct/results/model")
    assert not list((workdir / "results").glob(".*.tmp-*"))
    assert_same_files(tmp_path / "direct", workdir)
