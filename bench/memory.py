"""Flat memory: every job's peak RSS stays the same when the corpus grows; only its time grows.

Runs the real Snakefile on the default corpus repeated 1, 4 and 8 times (--scales), each scale
in its own working folder, then prints one row per rule: at each scale its jobs, the largest
peak RSS of its jobs and their summed seconds (Snakemake's benchmarks, results/benchmarks/);
the RSS spread (max / min - 1 over the scales, flagged above 10 %) and a straight-line fit of
time against the scale (flagged where a scale's time is more than 15 % and 2 s off the line).
Per-chunk rules (capture, encode, filter) grow in jobs, not in job size: the per-job peak is
what must stay flat; the per-shard and single jobs (training, transpose, analyses) read more
data each and must stream it.

- The corpus: the documents of the default run (config.yaml's `corpus:` on the built-in corpus,
  cut at corpus.max_tokens, whole documents in order), found by running that run's corpus job
  once (workdir/base), then written N times over into one JSONL file per scale. corpus.max_tokens
  is N x the base, so planning gives N times the default run's chunks and nothing is cut.
- Everything else is config.yaml, with what would change per-job sizes held fixed:
  activations.tokens_per_chunk (per-chunk jobs, capture and encode, grow in number, not in size),
  analysis.feature_shards, the training batch and shuffle buffer. saes.*.train_tokens is N times
  the default's, so training passes over its (N times more) chunks the same number of times and
  its time, too, should be linear in N. Steering, ablation and auto-interp are off: they work
  on a fixed set of features and prompts, not on the corpus, and the dashboard is left out
  (`--omit-from dashboard`): it is a page that holds examples of the corpus, so it grows with it.
- --base-tokens shrinks the whole run in proportion (chunk size and training tokens with it) for
  a smoke run; --set KEY=VALUE overrides any config key (dotted path, YAML value), e.g. a
  smaller SAE for the smoke run only.
- Peak RSS: the kernel's high-water mark (VmHWM) of each job's Python process, written at its
  exit by a `sitecustomize` the bench puts on the runs' PYTHONPATH (PEAK_HOOK), so no peak is
  missed. (Snakemake's own max_rss samples the job's process tree every 0.5 s for 15 s, then
  every 30 s: a long job's peak would depend on when the samples fall, and a sub-second job's
  on whether one fell after its imports; a smoke run saw 6 MB against 78 MB.) Job times are the
  benchmarks' `s`.
- An existing working folder is reused: finished jobs are not rerun, so an interrupted bench
  resumes, and a rerun reprints the table from the benchmarks already there.

Full run, 2 idle cores: about 4 min at 1x, 11 at 4x, 21 at 8x (~40 min in all); ~3 GB of disk,
0.6 GB of it each scale's own converted model.
Smoke run: PYTHONPATH=. python bench/memory.py --scales 1 2 --base-tokens 4096 \
    --set saes.default.expansion=1 --workdir /tmp/membench-smoke

Usage: python bench/memory.py [--scales 1 4 8] [--base-tokens 49152] [--workdir DIR] [--cores 2]
                              [--set KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import yaml

from saeflow.paths import PATHS

REPO = Path(__file__).resolve().parents[1]
RSS_SPREAD_LIMIT = 0.10  # the bound on a job's peak across scales
FIT_LIMIT, FIT_FLOOR_S = 0.15, 2.0  # off the line by more than 15 % and 2 s: not linear
# Each job's exact peak: every Python process of a run imports this as `sitecustomize` (from
# PYTHONPATH) and, at exit, a script job (its __main__ holds Snakemake's `snakemake` object)
# writes its rule and the kernel's high-water mark of its resident memory (VmHWM), which no
# sampling can miss. The Snakemake process itself and helpers without that object write nothing.
PEAK_HOOK = """
import atexit, json, os, sys


