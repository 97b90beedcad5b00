"""python manage.py simulate: replay a day of orders through the real dispatch engine under one
or more policies, in virtual time, and print the outcomes side by side.

  simulate --scenario double11 --policy smart --policy round_robin --html report.html
  simulate --from 2026-11-23 --to 2026-11-30 --policy live --policy draft:"Evening skill first"
  simulate --scenario normal_day --json > out.json

Scenarios: a generated preset (`--scenario`, see dispatch/sim/scenarios.py) or the real orders
and agents of a date range (`--from`/`--to`, local days, `--to` exclusive). Policies: built in
(`smart`, `round_robin`, `round_robin_filtered`), `db:NAME` (one policy row for every order),
`live` (the active policies as dispatch applies them) or `draft:NAME` (the live ones with that
policy switched on).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from tqdm import tqdm

from dispatch.sim import policies as builtins
from dispatch.sim.model import PolicySet, Scenario, parse_behaviour, with_behaviour
from dispatch.sim.report import echarts_source, html_report, text_table
from dispatch.sim.run import compare
from dispatch.sim.scenarios import PRESETS, generate


class Command(BaseCommand):
    help = "Replay a day of orders through the real dispatch engine under several policies, side by side."

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group()
        source.add_argument(
            "--scenario", choices=sorted(PRESETS), help="A generated day (default: normal_day)."
        )
        source.add_argument(
            "--from",
            dest="start",
            type=_date,
            help="Replay the real orders from this local day (YYYY-MM-DD)…",
        )
        parser.add_argument("--to", dest="end", type=_date, help="…up to this day, exclusive.")
        parser.add_argument(
            "--policy",
            action="append",
            dest="policies",
            metavar="POLICY",
            help="smart, round_robin, round_robin_filtered, db:NAME, live or draft:NAME; repeat to compare "
            "(default: smart and round_robin).",
        )
        parser.add_argument("--seed", type=int, default=1, help="Seed of every random draw (default 1).")
        parser.add_argument("--orders", type=int, help="Scale a generated scenario to this many orders.")
        parser.add_argument(
            "--agents", type=int, help="Scale a generated scenario's roster to this many agents."
        )
        parser.add_argument(
            "--agent-model",
            action="append",
            dest="behaviour",
            metavar="NAME=VALUE",
            help="Set a parameter of every agent's behaviour model, e.g. acceptance=0.9, "
            "response_median_seconds=60, unskilled_factor=2, speed_kmh=30; repeat for more "
            "(see dispatch/sim/model.py Behaviour).",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object instead of the table.")
        parser.add_argument(
            "--html", type=Path, metavar="FILE", help="Also write an HTML report with charts."
        )
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args: object, **options) -> None:
        scenario = self._scenario(options)
        if options["behaviour"]:
            try:
                scenario = with_behaviour(scenario, parse_behaviour(options["behaviour"]))
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        policy_sets = [self._policy(name) for name in options["policies"] or ["smart", "round_robin"]]
        names = [p.name for p in policy_sets]
        if len(set(names)) != len(names):
            raise CommandError(f"a policy is named twice: {', '.join(names)}")
        echarts = None
        if options["html"]:
            try:
                echarts = echarts_source(Path(settings.BASE_DIR))
            except FileNotFoundError as exc:
                raise CommandError(str(exc)) from exc
        show_bar = not options["no_progress"] and not options["json"] and sys.stderr.isatty()
        with tqdm(total=1000, disable=not show_bar, desc="simulating", unit="‰", file=sys.stderr) as bar:

            def progress(done: float) -> None:
                bar.update(max(0, round(done * 1000) - bar.n))

            result = compare(scenario, policy_sets, seed=options["seed"], progress=progress)
        if options["html"]:
            options["html"].write_text(html_report(result, echarts_js=echarts), encoding="utf-8")
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False, default=str))
        else:
            self.stdout.write(text_table(result))
            if options["html"]:
                self.stdout.write(f"\nHTML report: {options['html']}")

    def _scenario(self, options: dict) -> Scenario:
        if options["start"] is not None:
            if options["end"] is None:
                raise CommandError("--from needs --to (the day after the last day to replay)")
            if options["orders"] or options["agents"]:
                raise CommandError("--orders and --agents scale generated scenarios, not recorded days")
            from dispatch.sim.history import scenario_from_history

            try:
                return scenario_from_history(start=options["start"], end=options["end"])
            except ValueError as exc:
                raise CommandError(str(exc)) from exc
        if options["end"] is not None:
            raise CommandError("--to goes with --from")
        for name in ("orders", "agents"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name} must be at least 1, not {options[name]}")
        return generate(
            options["scenario"] or "normal_day",
            seed=options["seed"],
            orders=options["orders"],
            agents=options["agents"],
        )

    def _policy(self, name: str) -> PolicySet:
        from dispatch.models import DispatchPolicy
        from dispatch.selectors import policy_spec
        from dispatch.sim.history import live_policy_set, policy_set_with_draft

        if name == "live":
            return live_policy_set()
        prefix, _, rest = name.partition(":")
        if prefix in ("db", "draft") and rest:
            row = DispatchPolicy.objects.prefetch_related("shares").filter(name=rest).first()
            if row is None:
                known = ", ".join(DispatchPolicy.objects.order_by("name").values_list("name", flat=True))
                raise CommandError(f"no dispatch policy is named {rest!r}; policies: {known or 'none'}")
            if prefix == "draft":
                return policy_set_with_draft(row)
            shares = {s.agent_id: float(s.share) for s in row.shares.all()}
            return PolicySet.single(
                name,
                policy_spec(row, shares),
                max_rounds=row.max_rounds,
                l2_wait_seconds=row.l2_wait_seconds,
            )
        try:
            return builtins.builtin(name)
        except ValueError as exc:
            raise CommandError(f"{exc}; or db:NAME, live, draft:NAME") from exc


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        # argparse shows an ArgumentTypeError's own words (a ValueError only as "invalid value").
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from exc
