import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from tiny_models import build_tiny_causal_lm  # noqa: E402
from workflow_runner import finished_run_config, run_snakemake  # noqa: E402


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory) -> Path:
    """Directory of a tiny random GPT-2 with a byte-level BPE tokenizer that adds a BOS."""
    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture(scope="session")
def minilm() -> Path:
    """The packaged all-MiniLM-L6-v2 (presets/minilm.yaml): a BERT encoder with [CLS] … [SEP]."""
    from saeflow.model_source import packaged_path

    return packaged_path("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def finished_run(tiny_lm, tmp_path_factory):
    """The whole workflow once, on the labelled corpus of workflow_runner; shared by the end-to-end
    test files (which only read it, or plan in dry runs)."""
    workdir = tmp_path_factory.mktemp("run")
    config = finished_run_config(tiny_lm, workdir)
    result = run_snakemake(workdir, config)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, config
