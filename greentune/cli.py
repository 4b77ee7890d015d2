"""The ``greentune`` command line.

Each subcommand is one function taking the parsed arguments and returning an
exit code. A user's mistake (bad flag, bad file, unknown preset) is one line
per problem on stderr and exit code 2, with no traceback unless ``--debug``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from . import api
from .errors import INTERRUPTED, USAGE_ERROR, SearchFileWarning, UsageError

if TYPE_CHECKING:  # the search layer imports torch; `analyze` and `presets` do without it
    import pandas as pd  # and `run` prints its first line before pandas, torch or Ray is imported

    from greentune.search.config import SearchConfig

class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UsageError([f"{message} (see `{self.prog} --help`)"])


def command_run(args: argparse.Namespace) -> int:
    """Run a search and print its Pareto-optimal trials."""
    if args.config and args.preset:
        raise UsageError(["give either --preset or --config, not both"])
    if args.energy_budget is not None and args.energy_budget <= 0:
        raise UsageError([f"--energy-budget must be a positive number of joules, got {args.energy_budget}"])
    flags = {"num_trials": args.num_trials, "seed": args.seed, "energy_budget_j": args.energy_budget}
    overrides = {field: value for field, value in flags.items() if value is not None}
    search = Path(args.config) if args.config else (args.preset or "default")
    print(f"greentune: starting {str(search)!r} (loading PyTorch and Ray)", flush=True)
    results = api.run(search, results=args.results, address=args.address, storage=args.storage, **overrides)
    _summarise(results)
    return 0


def command_resume(args: argparse.Namespace) -> int:
    """Continue an interrupted search in its results directory."""
    results = api.resume(args.results, address=args.address)
    _summarise(results)
    return 0


def _summarise(run: api.Results) -> None:
    import pandas as pd

    from greentune.analysis.repeats import format_approach_means
    from greentune.layout import HISTORY_FILE
    from greentune.search.costs import search_energy

    results, search = run.trials, run.search

    history_file = run.directory / HISTORY_FILE
    spent = search_energy(results, pd.read_parquet(history_file) if history_file.exists() else None)
    sources = ", ".join(sorted(results["energy_source"].dropna().unique())) if "energy_source" in results else "none"
    counts = ", ".join(f"{count} {status}" for status, count in results["status"].value_counts().items())
    print()
    print(front_table(results, search.objectives, search.constraints))
    summary = search.settings.summary
    if summary:
        print("\nEach approach over its finished trials (mean ± std over seeds):")
        order = [approach.name for approach in search.approaches]
        print(format_approach_means(results, list(summary.columns), summary.reference, order))
    print(f"\ntrials: {counts}; energy spent by the search: {spent:.4g} J ({sources}), stopped trials included")
    if "co2_g" in results:
        carbon = ", ".join(sorted(results["carbon_source"].dropna().unique())) if "carbon_source" in results else "unknown"
        print(f"emissions: {results['co2_g'].sum():.4g} g CO2, energy × grid intensity only ({carbon})")
    budget = search.settings.budgets.energy_budget_j
    if budget:
        print(f"energy budget: {spent / budget:.0%} of {budget:.4g} J spent; {budget_outcome(results, search)}")
    carbon_budget = search.settings.budgets.carbon_budget_g
    if carbon_budget:
        emitted = results["co2_g"].sum() if "co2_g" in results else 0.0
        print(f"carbon budget: {emitted / carbon_budget:.0%} of {carbon_budget:.4g} g CO2 emitted; {budget_outcome(results, search)}")
    print(f"results: {run.directory / 'results.parquet'} (and results.csv, history.parquet)")


def budget_outcome(results: pd.DataFrame, search: SearchConfig) -> str:
    """The hypervolume the finished trials reached, against the reference point ``greentune analyze`` uses."""
    from greentune.analysis import hypervolume, rankable, reference_point

    finished = results[results["status"] == "finished"]
    if finished.empty or not rankable(finished, search.objectives).any():
        return "no trial finished, so no hypervolume"
    reference = reference_point(finished, search.objectives)
    where = ", ".join(f"{name}={value:.4g}" for name, value in reference.items())
    return f"hypervolume {hypervolume(finished, search.objectives, reference):.4g} over {len(finished)} finished trials (reference {where})"


def front_table(results: pd.DataFrame, objectives: dict[str, str], constraints=()) -> str:
    """The Pareto-optimal finished trials that meet the constraints, with their technique parameters."""
    from greentune.analysis import format_front, pareto_front
    from greentune.analysis.constraints import feasible

    finished = feasible(results[results["status"] == "finished"], list(constraints))
    if finished.empty:
        return "no finished trial meets the constraints" if constraints else "no trial finished; see results.csv"
    return format_front(pareto_front(finished, objectives), len(finished), objectives)


def command_analyze(args: argparse.Namespace) -> int:
    """Print a search's front and tables; write its plots and one HTML report next to its results."""
    from greentune import analysis
    from greentune.analysis.report import REPORT_FILE

    out = Path(args.out) if args.out else api.report_directory(args.path)
    result = api.analyze(
        args.path, objectives=args.objectives, baseline=args.baseline, constraints=args.constraint, rows=args.rows,
        report=False if args.no_report else out,
    )
    for note in dict.fromkeys(result.notes):
        print(f"greentune: note: {note}", file=sys.stderr)
    if args.format in ("csv", "parquet"):
        print("\n".join(map(str, analysis.write_tables(result, out, args.format))))
    else:
        present = {"text": analysis.format_text, "markdown": analysis.format_markdown, "json": analysis.to_json}
        print(present[args.format](result))
    if not args.no_report:
        print(f"greentune: plots and the report: {(out / REPORT_FILE).resolve()}", file=sys.stderr)
    return 0


