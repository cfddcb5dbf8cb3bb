"""Fixtures for the browser tests: a JupyterLab server, a headless Chromium, screenshots.

The browser tests run only with ``COURSE_BROWSER_TESTS=1`` (``make test-browser``
sets it, and installs what they need). Everywhere else, in ``make test`` and plain
``pytest tests``, they are skipped, so a learner's laptop never needs a browser.

JupyterLab is started the way ``make lab`` starts it (``jupyter lab --ip=127.0.0.1``),
on a free port, with a random token, no browser of its own, the course's offline
environment variables, and private Jupyter config, data and runtime folders, so that
nothing from this machine's Jupyter set-up (extensions, settings, workspaces, running
servers) leaks into the test. Chromium is Debian's system browser, driven by
playwright; no browser is downloaded.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from helpers import env, repo

ROOT = repo.repo_root()
ARTIFACTS = ROOT / "test-artifacts" / "browser"
ENABLED = env.flag("COURSE_BROWSER_TESTS")
CHROMIUM = os.environ.get("COURSE_CHROMIUM", "/usr/bin/chromium")
# Flags for a headless Chromium in a container, as root, without network: no sandbox
# (Chromium will not start as root with one), no GPU, and none of the background
# traffic (component updates, sync, QUIC probes) that would only go nowhere.
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
SERVER_START_S = 60
LOG_TAIL_LINES = 40


def pytest_collection_modifyitems(config, items):
    if ENABLED:
        return
    skip = pytest.mark.skip(
        reason="browser tests run only with COURSE_BROWSER_TESTS=1: `make test-browser` "
        "installs Chromium and playwright and runs them"
    )
    for item in items:  # the tests that need a browser or a server (others run everywhere)
        if {"browser", "lab_factory"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(skip)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: its URL, token, notebook folder and log."""

    url: str
    token: str
    notebook_dir: Path
    log_path: Path
    process: subprocess.Popen = field(repr=False)

    def notebook_url(self, name: str) -> str:
        return f"{self.url}/lab/tree/{name}?token={self.token}"

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as err:
            return f"(no log: {err})"
        return "\n".join(text.splitlines()[-lines:])

    def api(self, path: str, method: str = "GET", timeout: float = 5) -> int:
        request = urllib.request.Request(
            f"{self.url}{path}",
            method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status


def lab_environment(base: Path, token: str) -> dict[str, str]:
    """The environment of `make lab`, with Jupyter's own folders made private to the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_", "IPYTHON"))}
    folders = {
        "JUPYTER_CONFIG_DIR": "config",
        "JUPYTER_DATA_DIR": "data",
        "JUPYTER_RUNTIME_DIR": "runtime",
        "JUPYTERLAB_SETTINGS_DIR": "lab-settings",
        "JUPYTERLAB_WORKSPACES_DIR": "lab-workspaces",
        "IPYTHONDIR": "ipython",
    }
    for name, folder in folders.items():
        (base / folder).mkdir(parents=True, exist_ok=True)
        env[name] = str(base / folder)
    # A learner's first JupyterLab asks in a pop-up whether to fetch Jupyter news; answer
    # "no" in the settings, as a person would once, so that it covers nothing on screen.
    notification = base / "lab-settings" / "@jupyterlab" / "apputils-extension"
    notification.mkdir(parents=True, exist_ok=True)
    (notification / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}\n', encoding="utf-8"
    )
    env.update(
        {  # as the Makefile exports them for `make lab`
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "JUPYTER_TOKEN": token,  # not on the command line, where `ps` shows it
        }
    )
    return env


def lab_command(notebook_dir: Path, port: int) -> list[str]:
    """`make lab`'s command (`jupyter lab --ip=127.0.0.1`) on a given port, without a browser."""
    jupyter = Path(sys.executable).with_name("jupyter")
    launcher = [str(jupyter)] if jupyter.exists() else [sys.executable, "-m", "jupyter"]
    return [
        *launcher,
        "lab",
        f"--notebook-dir={notebook_dir}",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",  # this port or a clear failure, never another one
        "--no-browser",
        # No calls to the internet: no news feed, no update check, no extension index.
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
        # jupyter refuses to run as root without this (containers and CI machines often are).
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
    ]


def _stop(lab: Lab) -> None:
    """Shut JupyterLab (and its kernels) down: the API first, then signals, each bounded."""
    process = lab.process
    if process.poll() is None:
        with contextlib.suppress(OSError, urllib.error.URLError):
            lab.api("/api/shutdown", method="POST")
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=15)
    for sig, wait in ((signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)  # the group started for this server only
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=wait)


@pytest.fixture
def lab_factory(tmp_path):
    """Start JupyterLab on a folder of notebooks: ``lab = lab_factory(folder)``.

    Waits (at most ``timeout_s``) until the server answers; always shuts it down.
    """
    started: list[Lab] = []

    def start(notebook_dir: Path, timeout_s: float = SERVER_START_S) -> Lab:
        token = secrets.token_hex(24)
        port = _free_port()
        base = tmp_path / "jupyter"
        log_path = tmp_path / "jupyterlab.log"
        log = open(log_path, "wb")
        process = subprocess.Popen(
            lab_command(notebook_dir, port),
            cwd=notebook_dir,
            env=lab_environment(base, token),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()  # the child has its own copy
        lab = Lab(f"http://127.0.0.1:{port}", token, notebook_dir, log_path, process)
        started.append(lab)
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                pytest.fail(
                    f"JupyterLab exited with code {process.returncode} before answering.\n"
                    f"--- JupyterLab log (tail) ---\n{lab.log_tail()}"
                )
            with contextlib.suppress(OSError, urllib.error.URLError):
                if lab.api("/api/status", timeout=2) == 200:
                    return lab
            if time.monotonic() > deadline:
                pytest.fail(
                    f"JupyterLab did not answer on {lab.url} within {timeout_s:.0f} s.\n"
                    f"--- JupyterLab log (tail) ---\n{lab.log_tail()}"
                )
            time.sleep(0.5)

    yield start
    for lab in started:
        _stop(lab)


@pytest.fixture
def browser():
    """Debian's headless Chromium, driven by playwright (which downloads no browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("playwright is not installed: run `make test-browser`, which installs it")
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        found = shutil.which("chromium")
        pytest.fail(
            f"no Chromium at {CHROMIUM} (COURSE_CHROMIUM)"
            + (f"; there is one at {found}" if found else "")
            + ": run `make test-browser` (it installs Debian's chromium with apt-get)"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000
        )
        try:
            yield chromium
        finally:
            chromium.close()


SAVED: list[Path] = []  # screenshots of this session, listed at the end of pytest's report


@pytest.fixture
def screenshot(request):
    """``screenshot(page, "name.png")`` saves the page as a test artifact (gitignored):
    test-artifacts/browser/<test name>/name.png.

    The test's folder is emptied first (no stale picture from an earlier run); the paths
    are listed at the end of pytest's report, for a person to look at.
    """
    folder = ARTIFACTS / request.node.name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)

    def save(page, name: str) -> Path:
        path = folder / name
        page.screenshot(path=path, timeout=10_000)
        SAVED.append(path)
        return path

    return save


def pytest_terminal_summary(terminalreporter):
    if SAVED:
        terminalreporter.write_sep("=", "browser screenshots (test artifacts)")
        for path in SAVED:
            terminalreporter.write_line(str(path.relative_to(ROOT)))
