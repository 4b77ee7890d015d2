"""The search driver at scale: ms per suggest + tell as the study grows, and trivial trials through Ray.

In process (``--in-process``, the default part): each searcher of the
``SEARCHERS`` registry drives the default preset's space with synthetic
results (no training): every suggested configuration is told a made-up
quality and energy, one trial in ten as stopped early (pruned). It prints
the median ms per suggest + tell in a window of trials up to each mark
(100, 1000, 2000, 5000, 10,000 by default) and the driver time in all.
Times are the driver process's CPU time (``time.process_time``), not wall
time: on a machine shared with other jobs, wall time counts their turns
too. Each searcher runs in its own process, side by side.
The default searcher is the preset's own (multi-objective TPE, cheapest
of 3); ``grid`` is left out, as a grid ends with its points.

End to end (``--end-to-end N``): N trivial trials (one report each, no
training) through ``greentune run``'s code path against plain Ray Tune
running the same trivial function with its random search, on the same
local Ray; prints both wall times and their ratio.

    python benchmarks/driver_scale.py [--marks 100 1000 2000] [--searchers default random] [--window 50]
    python benchmarks/driver_scale.py --end-to-end 2000 --searchers none
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

import optuna
import yaml

from greentune.search.config import parse_search
from greentune.search.presets import preset_path
from greentune.search.searchers import SEARCHERS, make_searcher

MARKS = (100, 1000, 2000, 5000, 10000)


def default_search(searcher: str | None = None):
    """The default preset, with ``searcher`` in place of its own (None keeps it), and no trial budget."""
    raw = yaml.safe_load(preset_path("default").read_text())
    if searcher is not None:
        raw["searcher"] = searcher
    raw["num_trials"] = 10**6
    return parse_search(raw)


def synthetic_result(config: dict, rng: random.Random) -> dict:
    """A made-up outcome: quality and energy depend on the approach, with noise; one trial in ten stopped early."""
    base = sum(map(ord, str(config.get("approach")))) % 7
    complete = rng.random() > 0.1
    fraction = 1.0 if complete else rng.choice((1 / 9, 1 / 3))
    return {
        "quality": base / 7 + rng.random() * 0.3,
        "energy_j": (1 + base + rng.random() * 5) * fraction,
        "eval_energy_j": 0.1,
        "trained_fraction": fraction,
        "complete": complete,
    }


def drive(searcher_name: str | None, trials: int, seed: int = 0) -> list[float]:
    """CPU seconds per suggest + tell for each of ``trials`` trials of the default space."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    searcher = make_searcher(default_search(searcher_name))
    searcher.set_search_properties(None, None, {})
    rng = random.Random(seed)
    times = []
    for index in range(trials):
        start = time.process_time()
        config = searcher.suggest(str(index))
        if not isinstance(config, dict):
            break
        searcher.on_trial_complete(str(index), synthetic_result(config, rng))
        times.append(time.process_time() - start)
    return times


def near(times: list[float], mark: int, window: int) -> float | None:
    """Median ms per suggest + tell over the ``window`` trials ending at ``mark``; None if the run ended before."""
    if len(times) < mark:
        return None
    return 1000 * statistics.median(times[max(0, mark - window):mark])


def in_process(searchers: list[str], marks: list[int], window: int) -> list[tuple[str, object]]:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(len(searchers)) as pool:
        runs = list(pool.map(drive, [None if name == "default" else name for name in searchers], [max(marks)] * len(searchers)))
    figures = []
    for name, times in zip(searchers, runs):
        cells = [f"{near(times, mark, window):.1f}" for mark in marks if near(times, mark, window) is not None]
        print(f"{name:<8} " + "  ".join(f"{mark:>6}: {cell:>6} ms" for mark, cell in zip(marks, cells))
              + f"   {len(times)} trials in {sum(times):.1f} s", flush=True)
        for mark, cell in zip(marks, cells):
            figures.append((f"{name}: ms per suggest + tell near trial {mark}", f"{cell} ms"))
        figures.append((f"{name}: driver time for {len(times)} trials", f"{sum(times):.1f} s"))
    return figures


