"""Benchmark planning at scale: saeflow's dry run and no-op rerun against a bare Snakemake
workflow with the same number of jobs, measured in the same run.

saeflow side: the real Snakefile on a tiny GPT-2 (tests/tiny_models.py, random weights) and a
plain-text corpus sized so that planning fixes the number of chunks that gives about the asked
number of jobs (4 bytes per token, activations.tokens_per_chunk 128: three jobs per chunk, one
capture, one encode, one filter, plus the per-SAE and per-shard jobs of one SAE and 4 shards).
Bare side: a generated Snakefile in a temporary folder with the same number of one-line jobs,
one chain of three rules per "chunk" and one rule gathering them, so its numbers are Snakemake's
own cost per job.

- dry run: `snakemake -n --quiet rules --cores 2 --resources gpu=1`, wall time, best of 2.
- no-op rerun: `snakemake --cores 2 --resources gpu=1` once everything is built, which must report
  "Nothing to be done" and no job with missing metadata; wall time, best of 2. Everything is
  built cheaply, for both sides alike: every planned output (from a verbose dry run's `output:`
  lines) is created empty, a folder for a `.zarr` output (the workflow's only directory
  outputs), then `snakemake --touch --forceall` runs every job with Snakemake's touch executor,
  which touches the outputs in the DAG's order and records each job's metadata (params, code,
  inputs) as a real run's postprocessing does, so the rerun has the same files and records to
  check. The touch executor's 0.1 s sleep per job (there to order mtimes on coarse file
  systems) is set to 0 for this setup step only, which is never timed.
- check: a two-chunk plan built for real (every job run, one to two minutes) and the same plan
  built with --touch; their no-op reruns side by side show that the touched build is a faithful
  stand-in (the real build also confirms that exactly the `.zarr` outputs are directories).

The saeflow side also reads profiles/default (the workflow profile), as any run does.

Usage: python bench/scale.py [--sizes 100,1000,5000] [--quick (100 and 1,000 jobs)] [--repeats 2]
       [--no-check (skip the real build)]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

from tiny_models import build_tiny_causal_lm  # noqa: E402
from workflow_runner import TRAINING, planned_jobs, tiny_config  # noqa: E402

TOKENS_PER_CHUNK = 128
BYTES_PER_TOKEN = 4  # saeflow/chunk_count.py's planning estimate
SHARDS = 4
PER_CHUNK_JOBS = 3  # capture_activations, encode_features, filter_units (one hook, one SAE)
# The touch executor without its 0.1 s sleep per job: only for building, never timed.
TOUCH_WITHOUT_SLEEP = ("import sys; import snakemake.executors.touch as t; t.Executor.SLEEPING_TIME = 0; "
                       "from snakemake.cli import main; sys.argv[0] = 'snakemake'; main()")


def snakemake(snakefile: Path, workdir: Path, *args: str, prelude: list[str] | None = None):
    """Run snakemake on `snakefile` in `workdir`; (seconds, completed process). Fails loudly."""
    command = [sys.executable, *(prelude or ["-m", "snakemake"]), "-s", str(snakefile), "-d", str(workdir),
               "--cores", "2", "--resources", "gpu=1", *args]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, timeout=3600)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds, result


def best(repeats: int, snakefile, workdir, *args):
    """The fastest of `repeats` runs (other load only ever adds time) and the last run's output."""
    runs = [snakemake(snakefile, workdir, *args) for _ in range(repeats)]
    return min(seconds for seconds, _ in runs), runs[-1][1]


def saeflow_config(model_dir: Path, corpus: Path) -> dict:
    config = tiny_config(model_dir, str(corpus), activations__tokens_per_chunk=TOKENS_PER_CHUNK,
                         saes={"s": {"layer": 1, "k": 4, "d_sae": 64, **TRAINING}})
    config["analysis"] = {"top_k": 3, "context": 2, "feature_shards": SHARDS, "neighbours": 3, "influence_k": 4}
    config["ablation"] = {"max_features": 2, "examples": 2}
    return config


