"""Every error the product raises on purpose. The class name is the Step Functions error
name, so ASL Retry/Catch match on it.

Domain errors (bad input, a failed wave or gate) are final; only TransientAwsError is
retried by the state machine.
"""

from __future__ import annotations


class SpotMigrationError(Exception):
    """Base of every error this product raises on purpose."""


# --- the caller's mistakes: nothing was changed -------------------------------------------
class InvalidMigrationRequest(SpotMigrationError, ValueError):
    """The input does not describe a valid migration; nothing was changed."""


class InvalidEvent(SpotMigrationError, ValueError):
    """A handler received an event that does not match its model; nothing was changed."""


class MigrationNotFound(SpotMigrationError, LookupError):
    """No migration with that id is recorded."""


class MigrationConflict(SpotMigrationError):
    """The migration id is taken by a migration with a different request."""


class ApprovalNotPending(SpotMigrationError):
    """A decision was sent for a migration that is not waiting for one."""


# --- the workflow's verdicts --------------------------------------------------------------
class WaveFailed(SpotMigrationError):
    """A wave could not reach the required success ratio."""


class QualityGateFailed(SpotMigrationError):
    """Quality degraded beyond the threshold during a bake, or an alarm fired."""


class RollbackIncomplete(SpotMigrationError):
    """Some instances could not be restored; the record names them."""


class MissingVerdicts(SpotMigrationError):
    """The reviews were consolidated before every agent recorded its verdict."""


# --- what AWS answered ----------------------------------------------------------------------
class TransientAwsError(SpotMigrationError):
    """An AWS call failed in a way that a later retry can fix (throttling, 5xx)."""


class CapacityRefused(SpotMigrationError):
    """EC2 cannot serve a launch in this pool now (no capacity, price too low): try the next pool."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code


class LaunchRefused(SpotMigrationError):
    """EC2 refused the launch for a reason another pool would not fix (no free address in
    the subnet, an invalid parameter): that instance cannot move now."""


class LaunchThrottled(SpotMigrationError):
    """EC2 throttled a launch (RequestLimitExceeded): its bucket is empty; launch later, not elsewhere."""


class EventInProgress(SpotMigrationError):
    """Another invocation is handling the same event, or died handling it before its timeout:
    the delivery is retried later (the interruption queue delivers it again), and then finds it
    done or resumes it."""


class StartRefused(SpotMigrationError):
    """EC2 refused to start a stopped instance for a reason waiting will not fix (not
    authorised, for example because its tags changed; an instance in a state that cannot start)."""


class TaskNoLongerWaiting(SpotMigrationError):
    """Step Functions no longer waits for the task token (timed out, or already completed)."""

    def __init__(self, code: str):
        super().__init__(code)
        self.code = code


class PriceUnavailable(SpotMigrationError, ValueError):
    """Neither the Price List API nor the bundled catalog knows this type in this region."""


# --- the product's own setup -----------------------------------------------------------------
class ConfigurationError(SpotMigrationError):
    """A required environment variable is missing or malformed."""


class ProbeRefused(SpotMigrationError):
    """SSM refused to run a health probe on the instance: it is not an SSM managed instance (no
    agent online, or no instance profile allowing SSM). Waiting will not fix it, so the record
    fails with the reason instead of waiting for a result that never comes."""

    def __init__(self, instance_id: str, code: str = "InvalidInstanceId"):
        super().__init__(f"the replacement is not an SSM managed instance ({instance_id}: {code}; it needs the "
                         "SSM agent and an instance profile that allows Systems Manager)")
        self.instance_id, self.code = instance_id, code
