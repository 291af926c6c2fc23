"""Run the real Snakefile in a temporary working directory, as a user would."""

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
