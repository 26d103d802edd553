"""What status / watch / the API show per wave, from the migration item alone."""

from spot_core.domain.views import wave_progress

WAVES = [{"index": i, "percent": p, "bake_seconds": 60, "target_count": n, "cumulative": c}
         for i, (p, n, c) in enumerate([(10, 1, 1), (50, 4, 5), (100, 5, 10)])]


def gate(passed):
    return {"passed": passed, "score": 1.0, "threshold_pct": 5.0, "latency_change_pct": 0.5,
            "error_rate_change_pct": 0.2}


def test_each_wave_state_comes_from_the_recorded_progress():
    item = {"waves": WAVES, "wave_results": {
        "0": {"migration": {"total": 1, "migrated": 1, "failed": 0, "launching": 0, "done": True}, "gate": gate(True)},
        "1": {"migration": {"total": 4, "migrated": 2, "failed": 0, "launching": 2, "done": False}},
    }}
    waves = wave_progress(item)
    assert [w.state for w in waves] == ["passed", "migrating", "pending"]
    assert (waves[1].migrated, waves[1].launching, waves[1].failed) == (2, 2, 0)
    item["wave_results"]["1"]["migration"].update(migrated=4, launching=0, done=True)
    assert wave_progress(item)[1].state == "baking"
    item["wave_results"]["1"]["gate"] = gate(False)
    assert wave_progress(item)[1].state == "failed"


def test_rolled_back_waves_show_how_many_instances_came_back():
    item = {"waves": WAVES, "rollback": {"done": True, "restored": 5, "kept": 0, "by_wave": {"0": 1, "1": 4}},
            "wave_results": {"0": {"migration": {"total": 1, "migrated": 1, "done": True}, "gate": gate(True)},
                             "1": {"migration": {"total": 4, "migrated": 4, "done": True}, "gate": gate(False)}}}
    waves = wave_progress(item)
    assert [w.state for w in waves] == ["rolled_back", "rolled_back", "pending"]
    assert [w.rolled_back for w in waves] == [1, 4, 0]


def test_a_plan_without_waves_has_no_progress():
    assert wave_progress({"status": "vetoed"}) == []


def test_an_unfinished_waves_progress_adds_what_this_pass_moved_to_what_the_last_one_stored():
    from spot_core.domain.plan import InstanceRecord, WaveSpec
    from spot_core.domain.waves import WaveResult

    wave = WaveSpec(index=1, percent=50, bake_seconds=60, target_count=6, cumulative=8)

    def record(iid, status, note=None):
        return InstanceRecord(instance_id=iid, instance_type="m5.large", availability_zone="us-east-1a",
                              eligible=True, wave=1, status=status, attempts=[note] if note else [])

    first = WaveResult.so_far(wave, [record("i-1", "migrated"), record("i-2", "launching")],
                              [record("i-2", "launching")], None, 15)
    assert (first.total, first.migrated, first.launching, first.done, first.wait_seconds) == (6, 1, 1, False, 15)

    second = WaveResult.so_far(wave, [record("i-2", "migrated"), record("i-3", "failed", "no capacity"),
                                      record("i-4", "skipped")], [], first.model_dump(), 30)
    assert (second.migrated, second.failed, second.skipped, second.launching) == (2, 1, 1, 0)
    assert second.failures == ["i-3: no capacity"] and second.completed_at is None and second.wait_seconds == 30
