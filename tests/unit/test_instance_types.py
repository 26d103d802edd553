from collections import Counter

import pytest

from spot_core.domain import instance_types
from spot_core.domain.instance_types import equivalent_types, known_types, spec


def test_spec_reads_the_bundled_catalog():
    m5 = spec("m5.large")
    assert (m5.vcpu, m5.memory_gib, m5.arch, m5.burstable, m5.instance_storage_gb) == (2, 8.0, "x86_64", False, 0)
    assert (m5.family, m5.size, m5.category, m5.generation) == ("m5", "large", "m", 5)

    t4g = spec("t4g.micro")
    assert (t4g.vcpu, t4g.memory_gib, t4g.arch, t4g.burstable) == (2, 1.0, "arm64", True)

    i3 = spec("i3.large")
    assert i3.instance_storage_gb == 475 and i3.has_instance_storage
    assert spec("r5d.4xlarge").instance_storage_gb == 600
    assert spec("c5.9xlarge").vcpu == 36


def test_catalog_covers_the_required_families():
    families = {spec(t).family for t in known_types()}
    required = {
        "t3", "t3a", "t4g", "m5", "m5a", "m5n", "m6i", "m6a", "m6g", "m7i", "m7g", "c5", "c5a", "c6i",
        "c6a", "c6g", "c7i", "c7g", "r5", "r5a", "r6i", "r6a", "r6g", "r7i", "r7g", "m5d", "c5d", "r5d", "i3",
    }
    assert required <= families
    assert {"t3.nano", "t3.2xlarge", "m7g.8xlarge", "r6a.8xlarge", "i3.4xlarge"} <= set(known_types())


def test_unknown_type_has_no_spec_and_no_equivalents():
    assert spec("m5.metal") is None
    assert spec("not-a-type") is None
    assert equivalent_types("not-a-type") == []


def test_equivalents_of_m5_large_prefer_same_category_then_memory_then_generation():
    assert equivalent_types("m5.large") == [
        "m7i.large", "m6a.large", "m6i.large", "m5a.large", "m5n.large", "r7i.large",
    ]


def test_equivalents_of_graviton_stay_on_arm64():
    assert equivalent_types("m6g.large") == ["m7g.large", "r7g.large", "r6g.large"]


def test_burstable_original_may_get_burstable_candidates_first():
    assert equivalent_types("t3.medium") == [
        "t3a.medium", "t3.large", "t3a.large", "c7i.large", "c6a.large", "c6i.large",
    ]


def test_limit_is_respected():
    assert len(equivalent_types("m5.xlarge", limit=2)) == 2
    assert equivalent_types("m5.xlarge", limit=0) == []
    assert len(equivalent_types("m5.xlarge", limit=50)) > 6


@pytest.mark.parametrize("original", known_types())
def test_equivalents_never_break_the_replacement_rules(original):
    o = spec(original)
    for name in equivalent_types(original, limit=50):
        c = spec(name)
        assert name != original
        assert c.arch == o.arch, "an x86 AMI would not boot on arm64 (and vice versa)"
        assert c.vcpu == o.vcpu
        assert o.memory_gib <= c.memory_gib <= 2 * o.memory_gib
        assert o.burstable or not c.burstable
        assert o.has_instance_storage or not c.has_instance_storage


def test_instance_store_types_are_only_offered_to_instance_store_originals():
    assert not any(spec(t).has_instance_storage for t in equivalent_types("m5.large", limit=50))
    assert "r5d.large" in equivalent_types("m5d.large", limit=50)


def test_equivalents_scan_the_catalog_once_per_type_however_many_instances_ask(monkeypatch):
    scanned = Counter()
    can_replace = instance_types._can_replace

    def counted(original, candidate):
        scanned[original.name] += 1
        return can_replace(original, candidate)

    monkeypatch.setattr(instance_types, "_can_replace", counted)
    instance_types._equivalents.cache_clear()
    try:
        fleet = [("m5.large", "c5.xlarge", "m6g.large")[n % 3] for n in range(3000)]
        answers = [equivalent_types(t) for t in fleet]
    finally:
        instance_types._equivalents.cache_clear()

    assert scanned == {t: len(known_types()) for t in ("m5.large", "c5.xlarge", "m6g.large")}
    assert answers[0] == equivalent_types("m5.large") and answers[0] is not answers[3]  # a list of its own
