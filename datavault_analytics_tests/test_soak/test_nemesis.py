"""The nemesis's schedule: a pure function of the seed, faults every few seconds, often several at once,
never two at a time on one target, a schema migration every few tens of seconds."""

from soak.nemesis import BY_NAME, KINDS, MIGRATION_EVERY_SECONDS, schedule


def test_the_same_seed_replays_the_same_faults_and_another_seed_does_not():
    assert schedule(7, 180) == schedule(7, 180)
    assert schedule(7, 180) != schedule(8, 180)


def test_faults_come_every_few_seconds_often_together_and_cover_every_kind():
    plan = schedule(11, 1800)
    gaps = [b.at - a.at for a, b in zip(plan, plan[1:], strict=False) if b.at != a.at]
    assert max(gaps) <= 8 * 3  # a planned fault is skipped only when its target is busy
    together = {f.at for f in plan if sum(g.at == f.at for g in plan) > 1}
    assert len(together) >= len(plan) // 10
    assert {f.kind for f in plan} == {k.name for k in KINDS}
    assert all(20 <= f.at < 1800 for f in plan)


def test_faults_on_one_target_never_overlap():
    for seed in range(20):
        busy: dict[str, float] = {}
        for fault in schedule(seed, 600):
            target = BY_NAME[fault.kind].target
            assert busy.get(target, -1) < fault.at, (seed, fault)
            busy[target] = fault.at + fault.heal_after


def test_a_schema_migration_comes_at_least_every_twenty_seconds():
    for seed in range(20):
        migrations = [f.at for f in schedule(seed, 180) if f.kind == "schema migration"]
        assert migrations and migrations[0] <= 20 + MIGRATION_EVERY_SECONDS + 8, (seed, migrations)
        gaps = [b - a for a, b in zip(migrations, migrations[1:], strict=False)]
        assert max(gaps) <= MIGRATION_EVERY_SECONDS + 8, (seed, gaps)  # the next fault after the interval
        assert len(migrations) >= 180 // (MIGRATION_EVERY_SECONDS + 8) - 1