def command_presets(args: argparse.Namespace) -> int:
    """List the named searches."""
    from greentune.search.presets import describe_presets

    print("\n".join(describe_presets()))
    return 0


def command_techniques(args: argparse.Namespace) -> int:
    """List techniques with each parameter's default and the domain a search samples."""
    table = api.list_techniques(*args.names)
    for (name, origin), rows in table.groupby(["technique", "origin"], sort=False):
        print(f"{name} ({origin})")
        for row in rows.itertuples():
            if row.parameter is None:
                print("  no parameters")
            else:
                print(f"  {row.parameter:<24} default {row.default!r:<12} {row.searched}")
    return 0


def command_validate(args: argparse.Namespace) -> int:
    """Check a search file and report every problem at once."""
    _, search = api.load(args.file)
    approaches = ", ".join(approach.name for approach in search.approaches)
    print(f"{args.file}: ok ({search.settings.budgets.num_trials} trials over {approaches})")
    if args.space:
        rows = search.dimensions()
        width = [max(len(row[column]) for row in rows) for column in (0, 1)]
        print(f"{len(rows)} searched dimensions:")
        for approach, name, domain in rows:
            print(f"  {approach:<{width[0]}}  {name:<{width[1]}}  {domain}")
    return 0


def command_doctor(args: argparse.Namespace) -> int:
    """Say what this machine can measure, one line per meter; with a GPU, run the GPU checks too."""
    from greentune.trainables.doctor import diagnose, parse_checks

    try:
        chosen = parse_checks(args.checks) if args.checks is not None else None
    except ValueError as error:
        raise UsageError([str(error)]) from None
    return diagnose(chosen, Path(args.workdir) if args.workdir else None, lambda line: print(line, flush=True))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="greentune", description="Search for the most energy-efficient way to train a network.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser(
        "run",
        help="run a search",
        description="Run a search. Examples: `greentune run`, `greentune run --preset default --num-trials 8`, "
        "`greentune run --config my-search.yaml --results out/`.",
    )
    run.add_argument("--preset", help="named search (see `greentune presets`); default: default")
    run.add_argument("--config", help="a YAML search file")
    run.add_argument("--results", help="results directory (default: ./greentune-results/NAME-TIME)")
    run.add_argument("--num-trials", type=int, help="override the search's number of trials")
    run.add_argument("--seed", type=int, help="override the search's seed")
    run.add_argument(
        "--energy-budget", type=float, metavar="JOULES",
        help="stop the search once its trials (stopped ones included) have spent this much energy",
    )
    run.add_argument("--address", help="a running Ray cluster: auto, HOST:PORT or ray://HOST:PORT; default: a local Ray")
    run.add_argument(
        "--storage", help="where the experiment and results also go, outliving this machine: a shared path or s3://BUCKET/PREFIX"
    )
    run.set_defaults(handler=command_run)

    presets = commands.add_parser("presets", help="list named searches", description="List named searches, one per line.")
    presets.set_defaults(handler=command_presets)

    resume = commands.add_parser(
        "resume",
        help="continue an interrupted search",
        description="Continue an interrupted search, e.g. after the driver was killed: "
        "`greentune resume greentune-results/default-20261123-120000`. Finished trials are kept; "
        "unfinished ones restart from their last checkpoint.",
    )
    resume.add_argument("results", help="the results directory of the search")
    resume.add_argument("--address", help="Ray cluster address; default: a local Ray")
    resume.set_defaults(handler=command_resume)

    listing = commands.add_parser(
        "techniques",
        help="list techniques and their parameters",
        description="List every technique (built-in, or a plug-in from the greentune.techniques entry-point group) "
        "with each parameter's default and searched domain. Examples: `greentune techniques`, "
        "`greentune techniques granet gmp`, `greentune techniques my_package.module:MyTechnique`.",
    )
    listing.add_argument("names", nargs="*", metavar="NAME", help="technique names or import paths (default: all)")
    listing.set_defaults(handler=command_techniques)

    validate = commands.add_parser(
        "validate", help="check a search file or preset",
        description="Check a search file, or a preset by name: `greentune validate my-search.yaml`, `greentune validate default`, "
        "`greentune validate --space my-search.yaml` (and list what it searches).",
    )
    validate.add_argument("file", metavar="FILE_OR_PRESET")
    validate.add_argument("--space", action="store_true", help="list every searched dimension with its domain")
    validate.set_defaults(handler=command_validate)

    analyze = commands.add_parser(
        "analyze",
        help="analyse a results directory",
        description="Print the Pareto front and the comparison with a baseline; write plots and report.html under "
        "DIR/analysis/. Works on a finished, running or copied search. Examples: `greentune analyze results/`, "
        "`greentune analyze results/ --constraint 'quality<=0.04' --baseline baseline-big --format json`.",
    )
    analyze.add_argument("path", metavar="DIR", help="results directory (or its results.parquet / results.csv)")
    analyze.add_argument("--objectives", help="comma-separated COLUMN[:min|max] (default: the search's)")
    analyze.add_argument("--baseline", help="approach to compare with (default: baseline-big or the only plain baseline)")
    analyze.add_argument("--constraint", action="append", metavar="EXPR",
                         help="keep trials meeting e.g. 'energy_j<=100'; repeatable; replaces the search's constraints")
    analyze.add_argument("--rows", choices=("knee", "front", "all"), default="knee",
                         help="table rows: each approach's knee (default), the front's configurations, or all")
    analyze.add_argument("--format", choices=("text", "markdown", "json", "csv", "parquet"), default="text",
                         help="text/markdown/json print to stdout; csv/parquet write the tables under --out")
    analyze.add_argument("--out", help="where plots, report and table files go (default: DIR/analysis)")
    analyze.add_argument("--no-report", action="store_true", help="skip the plots and the HTML report")
    analyze.set_defaults(handler=command_analyze)

    doctor = commands.add_parser(
        "doctor",
        help="what this machine can measure",
        description="Print one line per energy meter a trial here would get (RAPL or the estimate for the CPU; "
        "NVML's energy counter, power only or nothing for each GPU; MIG; how a shared GPU is split). With a GPU, "
        "then run the GPU checks and exit 1 if any fails. Examples: `greentune doctor`, "
        "`greentune doctor --checks 1,3 --workdir doctor-out/`.",
    )
    doctor.add_argument("--checks", help="which GPU checks to run, e.g. 1,3 (default: all)")
    doctor.add_argument("--workdir", help="where the checks' searches and tracebacks stay (default: a new temporary folder)")
    doctor.set_defaults(handler=command_doctor)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None, _show=warnings.showwarning) -> None:
    """A search file's warning is one line, as its errors are; any other warning shows as Python shows it."""
    if issubclass(category, SearchFileWarning):
        print(f"greentune: warning: {message}", file=sys.stderr)
    else:
        _show(message, category, filename, lineno, file, line)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    debug = "--debug" in argv
    with warnings.catch_warnings():  # restores Python's own display when the command returns
        warnings.showwarning = _show_warning
        try:
            args = build_parser().parse_args(argv)
            code = args.handler(args)
            sys.stdout.flush()  # a reader that closed the pipe is met here, not in the interpreter's exit
            return code
        except UsageError as error:
            if debug:
                raise
            for line in error.lines:
                print(f"greentune: error: {line}", file=sys.stderr)
            return getattr(error, "exit_code", USAGE_ERROR)
        except KeyboardInterrupt:
            print("greentune: interrupted; finished trials are kept in the results directory", file=sys.stderr)
            return INTERRUPTED
        except BrokenPipeError:  # `greentune analyze DIR | head` closed the pipe: what was asked for is printed
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the interpreter's final flush is quiet
            return 0


if __name__ == "__main__":
    sys.exit(main())
