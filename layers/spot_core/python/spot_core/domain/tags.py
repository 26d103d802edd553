"""The tags the product reads and writes, and the one rule for a replacement's tags."""

from __future__ import annotations

from collections.abc import Mapping

TAG_PREFIX = "spot-migration:"
OPT_IN_TAG = "spot-migration:opt-in"
MANAGED_TAG = "spot-migration:managed"  # set at launch only: what makes an instance terminable by the product
STATEFUL_TAG = "spot-migration:stateful"
MIGRATION_ID_TAG = "spot-migration:migration-id"
REPLACES_TAG = "spot-migration:replaces"  # on a migration's replacement: the original it replaces
WAVE_TAG = "spot-migration:wave"
LAUNCH_BATCH_TAG = "spot-migration:launch-batch"  # on a migration's replacement: the RunInstances call that launched it
ON_REBALANCE_TAG = "spot-migration:on-rebalance"
MAX_PRICE_TAG = "spot-migration:spot-max-price"  # per instance: the request's spot_max_price (domain/spot_options.py)
INTERRUPTION_BEHAVIOR_TAG = "spot-migration:interruption-behavior"  # per instance: the request's interruption_behavior
SUCCEEDS_TAG = "spot-migration:succeeds"  # on an interruption replacement: the instance it took over from
AWS_RESERVED_PREFIX = "aws:"  # tags EC2 and other services own; they cannot be set by anyone else
AUTO_SCALING_GROUP_TAG = "aws:autoscaling:groupName"  # EC2 Auto Scaling names the group of each member
# on an Auto Scaling group a migration moves to Spot (propagated at launch, so its members carry it):
# the migration; the group replaces its own members (Capacity Rebalancing), the product never does
GROUP_MIGRATION_TAG = "spot-migration:group-migration"
GROUP_TAGS = (GROUP_MIGRATION_TAG, WAVE_TAG)  # what a migration tags a group with (and a rollback removes)
# on an on-demand instance a revert launched: the revert (a later migration may take it back to Spot)
REVERTED_BY_TAG = "spot-migration:reverted-by"
# on a Spot instance a revert's on-demand replacement took over from: kept running (a rollback of the revert
# brings it back as it was) and terminated when the revert ends; an interruption of it replaces nothing
RETIRED_BY_TAG = "spot-migration:retired-by"
# what says something of one instance only: never copied from an original onto its replacement
INSTANCE_OWN_TAGS = (LAUNCH_BATCH_TAG, SUCCEEDS_TAG, REVERTED_BY_TAG, RETIRED_BY_TAG)


def is_opted_in(tags: Mapping[str, str]) -> bool:
    return tags.get(OPT_IN_TAG, "").lower() == "true"


def is_group_member(tags: Mapping[str, str]) -> bool:
    """A member of an Auto Scaling group a migration moved: its group replaces it."""
    return AUTO_SCALING_GROUP_TAG in tags and GROUP_MIGRATION_TAG in tags


def is_managed(tags: Mapping[str, str]) -> bool:
    return tags.get(MANAGED_TAG) == "true"


def replacement_tags(original: Mapping[str, str], **product_tags: str) -> dict[str, str]:
    """The tags of a replacement: the original's own (not aws:*), then the product's, with
    the managed tag always set. ``product_tags`` are given by tag name:
    ``replacement_tags(tags, **{REPLACES_TAG: "i-..."})``."""
    tags = {k: v for k, v in original.items() if not k.startswith(AWS_RESERVED_PREFIX)}
    tags.update(product_tags)
    tags[MANAGED_TAG] = "true"
    return dict(sorted(tags.items()))


def migration_replacement_tags(original: Mapping[str, str], original_id: str, migration_id: str,
                               wave: int | None, reverting: bool = False) -> dict[str, str]:
    """A migration's replacement names its migration, its original and its wave, so a retried
    invocation finds what it launched and a rollback knows what to terminate; a revert's
    replacement also says it is on-demand because of that revert."""
    product = {MIGRATION_ID_TAG: migration_id, REPLACES_TAG: original_id}
    if wave is not None:
        product[WAVE_TAG] = str(wave)
    if reverting:
        product[REVERTED_BY_TAG] = migration_id
    own = {k: v for k, v in original.items() if k not in INSTANCE_OWN_TAGS}
    return replacement_tags(own, **product)


def interruption_replacement_tags(interrupted: Mapping[str, str], interrupted_id: str) -> dict[str, str]:
    """An interruption replacement keeps the interrupted instance's migration tags (so the
    migration follows it) and names the instance it succeeds; not the launch batch, which
    names the instances of one RunInstances (by their place in it)."""
    kept = {k: v for k, v in interrupted.items() if k != LAUNCH_BATCH_TAG}
    return replacement_tags(kept, **{SUCCEEDS_TAG: interrupted_id})
