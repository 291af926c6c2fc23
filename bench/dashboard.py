"""Benchmark the dashboard on a synthetic run at full width: file size, build time, and time to the
first rendered feature in headless Chromium.

The run: 24,576 features (dead ones included), each with 20 top examples and 25 quantile
examples (5 bands x 5) of 33-token windows (context 16) over a 40,000 x 128-token corpus of
Zipf-distributed tokens, plus every other analysis table. Goals: file <= 60 MB; first feature
(open `#sae=<name>&feature=<id>`, wait until its top examples are in the page) <= 2 s.

Usage: python bench/dashboard.py [--features 24576] [--seqs 40000] [--repeats 3] [--keep DIR]
Needs Debian's chromium (/usr/bin/chromium) and the playwright package for the browser part.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "dashboard"))

from chromium import chromium_path, launch  # noqa: E402
from synthetic import CorpusSpec, SaeSpec, SyntheticCorpus, SyntheticSae, write_run  # noqa: E402

from saeflow.dashboard import build_dashboard  # noqa: E402

GOAL_MB, GOAL_S = 60, 2.0


def first_feature_seconds(html: Path, sae: str, feature: int, repeats: int) -> tuple[list[float], list[float]]:
    """Seconds from navigation to the feature's top examples in the page, over fresh pages; and
    seconds to show a second feature by changing the hash (blobs already decoded)."""
    first, second = [], []
    with launch() as browser:
        for r in range(repeats):
            page = browser.new_page(viewport={"width": 1440, "height": 900})
            start = time.perf_counter()
            page.goto(f"{html.as_uri()}#sae={sae}&feature={feature}", wait_until="commit")
            page.wait_for_selector(".top-examples .ex", timeout=120_000)
            first.append(time.perf_counter() - start)
            other = feature + 1 + r
            start = time.perf_counter()
            page.evaluate(f"location.hash = '#sae={sae}&feature={other}'")
            page.wait_for_function("t => document.querySelector('#feature h2').firstChild.textContent === t",
                                   arg=f"Feature {other}")
            second.append(time.perf_counter() - start)
            page.close()
    return first, second


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--features", type=int, default=24576)
    parser.add_argument("--seqs", type=int, default=40000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="write the run and dashboard here and keep them")
    args = parser.parse_args()

    root = args.keep or Path(tempfile.mkdtemp(prefix="saeflow-dashboard-bench-"))
    try:
        start = time.perf_counter()
        corpus = SyntheticCorpus(CorpusSpec(n_seqs=args.seqs, seq_len=128, vocab_size=30000, seed=0))
        dead = tuple(range(0, args.features, 97))  # about 1% dead
        sae = SyntheticSae(SaeSpec("bench", args.features, layer=8, k=64, dead=dead, context=16, bins=50,
                                   influence_k=10, neighbours=10), corpus)
        run, saes = write_run(root, corpus, [sae])
        print(f"synthetic run: {args.features:,} features, {sae.top['feature'].size + sae.quantile['feature'].size:,} "
              f"examples, corpus {corpus.n_tokens:,} tokens, written in {time.perf_counter() - start:.1f} s")

        html = root / "dashboard.html"
        start = time.perf_counter()
        build_dashboard(html, run, saes)
        build_s = time.perf_counter() - start
        size_mb = html.stat().st_size / 1e6
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"build: {build_s:.1f} s (peak RSS of this process {peak_mb:,.0f} MB)")
        print(f"file size: {size_mb:.1f} MB (goal <= {GOAL_MB} MB): {'ok' if size_mb <= GOAL_MB else 'OVER'}")

        if chromium_path() is None:
            print("first feature: skipped, no chromium binary (apt-get install chromium)")
            return
        first, second = first_feature_seconds(html, "bench", 1, args.repeats)
        median = statistics.median(first)
        print(f"first feature: median {median:.2f} s over {len(first)} fresh pages "
              f"({', '.join(f'{s:.2f}' for s in first)}) (goal <= {GOAL_S} s): {'ok' if median <= GOAL_S else 'OVER'}")
        print(f"next feature (hash change): median {statistics.median(second) * 1000:.0f} ms")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
