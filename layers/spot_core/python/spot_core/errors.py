"""Typed errors. The class name is the Step Functions error name: ASL Retry/Catch match on it.

Domain errors (bad input, a failed wave or gate) are final; only TransientAwsError is
retried by the state machine.
"""


class SpotMigrationError(Exception):
    """Base of every error this product raises on purpose."""


class InvalidMigrationRequest(SpotMigrationError, ValueError):
    """The input does not describe a valid migration; nothing was changed."""


class MigrationNotFound(SpotMigrationError, LookupError):
    """No migration with that id is recorded."""


class ApprovalNotPending(SpotMigrationError):
    """A decision was sent for a migration that is not waiting for one."""


class WaveFailed(SpotMigrationError):
    """A wave could not reach the required success ratio."""


class QualityGateFailed(SpotMigrationError):
    """Quality degraded beyond the threshold during a bake, or an alarm fired."""


class RollbackIncomplete(SpotMigrationError):
    """Some instances could not be restored; the record names them."""


class TransientAwsError(SpotMigrationError):
    """An AWS call failed in a way that a later retry can fix (throttling, 5xx)."""


class ConfigurationError(SpotMigrationError):
    """A required environment variable is missing or malformed."""


class InvalidEvent(SpotMigrationError, ValueError):
    """A handler received an event that does not match its model; nothing was changed."""


class MigrationConflict(SpotMigrationError):
    """The migration id is taken by a migration with a different request."""
