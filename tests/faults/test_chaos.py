"""A short chaos run in CI: every fault kind under money traffic, then the full audit.

The long version is ``digis loadtest chaos --iterations 200`` (see README).
"""

from __future__ import annotations

from loadtest.chaos import ChaosConfig, run_chaos


async def test_short_chaos_run_keeps_every_money_invariant() -> None:
    report = await run_chaos(
        ChaosConfig(
            iterations=6,
            min_run=1.0,
            max_run=2.0,
            fans=16,
            creators=3,
            seed=20261128,
            quiet=True,
            faults=("kill9", "postgres", "kill9", "redis", "sigterm", "kill9"),
        )
    )
    failed = [c for c in report["checks"] if not c["ok"]]
    assert report["ok"], (failed, report["tally"]["server_errors"][:3])
    tally = report["tally"]
    assert tally["crash_points"] == 3 and tally["postgres_outages"] == 1
    assert tally["redis_restarts"] == 1 and tally["sigterms"] == 1
    # the run really moved money through every path it audits
    assert tally["purchases"] > 0 and tally["webhooks_sent"] > 0
    assert tally["transfers_ok"] > 0 and tally["tips_ok"] > 0 and tally["calls_started"] > 0
    assert all(c["checked"] > 0 for c in report["checks"])
