"""What spotctl's exit status means (the README and `spotctl --help` list them)."""

EXIT_OK = 0  # done, started, or still running
EXIT_FAILED = 1  # failed, rolled back, rejected, vetoed or timed out
EXIT_USAGE = 2  # bad usage or input: nothing was started or changed
EXIT_NOT_FOUND = 3  # no such migration
EXIT_CONFLICT = 4  # not waiting for a decision, already decided, or the id is used by another request
