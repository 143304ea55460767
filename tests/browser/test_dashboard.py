"""The dashboard, configuration and alerts pages in a real browser.

A fake scheduler (a subprocess rewriting the live state row once a second)
stands in for runscheduler; daphne's broadcaster pushes it to the page.
"""

from __future__ import annotations

import json
import time

import pytest

pytestmark = pytest.mark.browser

RUN_SCHEDULER = "from tests.browser.fake_data import run_scheduler; run_scheduler(300)"


CLEAN_UP = """
from alerts.models import Alert
from monitoring.models import LiveState, Sample
Sample.objects.all().delete()
LiveState.objects.all().delete()
Alert.objects.all().delete()
"""


@pytest.fixture(scope="module", autouse=True)
def history(server):
    """A day of samples, so every chart has something to draw.

    The server is shared with other browser tests: the samples, the live
    state and the alerts made here are removed when this module is done.
    """
    server.shell("from tests.browser.fake_data import fill_samples; fill_samples(24)")
    yield
    server.shell(CLEAN_UP)


@pytest.fixture
def scheduler(server, history):
    """A fake scheduler writing the live state each second during one test."""
    process = server.python(RUN_SCHEDULER)
    yield process
    server.stop(process)


def stored(server, key: str) -> object:
    code = (
        f"import json; from cpusched.config import get; print(json.dumps(get({key!r})))"
    )
    return json.loads(server.shell(code).strip().splitlines()[-1])


def wait_for_charts(page, count: int = 6) -> None:
    dashboard = "window.cpusched.dashboard"
    page.wait_for_function(f"{dashboard} && {dashboard}.chartCount() === {count}")


def test_the_dashboard_follows_the_live_state_within_three_seconds(
    page, login, scheduler, artifacts
):
    login(page)
    page.wait_for_selector("#stat-scheduler:text('running')")
    wait_for_charts(page)
    first = page.text_content("#stat-cpu")
    updated = page.text_content("#live-updated")

    started = time.monotonic()
    page.wait_for_function(
        "([cpu, at]) => document.getElementById('stat-cpu').textContent !== cpu"
        " && document.getElementById('live-updated').textContent !== at",
        arg=[first, updated],
        timeout=3000,
    )
    waited = time.monotonic() - started
    page.wait_for_timeout(1500)
    page.screenshot(path=str(artifacts / "dashboard.png"), full_page=True)

    assert waited < 3
    assert page.text_content("#stat-scheduler") == "running"
    assert page.text_content("#socket-state") == "live"
    assert page.text_content("#quota-peak") == "290 s"
    assert page.text_content("#stat-cap") in ("85.0 %", "60.0 %")


def test_the_dashboard_says_when_the_scheduler_is_not_running(page, login, server):
    server.shell("from tests.browser.fake_data import stale_live_state as s; s(60)")

    login(page)

    page.wait_for_selector("#stat-scheduler:text('scheduler not running')")
    assert "s ago" in page.text_content("#stat-heartbeat")


def test_a_name_with_markup_is_shown_as_text(page, login, scheduler):
    login(page)

    page.wait_for_selector("#quota-reservation:text('Nightly')")

    assert page.text_content("#quota-reservation") == "Nightly <b>batch</b>"
    assert page.locator("#quota-reservation b").count() == 0


