"""spotctl: the operator CLI of the Spot migration product, and its embedded runtime."""

import sys
from pathlib import Path

# The CLI runs the same domain package the Lambda layer ships.
_LAYER = Path(__file__).resolve().parents[1] / "layers" / "spot_core" / "python"
if str(_LAYER) not in sys.path:
    sys.path.insert(0, str(_LAYER))
