"""A completed migration's realised savings follow its replacements to an on-demand fallback."""

from builders import MID, WEB, finalize, interruptions, migrate, plan, records, serving, settle

from spot_core.domain.interruptions import Notice
from spot_core.domain.outcomes import realised_now


def test_a_replacement_that_falls_back_to_on_demand_is_priced_on_demand_in_the_realised_savings(p):
    originals = serving(p, 2, (WEB,))
    wave = plan(p, originals)
    migrate(p, wave)
    settle(p)
    finalize(p).finish(MID, "completed", None)
    before = p.migrations.get(MID)["realised"]
    assert (before["on_spot"], before["on_demand_fallbacks"]) == (2, 0)

    interrupted = records(p)[originals[0].instance_id].replacement_id
    notice = Notice(event_id="evt-1", instance_id=interrupted, kind="interruption", time=p.clock.now())
    outcome = interruptions(p).handle(notice)  # no Spot price anywhere: an on-demand fallback

    assert outcome.market == "on-demand"
    after = realised_now(p.migrations.get(MID)) or {}
    assert (after["on_spot"], after["on_demand_fallbacks"]) == (1, 1)
    assert after["monthly_savings"] < before["monthly_savings"]
    assert after["savings_pct"] == round(100 * after["monthly_savings"] / after["monthly_on_demand"], 1)
    assert records(p)[originals[0].instance_id].replacement_market == "on-demand"
