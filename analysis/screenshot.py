"""Open a report in headless Chromium: screenshot it and check that it rendered cleanly.

Usage: ``python -m greentune.analysis.screenshot RESULTS/analysis/report.html [shot.png]``.
It prints what the browser saw and exits 1 when the page logged anything to
the console (an uncaught error, a failed load) or drew no front. Chromium
comes from the system (``apt-get install chromium``), not from pip.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_CONSOLE = re.compile(r":CONSOLE[:(\d)]*\]? ?(.*)")


@dataclass
class BrowserCheck:
    screenshot: Path
    console: list[str]  # every console message: the report should log none
    plots: int  # plotly charts drawn
    front_points: int  # markers drawn in the front chart

    @property
    def ok(self) -> bool:
        return not self.console and self.front_points > 0


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def check_report(report: Path, screenshot: Path, *, width: int = 1280, height: int = 3000, timeout: float = 120) -> BrowserCheck:
    """Load ``report`` in headless Chromium, let its scripts run, save a PNG and inspect the DOM."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError(f"no Chromium found (looked for {', '.join(BROWSERS)}); install it with `apt-get install chromium`")
    screenshot = Path(screenshot).resolve()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    command = [
        browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
        "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0", f"--screenshot={screenshot}", "--dump-dom",
        Path(report).resolve().as_uri(),
    ]
    run = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0 or not screenshot.exists():
        raise RuntimeError(f"{browser} failed ({run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
    console = [match.group(1) for line in run.stderr.splitlines() if (match := _CONSOLE.search(line))]
    dom = run.stdout
    start = dom.find('id="figure-front"')
    end = dom.find('id="figure-', start + 1) if start >= 0 else -1
    front = dom[start:end] if start >= 0 else ""
    return BrowserCheck(screenshot, console, dom.count('class="plot-container plotly"'), front.count('class="point"'))


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    report = Path(argv[0])
    screenshot = Path(argv[1]) if len(argv) > 1 else report.with_name("report.png")
    check = check_report(report, screenshot)
    print(f"screenshot: {check.screenshot}")
    print(f"plots drawn: {check.plots}; points in the front chart: {check.front_points}; console messages: {len(check.console)}")
    for message in check.console:
        print(f"  console: {message}")
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
