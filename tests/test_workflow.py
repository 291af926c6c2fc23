"""End to end: the real Snakefile on a tiny causal LM and a tiny corpus, in a temporary folder."""

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from dashboard.chromium import Watched, launch, needs_chromium
from dashboard.decode import assert_shown_acts
from dashboard.test_browser import SHOWN_EXAMPLES
from saeflow.storage import read_safetensors
from workflow_runner import DOCS, TRAINING, planned_jobs, run_snakemake, tiny_config, write_corpus

def test_run_builds_corpus_chunks_and_mean(finished_run):
    workdir, _ = finished_run
    results = workdir / "results"
    tokens = pq.read_table(results / "corpus/tokens.parquet")
    plan = json.loads((results / "activations/chunks.json").read_text())["chunks"]
    assert len(plan) > 1
    rows = []
    for chunk in plan:
        group = zarr.open_group(str(results / f"activations/layer-1/{chunk['id']}.zarr"), mode="r")
        assert group.attrs["token_start"] == chunk["token_start"]
        rows.append(group["acts"][:].astype(np.float64))
    rows = np.concatenate(rows)
    assert len(rows) == tokens.num_rows
    mean = read_safetensors(results / "activations/layer-1/mean.safetensors")["mean"]
    np.testing.assert_allclose(mean, rows.mean(axis=0), rtol=1e-6, atol=1e-7)
    assert (results / "logs/corpus.log").read_text().count("4 documents") == 1
    assert (results / "benchmarks/corpus.tsv").exists()


def test_second_run_has_nothing_to_do(finished_run, tiny_lm):
    workdir, config = finished_run
    result = run_snakemake(workdir, config, "-n")
    assert result.returncode == 0 and "Nothing to be done" in result.stdout + result.stderr