def _record_peak():
    job = getattr(sys.modules.get("__main__"), "snakemake", None)
    if not hasattr(job, "rule") or not os.path.exists("/proc/self/status"):
        return
    with open("/proc/self/status") as status:
        kib = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    with open(os.path.join(os.environ["SAEFLOW_BENCH_PEAKS"], f"{os.getpid()}.json"), "w") as out:
        json.dump({"rule": job.rule, "peak_mb": kib / 1024}, out)


atexit.register(_record_peak)
"""
# The stages the issue names first, in pipeline order; any other rule that ran follows.
RULE_ORDER = ["corpus", "split_documents", "plan_chunks", "capture_activations", "hook_mean", "train_sae",
              "evaluate_sae", "encode_features", "transpose_features", "analyse_feature_shard",
              "influence_shard", "neighbour_shard", "gather_table", "gather_neighbours", "unit_map",
              "filter_units", "thresholds", "document_vectors"]


def snakemake(workdir: Path, config: Path, cores: int, *targets: str) -> float:
    """Run the Snakefile in `workdir` with `config`; its wall seconds. Output goes to
    workdir/snakemake.log; a failure ends the bench with the log's tail."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"),
               "-d", str(workdir), *targets, "--configfile", str(config), "--cores", str(cores),
               "--resources", "gpu=1"]  # last: --resources would take the targets as resources
    log = workdir / "snakemake.log"
    start = time.perf_counter()
    with open(log, "w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=peak_env(workdir)).returncode
    if code:
        raise SystemExit(f"snakemake failed in {workdir} (exit {code}):\n{log.read_text()[-4000:]}")
    return time.perf_counter() - start


def peak_env(workdir: Path) -> dict:
    """The environment that loads PEAK_HOOK into every Python process, recording into workdir/peaks."""
    hook, peaks = workdir / "peak_hook", workdir / "peaks"
    hook.mkdir(parents=True, exist_ok=True)
    peaks.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(PEAK_HOOK)
    path = os.pathsep.join(filter(None, [str(hook), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "SAEFLOW_BENCH_PEAKS": str(peaks)}


def set_key(config: dict, assignment: str) -> None:
    """Apply one `a.b.c=value` override (value parsed as YAML)."""
    key, _, value = assignment.partition("=")
    *parents, leaf = key.split(".")
    for name in parents:
        config = config.setdefault(name, {})
    config[leaf] = yaml.safe_load(value)


def scaled_config(default: dict, base_tokens: int, scale: int, source: str, overrides: list[str]) -> dict:
    """config.yaml for `scale` times the base corpus: chunk size, training passes, shards and
    batches as the default run has them (shrunk with --base-tokens); interventions off."""
    config = copy.deepcopy(default)
    shrink = base_tokens / default["corpus"]["max_tokens"]  # 1 at the default base
    config["corpus"].update(source=source, max_tokens=scale * base_tokens, max_documents=None)
    # Rounded up: a chunk a token short of a third of the corpus would plan a fourth chunk.
    config["activations"]["tokens_per_chunk"] = math.ceil(default["activations"]["tokens_per_chunk"] * shrink)
    for sae in config["saes"].values():
        sae["train_tokens"] = max(1, round(sae["train_tokens"] * shrink)) * scale
    config["steering"] = []
    config["ablation"]["max_features"] = 0
    config["autointerp"]["enabled"] = False
    for assignment in overrides:
        set_key(config, assignment)
    return config


def write_config(workdir: Path, config: dict) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def base_documents(root: Path, default: dict, args) -> list[str]:
    """The texts of the default run's documents: its corpus job, run once on the built-in corpus
    cut at --base-tokens, decides which documents fit, exactly as the default run does."""
    workdir = root / "base"
    config = scaled_config(default, args.base_tokens, 1, "builtin", args.set)
    snakemake(workdir, write_config(workdir, config), args.cores, PATHS["unsplit_documents"])
    return pq.read_table(workdir / PATHS["unsplit_documents"], columns=["text"])["text"].to_pylist()


def run_scale(root: Path, default: dict, texts: list[str], scale: int, args) -> Path:
    """Build the scale's corpus and config and run everything but the dashboard; its folder."""
    workdir = root / f"x{scale}"
    workdir.mkdir(parents=True, exist_ok=True)
    corpus = workdir / "corpus.jsonl"
    if not corpus.exists():  # rewriting it would make every job rerun on a resumed bench
        with open(corpus, "w") as out:
            for _ in range(scale):
                out.writelines(json.dumps({"text": text}) + "\n" for text in texts)
    config = write_config(workdir, scaled_config(default, args.base_tokens, scale, str(corpus), args.set))
    seconds = snakemake(workdir, config, args.cores, "--omit-from", "dashboard")
    print(f"  {scale}x: {seconds:.0f} s wall", file=sys.stderr, flush=True)
    return workdir


def number(value: str) -> float | None:
    """A benchmark field; None for NA (a job done before its first sample)."""
    try:
        return float(value)
    except ValueError:
        return None


def rule_totals(workdir: Path) -> dict[str, dict]:
    """Per rule: jobs and summed seconds (benchmarks), and the largest peak (MB) over its jobs
    (PEAK_HOOK's records)."""
    totals: dict[str, dict] = defaultdict(lambda: {"jobs": 0, "s": 0.0, "rss": None})
    benchmarks = workdir / "results" / "benchmarks"
    for tsv in sorted(benchmarks.rglob("*.tsv")):
        rule = tsv.relative_to(benchmarks).parts[0].removesuffix(".tsv")
        with open(tsv, newline="") as handle:
            for row in csv.DictReader(handle, delimiter="\t"):  # one row per repeat (one here)
                entry = totals[rule]
                entry["jobs"] += 1
                entry["s"] += number(row["s"]) or 0.0
    peaks = job_peaks(workdir)
    for rule, entry in totals.items():
        entry["rss"] = peaks.get(rule)
    return dict(totals)


def job_peaks(workdir: Path) -> dict[str, float]:
    """Per rule: the largest exact peak (VmHWM, MB) over its jobs, from PEAK_HOOK's records."""
    peaks: dict[str, float] = {}
    for record in (workdir / "peaks").glob("*.json"):
        entry = json.loads(record.read_text())
        peaks[entry["rule"]] = max(peaks.get(entry["rule"], 0.0), entry["peak_mb"])
    return peaks


def rss_spread(peaks: list[float | None]) -> float | None:
    """max / min - 1 of a rule's peaks over the scales (None unless every scale has one)."""
    if any(peak is None for peak in peaks) or min(peaks) <= 0:
        return None
    return max(peaks) / min(peaks) - 1


def line_fit(scales: list[int], seconds: list[float]) -> tuple[float, float, float]:
    """Least squares seconds = fixed + per_unit * scale; (fixed, per_unit, worst relative error
    among scales whose miss exceeds FIT_FLOOR_S, so that seconds-long jobs' jitter is no flag)."""
    n = len(scales)
    mean_x, mean_y = sum(scales) / n, sum(seconds) / n
    var = sum((x - mean_x) ** 2 for x in scales)
    per_unit = sum((x - mean_x) * (y - mean_y) for x, y in zip(scales, seconds)) / var if var else 0.0
    fixed = mean_y - per_unit * mean_x
    misses = [abs(y - fixed - per_unit * x) / y for x, y in zip(scales, seconds)
              if y > 0 and abs(y - fixed - per_unit * x) > FIT_FLOOR_S]
    return fixed, per_unit, max(misses, default=0.0)


def ordered_rules(runs: list[dict]) -> list[str]:
    seen = {rule for totals in runs for rule in totals}
    return [rule for rule in RULE_ORDER if rule in seen] + sorted(seen - set(RULE_ORDER))


def cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def rule_row(rule: str, scales: list[int], runs: list[dict]) -> tuple[list[str], list[str]]:
    """One rule's cells (jobs as 1x/4x/8x counts, then the table's columns) and its flags."""
    rows = [totals.get(rule, {"jobs": 0, "s": 0.0, "rss": None}) for totals in runs]
    spread = rss_spread([row["rss"] for row in rows])
    fixed, per_unit, off = line_fit(scales, [row["s"] for row in rows])
    flags = [*(["RSS"] if spread is not None and spread > RSS_SPREAD_LIMIT else []),
             *(["time"] if off > FIT_LIMIT else [])]
    peaks = [cell(row["rss"], ".0f") for row in rows]
    cells = [rule, "/".join(str(row["jobs"]) for row in rows), *peaks,
             cell(None if spread is None else 100 * spread, ".1f") + "%", *(f"{row['s']:.1f}" for row in rows),
             f"{fixed:.1f}", f"{per_unit:.1f}", f"{100 * off:.0f}%", " ".join(flags)]
    return cells, flags


def print_table(scales: list[int], runs: list[dict]) -> list[str]:
    """The table, one row per rule, columns as wide as their widest cell; the flagged rules."""
    tags = [f"{scale}x" for scale in scales]
    header = ["rule", "jobs " + "/".join(tags), *(f"MB {t}" for t in tags), "spread", *(f"s {t}" for t in tags),
              "fixed s", "s per 1x", "fit off", "flag"]
    rows, flagged = [header], []
    for rule in ordered_rules(runs):
        cells, flags = rule_row(rule, scales, runs)
        rows.append(cells)
        if flags:
            flagged.append(f"{rule}: {', '.join(flags)}")
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:  # the rule left-aligned, numbers right-aligned
        print(row[0].ljust(widths[0]) + "".join(f"  {text:>{w}}" for text, w in zip(row[1:-1], widths[1:-1]))
              + (f"  {row[-1]}" if row[-1] else "").rstrip())
    return flagged


def corpus_summary(workdir: Path) -> str:
    documents = pq.read_table(workdir / PATHS["unsplit_documents"], columns=["n_tokens"])
    return f"{documents.num_rows} documents, {sum(documents['n_tokens'].to_pylist()):,} tokens"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 4, 8], help="corpus repeats")
    parser.add_argument("--base-tokens", type=int, help="the 1x corpus's max_tokens (default: config.yaml's)")
    parser.add_argument("--workdir", type=Path, help="kept; reused if there (default: a new temporary folder)")
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override, dotted key, YAML value (repeatable)")
    args = parser.parse_args()
    default = yaml.safe_load((REPO / "config.yaml").read_text())
    args.base_tokens = args.base_tokens or default["corpus"]["max_tokens"]
    scales = sorted(set(args.scales))
    root = args.workdir or Path(tempfile.mkdtemp(prefix="saeflow-memory-"))
    print(f"  working in {root}", file=sys.stderr, flush=True)

    texts = base_documents(root, default, args)
    workdirs = [run_scale(root, default, texts, scale, args) for scale in scales]
    runs = [rule_totals(workdir) for workdir in workdirs]

    import snakemake as snakemake_module

    print(f"Snakemake {snakemake_module.__version__}, --cores {args.cores}; per rule: jobs, the largest "
          f"peak RSS (MB) of its jobs, summed job seconds (its benchmarks)")
    for scale, workdir in zip(scales, workdirs):
        print(f"  {scale}x: {corpus_summary(workdir)}; {workdir}")
    flagged = print_table(scales, runs)
    print("MB: the kernel's peak (VmHWM) of the job's Python process")
    print(f"spread: max / min - 1 of the peaks (flag RSS above {RSS_SPREAD_LIMIT:.0%}); fixed s + s per 1x * N: "
          f"least-squares line; fit off: worst miss beyond {FIT_FLOOR_S:.0f} s (flag time above {FIT_LIMIT:.0%})")
    print("flagged: " + ("; ".join(flagged) if flagged else "none"))


if __name__ == "__main__":
    main()