def trivial(config):
    """A trial that trains nothing: one report with what a greentune trial reports."""
    from ray import tune

    tune.report({"quality": 0.5, "energy_j": 1.0, "eval_energy_j": 0.0, "trained_fraction": 1.0, "complete": True})


def end_to_end(trials: int) -> list[tuple[str, object]]:
    """Wall time of ``trials`` trivial trials through greentune's runner and through plain Ray Tune."""
    import tempfile

    import ray
    from ray import tune

    from greentune.search import runner

    search = parse_search({**yaml.safe_load(preset_path("default").read_text()), "num_trials": trials,
                           "resources": {"cpu": 1}})
    prepare = runner._prepare
    prepare(Path("unused"), None)  # one Ray for both, started before either clock (and the runner's settings)
    # As if `greentune run` had started this Ray itself, as it does on one machine: then it reuses actors.
    runner._prepare = lambda results_dir, address: (prepare(results_dir, address)[0], True)
    slots = int(ray.cluster_resources()["CPU"])
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        tune.Tuner(
            tune.with_resources(trivial, {"cpu": 1}),
            param_space={"x": tune.uniform(0, 1)},
            tune_config=tune.TuneConfig(num_samples=trials, max_concurrent_trials=slots, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=directory, name="plain", verbose=0),
        ).fit()
        plain = time.perf_counter() - start
        runner._trainable = lambda: trivial  # the runner's own Tuner, searcher, scheduler and callbacks
        runner._fetch_data = lambda search, address: None
        start = time.perf_counter()
        runner.run_search(search, Path(directory) / "greentune")
        ours = time.perf_counter() - start
    print(f"{trials} trivial trials on {slots} CPU slots: greentune run {ours:.1f} s, plain Ray Tune {plain:.1f} s, "
          f"ratio {ours / plain:.2f}", flush=True)
    return [(f"{trials} trivial trials, greentune run", f"{ours:.1f} s"),
            (f"{trials} trivial trials, plain Ray Tune (random search)", f"{plain:.1f} s"),
            ("greentune run / plain Ray Tune", f"{ours / plain:.2f}x")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--searchers", nargs="+", default=["default", *(n for n in SEARCHERS.names() if n != "grid")],
                        help="'default' is the preset's own; 'none' skips the in-process part")
    parser.add_argument("--marks", nargs="+", type=int, default=list(MARKS))
    parser.add_argument("--window", type=int, default=50, help="trials up to each mark the median is taken over")
    parser.add_argument("--end-to-end", type=int, default=0, metavar="N", help="also run N trivial trials through Ray")
    parser.add_argument("--record", action="store_true",
                        help="write benchmarks/results/driver_scale.json (and driver_scale_end_to_end.json)")
    parser.add_argument("--note", action="append", default=[], help="a sentence for the record's notes")
    args = parser.parse_args()
    searchers = [] if args.searchers == ["none"] else args.searchers
    sys.path.insert(0, str(Path(__file__).parent))
    from record import record

    if searchers:
        figures = in_process(searchers, sorted(args.marks), args.window)
        if args.record:
            record("driver_scale", figures, what="The search driver's CPU time per suggest + tell as the study grows "
                   "(default preset's space, synthetic results, in process).",
                   notes=["Median over the 50 trials up to each mark, in CPU time of the driver's process; "
                          "'default' is the default preset's searcher (multi-objective TPE, cheapest of 3).",
                          *args.note])
    if args.end_to_end:
        figures = end_to_end(args.end_to_end)
        if args.record:
            record("driver_scale_end_to_end", figures, what="Wall time of N trivial trials (one report, no training) "
                   "through greentune run's runner against plain Ray Tune with its random search, on one local Ray.",
                   notes=args.note)


if __name__ == "__main__":
    main()
