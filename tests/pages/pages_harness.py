"""Helpers of the hosted-pages browser suite: the system Chromium and the screenshots."""

import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/server"))

from authsrv import TARGET  # noqa: E402

# Test artefacts, not committed (docs/pages/ holds small committed copies).
SHOTS = TARGET / "pages-screenshots"


def chromium_path():
    path = os.environ.get("AUTHGATE_CHROMIUM") or shutil.which("chromium")
    assert path, "chromium is not installed: run `cargo xtask setup` (it installs Debian's chromium)"
    return path


def shot(page, name):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