def test_the_configuration_page_refuses_out_of_range_and_stores_a_valid_value(
    page, login, server, artifacts
):
    login(page)
    page.goto("/config/")
    field = page.locator("#p-limits-avg-max-usage")
    feedback = page.locator("#fb-p-limits-avg-max-usage")

    field.fill("150")
    page.wait_for_selector("#fb-p-limits-avg-max-usage .text-danger")
    typed_message = feedback.text_content()
    page.click("#form-limits button[type=submit]")
    page.wait_for_selector("#card-limits .save-notice")
    refused_notice = page.text_content("#card-limits .save-notice")
    page.locator("#card-limits .card-header").scroll_into_view_if_needed()
    page.evaluate("window.scrollBy(0, -80)")
    page.screenshot(path=str(artifacts / "config-refused.png"))
    after_refusal = stored(server, "limits.avg_max_usage")

    page.fill("#p-limits-avg-max-usage", "35")
    page.wait_for_selector("#fb-p-limits-avg-max-usage .text-success")
    page.click("#form-limits button[type=submit]")
    page.wait_for_selector("#card-limits .save-notice.alert-success")
    page.wait_for_selector("#history-table td:text('limits.avg_max_usage')")

    assert "expected a number from 0.1 to 100" in typed_message
    assert "Not saved" in refused_notice
    assert after_refusal == 30.0
    assert stored(server, "limits.avg_max_usage") == 35.0
    assert page.input_value("#p-limits-avg-max-usage") == "35.0"
    server.shell("from cpusched import config; config.reset(['limits.avg_max_usage'])")


def test_an_hx_post_from_a_later_fragment_works_after_logging_out_and_in(
    page, login, server
):
    code = (
        "from alerts.service import raise_alert; "
        "a = raise_alert('test.csrf', 'system', 'warning', 'Fragment test alert'); "
        "print(a.pk)"
    )
    pk = int(server.shell(code).strip().splitlines()[-1])
    login(page)
    page.goto("/alerts/")
    old_token = page.evaluate("window.cpusched.csrfToken()")

    other = page.context.new_page()
    other.goto(page.url)
    other.click("#logout-button")
    other.wait_for_url("**/login/")
    login(other)
    other.close()
    page.evaluate("document.body.dispatchEvent(new Event('alerts-changed'))")
    page.wait_for_selector(f"#alert-{pk} button:text('Acknowledge')")
    page.click(f"#alert-{pk} button:text('Acknowledge')")

    page.wait_for_selector(f"#alert-{pk} :text('acknowledged by operator')")
    assert page.evaluate("window.cpusched.csrfToken()") != old_token


def test_charts_are_reused_across_many_updates_and_range_switches(
    page, login, scheduler, artifacts
):
    login(page)
    wait_for_charts(page)
    cdp = page.context.new_cdp_session(page)
    pump = """(count) => {
        const d = window.cpusched.dashboard;
        const start = Date.now() + 10000 + d.state.messages * 10000;
        for (let i = 0; i < count; i += 1) {
            d.apply({type: "monitoring_update", data: {
                timestamp: new Date(start + i * 10000).toISOString(),
                cpu_usage: 20 + (i % 80), current_limit: 85, heartbeat_age: 0.5,
                scheduler_running: true, window_12h_avg: 22, memory_usage: 50,
                disk_io: {read: 1000, write: 2000}, network: {in: 300, out: 400},
                quota_remaining: {avg_quota: 8, peak_quota: 300}}});
        }
        return [d.chartCount(), d.pointCount()];
    }"""

    def heap() -> float:
        cdp.send("HeapProfiler.collectGarbage")
        metrics = cdp.send("Performance.getMetrics")["metrics"]
        return next(m["value"] for m in metrics if m["name"] == "JSHeapUsedSize")

    def cycle() -> list:
        counts = []
        for range_name in ("6h", "24h", "1h"):
            page.click(f"[data-range-button='{range_name}']")
            page.wait_for_selector(f"#resources[data-range='{range_name}']")
            wait_for_charts(page)
            counts.append(page.evaluate(pump, 100))
        return counts

    cdp.send("Performance.enable")
    page.evaluate(pump, 400)
    counts = cycle()
    baseline = heap()
    for _ in range(3):
        counts += cycle()
    grown = heap() - baseline
    report = {"baseline_bytes": baseline, "grown_bytes": grown, "counts": counts}
    (artifacts / "chart-memory.json").write_text(json.dumps(report))

    assert {charts for charts, _ in counts} == {6}
    assert max(points for _, points in counts) < 6000
    assert grown < 1_000_000
