"""Write a benchmark's figures to ``benchmarks/results/NAME.json``, which the docs' benchmark page is built from.

A benchmark calls ``record`` once at its end::

    from record import record
    record("pareto_speed", [("naive / analysis per row", "941x")], what="2-objective front ...")

The file says what was measured, the figures, the command that measured them
(``sys.argv`` by default), the machine, the git commit and the date (UTC), so
a figure in the docs always comes with where it came from. A rerun replaces
the file; commit it with the change it measured.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Iterable

RESULTS = Path(__file__).resolve().parent / "results"
REPOSITORY = Path(__file__).resolve().parents[1]


def machine() -> str:
    """The machine in words: CPU model and cores, how busy it was, and the GPU when torch sees one."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    words = f"{cpu}, {os.cpu_count()} cores, {platform.system()}"
    if hasattr(os, "getloadavg"):  # other jobs on the machine skew timings: say how busy it was
        words += f", load average {os.getloadavg()[0]:.1f} at the end"
    torch = sys.modules.get("torch")  # only if the benchmark imported it: never import torch for this
    if torch is not None and torch.cuda.is_available():
        words += f", GPU {torch.cuda.get_device_name(0)}"
    return words


def commit() -> str | None:
    """The checked-out commit, with ``+changes`` when the working tree differs from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPOSITORY, capture_output=True, text=True, check=True).stdout.strip()

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        return head + ("+changes" if git("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.CalledProcessError):
        return None


def record(
    name: str,
    figures: Iterable[tuple[str, object]],
    command: str | None = None,
    *,
    what: str,
    notes: Iterable[str] = (),
    directory: Path | None = None,
) -> Path:
    """Write the figures as ``directory/NAME.json`` and return its path.

    ``figures`` are (label, value) pairs, in the order the page shows them;
    ``what`` says in one sentence what was measured; ``notes`` are sentences
    the page prints under the figures. ``command`` defaults to how this
    process was started, relative to the repository; ``directory`` to
    ``benchmarks/results``.
    """
    if command is None:
        script = Path(sys.argv[0]).resolve()
        shown = script.relative_to(REPOSITORY) if script.is_relative_to(REPOSITORY) else script
        command = shlex.join(["python", str(shown), *sys.argv[1:]])
    entry = {
        "name": name,
        "what": what,
        "figures": [{"label": label, "value": value} for label, value in figures],
        "notes": list(notes),
        "command": command,
        "machine": machine(),
        "commit": commit(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "transcribed": False,
    }
    directory = RESULTS if directory is None else directory
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(entry, indent=2, ensure_ascii=False) + "\n")
    print(f"recorded: {path}", file=sys.stderr)
    return path
