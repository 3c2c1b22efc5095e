"""`isthmus up` end to end: the example fabric's engines and a gateway, called by the OpenAI client."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import openai
import pytest

PORT = 18999


@pytest.mark.slow
def test_up_serves_the_example_fabric() -> None:
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen(
        [sys.executable, "-m", "isthmus.cli.main", "up", "--port", str(PORT), "--timing", "none"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{PORT}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail("the gateway did not come up")
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{PORT}/v1",
            api_key="sk-isthmus-demo-meridian",
            max_retries=0,
        )
        raw = client.chat.completions.with_raw_response.create(
            model="chat-small", messages=[{"role": "user", "content": "Hello"}], max_tokens=4
        )
        assert raw.parse().choices[0].message.content
        assert "site=" in raw.headers["x-isthmus-decision"]
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert process.returncode == 0, output
    assert "OpenAI client" in output and "sk-isthmus-demo-" in output
