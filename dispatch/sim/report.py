"""A comparison for people: a text table for the terminal and an HTML page with charts (Apache
ECharts, inlined from the npm package so the file opens anywhere, offline, and can be mailed)."""

from __future__ import annotations

import html
import json
from pathlib import Path

# (label, key path, format): the figures of `dispatch.sim.metrics.summarise`, in reading order.
ROWS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("orders (incl. repeat repairs)", ("orders",), "int"),
    ("accepted", ("accepted",), "int"),
    ("abandoned by the customer", ("abandoned",), "int"),
    ("escalated to the supervisor (L2)", ("escalated",), "int"),
    ("unserved at the end", ("unserved",), "int"),
    ("time to accept, mean (min)", ("accept_minutes", "mean"), "min"),
    ("time to accept, p50 (min)", ("accept_minutes", "p50"), "min"),
    ("time to accept, p90 (min)", ("accept_minutes", "p90"), "min"),
    ("time to accept, p99 (min)", ("accept_minutes", "p99"), "min"),
    ("SLA breach rate", ("sla_breach_rate",), "pct"),
    ("skill-match rate", ("skill_match_rate",), "pct"),
    ("mean travel, on-site jobs (km)", ("mean_travel_km",), "km"),
    ("mean distance at offer (km)", ("mean_distance_km",), "km"),
    ("agent utilisation", ("utilisation",), "pct"),
    ("load spread (Gini of items)", ("load_gini",), "ratio"),
    ("first-time-fix rate", ("first_time_fix_rate",), "pct"),
    ("offers / rejects / expiries", None, "offers"),
    ("simulated in (s)", ("wall_seconds",), "sec"),
)


def figure(metrics: dict, path: tuple[str, ...]):
    value = metrics
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def show(value, kind: str) -> str:
    if value is None:
        return "—"
    if kind == "int":
        return f"{value:,}"
    if kind == "pct":
        return f"{value:.2%}"
    if kind in ("min", "km"):
        return f"{value:.2f}"
    if kind == "ratio":
        return f"{value:.3f}"
    if kind == "sec":
        return f"{value:.1f}"
    return str(value)


def _cells(metrics: dict) -> list[str]:
    cells = []
    for _label, path, kind in ROWS:
        if path is None:
            cells.append(f"{metrics['offers']:,} / {metrics['rejects']:,} / {metrics['expiries']:,}")
        else:
            cells.append(show(figure(metrics, path), kind))
    return cells


def text_table(result: dict) -> str:
    scenario = result["scenario"]
    names = [run["policy"] for run in result["runs"]]
    width = max(16, *(len(n) + 2 for n in names))
    lines = [
        f"Scenario {scenario['name']}: {scenario['orders']:,} orders, {scenario['agents']} agents, "
        f"{scenario['horizon_hours']:g} h from {scenario['start']} (seed {result['seed']})",
    ]
    if scenario.get("description"):
        lines.append(scenario["description"])
    lines += ["", f"{'':<34}" + "".join(f"{n:>{width}}" for n in names)]
    columns = [_cells(run) for run in result["runs"]]
    for index, (label, _path, _kind) in enumerate(ROWS):
        lines.append(f"{label:<34}" + "".join(f"{col[index]:>{width}}" for col in columns))
    return "\n".join(lines)


def echarts_source(base_dir: Path) -> str:
    """The ECharts library `make` installed from npm (package.json)."""
    path = base_dir / "node_modules" / "echarts" / "dist" / "echarts.min.js"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the HTML report draws its charts with ECharts from npm; run `make` "
            "(or `npm ci`) first"
        )
    return path.read_text(encoding="utf-8")


def html_report(result: dict, *, echarts_js: str) -> str:
    """One self-contained page: the scenario, the figures side by side, and hourly charts."""
    scenario = result["scenario"]
    names = [run["policy"] for run in result["runs"]]
    columns = [_cells(run) for run in result["runs"]]
    head = "".join(f"<th>{html.escape(n)}</th>" for n in names)
    body = "".join(
        "<tr><th>{}</th>{}</tr>".format(
            html.escape(label), "".join(f"<td>{html.escape(col[i])}</td>" for col in columns)
        )
        for i, (label, _p, _k) in enumerate(ROWS)
    )
    series = {
        "hours": result["runs"][0]["series"]["hours"] if result["runs"] else [],
        "runs": [{"name": run["policy"], **run["series"]} for run in result["runs"]],
    }
    # json.dumps escapes nothing HTML cares about: "</" would end the script element early.
    data = json.dumps(series, ensure_ascii=False).replace("</", "<\\/")
    parameters = html.escape(json.dumps(scenario.get("parameters", {}), ensure_ascii=False, indent=1))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Paidan simulation: {html.escape(scenario["name"])}</title>
<style>
body {{ font: 14px/1.45 -apple-system, "Segoe UI", "Noto Sans CJK SC", sans-serif; margin: 24px; color: #1f2933; }}
table {{ border-collapse: collapse; margin: 12px 0 24px; }}
th, td {{ border: 1px solid #d9dee3; padding: 4px 10px; text-align: right; }}
th:first-child {{ text-align: left; font-weight: normal; }}
thead th {{ background: #f1f4f7; text-align: right; }}
.chart {{ width: 100%; max-width: 1000px; height: 320px; margin-bottom: 18px; }}
pre {{ background: #f7f8fa; padding: 8px; font-size: 12px; overflow: auto; }}
</style></head>
<body>
<h1>Dispatch simulation: {html.escape(scenario["name"])}</h1>
<p>{scenario["orders"]:,} orders, {scenario["agents"]} agents, {scenario["horizon_hours"]:g} hours from
{html.escape(scenario["start"])}, seed {result["seed"]}. {html.escape(scenario.get("description") or "")}</p>
<table><thead><tr><th></th>{head}</tr></thead><tbody>{body}</tbody></table>
<h2>By hour of the day</h2>
<div class="chart" id="accept"></div>
<div class="chart" id="waiting"></div>
<div class="chart" id="breaches"></div>
<div class="chart" id="arrivals"></div>
<details><summary>Scenario parameters</summary><pre>{parameters}</pre></details>
<script>{echarts_js}</script>
<script>
const data = {data};
function draw(id, title, key, kind) {{
  const chart = echarts.init(document.getElementById(id));
  chart.setOption({{
    title: {{ text: title, left: 0, textStyle: {{ fontSize: 14 }} }},
    tooltip: {{ trigger: "axis" }},
    legend: {{ top: 34, left: 0 }},
    grid: {{ top: 76, left: 50, right: 20, bottom: 30 }},
    xAxis: {{ type: "category", data: data.hours.map(h => h + ":00") }},
    yAxis: {{ type: "value" }},
    series: data.runs.map(run => ({{ name: run.name, type: kind, data: run[key], connectNulls: true }})),
  }});
  window.addEventListener("resize", () => chart.resize());
}}
draw("accept", "Time to accept, p90 (minutes), by the hour orders became ready", "accept_p90_minutes", "line");
draw("waiting", "Orders waiting for an agent to accept, at each hour", "waiting", "line");
draw("breaches", "SLA breaches, by the hour orders became ready", "breaches", "bar");
draw("arrivals", "Orders becoming ready", "arrivals", "bar");
</script>
</body></html>
"""
