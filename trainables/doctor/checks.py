"""Which GPU checks run, in which order, and how a check that raises still gives its line."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Callable

from .device import check_checkpoint, check_counter, check_feather, check_idle, check_pipeline, check_precision
from .searches import check_compile, check_resume, check_search, check_shared
from .verdicts import NAMES, Check

# In the order they run: the searches first, while this process holds no CUDA context.
CHECKS = {
    6: check_search, 3: check_shared, 9: check_resume, 11: check_compile,
    2: check_idle, 1: check_counter, 4: check_pipeline, 5: check_precision, 8: check_checkpoint, 10: check_feather,
}
IN_WORKDIR = {6, 3, 9, 11}  # searches, whose results stay in the work folder
ALSO = {6: (6, 7)}  # one search gives checks 6 and 7


def parse_checks(text: str) -> list[int]:
    try:
        chosen = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        chosen = []
    if not chosen or any(number not in NAMES for number in chosen):
        raise ValueError(f"--checks takes numbers from 1 to {max(NAMES)} separated by commas, e.g. 1,3; got {text!r}")
    return chosen


def run_checks(chosen: list[int], workdir: Path, report: Callable[[str], None] = print) -> list[Check]:
    """Run the ``chosen`` checks on the first GPU CUDA sees, reporting each line as it comes."""
    import pynvml
    import torch

    from greentune.trainables.energy import handles_by_uuid

    pynvml.nvmlInit()
    [handle] = handles_by_uuid(pynvml, [str(torch.cuda.get_device_properties(0).uuid)])
    device = torch.device("cuda")
    checks = []
    for number, measure in CHECKS.items():
        wanted = [n for n in ALSO.get(number, (number,)) if n in chosen]
        if not wanted:
            continue
        arguments = (pynvml, handle, workdir) if number in IN_WORKDIR else (pynvml, handle, device)
        try:
            found = measure(*arguments)
            found = [check for check in (found if isinstance(found, list) else [found]) if check.number in wanted]
        except Exception as error:  # a check that raises fails; the others still run
            log = workdir / f"check-{number}.log"
            log.write_text(traceback.format_exc())
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
            found = [Check(n, NAMES[n], f"raised {type(error).__name__}: {reason} (traceback in {log})", False) for n in wanted]
        for check in found:
            report(check.line())
        checks += found
        torch.cuda.empty_cache()
    return sorted(checks, key=lambda check: check.number)
