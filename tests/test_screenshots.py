"""docs/screenshots.py, the README's pictures: it starts its own demo site and writes all three."""

from __future__ import annotations

import struct
import subprocess
import sys

import pytest

from tests.chromium import CHROMIUM
from tests.live import ROOT

pytestmark = pytest.mark.browser


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


@pytest.mark.skipif(not CHROMIUM, reason="Debian's chromium is not installed (make test installs it with apt-get)")
def test_the_screenshot_script_takes_all_three_from_a_site_of_its_own(tmp_path):
    done = subprocess.run([sys.executable, "docs/screenshots.py", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    sizes = {name: png_size((tmp_path / f"screenshot-{name}.png").read_bytes())
             for name in ("desktop-light", "desktop-dark", "phone")}
    assert sizes == {"desktop-light": (1280, 800), "desktop-dark": (1280, 800), "phone": (390, 844)}
    assert all((tmp_path / f"screenshot-{name}.png").stat().st_size < 400_000 for name in sizes)
