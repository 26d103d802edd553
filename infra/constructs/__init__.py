"""Constructs composed by :class:`infra.stack.SpotMigrationStack`.

One construct per concern so later ones (EventBridge + SQS interruption handling,
the approval API) are added beside these without touching them.
"""

from .api import MigrationsApi
from .executions import ExecutionEndHandling
from .functions import Functions
from .interruptions import InterruptionHandling
from .layers import Layers
from .logs import LogGroups
from .operations import Operations
from .storage import Storage
from .workflow import Workflow

__all__ = ["ExecutionEndHandling", "Functions", "InterruptionHandling", "Layers", "LogGroups", "MigrationsApi",
           "Operations", "Storage", "Workflow"]
