"""End to end on other models and SAEs than the main run's: a tiny Llama with a LoRA adapter and
module hooks, and a pretrained SAE saved by SAELens."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import zarr

from workflow_runner import TRAINING, planned_jobs, run_snakemake, tiny_config, write_corpus


def test_module_and_lora_hooks_run_through_the_workflow(tmp_path):
    """hooks: a LoRA A·x list and an MLP output of a tiny Llama with an adapter: one capture job
    per chunk writes both, each SAE trains on its hook, and a bad path stops the plan first."""
    from tiny_models import build_lora_adapter, build_tiny_llama

    model = build_tiny_llama(tmp_path / "llama")
    adapter = build_lora_adapter(model, tmp_path / "lora")
    lora = ["model.layers.0.self_attn.q_proj.lora_A.default", "model.layers.0.self_attn.v_proj.lora_A.default"]
    config = tiny_config(model, write_corpus(tmp_path / "corpus"), saes={
        "ax": {"hook": "lora_ax", "k": 2, "d_sae": 16, **TRAINING},
        "mlp": {"hook": "mlp1", "k": 4, "expansion": 2, **TRAINING},
    })
    config["model"]["adapter"] = str(adapter)
    config["hooks"] = {"lora_ax": lora, "mlp1": "model.layers.1.mlp"}
    planned = planned_jobs(run_snakemake(tmp_path / "work", config, "-n", "results/saes/metrics.parquet"))
    assert planned["capture_activations"] >= 2 and planned["train_sae"] == 2  # one capture per chunk, both hooks
    result = run_snakemake(tmp_path / "work", config, "-p", "results/saes/metrics.parquet")
    assert result.returncode == 0, result.stderr[-3000:]
    results = tmp_path / "work/results"
    for hook, spec, width in [("lora_ax", lora, 8), ("mlp1", "model.layers.1.mlp", 32)]:
        group = zarr.open_group(str(results / f"activations/{hook}/chunk-0000.zarr"), mode="r")
        assert group.attrs["hook"] == spec and group["acts"].shape[1] == width
    metrics = {row["name"]: row for row in pq.read_table(results / "saes/metrics.parquet").to_pylist()}
    assert metrics["ax"]["hook"] == "lora_ax" and metrics["ax"]["ce_recovered"] is None  # a list: no splice
    assert metrics["mlp"]["d_sae"] == 64 and metrics["mlp"]["ce_recovered"] is not None

    bad = dict(config, hooks={**config["hooks"], "mlp1": "model.layer.1.mlp"})
    failed = run_snakemake(tmp_path / "bad", bad, "-n")
    message = failed.stdout + failed.stderr
    assert failed.returncode != 0 and "Traceback" not in message
    assert "hooks.mlp1: no module 'model.layer.1.mlp' in" in message and "did you mean model.layers.1.mlp" in message


def test_a_pretrained_saelens_sae_runs_through_the_workflow_untrained(tiny_lm, tmp_path):
    """saes.<name>.pretrained: a JumpReLU folder SAELens itself saved is imported (never trained),
    evaluated, stored and analysed; its stored features equal SAELens' own encoding of the run's
    activations."""
    import torch

    sae_lens = pytest.importorskip("sae_lens")
    from saeflow.storage import read_sparse_chunk

    theirs = sae_lens.SAE.from_dict(sae_lens.JumpReLUSAEConfig(d_in=32, d_sae=24).to_dict())
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in theirs.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3)
        theirs.threshold.copy_(torch.rand(24) * 0.2)
    theirs.save_model(tmp_path / "pretrained")
    config = tiny_config(tiny_lm, write_corpus(tmp_path / "corpus"),
                         saes={"pre": {"layer": 1, "pretrained": str(tmp_path / "pretrained")}})
    planned = planned_jobs(run_snakemake(tmp_path / "work", config, "-n"))
    assert planned["import_pretrained"] == 1 and "train_sae" not in planned
    # Import, eval, the feature store and one analysis (the rest reads the store as for any SAE).
    result = run_snakemake(tmp_path / "work", config, "-p", "results/saes/metrics.parquet",
                           "results/saes/pre/analysis/feature_stats.parquet")
    assert result.returncode == 0, result.stderr[-3000:]
    results = tmp_path / "work/results"
    assert len(pq.read_table(results / "saes/pre/analysis/feature_stats.parquet")) == 24
    cfg = json.loads((results / "saes/pre/cfg.json").read_text())
    assert (cfg["trained_as"], cfg["d_sae"], cfg["k"]) == ("pretrained", 24, None)
    assert "fvu" in json.loads((results / "saes/pre/eval.json").read_text())
    for chunk in sorted((results / "activations/layer-1").glob("chunk-*.zarr")):
        acts = torch.from_numpy(zarr.open_group(str(chunk), mode="r")["acts"][:].astype(np.float32))
        with torch.no_grad():
            expected = theirs.encode(acts).numpy()
        stored = read_sparse_chunk(results / "saes/pre/features" / chunk.name)
        dense = np.zeros_like(expected)
        rows = np.repeat(np.arange(len(expected)), np.diff(stored.indptr))
        dense[rows, stored.indices] = stored.values
        np.testing.assert_allclose(dense, expected, rtol=1e-5, atol=1e-5)

    wrong = dict(config, saes={"pre": {"layer": 1, "pretrained": str(tmp_path / "pretrained")}},
                 model={**config["model"], "path": str(tiny_lm)})
    wrong["saes"]["pre"]["pretrained"] = str(tmp_path / "nowhere")
    failed = run_snakemake(tmp_path / "bad", wrong, "-n")
    assert failed.returncode != 0 and "saes.pre.pretrained:" in failed.stdout + failed.stderr
    assert "Traceback" not in failed.stdout + failed.stderr
