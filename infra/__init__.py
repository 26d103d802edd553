"""CDK infrastructure of the Spot migration product.

The stack reads the plain-data function catalog from the shared layer
(``layers/spot_core/python/spot_core/catalog.py``), so this package puts that folder
on ``sys.path`` the way Lambda does for a layer.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
LAYER_DIR = REPO_ROOT / "layers" / "spot_core"
LAYER_PYTHON_DIR = LAYER_DIR / "python"
FUNCTIONS_DIR = REPO_ROOT / "functions"
STATE_MACHINE_FILE = REPO_ROOT / "statemachines" / "spot_migration.asl.json"

if str(LAYER_PYTHON_DIR) not in sys.path:
    sys.path.insert(0, str(LAYER_PYTHON_DIR))
