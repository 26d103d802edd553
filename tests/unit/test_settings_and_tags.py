"""The one source of the settings (and their defaults) and of a replacement's tags."""

import pytest

from spot_core.domain.errors import ConfigurationError
from spot_core.domain.tags import (
    MANAGED_TAG,
    MIGRATION_ID_TAG,
    REPLACES_TAG,
    SUCCEEDS_TAG,
    WAVE_TAG,
    interruption_replacement_tags,
    migration_replacement_tags,
)
from spot_core.entry.settings import Settings, load_settings, tunable_defaults

REQUIRED = {"TABLE_NAME": "t", "TOPIC_ARN": "arn:aws:sns:us-east-1:1:t"}


def test_defaults_come_from_the_settings_model():
    assert tunable_defaults() == {"PRICING_SOURCE": "api", "REBALANCE_POLICY": "prewarm", "PREWARM_SECONDS": "900",
                                  "SWEEPER_MODE": "report", "SWEEPER_GRACE_SECONDS": "600",
                                  "ROLLBACK_COOLDOWN_SECONDS": "86400", "HOOK_TIMEOUT_SECONDS": "90",
                                  "FALLBACK_RETURN": "on", "FALLBACK_RETURN_MIN_AGE_SECONDS": "3600"}
    settings = load_settings(REQUIRED)
    assert settings == Settings(table_name="t", topic_arn=REQUIRED["TOPIC_ARN"])


def test_environment_overrides_and_validation():
    settings = load_settings({**REQUIRED, "SWEEPER_MODE": "terminate", "PREWARM_SECONDS": "60",
                              "AWS_REGION": "eu-west-1", "PRICING_SOURCE": ""})
    assert (settings.sweeper_mode, settings.prewarm_seconds, settings.region) == ("terminate", 60, "eu-west-1")
    assert settings.pricing_source == "api", "an empty variable is the default, not an empty value"
    with pytest.raises(ConfigurationError, match="rebalance_policy"):
        load_settings({**REQUIRED, "REBALANCE_POLICY": "panic"})
    with pytest.raises(ConfigurationError, match="TOPIC_ARN"):
        load_settings({"TABLE_NAME": "t"})
    with pytest.raises(ConfigurationError, match="hook_timeout_seconds"):
        load_settings({**REQUIRED, "HOOK_TIMEOUT_SECONDS": "600"})  # past the two-minute warning
    assert load_settings({**REQUIRED, "FALLBACK_RETURN": "off"}).fallback_return == "off"
    with pytest.raises(ConfigurationError, match="fallback_return_min_age_seconds"):
        load_settings({**REQUIRED, "FALLBACK_RETURN_MIN_AGE_SECONDS": "-1"})


def test_a_migration_replacement_keeps_the_owner_tags_and_names_its_migration():
    tags = migration_replacement_tags({"Name": "web-1", "aws:cloudformation:stack-name": "x", MANAGED_TAG: "no"},
                                      "i-1", "mig-1", 2)
    assert tags == {"Name": "web-1", MANAGED_TAG: "true", MIGRATION_ID_TAG: "mig-1", REPLACES_TAG: "i-1",
                    WAVE_TAG: "2"}
    assert list(tags) == sorted(tags)
    assert WAVE_TAG not in migration_replacement_tags({}, "i-1", "mig-1", None)


def test_an_interruption_replacement_keeps_the_migration_tags_it_inherits():
    interrupted = migration_replacement_tags({"Name": "web-1"}, "i-1", "mig-1", 0)
    tags = interruption_replacement_tags(interrupted, "i-2")
    assert tags[SUCCEEDS_TAG] == "i-2" and tags[REPLACES_TAG] == "i-1" and tags[MIGRATION_ID_TAG] == "mig-1"
    assert tags[MANAGED_TAG] == "true"
