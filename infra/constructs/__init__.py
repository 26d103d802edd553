"""Constructs composed by :class:`infra.stack.SpotMigrationStack`.

One construct per concern so later ones (EventBridge + SQS interruption handling,
the approval API) are added beside these without touching them.
"""

from .api import MigrationsApi
from .functions import Functions
from .interruptions import InterruptionHandling
from .layers import Layers
from .storage import Storage
from .workflow import Workflow

__all__ = ["Functions", "InterruptionHandling", "Layers", "MigrationsApi", "Storage", "Workflow"]
