"""Test-wide setup: import the shared layer and the repo root the way Lambda does, and the
in-memory fakes of the ports (tests/fakes.py)."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT / "layers" / "spot_core" / "python", ROOT, ROOT / "tests"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))
