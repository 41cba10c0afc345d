"""The examples in examples/python run as their docstrings say."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, Hub


def test_the_agent_example_announces_itself_and_publishes_its_result(hub: Hub) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python" / "agent.py"), hub.url],
        capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    assert "'sum': 6.5" in done.stdout and "at offset" in done.stdout


def test_the_chat_example_publishes_what_it_reads(hub: Hub) -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "python" / "chat.py"), hub.url, "ada"],
        input="hello from stdin\n", capture_output=True, text=True, timeout=30,
    )
    assert done.returncode == 0, done.stderr
    check = subprocess.run(
        [sys.executable, "-c", "import sys\nfrom sacred_client import blocking\n"
         "with blocking.connect(sys.argv[1]) as c:\n"
         "    print([p.data['text'] for p in c.history('lobby').publications])", hub.url],
        capture_output=True, text=True, timeout=30,
    )
    assert check.stdout.strip() == "['hello from stdin']", check.stderr
