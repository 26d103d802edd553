"""Shared domain package of the Spot migration product (shipped as a Lambda layer)."""

TAG_PREFIX = "spot-migration:"
OPT_IN_TAG = "spot-migration:opt-in"
MANAGED_TAG = "spot-migration:managed"
STATEFUL_TAG = "spot-migration:stateful"
MIGRATION_ID_TAG = "spot-migration:migration-id"
REPLACES_TAG = "spot-migration:replaces"
WAVE_TAG = "spot-migration:wave"
ON_REBALANCE_TAG = "spot-migration:on-rebalance"
SUCCEEDS_TAG = "spot-migration:succeeds"  # on an interruption replacement: the instance it took over from
