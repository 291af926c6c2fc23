"""Run the real Snakefile in a temporary working directory, as a user would, on a tiny corpus and
config that the end-to-end tests share."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake_command(workdir: Path, config: dict, *args: str) -> list[str]:
    """The `snakemake` command line on the repository's Snakefile, with `config` written as the
    working directory's config.yaml."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    return [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
            "--cores", "2", "--resources", "gpu=1", *args]


def run_snakemake(workdir: Path, config: dict, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`snakemake` on `config` in `workdir`; `env` replaces the environment of it and its jobs."""
    command = snakemake_command(workdir, config, *args)
    return subprocess.run(command, capture_output=True, text=True, timeout=900, env=env)


def planned_jobs(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Job counts per rule from a dry run's 'Job stats' table ({} when nothing is to be done)."""
    counts = {}
    table = result.stdout.split("Job stats:")[-1] if "Job stats:" in result.stdout else ""
    for line in table.splitlines():
        match = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts


DOCS = {
    "a.txt": "The quick brown fox jumps over the lazy dog. " * 6,
    "b.txt": "Sparse autoencoders find interpretable features in transformer activations.",
    "c.txt": "Snakemake builds only what is missing or stale, chunk by chunk. " * 4,
}


def write_corpus(folder, docs=DOCS):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in docs.items():
        (folder / name).write_bytes(text if isinstance(text, bytes) else text.encode())
    return str(folder / "*.txt")


TRAINING = {"train_tokens": 1024, "batch_size": 128, "shuffle_buffer_tokens": 256, "log_every": 2}


def tiny_config(model_dir, source, layer=1, saes=None, **overrides):
    config = {
        "corpus": {"source": source},
        "model": {"path": str(model_dir), "context_len": 16, "batch_size": 4},
        "activations": {"tokens_per_chunk": 240},
        "saes": saes or {
            "tiny": {"layer": layer, "k": 4, "expansion": 2, **TRAINING},
            "wide": {"layer": 2, "k": 8, "d_sae": 96, "seed": 1, **TRAINING},
        },
    }
    for key, value in overrides.items():
        section, name = key.split("__")
        config[section][name] = value
    return config


# The end-to-end tests' shared run (the `finished_run` fixture): a labelled JSONL corpus with
# character spans, so concept detection runs too, and two steering experiments.
LABELLED = [("The quick brown fox jumps over the lazy dog. " * 6, ["animal"]),
            ("Sparse autoencoders find interpretable features in transformer activations.", ["ml"]),
            ("Snakemake builds only what is missing or stale, chunk by chunk. " * 4, ["ml", "tools"]),
            ("A <script>alert(2)</script> tag, an <img src=x onerror=alert(1)> and a lazy fox.", ["animal", "web"])]
SPAN_WORDS = {"fox": "animal", "dog": "animal", "Snakemake": "tool", "chunk": "tool", "<script>": "<b>tag</b>"}


def labelled_record(text, labels):
    """A JSONL record with its labels and a span [start, end, label] at every SPAN_WORDS word."""
    spans = sorted([m.start(), m.end(), label] for word, label in SPAN_WORDS.items()
                   for m in re.finditer(re.escape(word), text))
    return json.dumps({"text": text, "labels": labels, "spans": spans}) + "\n"


STEERING = [
    {"name": "push", "sae": "tiny", "features": [3, 5], "alphas": [0.0, 4.0], "prompts": ["The lazy", "Sparse"],
     "max_new_tokens": 5},
    {"name": "towards-animal", "sae": "wide", "vector": "animal", "alphas": [1.0], "prompts": ["A <b>tag</b>"],
     "max_new_tokens": 4},
]


def finished_run_config(model_dir, workdir: Path) -> dict:
    """Writes the labelled corpus into workdir; returns the run's config."""
    corpus = workdir / "corpus.jsonl"
    corpus.write_text("".join(labelled_record(text, labels) for text, labels in LABELLED))
    config = tiny_config(model_dir, str(corpus))
    config["analysis"] = {"top_k": 3, "context": 2, "feature_shards": 2, "neighbours": 3, "influence_k": 4}
    config["ablation"] = {"max_features": 2, "examples": 2}
    config["steering"] = STEERING
    return config
