"""The presets for the seeds' sizes plan completely with -n (README "Presets")."""

import yaml

from workflow_runner import REPO, planned_jobs, run_snakemake


def preset(name):
    return yaml.safe_load((REPO / "presets" / name).read_text())


def test_the_full_preset_plans_eight_chunks_of_the_builtin_corpus(tmp_path):
    result = run_snakemake(tmp_path, preset("full.yaml"), "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result)
    assert (jobs["capture_activations"], jobs["encode_features"], jobs["analyse_feature_shard"]) == (8, 8, 2)


def test_the_ultra_preset_plans_hundreds_of_chunks(tmp_path):
    corpus = tmp_path / "corpus.txt"
    with open(corpus, "wb") as handle:  # only its size is read while planning: a sparse 200 MB file
        handle.truncate(200_000_000)
    config = preset("ultra.yaml")
    config["corpus"]["source"] = str(corpus)
    result = run_snakemake(tmp_path / "work", config, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result)
    n_chunks = -(-200_000_000 // 4 // 131072)
    assert jobs["capture_activations"] == jobs["encode_features"] == jobs["filter_units"] == n_chunks == 382
    assert jobs["analyse_feature_shard"] == 64 and sum(jobs.values()) > 1200
