"""Fault injection for the kill tests: a job SIGKILLs itself mid-write, once per rule.

With SAEFLOW_KILL_ONCE set to a folder, the first job of each rule that is about to publish an
artifact dies by SIGKILL just before the rename, its output whole in the temporary sibling and the
target not yet there: the worst moment for a crash. A marker file in the folder (named for the
rule, holding the rule and the target) records the kill, so the rerun goes through; an empty
marker created beforehand spares its rule. Per rule rather than per artifact, so that a job with
several outputs dies once, not once for each.
Unset (always, outside tests), it costs one environment lookup per artifact.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

KILL_ONCE_VARIABLE = "SAEFLOW_KILL_ONCE"


def kill_kind(target: Path) -> str:
    """The rule of the Snakemake job this is (its script's `snakemake` object names it); outside a
    job, the target's path relative to the working folder with its digits masked."""
    job = getattr(sys.modules["__main__"], "snakemake", None)
    return job.rule if job is not None else re.sub(r"\d+", "#", os.path.relpath(target))


def marker_path(markers: str | os.PathLike, kind: str) -> Path:
    return Path(markers) / re.sub(r"[^\w.-]", "_", kind)


def kill_point(target: Path) -> None:
    markers = os.environ.get(KILL_ONCE_VARIABLE)
    if not markers:
        return
    kind = kill_kind(target)
    try:
        with open(marker_path(markers, kind), "x") as out:  # exclusive: of two parallel jobs, one dies
            out.write(f"{kind}\t{target}\n")
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)
