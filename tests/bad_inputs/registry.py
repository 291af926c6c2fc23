"""The bad-input matrix's cases: each prepares one broken file or setting and the job that meets it.

A case is a function (tmp_path, request) -> Attempt, registered with @case("name"). The test in
tests/test_bad_inputs.py runs the attempt and checks what a user would see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


@dataclass
class Attempt:
    # Either `job` (run in-process through saeflow.jobs.run_job, as a workflow script does) or
    # `command` (a subprocess, e.g. a snakemake dry run for what the Snakefile checks).
    expect: tuple[str, ...]  # substrings of the one error line: the file or key, and the fix
    job: Callable[[], object] | None = None
    command: list[str] | None = None
    cwd: Path | None = None
    outputs: list[Path] = field(default_factory=list)  # must not exist afterwards (nor temp siblings)
    unprivileged: bool = False  # run as nobody when the tests run as root (a read-only folder binds root not)


CASES: dict[str, Callable] = {}


def case(name: str):
    def register(prepare: Callable) -> Callable:
        assert name not in CASES, name
        CASES[name] = prepare
        return prepare

    return register
