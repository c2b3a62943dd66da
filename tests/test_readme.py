"""README stays true: the Reliability table is the tests' fault markers, and every command it
documents exists with its examples in --help."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import porter

ROOT = Path(__file__).resolve().parent.parent


def test_reliability_table_matches_tests():
    p = subprocess.run([sys.executable, str(ROOT / "scripts/reliability_table.py"), "--check", str(ROOT / "README.md")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("command", ["export", "import", "mirror", "ls", "delete", "prune", "gc", "verify"])
def test_every_command_documented_with_examples(command):
    readme = (ROOT / "README.md").read_text()
    assert f"porter {command} " in readme
    h = porter(command, "--help")
    assert h.returncode == 0 and b"Examples:" in h.stdout
