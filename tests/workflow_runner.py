"""Run the real Snakefile in a temporary working directory, as a user would, on a tiny corpus and
config that the end-to-end tests share."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_snakemake(workdir: Path, config: dict, *args: str) -> subprocess.CompletedProcess:
    """`snakemake` on the repository's Snakefile with `config` as the working directory's config.yaml."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(json.dumps(config))  # JSON is YAML
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir),
               "--cores", "2", "--resources", "gpu=1", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


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
