"""Fixtures: a real hub per test, on a free loopback port.

The hub is the workspace's test hub (``tests/browser_hub.rs``): a real
``sacred-server`` hub with RPC methods to kick clients and restart itself
(``test.kick``, ``test.restart``, ``test.echo``) and test tokens (none is
anonymous, ``user:NAME``, ``short:NAME:MS`` expires after MS, anything else
is refused). ``SACRED_TEST_HUB`` names its binary (``target/debug/browser-hub``
by default: ``cargo build -p sacred-tests --bin browser-hub``), and
``SACRED_SERVER`` the ``sacred-server`` binary for the tests of the operator's
binary.
"""

from __future__ import annotations

import json
import os
import pathlib
import queue
import signal
import subprocess
import threading
import urllib.parse
from typing import IO, Iterator, List, Optional

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[3]
STARTUP = 20.0


def binary(variable: str, name: str) -> str:
    path = os.environ.get(variable) or str(ROOT / "target" / "debug" / name)
    if not os.access(path, os.X_OK):
        pytest.exit(f"{path} is missing: build it (cargo build -p sacred-tests -p sacred-server) or set {variable}", 2)
    return path


def _lines(stream: IO[str], into: "queue.Queue[Optional[str]]") -> None:
    for line in stream:
        into.put(line)
    into.put(None)


class Process:
    """A server process whose output is read on a thread, so no wait on it can hang."""

    def __init__(self, args: List[str]) -> None:
        self.args = args
        self.process = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        self.output: "queue.Queue[Optional[str]]" = queue.Queue()
        assert self.process.stdout is not None
        threading.Thread(target=_lines, args=(self.process.stdout, self.output), daemon=True).start()

    def line(self, contains: str = "") -> str:
        """The next output line containing ``contains``, within ``STARTUP`` s."""
        while True:
            try:
                line = self.output.get(timeout=STARTUP)
            except queue.Empty:
                raise AssertionError(f"{self.args[0]} printed no {contains!r} line within {STARTUP} s") from None
            if line is None:
                raise AssertionError(f"{self.args[0]} exited with {self.process.wait()} before a {contains!r} line")
            if contains in line:
                return line.strip()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


class Hub:
    """The test hub: ``url`` to connect to."""

    def __init__(self, bind: Optional[str] = None) -> None:
        args = [binary("SACRED_TEST_HUB", "browser-hub")]
        if bind is not None:
            args.append(bind)
        self.process = Process(args)
        self.url = self.process.line("ws://")
        self.address = urllib.parse.urlparse(self.url).netloc

    def kill(self) -> None:
        """Kills the process (no close frames: the link just drops)."""
        self.process.stop()

    def start_again(self) -> None:
        """A new process on the same address, with empty history."""
        self.process = Process([binary("SACRED_TEST_HUB", "browser-hub"), self.address])
        self.url = self.process.line("ws://")


@pytest.fixture
def hub() -> Iterator[Hub]:
    started = Hub()
    yield started
    started.kill()


@pytest.fixture
def sacred_server() -> Iterator[str]:
    """The operator's ``sacred-server`` binary with its defaults; yields its URL."""
    process = Process([binary("SACRED_SERVER", "sacred-server"), "--bind", "127.0.0.1:0", "--log-format", "json"])
    line = process.line('"address"')
    address = json.loads(line)
    found = address.get("address") or address.get("fields", {}).get("address")
    assert found, line
    yield f"ws://{found}/ws"
    process.stop()


@pytest.fixture(params=["json", "msgpack"])
def codec(request: pytest.FixtureRequest) -> str:
    codec: str = request.param
    return codec