def saeflow_workdir(root: Path, model_dir: Path, chunks: int) -> Path:
    """A working directory whose plan has `chunks` chunks (a corpus of that many chunks' bytes)."""
    workdir = root / f"saeflow-{chunks}"
    workdir.mkdir(parents=True)
    words = BYTES_PER_TOKEN * TOKENS_PER_CHUNK * chunks // 5
    for name, count in (("a", words // 2), ("b", words - words // 2)):  # two documents: the splits need them
        (workdir / "corpus").mkdir(exist_ok=True)
        (workdir / "corpus" / f"{name}.txt").write_text("word " * count)
    (workdir / "config.yaml").write_text(json.dumps(saeflow_config(model_dir, workdir / "corpus" / "*.txt")))
    return workdir


def bare_workdir(root: Path, jobs: int) -> tuple[Path, Path]:
    """A generated workflow of `jobs` one-line jobs: chains a -> b -> c, singles, and `all`."""
    chains, singles = divmod(jobs - 1, 3)
    workdir = root / f"bare-{jobs}"
    workdir.mkdir(parents=True)
    snakefile = workdir / "Snakefile"
    snakefile.write_text(f"""
rule all:
    input:
        expand("c/{{i}}.txt", i=range({chains})),
        expand("s/{{i}}.txt", i=range({singles})),

rule a:
    output: "a/{{i}}.txt"
    shell: "touch {{output}}"

rule b:
    input: "a/{{i}}.txt"
    output: "b/{{i}}.txt"
    shell: "touch {{output}}"

rule c:
    input: "b/{{i}}.txt"
    output: "c/{{i}}.txt"
    shell: "touch {{output}}"

rule single:
    output: "s/{{i}}.txt"
    shell: "touch {{output}}"
""")
    return snakefile, workdir


def planned_outputs(snakefile: Path, workdir: Path) -> list[str]:
    """Every output of every planned job, from a verbose dry run's `output:` lines."""
    _, result = snakemake(snakefile, workdir, "-n")
    return [name for line in result.stdout.splitlines() if line.strip().startswith("output:")
            for name in line.strip().removeprefix("output:").strip().split(", ")]


def build_by_touch(snakefile: Path, workdir: Path) -> int:
    """Create every planned output empty, then let `snakemake --touch` run every job (touch the
    outputs in order, record the jobs' metadata). Returns the number of outputs."""
    outputs = planned_outputs(snakefile, workdir)
    for name in outputs:
        target = workdir / name
        if name.endswith(".zarr"):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
    snakemake(snakefile, workdir, "--touch", "--forceall", "--quiet", "all", prelude=["-c", TOUCH_WITHOUT_SLEEP])
    return len(outputs)


def noop(repeats: int, snakefile: Path, workdir: Path) -> float:
    seconds, result = best(repeats, snakefile, workdir)
    said = result.stdout + result.stderr
    if "Nothing to be done" not in said or "missing provenance" in said:
        raise SystemExit(f"{workdir}: not a no-op with every job's metadata recorded:\n{said[-3000:]}")
    return seconds


def chunks_for(jobs: int, fixed_jobs: int) -> int:
    return max(2, round((jobs - fixed_jobs) / PER_CHUNK_JOBS))


def real_build_check(root: Path, model_dir: Path, snakefile: Path, repeats: int) -> str:
    """Build a two-chunk plan for real and with --touch; their no-op reruns side by side."""
    real = saeflow_workdir(root / "real", model_dir, 2)
    outputs = planned_outputs(snakefile, real)
    jobs = sum(planned_jobs(snakemake(snakefile, real, "-n", "--quiet", "rules")[1]).values())
    build_seconds, _ = snakemake(snakefile, real, "--quiet", "all")
    wrong = [name for name in outputs if (real / name).is_dir() != name.endswith(".zarr")]
    if wrong:
        raise SystemExit(f"placeholders: a directory is not always a .zarr output here: {wrong}")
    touched = saeflow_workdir(root / "touched", model_dir, 2)
    build_by_touch(snakefile, touched)
    return (f"check, {jobs} jobs: no-op rerun after a real build ({build_seconds:.0f} s) "
            f"{noop(repeats, snakefile, real):.2f} s, after a --touch build {noop(repeats, snakefile, touched):.2f} s")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,5000", help="job counts, comma-separated")
    parser.add_argument("--quick", action="store_true", help="only 100 and 1,000 jobs")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-check", action="store_true", help="skip the real two-chunk build")
    args = parser.parse_args()
    sizes = [100, 1000] if args.quick else [int(size) for size in args.sizes.split(",")]

    root = Path(tempfile.mkdtemp(prefix="saeflow-scale-"))
    snakefile = REPO / "Snakefile"
    try:
        model_dir = build_tiny_causal_lm(root / "lm")
        check = None if args.no_check else real_build_check(root, model_dir, snakefile, args.repeats)
        if check:
            print(f"  {check}", file=sys.stderr, flush=True)
        # Jobs that do not grow with the chunks: one SAE, its shards, the corpus and the gathers.
        probe = saeflow_workdir(root / "probe", model_dir, 2)
        probe_jobs = sum(planned_jobs(snakemake(snakefile, probe, "-n", "--quiet", "rules")[1]).values())
        fixed = probe_jobs - 2 * PER_CHUNK_JOBS

        rows = []
        for size in sizes:
            workdir = saeflow_workdir(root, model_dir, chunks_for(size, fixed))
            dry, result = best(args.repeats, snakefile, workdir, "-n", "--quiet", "rules")
            jobs = sum(planned_jobs(result).values())
            bare_snakefile, bare = bare_workdir(root, jobs)
            bare_dry, bare_result = best(args.repeats, bare_snakefile, bare, "-n", "--quiet", "rules")
            assert sum(planned_jobs(bare_result).values()) == jobs
            build_by_touch(snakefile, workdir)
            build_by_touch(bare_snakefile, bare)
            rows.append((jobs, dry, bare_dry, noop(args.repeats, snakefile, workdir),
                         noop(args.repeats, bare_snakefile, bare)))
            print(f"  {jobs} jobs: " + ", ".join(f"{seconds:.2f} s" for seconds in rows[-1][1:]), file=sys.stderr,
                  flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    import snakemake as snakemake_module

    print(f"Snakemake {snakemake_module.__version__}, Python {sys.version.split()[0]}, --cores 2, "
          f"wall seconds, best of {args.repeats}; saeflow: one SAE, {SHARDS} feature shards, "
          f"{PER_CHUNK_JOBS} jobs per chunk")
    print(f"{'jobs':>6}{'saeflow dry s':>15}{'bare dry s':>12}{'ratio':>7}"
          f"{'saeflow no-op s':>17}{'bare no-op s':>14}{'ratio':>7}")
    for jobs, dry, bare_dry, rerun, bare_rerun in rows:
        print(f"{jobs:>6}{dry:>15.2f}{bare_dry:>12.2f}{dry / bare_dry:>7.2f}"
              f"{rerun:>17.2f}{bare_rerun:>14.2f}{rerun / bare_rerun:>7.2f}")
    if len(rows) > 1:
        (small, *_), (large, *_) = rows[0], rows[-1]
        slopes = [1000 * (rows[-1][i] - rows[0][i]) / (large - small) for i in range(1, 5)]
        print(f"ms per extra job, {small} to {large} jobs: dry run saeflow {slopes[0]:.1f}, bare {slopes[1]:.1f}; "
              f"no-op saeflow {slopes[2]:.1f}, bare {slopes[3]:.1f}")
    if check:
        print(check)
    print("ratio: saeflow's seconds over the bare workflow's with the same job count")


if __name__ == "__main__":
    main()
