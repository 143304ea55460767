"""Browser tests: a real daphne server and Debian's chromium driven by Playwright.

The ``server`` fixture (one per session) migrates a throwaway data directory,
collects static files, creates a user and runs daphne on a free port in a
subprocess, so pages, static assets and WebSockets are all served exactly as
in production. The test process never opens that database through the ORM
(Playwright's sync API runs an event loop, which Django refuses to share);
use ``server.manage(...)`` or ``server.python(...)`` to act on it instead.

The ``page`` fixture gives a fresh browser context per test; ``login`` signs a
page in. Every test under ``tests/browser`` is marked ``browser`` and is
skipped with a reason when /usr/bin/chromium is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = ROOT / "test-artifacts"
USERNAME = "operator"
PASSWORD = "browser-test-pw-7431"
STARTUP_TIMEOUT_S = 30


def pytest_collection_modifyitems(config, items) -> None:
    """Mark every browser test, and skip them all when chromium is missing."""
    here = Path(__file__).parent
    skip = pytest.mark.skip(
        reason=f"{CHROMIUM} is missing: apt-get install chromium (see .ci/run)"
    )
    for item in items:
        if here not in Path(item.fspath).parents:
            continue
        item.add_marker(pytest.mark.browser)
        if not CHROMIUM.exists():
            item.add_marker(skip)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A daphne process serving cpusched from its own data directory."""

    url: str
    data_dir: Path
    env: dict[str, str]
    username: str = USERNAME
    password: str = PASSWORD
    process: subprocess.Popen | None = None
    helpers: list[subprocess.Popen] = field(default_factory=list)

    def manage(self, *args: str, timeout: float = 120) -> str:
        """Run ``manage.py`` against this server's database; return stdout."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{done.stderr}")
        return done.stdout

    def shell(self, code: str) -> str:
        """Run Python with Django set up against this server's database."""
        return self.manage("shell", "--no-imports", "-c", code)

    def python(self, code: str) -> subprocess.Popen:
        """Start a background Python process with Django set up (a fake
        scheduler, say); it is ended when the session ends or by ``stop``."""
        prelude = "import django; django.setup()\n"
        process = subprocess.Popen(
            [sys.executable, "-c", prelude + code],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.helpers.append(process)
        return process

    def close(self) -> None:
        """Stop helpers and daphne, and remove the data directory."""
        for helper in list(self.helpers):
            self.stop(helper)
        if self.process is not None:
            self.stop(self.process)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    @property
    def log(self) -> str:
        path = self.data_dir / "daphne.log"
        return path.read_text() if path.exists() else ""

    def stop(self, process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process in self.helpers:
            self.helpers.remove(process)


def _server_env(data_dir: Path, port: int) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CPUSCHED_")
    }
    env.update(
        CPUSCHED_DATA_DIR=str(data_dir),
        CPUSCHED_TRUSTED_ORIGINS=f"http://127.0.0.1:{port},http://localhost:{port}",
        CPUSCHED_LOG_LEVEL="WARNING",
        # One user drives every test and benchmark run in quick succession;
        # the per-minute request limit is tested elsewhere (tests/test_auth).
        CPUSCHED_SERVER_RATE_LIMIT_REQUESTS="100000",
        DJANGO_SETTINGS_MODULE="cpusched.settings",
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_until_up(server: Server, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(f"daphne exited:\n{log.read_text()}")
        try:
            urllib.request.urlopen(server.url + "/login/", timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    waited = f"daphne did not answer in {STARTUP_TIMEOUT_S} s"
    raise RuntimeError(f"{waited}:\n{log.read_text()}")


def start_server() -> Server:
    """Migrate a fresh data directory, create the user and start daphne.

    The caller ends it with ``server.close()`` (also used by bench/).
    """
    data_dir = Path(tempfile.mkdtemp(prefix="cpusched-browser-"))
    port = free_port()
    env = _server_env(data_dir, port)
    server = Server(url=f"http://127.0.0.1:{port}", data_dir=data_dir, env=env)
    try:
        server.manage("migrate", "--noinput")
        server.manage("collectstatic", "--noinput")
        server.shell(
            "from django.contrib.auth.models import User; "
            f"User.objects.create_superuser({USERNAME!r}, '', {PASSWORD!r})"
        )
        log = data_dir / "daphne.log"
        with open(log, "w") as out:
            server.process = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("daphne")),
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "cpusched.asgi:application",
                ],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        _wait_until_up(server, log)
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="session")
def server() -> Iterator[Server]:
    """A running daphne with a migrated database and one user."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing")
    server = start_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium, headless, launched once per session."""
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    """A fresh page in its own context (own cookies), closed after the test."""
    context = browser.new_context(
        base_url=server.url, viewport={"width": 1440, "height": 1000}
    )
    page = context.new_page()
    page.set_default_timeout(10_000)
    yield page
    context.close()


@pytest.fixture
def login(server):
    """``login(page)`` signs the page in as the test user and opens the dashboard."""

    def sign_in(page, username: str = USERNAME, password: str = PASSWORD) -> None:
        page.goto(server.url + "/login/")
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url(lambda url: "/login" not in url)

    return sign_in


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (``test-artifacts/``, ignored by git)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
