"""The launch-rate model: EC2's RunInstances bucket as the wave engine sees it (domain/launch_rate.py)."""

from spot_core.domain.launch_rate import LAUNCH_BURST, LAUNCH_REFILL_PER_SECOND, MIN_REFILL_PER_SECOND, LaunchRate


def test_a_fresh_model_allows_ec2s_burst_then_its_refill_rate():
    rate = LaunchRate()
    assert rate.available(0) == LAUNCH_BURST
    rate.spend(LAUNCH_BURST, 0)
    assert rate.available(0) == 0
    assert rate.available(10) == int(10 * LAUNCH_REFILL_PER_SECOND)
    assert rate.seconds_until(20, 0) == 20 / LAUNCH_REFILL_PER_SECOND


def test_the_bucket_never_holds_more_than_the_burst():
    rate = LaunchRate()
    rate.spend(1, 0)
    assert rate.available(10_000) == LAUNCH_BURST


def test_a_throttle_empties_the_model_halves_its_rate_and_the_size_of_a_launch():
    rate = LaunchRate()
    rate.throttled(asked=40, now=0)
    assert rate.available(0) == 0
    assert rate.per_second == LAUNCH_REFILL_PER_SECOND / 2
    assert rate.available(1_000) == 20  # no launch larger than half the one EC2 refused


def test_accepted_launches_let_rate_and_size_grow_back_to_the_default():
    rate = LaunchRate()
    for _ in range(10):
        rate.throttled(asked=2, now=0)
    assert rate.per_second == MIN_REFILL_PER_SECOND and rate.available(10_000) == 1
    for n in range(1, 20):
        rate.spend(1, float(n * 1000))
    assert rate.per_second == LAUNCH_REFILL_PER_SECOND and rate.largest == LAUNCH_BURST


def test_the_model_survives_the_round_trip_through_the_migration_item():
    rate = LaunchRate()
    rate.spend(300, 5.0)
    assert LaunchRate.model_validate(rate.model_dump()) == rate
