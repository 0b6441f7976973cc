"""The README's curl examples work as written."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from tests.live import ROOT

pytestmark = pytest.mark.django_db(transaction=True)


def curl_blocks() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    return [block for block in re.findall(r"```sh\n(.*?)```", readme, re.S) if block.lstrip().startswith("curl")]


def test_the_readme_curl_examples_work(api_server, alice_key):
    blocks = curl_blocks()
    assert len(blocks) >= 3
    env = {**os.environ, "CHATSITE_URL": api_server.url, "CHATSITE_KEY": alice_key, "MODEL": "echo"}
    outputs = [subprocess.run(["bash", "-c", block], env=env, capture_output=True, text=True, timeout=30).stdout
               for block in blocks]
    assert "echo" in [m["id"] for m in json.loads(outputs[0])["data"]]
    assert json.loads(outputs[1])["choices"][0]["message"]["content"] == "Echo: What is the capital of France?"
    events = [line[6:] for line in outputs[2].splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and json.loads(events[-2])["usage"]["completion_tokens"] == 6
