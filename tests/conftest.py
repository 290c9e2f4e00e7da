"""Shared fixtures. Real data lives in ../shared beside the repository; tests that need it
skip with a loud reason when it is absent."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
EXAMPLES = ROOT / "examples" / "docs"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"SHARED DATA MISSING: {path} (clone the repo next to ../shared)")
    return path


@pytest.fixture
def shared():
    return shared_path
