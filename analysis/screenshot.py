"""Open a report in headless Chromium: screenshot it and check that it rendered cleanly.

Usage: ``python -m greentune.analysis.screenshot RESULTS/analysis/report.html [shot.png]``.
It prints what the browser saw and exits 1 when the page logged anything to
the console (an uncaught error, a failed load), drew no front, or is wider
than the window (a table running off the page). Chromium comes from the
system (``apt-get install chromium``), not from pip.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from html import unescape
from dataclasses import dataclass
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_CONSOLE = re.compile(r":CONSOLE[:(\d)]*\]? ?(.*)")
# Chromium's command line screenshots and dumps the DOM but evaluates no script of
# ours, so the page is loaded with this one appended: once loaded, it writes the
# page's layout into an attribute of <body>, which the dumped DOM carries out.
_MEASURE = """<script>addEventListener("load", () => {
  const box = document.getElementById("figure-front")?.getBoundingClientRect();
  document.body.dataset.layout = JSON.stringify({page_width: document.documentElement.scrollWidth, window_width: innerWidth,
    front_box: box ? [box.left + scrollX, box.top + scrollY, box.right + scrollX, box.bottom + scrollY].map(Math.round) : null});
});</script>"""
_LAYOUT = re.compile(r'data-layout="([^"]*)"')


@dataclass
class BrowserCheck:
    screenshot: Path
    console: list[str]  # every console message: the report should log none
    plots: int  # plotly charts drawn
    front_points: int  # markers drawn in the front chart
    page_width: int  # the document's scroll width: wider than the window when something runs off the page
    window_width: int
    front_box: tuple[int, int, int, int] | None  # the front chart's left, top, right, bottom in the screenshot

    @property
    def ok(self) -> bool:
        return not self.console and self.front_points > 0 and self.page_width <= self.window_width


def find_browser() -> str | None:
    return next((path for path in map(shutil.which, BROWSERS) if path), None)


def check_report(report: Path, screenshot: Path, *, width: int = 1280, height: int = 3000, timeout: float = 120) -> BrowserCheck:
    """Load ``report`` in headless Chromium, let its scripts run, save a PNG and inspect the DOM."""
    browser = find_browser()
    if browser is None:
        raise RuntimeError(f"no Chromium found (looked for {', '.join(BROWSERS)}); install it with `apt-get install chromium`")
    screenshot = Path(screenshot).resolve()
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:  # the report is self-contained, so its copy may lie anywhere
        measured = Path(folder) / "report.html"
        measured.write_text(Path(report).read_text(encoding="utf-8") + _MEASURE, encoding="utf-8")
        command = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", f"--window-size={width},{height}",
            "--force-device-scale-factor=1", "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0",
            f"--screenshot={screenshot}", "--dump-dom", measured.as_uri(),
        ]
        run = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0 or not screenshot.exists():
        raise RuntimeError(f"{browser} failed ({run.returncode}): {run.stderr.strip().splitlines()[-1:]}")
    console = [match.group(1) for line in run.stderr.splitlines() if (match := _CONSOLE.search(line))]
    dom = run.stdout
    start = dom.find('id="figure-front"')
    end = dom.find('id="figure-', start + 1) if start >= 0 else -1
    front = dom[start:end] if start >= 0 else ""
    match = _LAYOUT.search(dom)
    if match is None:
        raise RuntimeError(f"{browser} did not finish loading {report} (no load event within its time budget)")
    layout = json.loads(unescape(match.group(1)))
    box = layout["front_box"]
    return BrowserCheck(screenshot, console, dom.count('class="plot-container plotly"'), front.count('class="point"'),
                        layout["page_width"], layout["window_width"], tuple(box) if box else None)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0 if argv else 2
    report = Path(argv[0])
    screenshot = Path(argv[1]) if len(argv) > 1 else report.with_name("report.png")
    check = check_report(report, screenshot)
    print(f"screenshot: {check.screenshot}")
    print(f"plots drawn: {check.plots}; points in the front chart: {check.front_points}; console messages: {len(check.console)}")
    print(f"page width: {check.page_width} px in a {check.window_width} px window")
    for message in check.console:
        print(f"  console: {message}")
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
