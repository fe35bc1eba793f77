"""Benchmark of the statistics module (run on demand, not part of the test suite).

    .venv/bin/python tests/benchmarks/bench_stats.py [--votes 1000000] [--repeats 5] [--csv]

Target (issue): the full analysis of 1,000,000 votes with 1,000 bootstrap replicates (prompt and
annotator cluster bootstraps, plus 1,000 Bradley-Terry replicates per criterion) in under 10 s on
a 2-core machine. Prints one JSON line per figure; each time is the median of ``--repeats``
runs (``min_s``: the fastest).
The baseline, measured in the same run on the same table, is the same analysis without any
bootstrap; ``bootstrap_overhead_ratio`` is full / baseline. ``--csv`` also times writing and
reading the votes file (the CLI's input step), which is not part of the 10 s target.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from studyapp.stats import AnalysisSettings, analyse, read_votes_csv, simulate_votes, write_votes_csv  # noqa: E402

LIMIT_S = 10.0


def _time(fn, repeats: int) -> tuple[float, list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def _emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--votes", type=int, default=1_000_000, help="regular votes (about; attention rows come on top)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--csv", action="store_true", help="also time writing and reading the votes CSV")
    args = ap.parse_args()

    # A large round: 2,000 prompts in 11 categories, 5,000 annotators (2% careless), 3 baselines x
    # 2 criteria, 20% ties, annotator and prompt effects, 10 attention checks per annotator.
    table = simulate_votes(
        trials_per_baseline=args.votes // 6,
        n_prompts=2000,
        n_annotators=5000,
        preference=0.6,
        tie_rate=0.2,
        annotator_sd=0.3,
        prompt_sd=0.5,
        attention_per_annotator=10,
        careless_annotators=100,
        n_categories=11,
        seed=0,
    )
    n = len(table)
    env = {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine()}
    full = AnalysisSettings(bootstrap_replicates=args.replicates, bt_replicates=args.replicates)
    base = AnalysisSettings(bootstrap_replicates=0, bt_replicates=0)
    analyse(table, base)  # warm-up (imports, caches)

    # Interleaved, so that load from other processes on a shared machine hits both alike.
    times_base, times_full, cpu_full = [], [], []
    for _ in range(args.repeats):
        times_base.append(_time(lambda: analyse(table, base), 1)[0])
        c0 = time.process_time()
        t, _, summary = _time(lambda: analyse(table, full), 1)
        cpu_full.append(time.process_time() - c0)
        times_full.append(t)
    t_base, t_full = statistics.median(times_base), statistics.median(times_full)
    label = f"{round(n / 1e6)}M" if n >= 1e6 else f"{n // 1000}k"
    _emit(
        figure=f"analysis_{label}_votes_s",
        value=round(t_full, 3),
        unit="s",
        rows=n,
        regular_votes=summary["data"]["regular_votes"],
        bootstrap_replicates=args.replicates,
        bt_replicates=args.replicates,
        repeats=args.repeats,
        times=[round(t, 3) for t in times_full],
        min_s=round(min(times_full), 3),
        limit_s=LIMIT_S,
        within_limit=t_full < LIMIT_S,
        # CPU seconds of this process: what the analysis costs when the machine is not shared
        # (the wall time above includes waiting for the other processes on a loaded machine).
        cpu_s=round(statistics.median(cpu_full), 3),
        load_average_1min=round(os.getloadavg()[0], 2),
        **env,
    )
    _emit(
        figure=f"analysis_{label}_votes_no_bootstrap_s",
        value=round(t_base, 3),
        unit="s",
        rows=n,
        repeats=args.repeats,
        times=[round(t, 3) for t in times_base],
        min_s=round(min(times_base), 3),
        **env,
    )
    _emit(
        figure="bootstrap_overhead_ratio",
        value=round(t_full / t_base, 3),
        min_ratio=round(min(times_full) / min(times_base), 3),
        unit="x",
        numerator=f"analysis_{label}_votes_s",
        baseline=f"analysis_{label}_votes_no_bootstrap_s",
    )
    # The declared monitoring replays 20 looks of the clustered test (issue 12); reported on its
    # own, against the same full analysis without it.
    from studyapp.stats.config import Monitoring

    monitored = dataclasses.replace(full, monitoring=Monitoring(planned_votes=summary["results"]["declared"]["preference"][0]["n"], looks=20))
    t_mon, times_mon, _ = _time(lambda: analyse(table, monitored), max(1, args.repeats // 2))
    _emit(
        figure=f"analysis_{label}_votes_monitoring_20_looks_s",
        value=round(t_mon, 3),
        unit="s",
        rows=n,
        times=[round(t, 3) for t in times_mon],
        ratio_to_full=round(t_mon / t_full, 3),
        **env,
    )
    if args.csv:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "votes.csv"
            t0 = time.perf_counter()
            write_votes_csv(table, path)
            t_write = time.perf_counter() - t0
            t_read, times_read, back = _time(lambda: read_votes_csv(path), 1)
            assert len(back) == n
            _emit(figure=f"write_votes_csv_{label}_s", value=round(t_write, 3), unit="s", rows=n, **env)
            _emit(
                figure=f"read_votes_csv_{label}_s",
                value=round(t_read, 3),
                unit="s",
                rows=n,
                bytes=path.stat().st_size,
                **env,
            )
            _emit(
                figure="read_csv_vs_analysis_ratio",
                value=round(t_read / t_full, 3),
                unit="x",
                numerator=f"read_votes_csv_{label}_s",
                baseline=f"analysis_{label}_votes_s",
            )
    return 0 if t_full < LIMIT_S or n < 1_000_000 else 1


if __name__ == "__main__":
    sys.exit(main())