def test_a_fresh_dry_run_lists_every_job_of_the_run(tiny_lm, tmp_path):
    """No checkpoint: before anything exists, -n shows every per-chunk and per-shard job."""
    source = write_corpus(tmp_path / "corpus")
    config = tiny_config(tiny_lm, source, activations__tokens_per_chunk=60)
    n_bytes = sum(len(text.encode()) for text in DOCS.values())
    n_chunks = -(-n_bytes // 4 // 60)  # the planned count: 4 bytes per token
    result = run_snakemake(tmp_path / "work", config, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_jobs(result) == {
        "corpus": 1, "split_documents": 1, "plan_chunks": 1, "capture_activations": n_chunks, "hook_mean": 2,
        "train_sae": 2, "evaluate_sae": 2, "gather_metrics": 1, "encode_features": 2 * n_chunks,
        "transpose_features": 2, "unembedding": 1, "analyse_feature_shard": 8, "influence_shard": 8,
        "neighbour_shard": 8, "gather_table": 2 * 7, "gather_neighbours": 2, "analysis_params": 2, "training_curves": 2, "unit_map": 2,
        "filter_units": 2 * n_chunks, "thresholds": 2, "document_vectors": 2, "ablation": 2, "dashboard": 1,
        "all": 1,
    }
    run = run_snakemake(tmp_path / "work", config, "-p", "results/activations/chunks.json")
    assert run.returncode == 0, run.stderr[-2000:]
    plan = json.loads((tmp_path / "work/results/activations/chunks.json").read_text())["chunks"]
    assert [chunk["id"] for chunk in plan] == [f"chunk-{i:04d}" for i in range(n_chunks)]


def test_a_dry_run_plans_a_thousand_chunks_and_64_shards(tiny_lm, tmp_path):
    """At scale the plan is still complete: 1,000 chunks (sized from a 512 KB corpus) and 64
    feature shards give every per-chunk and per-shard job (the time it takes is in the note)."""
    corpus = tmp_path / "big.txt"
    corpus.write_text("word " * (4 * 128 * 1000 // 5))
    config = tiny_config(tiny_lm, str(corpus), activations__tokens_per_chunk=128,
                         saes={"s": {"layer": 1, "k": 4, "d_sae": 64}})
    config["analysis"] = {"feature_shards": 64}
    result = run_snakemake(tmp_path / "work", config, "-n", "--quiet", "rules")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result)
    assert {rule: jobs[rule] for rule in ("capture_activations", "encode_features", "filter_units")} == {
        "capture_activations": 1000, "encode_features": 1000, "filter_units": 1000}
    assert {rule: jobs[rule] for rule in ("analyse_feature_shard", "influence_shard", "neighbour_shard")} == {
        "analyse_feature_shard": 64, "influence_shard": 64, "neighbour_shard": 64}


def test_changing_the_neighbour_count_plans_only_the_neighbour_jobs_and_the_dashboard(finished_run):
    workdir, config = finished_run
    changed = dict(config, analysis={**config["analysis"], "neighbours": 2})
    result = run_snakemake(workdir, changed, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_jobs(result) == {"neighbour_shard": 4, "gather_neighbours": 2, "analysis_params": 2,
                                    "dashboard": 1, "all": 1}


def test_changing_one_saes_k_plans_that_saes_chain_only(finished_run):
    workdir, config = finished_run
    n_chunks = len(json.loads((workdir / "results/activations/chunks.json").read_text())["chunks"])
    changed = dict(config, saes={**config["saes"], "tiny": {**config["saes"]["tiny"], "k": 3}})
    result = run_snakemake(workdir, changed, "-n")
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_jobs(result) == {
        "train_sae": 1, "evaluate_sae": 1, "gather_metrics": 1, "encode_features": n_chunks, "transpose_features": 1,
        "analyse_feature_shard": 2, "influence_shard": 2, "neighbour_shard": 2, "gather_table": 7,
        "gather_neighbours": 1, "analysis_params": 1, "unit_map": 1, "filter_units": n_chunks, "thresholds": 1,
        "detection": 1, "concepts": 1, "label_alignment": 1, "training_curves": 1, "ablation": 1, "steer": 1, "dashboard": 1, "all": 1,
    }
    outputs = [line.strip() for line in result.stdout.splitlines() if line.strip().startswith("output:")]
    assert outputs and not [line for line in outputs if "results/saes/wide/" in line]


def test_a_new_split_reruns_what_the_split_feeds_and_nothing_before_it(finished_run):
    workdir, config = finished_run
    jobs = planned_jobs(run_snakemake(workdir, dict(config, concepts={"seed": 7}), "-n"))
    assert jobs["split_documents"] == 1 and jobs["thresholds"] == jobs["concepts"] == jobs["dense_detection"] == 2
    assert not {"corpus", "capture_activations", "train_sae", "evaluate_sae", "encode_features",
                "transpose_features", "hook_mean"} & set(jobs)


def test_snakemakes_report_holds_the_metrics_the_training_curves_and_the_dashboard(finished_run, tmp_path):
    workdir, config = finished_run
    result = run_snakemake(workdir, config, "--report", str(tmp_path / "report.html"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = (tmp_path / "report.html").read_text()
    for entry in ("metrics.tsv", "training_curves.svg", "dashboard.html", "Metrics", "Training", "Dashboard"):
        assert entry in report, entry


def test_a_new_sae_on_a_captured_hook_plans_no_capture(finished_run):
    workdir, config = finished_run
    n_chunks = len(json.loads((workdir / "results/activations/chunks.json").read_text())["chunks"])
    more = dict(config, saes={**config["saes"], "extra": {"layer": 2, "k": 2, "expansion": 1, **TRAINING}})
    jobs = planned_jobs(run_snakemake(workdir, more, "-n"))
    assert "capture_activations" not in jobs and "hook_mean" not in jobs
    assert jobs["train_sae"] == 1 and jobs["encode_features"] == n_chunks


def test_the_dashboard_target_rebuilds_the_artifacts_it_does_not_read(finished_run, tmp_path):
    workdir, config = finished_run
    copy = tmp_path / "run"
    shutil.copytree(workdir, copy)  # keeps mtimes, so only what is deleted below is missing
    results = copy / "results"
    (results / "saes/metrics.parquet").unlink()
    (results / "activations/layer-1/mean.safetensors").unlink()
    shutil.rmtree(results / "saes/tiny/units/filtered/chunk-0000.zarr")
    (results / "dashboard.html").unlink()  # else Snakemake takes the missing inputs as cleaned-up intermediates
    result = run_snakemake(copy, config, "-n", "results/dashboard.html")
    assert result.returncode == 0, result.stderr[-2000:]
    assert planned_jobs(result) == {"gather_metrics": 1, "hook_mean": 1, "filter_units": 1, "dashboard": 1}


def test_auto_interp_jobs_exist_only_when_configured(finished_run):
    workdir, config = finished_run
    off = run_snakemake(workdir, config, "-n", "results/saes/tiny/analysis/autointerp_prompts.jsonl")
    assert off.returncode != 0 and "autointerp_prompts.jsonl" in off.stdout + off.stderr  # no rule makes it
    prompts = planned_jobs(run_snakemake(workdir, dict(config, autointerp={"enabled": True}), "-n"))
    assert prompts["autointerp_prompts"] == 2 and "autointerp_labels" not in prompts
    served = dict(config, autointerp={"enabled": True, "endpoint": "http://127.0.0.1:9/v1", "model": "m"})
    labels = planned_jobs(run_snakemake(workdir, served, "-n"))
    assert labels["autointerp_prompts"] == 2 and labels["autointerp_labels"] == 2


def test_sweep_trains_each_sae_and_gathers_their_metrics(finished_run):
    workdir, _ = finished_run
    saes = workdir / "results/saes"
    metrics = pq.read_table(saes / "metrics.parquet").to_pylist()
    assert [(m["name"], m["hook"], m["d_sae"], m["k"]) for m in metrics] == [("tiny", "layer-1", 64, 4),
                                                                            ("wide", "layer-2", 96, 8)]
    n_chunks = len(json.loads((workdir / "results/activations/chunks.json").read_text())["chunks"])
    for row in metrics:
        evaluation = json.loads((saes / row["name"] / "eval.json").read_text())
        assert {k: row[k] for k in evaluation} == evaluation
        assert {"fvu", "l0", "dead_fraction", "ce_clean", "ce_spliced", "ce_zero", "ce_recovered"} <= set(evaluation)
        assert len(pq.read_table(saes / row["name"] / "training_log.parquet")) == 4
        assert len(list((saes / row["name"] / "features").glob("chunk-*.zarr"))) == n_chunks
        by_feature = zarr.open_group(str(saes / row["name"] / "features/by_feature.zarr"), mode="r")
        assert by_feature.attrs["n_features"] == row["d_sae"]


BAD_INPUTS = {
    "missing corpus path": ({"corpus__source": "{tmp}/absent/*.txt"}, "corpus.source: no file matches"),
    "unknown config key": ({"model__contxt_len": 16}, "unknown config key model.contxt_len"),
    "wrong type": ({"model__batch_size": "many"}, "config key model.batch_size: 'many' is not of type 'integer'"),
    "context_len <= 0": ({"model__context_len": 0}, "config key model.context_len: 0 is less than the minimum"),
    "model path missing": ({"model__path": "{tmp}/no-model"}, "model.path: {tmp}/no-model is not a Hugging Face model directory"),
    "layer out of range": ({"layer": 7}, "saes.tiny.layer: hidden_states.7 is out of range"),
    "k >= d_sae": ({"saes": {"s": {"layer": 1, "k": 64, "expansion": 2}}}, "saes.s.k: k=64 must be smaller than d_sae=64"),
    "k <= 0": ({"saes": {"s": {"layer": 1, "k": 0}}}, "config key saes.s.k: 0 is less than the minimum of 1"),
    "expansion < 1": ({"saes": {"s": {"layer": 1, "k": 2, "expansion": 0.5}}}, "config key saes.s.expansion: 0.5 is less than the minimum of 1"),
    "non-UTF-8 file": ({"docs": {"a.txt": "ok", "l.txt": "caf\u00e9".encode("latin-1")}}, "l.txt: not valid UTF-8"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_fails_with_one_clear_message_and_no_output(case, tiny_lm, tmp_path):
    overrides, message = BAD_INPUTS[case]
    overrides = {k: v.format(tmp=tmp_path) if isinstance(v, str) else v for k, v in overrides.items()}
    source = write_corpus(tmp_path / "corpus", overrides.pop("docs", DOCS))
    config = tiny_config(tiny_lm, source, layer=overrides.pop("layer", 1), saes=overrides.pop("saes", None), **overrides)
    result = run_snakemake(tmp_path / "work", config)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert message.format(tmp=tmp_path) in output
    assert "Traceback" not in output
    # W_U comes from the model alone: its job may finish, whole and right, beside the failing one.
    # (Benchmarks are timing records, not artifacts.)
    leftovers = [p for p in (tmp_path / "work").rglob("*") if p.is_file() and "results/logs" not in str(p)
                 and "results/benchmarks" not in str(p) and ".snakemake" not in str(p)
                 and p.name not in ("config.yaml", "unembedding.safetensors")]
    assert leftovers == []


def test_analysis_and_unit_artifacts_cover_every_feature(finished_run):
    workdir, _ = finished_run
    sae = workdir / "results/saes/tiny"
    analysis = {name: pq.read_table(sae / f"analysis/{name}.parquet").to_pylist()
                for name in ("feature_stats", "histograms", "top_examples", "quantile_examples", "labels",
                             "influences", "neighbours", "detection")}
    assert [r["feature"] for r in analysis["feature_stats"]] == list(range(64))
    assert [sum(h["counts"]) for h in analysis["histograms"]] == [r["n_active"] for r in analysis["feature_stats"]]
    live = {r["feature"] for r in analysis["feature_stats"] if r["n_active"]}
    assert {r["feature"] for r in analysis["top_examples"]} == live == {r["feature"] for r in analysis["labels"]}
    assert all(r["rank"] < 3 and len(r["tokens"]) == len(r["acts"]) <= 5 for r in analysis["top_examples"])
    assert len(analysis["influences"]) == 64 * 2 * 4
    assert {r["kind"] for r in analysis["neighbours"]} == {"cosine", "coactivation"}
    unit_map = json.loads((sae / "units/unit_map.json").read_text())
    # Pruned on the calibration split's statistics: the units that fire there.
    calibration = pq.read_table(sae / "analysis/calibration_stats.parquet").to_pylist()
    assert unit_map["kept_units"] == [r["feature"] for r in calibration if r["n_active"]]
    assert set(unit_map["kept_units"]) <= live and unit_map["n_original"] == 64
    assert [r["unit"] for r in pq.read_table(sae / "units/thresholds.parquet").to_pylist()] == unit_map["kept_units"]
    labels = {level: {r["label"] for r in analysis["detection"] if r["level"] == level} for level in ("document", "token")}
    assert labels == {"document": {"animal", "ml", "tools", "web"}, "token": {"<b>tag</b>", "animal", "tool"}}
    assert len(analysis["detection"]) == (4 + 3) * 2 * unit_map["n_filtered"]
    assert len(list((sae / "units/filtered").glob("chunk-*.zarr"))) == len(list((sae / "features").glob("chunk-*.zarr")))
    params = json.loads((sae / "analysis/params.json").read_text())
    assert params["top_k"] == 3 and params["context"] == 2


def test_saelens_loads_the_runs_sae(finished_run):
    """SAELens' own loader opens results/saes/<name>/; its encode/decode equal a numpy oracle on
    the held-out rows (runs where sae_lens is installed: CI installs requirements-test.txt)."""
    pytest.importorskip("sae_lens")
    from test_saelens_interop import assert_saelens_matches

    workdir, _ = finished_run
    results = workdir / "results"
    last = json.loads((results / "activations/chunks.json").read_text())["chunks"][-1]
    rows = zarr.open_group(str(results / f"activations/layer-1/{last['id']}.zarr"), mode="r")["acts"][:]
    assert_saelens_matches(results / "saes/tiny", rows.astype(np.float32))
    # And ours equals theirs on the same rows: the same features and reconstruction.
    import sae_lens
    import torch

    from saeflow.sae import BatchTopKSAE

    theirs, (ours, _) = sae_lens.SAE.load_from_disk(results / "saes/tiny"), BatchTopKSAE.load(results / "saes/tiny")
    x = torch.from_numpy(rows.astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(ours.encode(x), theirs.encode(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(ours(x), theirs.decode(theirs.encode(x)), rtol=1e-4, atol=1e-4)


@needs_chromium()
def test_the_runs_dashboard_shows_its_examples_offline_and_as_text(finished_run):
    workdir, _ = finished_run
    results = workdir / "results"
    top = pq.read_table(results / "saes/tiny/analysis/top_examples.parquet").to_pylist()
    # The feature whose top examples show the most markup characters from the corpus.
    markup = {}
    for row in top:
        markup[row["feature"]] = markup.get(row["feature"], 0) + sum("<" in t for t in row["tokens"])
    feature = max(markup, key=markup.get)
    expected = sorted((r for r in top if r["feature"] == feature), key=lambda r: r["rank"])
    tokens = pq.read_table(results / "corpus/tokens.parquet").to_pydict()
    texts = pq.read_table(results / "corpus/documents.parquet").column("text").to_pylist()
    seq_start = np.searchsorted(tokens["seq"], np.arange(max(tokens["seq"]) + 1))
    with launch() as browser:
        page = Watched(browser, results / "dashboard.html").open(f"#sae=tiny&feature={feature}")
        page.page.wait_for_selector(".top-examples .ex")
        shown = page.page.evaluate(SHOWN_EXAMPLES, ".top-examples")
        assert len(shown) == len(expected)
        for got, row in zip(shown, expected):
            assert_shown_acts(got["acts"], row["acts"], row["activation"])
            # The strip is the document's text as written (no byte-level BPE "Ġ"), the BOS apart.
            first = seq_start[row["seq"]] + row["pos"] - int(np.argmax(row["acts"]))
            rows = range(first, first + len(row["tokens"]))
            assert got["special"] == [tokens["special"][i] for i in rows]
            content = [i for i in rows if not tokens["special"][i]]
            written = texts[tokens["doc"][content[0]]][tokens["start"][content[0]] : tokens["end"][content[-1]]]
            assert "".join(piece for piece, special in zip(got["tokens"], got["special"]) if not special) == written
            assert "Ġ" not in got["text"]
        assert any("<" in got["text"] for got in shown)
        assert page.page.locator("#feature img, #feature script").count() == 0

        # Search by a label of the run (the list is in id order, so the smallest match shows first).
        labels = {r["feature"]: r["label"] for r in pq.read_table(results / "saes/tiny/analysis/labels.parquet").to_pylist()}
        other = next(f for f in sorted(labels) if f != feature)
        page.page.locator("#search").fill(labels[other])
        page.page.wait_for_function("f => document.querySelector('#list .row .row-id')?.textContent === f",
                                    arg=str(min(f for f, label in labels.items() if labels[other].lower() in label.lower())))
        assert other in page.list_ids()

        # Back and forward between two features of the run.
        page.go(f"#sae=tiny&feature={other}")
        page.wait_title(f"Feature {other}")
        page.page.go_back()
        page.wait_title(f"Feature {feature}")
        page.page.go_forward()
        page.wait_title(f"Feature {other}")
        page.check()  # no console error, no dialog, no request but the file itself
