"""`manage.py bench sim` on a small day: every figure is there, each beside its baseline."""

from dashboards.benchmarks import sim


def test_bench_sim_small_day_prints_every_figure():
    lines: list[str] = []

    result = sim.run(runs=1, log=lines.append, orders=400, erlang_arrivals=3_000)

    text = sim.table(result)
    assert result["parameters"]["orders"] == 400
    assert 0 < result["baseline_engine_seconds"] < result["sim_10k_seconds"]
    assert result["baseline_heap_seconds"] > 0
    for policy in sim.POLICIES:
        assert result["quality"][policy]["skill_match_rate"] is not None
    assert set(result["met"]) == set(sim.TARGETS)
    assert abs(result["erlang_c"]["p_wait_error"]) < 0.5  # 3,000 arrivals: a smoke check, not the test
    for label in ("sim_10k_seconds", "inside plan_round", "bare heapq", "SLA breach rate", "Erlang C"):
        assert label in text
