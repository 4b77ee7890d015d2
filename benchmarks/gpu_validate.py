"""Prove greentune's GPU path on one GPU: the checks of ``greentune doctor`` (``greentune.trainables.doctor``).

Usage::

    python benchmarks/gpu_validate.py [--checks 1,3] [--workdir DIR]

It prints one line per check (PASS or FAIL, its figure) and a last line,
and exits 1 if any check failed. Where CUDA sees no GPU it says so in one
line and exits 0, claiming nothing: CI runs it that way. The first visible
GPU is used (choose it with ``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from greentune.trainables.doctor import NAMES, parse_checks, run_checks, summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checks", help="which checks to run, e.g. 1,3 (default: all)")
    parser.add_argument("--workdir", help="where the searches' results and tracebacks stay (default: a new temporary folder)")
    args = parser.parse_args(argv)
    try:
        chosen = parse_checks(args.checks) if args.checks is not None else sorted(NAMES)
    except ValueError as error:
        print(f"gpu_validate: {error}", file=sys.stderr)
        return 2
    import torch

    if not torch.cuda.is_available():
        print("gpu_validate: no GPU visible to CUDA; nothing was checked and nothing is claimed")
        return 0
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="gpu-validate-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(f"gpu_validate: {torch.cuda.get_device_name(0)}; results in {workdir}", flush=True)
    started = time.perf_counter()
    line, status = summary(run_checks(chosen, workdir, lambda text: print(text, flush=True)), "gpu_validate")
    print(f"{line} in {time.perf_counter() - started:.0f} s")
    return status


if __name__ == "__main__":
    sys.exit(main())
