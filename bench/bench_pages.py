"""Benchmark the pages: how soon the dashboard paints in a real browser.

One real daphne (started as the browser tests start it: a throwaway data
directory, migrations, static files collected, one user) with a day of
1-second samples and a fake scheduler writing the live state each second.
Debian's chromium, headless, driven by Playwright, loads each page
``--runs`` times:

- **cold**: a new browser context each run (signed in, empty HTTP cache, so
  every script and stylesheet is fetched again);
- **warm**: the same context again (static files from the browser cache).

Reported from the browser's own performance timing: time to first byte,
first contentful paint (the target: under 1 s on localhost), DOM content
loaded, the load event, and for the dashboard the moment all six charts
hold their history (fetched from /api/monitoring/history after the paint).

Usage::

    .venv/bin/python bench/bench_pages.py [--runs 10] [--write]

``--write`` replaces the "Pages" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import benchdoc  # noqa: E402
from tests.browser.conftest import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    USERNAME,
    start_server,
)

DOC = ROOT / "docs" / "benchmarks.md"
SECTION = "## Pages"
TARGET_MS = 1000.0

TIMING = """() => {
    const nav = performance.getEntriesByType("navigation")[0];
    const paint = performance.getEntriesByName("first-contentful-paint")[0];
    return {
        ttfb: nav.responseStart,
        fcp: paint ? paint.startTime : null,
        dcl: nav.domContentLoadedEventEnd,
        load: nav.loadEventEnd,
        bytes: nav.transferSize,
    };
}"""

CHARTS_READY = (
    "window.cpusched.dashboard && window.cpusched.dashboard.chartCount() === 6"
)


def measure(page, url: str, charts: bool) -> dict[str, float]:
    page.goto(url, wait_until="load")
    if charts:
        page.wait_for_function(CHARTS_READY, timeout=15_000)
        ready = page.evaluate("performance.now()")
    page.wait_for_function(
        "performance.getEntriesByType('navigation')[0].loadEventEnd > 0"
    )
    timing = page.evaluate(TIMING)
    if charts:
        timing["charts"] = ready
    return timing


def sign_in(browser, url: str) -> dict:
    context = browser.new_context()
    page = context.new_page()
    page.goto(url + "/login/")
    page.fill("input[name=username]", USERNAME)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(url + "/")
    state = context.storage_state()
    context.close()
    return state


def run(browser, url: str, state: dict, path: str, runs: int) -> dict[str, list]:
    charts = path == "/"
    results: dict[str, list] = {"cold": [], "warm": []}
    viewport = {"width": 1440, "height": 1000}
    for _ in range(runs):
        context = browser.new_context(storage_state=state, viewport=viewport)
        page = context.new_page()
        results["cold"].append(measure(page, url + path, charts))
        results["warm"].append(measure(page, url + path, charts))
        context.close()
    return results


def summary(samples: list[dict], name: str) -> str:
    values = [s[name] for s in samples if s.get(name) is not None]
    if not values:
        return "–"
    return f"{statistics.median(values):.0f} / {max(values):.0f}"


def report(results: dict[str, dict[str, list]], runs: int) -> str:
    lines = [
        SECTION,
        "",
        f"`bench/bench_pages.py --runs {runs}`: daphne and headless chromium on "
        f"one machine ({platform.machine()}, {os.cpu_count()} CPUs, shared with "
        "other work), a day of 1-second samples stored, a fake scheduler writing "
        "the live state each second. Times in milliseconds from the start of "
        "navigation, median / worst of the runs; cold = new browser context "
        "(empty cache), warm = the same page loaded again.",
        "",
        "| page | load | first byte | first contentful paint | DOM ready "
        "| load event | charts drawn |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = 0.0
    for path, by_kind in results.items():
        for kind, samples in by_kind.items():
            cells = [summary(samples, n) for n in ("ttfb", "fcp", "dcl", "load")]
            charts = summary(samples, "charts") if path == "/" else "–"
            lines.append(
                f"| `{path}` | {kind} | " + " | ".join(cells) + f" | {charts} |"
            )
            if path == "/":
                worst = max([worst] + [s["fcp"] for s in samples if s["fcp"]])
    verdict = "met" if worst < TARGET_MS else "NOT met"
    lines += [
        "",
        f"Target: dashboard first paint under {TARGET_MS:.0f} ms on localhost: "
        f"**{verdict}** (worst {worst:.0f} ms). The figures (CPU, cap, quota, "
        "heartbeat) are in that first paint; the charts fill in once their "
        "history arrives from the API.",
        "",
    ]
    return "\n".join(lines)


def write_section(text: str) -> None:
    benchdoc.write_section(SECTION, text, DOC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not CHROMIUM.exists():
        print(f"{CHROMIUM} is missing: apt-get install chromium", file=sys.stderr)
        return 2

    from playwright.sync_api import sync_playwright

    server = start_server()
    try:
        server.shell(
            "from tests.browser.fake_data import fill_samples; fill_samples(24)"
        )
        server.python(
            "from tests.browser.fake_data import run_scheduler; run_scheduler()"
        )
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=CHROMIUM_ARGS
            )
            state = sign_in(browser, server.url)
            results = {
                path: run(browser, server.url, state, path, args.runs)
                for path in ("/", "/config/", "/alerts/")
            }
            browser.close()
    finally:
        server.close()

    text = report(results, args.runs)
    print(text)
    if args.write:
        write_section(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
