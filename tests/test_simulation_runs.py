"""The simulator for supervisors: a past week read from the database as a scenario, the live
policies against a draft, a run requested on the page, executed by a worker, and its
comparison shown side by side."""

from __future__ import annotations

import os
import time as clock
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone, translation
from playwright.sync_api import expect

from dispatch.models import Assignment, DispatchPolicy, PoolEntry, SimulationRun
from dispatch.sim import history
from dispatch.sim.history import live_policy_set, policy_set_with_draft, scenario_from_history
from dispatch.sim.model import Behaviour
from dispatch.sim.selectors import last_seven_days
from dispatch.sim.services import (
    SimulationRefused,
    _ProgressWriter,
    simulation_execute,
    simulation_request,
    simulations_recover,
)
from orders.sla import due_at_for
from orders.sla_policies import sla_book
from tests.factories import PASSWORD, AgentFactory, ChannelFactory, OrderFactory, RegionFactory, UserFactory
from tests.test_e2e_runtime import (
    BIN,
    START_TIMEOUT,
    not_eager,  # noqa: F401 - a fixture
    production_env,  # noqa: F401 - a fixture
    spawn,  # noqa: F401 - a fixture
    wait_until,
)
from tests.test_pages_browser import browser, log_in, off_the_loop, page_for  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _in_english():
    """Services called directly speak the site's language (zh-hans); the messages checked
    here are the English ones. Pages choose by Accept-Language."""
    with translation.override("en"):
        yield


DEFAULT = Behaviour()
WORK = [30, 40, 50, 60, 70, 30, 40, 300]  # minutes, the accepted repair jobs; median 45


@dataclass
class History:
    monday: date
    t0: datetime
    agent: object  # the agent with a measured week
    idle: object  # the agent with no activity
    repair: list  # the repair orders' entries, Monday
    apparel: PoolEntry  # Wednesday, assigned by hand
    electronics: PoolEntry  # Thursday, expedited, never assigned


def last_week_monday(today: date | None = None) -> date:
    today = today or timezone.localdate()
    return today - timedelta(days=today.weekday() + 7)


def at(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute, second), tzinfo=ZoneInfo(settings.TIME_ZONE))


def entry(ready_at: datetime, *, category: str, coords: bool = True, expedited: bool = False, **extra):
    order = OrderFactory(channel=ChannelFactory(code="jd"), category=category)
    return PoolEntry.objects.create(
        kind=PoolEntry.Kind.ORDER,
        order=order,
        channel=order.channel,
        customer=order.customer,
        region=extra.pop("region", None),
        category=category,
        skills=extra.pop("skills", []),
        latitude=22.54 if coords else None,
        longitude=113.95 if coords else None,
        expedited=expedited,
        urgent=expedited,
        ready_at=ready_at,
        waiting_since=ready_at,
        state=PoolEntry.State.CLOSED,
        **extra,
    )


def offer(e: PoolEntry, agent, state: str, *, answer_seconds: float | None, work_minutes: float = 0, **extra):
    offered = e.ready_at
    responded = offered + timedelta(seconds=answer_seconds) if answer_seconds is not None else None
    closed = responded + timedelta(minutes=work_minutes) if state == "completed" else None
    return Assignment.objects.create(
        entry=e,
        order_id=e.order_id,
        agent=agent,
        state=state,
        offered_at=offered,
        responded_at=responded,
        closed_at=closed,
        **extra,
    )


def make_history(today: date | None = None) -> History:
    """Last week: on Monday ten repair orders offered to one agent (8 accepted, 1 rejected,
    1 expired), on Wednesday an apparel order they got by hand, on Thursday an expedited
    electronics order nobody took; a second agent did nothing all week."""
    monday = last_week_monday(today)
    south = RegionFactory(code="south", provinces=["广东省"])
    agent = AgentFactory(
        display_name="Li",
        skills={"repair": 4},
        regions=[south],
        latitude="22.530000",
        longitude="113.940000",
        capacity=3,
        service_radius_km=25,
        good_rate_7d=0.9,
        quality_weight=0.7,
        avg_handling_minutes=12,
    )
    idle = AgentFactory(display_name="Wang", skills={"apparel": 2}, capacity=2, avg_handling_minutes=20)
    repair = []
    for i in range(10):
        e = entry(
            at(monday, 9) + timedelta(minutes=20 * i), category="repair", skills=["repair"], region=south
        )
        repair.append(e)
        if i < 8:
            offer(e, agent, "completed", answer_seconds=20 + 10 * i, work_minutes=WORK[i])
        elif i == 8:
            offer(e, agent, "rejected", answer_seconds=100)
        else:
            offer(e, agent, "expired", answer_seconds=600)
    apparel = entry(at(monday + timedelta(days=2), 10), category="apparel")
    offer(apparel, agent, "completed", answer_seconds=0, work_minutes=25, manual=True)
    electronics = entry(at(monday + timedelta(days=3), 14), category="electronics", expedited=True)
    # Outside the week: the Sunday before and the Monday after.
    entry(at(monday, 0) - timedelta(seconds=1), category="repair")
    entry(at(monday + timedelta(days=7), 0), category="repair")
    return History(monday, at(monday, 0), agent, idle, repair, apparel, electronics)


@pytest.fixture
def week(db) -> History:
    return make_history()


def policy(name: str, *, active: bool, **scope) -> DispatchPolicy:
    return DispatchPolicy.objects.create(name=name, is_active=active, **scope)


# --- The history as a scenario ---------------------------------------------------------------
def test_history_gives_the_weeks_orders_with_their_sla_work_and_site(week):
    # when last week is read as a scenario
    scenario = scenario_from_history(start=week.monday, end=week.monday + timedelta(days=7))

    # then it holds the twelve orders ready in the week, in order, none from the days around it
    assert scenario.start == week.t0
    assert scenario.horizon_seconds == 7 * 86400
    assert [o.id for o in scenario.orders] == [
        e.order_id for e in [*week.repair, week.apparel, week.electronics]
    ]
    first, apparel, electronics = scenario.orders[0], scenario.orders[10], scenario.orders[11]
    # ready at their offset from Monday 00:00 local, due when the SLA book says
    assert first.ready_seconds == 9 * 3600
    assert electronics.ready_seconds == 3 * 86400 + 14 * 3600
    due = due_at_for(
        stage="pending_review",
        entered_at=week.electronics.ready_at,
        expedited=True,
        category="electronics",
        policies=sla_book(),
    )
    assert electronics.due_seconds == (due - week.t0).total_seconds()
    assert electronics.expedited and not first.expedited
    # work: each category's median accepted→closed time; without any, the agents' median
    assert first.work_minutes == 45
    assert apparel.work_minutes == 25
    assert electronics.work_minutes == 16  # median of 12 and 20 minutes of handling
    # on site: repair orders with coordinates; apparel with coordinates is not
    assert first.on_site and not apparel.on_site and not electronics.on_site
    assert (first.category, first.skills, first.channel_id) == (
        "repair",
        frozenset({"repair"}),
        week.repair[0].channel_id,
    )
    assert (first.lat, first.lng, first.region_id) == (22.54, 113.95, week.repair[0].region_id)
    assert first.customer_id == week.repair[0].customer_id
    assert first.label == week.repair[0].order.tag


def test_history_gives_every_agent_with_measured_behaviour_and_shifts(week):
    # when last week is read as a scenario
    scenario = scenario_from_history(start=week.monday, end=week.monday + timedelta(days=7))
    li, wang = scenario.agents

    # then the agents come as they are, with their profile
    assert (li.id, li.name, li.capacity, dict(li.skills)) == (week.agent.pk, "Li", 3, {"repair": 4})
    assert li.regions == frozenset({week.repair[0].region_id})
    assert (li.lat, li.lng, li.radius_km, li.good_rate_7d, li.quality_weight) == (
        22.53,
        113.94,
        25.0,
        0.9,
        0.7,
    )
    # acceptance 8 of 10 answered-or-expired offers; response: the median of 9 answers
    assert li.behaviour.acceptance == 0.8
    assert li.behaviour.acceptance_unskilled == DEFAULT.acceptance_unskilled
    assert li.behaviour.response_median_seconds == 60
    # Monday from 30 min before the first offer to the last close; Wednesday at least 4 hours
    last_close = 9 * 3600 + 140 * 60 + 90 + 300 * 60
    wednesday = 2 * 86400
    assert li.shifts == ((8.5 * 3600, last_close), (wednesday + 9.5 * 3600, wednesday + 13.5 * 3600))
    # an agent with no activity keeps the defaults and works 09:00–18:00 every day
    assert wang.behaviour == DEFAULT
    assert wang.shifts == tuple((d * 86400 + 9 * 3600, d * 86400 + 18 * 3600) for d in range(7))


def test_a_week_without_orders_is_a_clear_error(week):
    # when a week with no orders is read
    empty = week.monday - timedelta(days=14)
    with pytest.raises(ValueError) as refused:
        scenario_from_history(start=empty, end=empty + timedelta(days=7))
    # then it says so
    assert str(refused.value) == (
        f"No orders became ready between {empty.isoformat()} and "
        f"{(empty + timedelta(days=6)).isoformat()}: there is nothing to replay."
    )


def test_a_history_without_agents_is_a_clear_error(db):
    # given orders and no agents at all
    monday = last_week_monday()
    entry(at(monday, 10), category="repair")
    # when the week is read, then it says a roster is needed
    with pytest.raises(ValueError, match="There are no agents"):
        scenario_from_history(start=monday, end=monday + timedelta(days=7))


# --- Policy sets ----------------------------------------------------------------------------
def test_the_live_set_holds_the_active_policies_and_the_built_in_default(jd):
    # given an active and an inactive policy
    policy("jd smart", active=True, channel=jd)
    policy("draft rr", active=False, kind="round_robin")
    # when the live set is built
    live = live_policy_set()
    # then it holds the active one, and the default covers the rest
    assert [p.name for p in live.policies] == ["jd smart"]
    assert live.default.name == "default"


def test_a_draft_replaces_the_active_policy_of_exactly_its_scope(jd):
    # given active policies for JD, for JD repairs, and a draft for JD repairs
    policy("jd", active=True, channel=jd)
    policy("jd repair", active=True, channel=jd, service_type="repair", max_rounds=3)
    draft = policy(
        "jd repair v2", active=False, channel=jd, service_type="repair", kind="round_robin", max_rounds=5
    )
    # when the draft is switched on over the live set
    tried = policy_set_with_draft(draft)
    # then it took the same-scope policy's place; the broader one stays
    assert sorted(p.name for p in tried.policies) == ["jd", "jd repair v2"]
    chosen = next(p for p in tried.policies if p.name == "jd repair v2")
    assert (chosen.channel_id, chosen.service_type, chosen.max_rounds, chosen.spec.kind) == (
        jd.pk,
        "repair",
        5,
        "round_robin",
    )
    assert tried.name == "draft: jd repair v2" and tried.name != live_policy_set().name


def test_a_draft_of_a_new_scope_is_added_beside_the_live_policies(jd):
    # given an active JD policy and a draft for one region only
    policy("jd", active=True, channel=jd)
    region = RegionFactory(code="north")
    draft = policy("north", active=False, region=region)
    # when it is switched on
    tried = policy_set_with_draft(draft)
    # then both apply
    assert sorted(p.name for p in tried.policies) == ["jd", "north"]


# --- Requests and their validation ------------------------------------------------------------
@pytest.fixture
def draft(db) -> DispatchPolicy:
    return policy("try me", active=False, kind="round_robin")


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        (
            date(2026, 11, 16),
            date(2026, 11, 16),
            "The simulated range must end after it starts (from 2026-11-16 to 2026-11-16).",
        ),
        (
            date(2026, 10, 1),
            date(2026, 11, 2),
            "A simulation covers at most 31 days; 2026-10-01 to 2026-11-02 is 32.",
        ),
        (
            date(2026, 11, 30),
            date(2026, 12, 7),
            "Only past days can be replayed: the range runs until 2026-12-06, and today is 2026-12-03.",
        ),
    ],
)
def test_a_bad_request_is_refused_with_its_reason_and_writes_nothing(draft, supervisor, start, end, message):
    # when a run is requested for a bad range
    with pytest.raises(SimulationRefused) as refused:
        simulation_request(user=supervisor, policy=draft, start=start, end=end, today=date(2026, 12, 3))
    # then the reason is given and no run was written
    assert refused.value.message == message
    assert not SimulationRun.objects.exists()


def test_a_request_is_queued_and_its_task_enqueued_after_commit(
    draft, supervisor, django_capture_on_commit_callbacks
):
    # when a supervisor requests last week
    monday = last_week_monday()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        run = simulation_request(user=supervisor, policy=draft, start=monday, end=monday + timedelta(days=7))
    # then the run waits in the queue, and its task goes out after commit only
    run.refresh_from_db()
    assert (run.status, run.progress, run.requested_by, run.seed) == ("queued", 0.0, supervisor, 1)
    assert len(callbacks) == 1


# --- Pages ---------------------------------------------------------------------------------
def client_for(user) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(user)
    return client


@pytest.mark.parametrize("role", ["agent", "warehouse", "customer_service"])
def test_people_who_are_not_managers_are_refused_every_simulator_page(make_user, draft, role):
    # given a run, and someone of a role that does not dispatch
    run = SimulationRun.objects.create(
        policy=draft, start_date=date(2026, 11, 16), end_date=date(2026, 11, 23)
    )
    client = client_for(make_user(f"u-{role}", role))
    # when they open the pages or post a run, then each is refused, and nothing was written
    for url in [
        "/dispatch/simulations/",
        f"/dispatch/simulations/{run.pk}/",
        f"/dispatch/simulations/{run.pk}/status.json",
    ]:
        response = client.get(url)
        assert response.status_code == 403, url
        assert "Only supervisors and admins may run simulations." in response.content.decode()
    response = client.post("/dispatch/simulations/", {"policy": draft.pk, "week": "2026-11-16"})
    assert response.status_code == 403
    assert SimulationRun.objects.count() == 1


def test_anonymous_visitors_are_sent_to_log_in(draft):
    run = SimulationRun.objects.create(
        policy=draft, start_date=date(2026, 11, 16), end_date=date(2026, 11, 23)
    )
    for url in [
        "/dispatch/simulations/",
        f"/dispatch/simulations/{run.pk}/",
        f"/dispatch/simulations/{run.pk}/status.json",
    ]:
        response = Client().get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), url


def test_the_form_offers_every_policy_and_last_week_with_the_past_runs(supervisor, draft, jd):
    # given an active policy beside the draft, and a past run
    policy("jd", active=True, channel=jd)
    SimulationRun.objects.create(policy=draft, start_date=date(2026, 11, 16), end_date=date(2026, 11, 23))
    # when a supervisor opens the simulator
    response = client_for(supervisor).get("/dispatch/simulations/")
    # then every policy is offered, drafts labelled, the last seven days preselected, the run listed
    page = response.content.decode()
    assert response.status_code == 200
    assert "try me (draft)" in page and "jd (active)" in page
    assert f'value="{last_seven_days().isoformat()}"' in page
    assert "2026-11-16 – 2026-11-22" in page
    assert 'href="/dispatch/simulations/"' in page  # the navigation link


def test_posting_a_week_creates_a_run_and_opens_its_page(
    supervisor, draft, django_capture_on_commit_callbacks
):
    # when a supervisor posts a Wednesday of last week
    wednesday = last_week_monday() + timedelta(days=2)
    with django_capture_on_commit_callbacks(execute=False):
        response = client_for(supervisor).post(
            "/dispatch/simulations/", {"policy": draft.pk, "week": wednesday.isoformat(), "seed": "7"}
        )
    # then a run of the seven days from that Wednesday is queued and its page opens
    run = SimulationRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/dispatch/simulations/{run.pk}/"
    assert (run.start_date, run.end_date, run.seed, run.policy) == (
        wednesday,
        wednesday + timedelta(days=7),
        7,
        draft,
    )


def test_posting_a_week_not_over_yet_is_refused_and_writes_nothing(supervisor, draft):
    # when a supervisor posts this week
    this_monday = last_week_monday() + timedelta(days=7)
    response = client_for(supervisor).post(
        "/dispatch/simulations/", {"policy": draft.pk, "week": this_monday.isoformat()}
    )
    # then the form says why, and no run was written
    assert response.status_code == 400
    assert "Only past days can be replayed" in response.content.decode()
    assert not SimulationRun.objects.exists()


def test_the_status_json_reports_the_runs_state(supervisor, draft):
    # given a run half-way
    run = SimulationRun.objects.create(
        policy=draft,
        start_date=date(2026, 11, 16),
        end_date=date(2026, 11, 23),
        status="running",
        progress=0.5,
    )
    # when its status is polled
    response = client_for(supervisor).get(f"/dispatch/simulations/{run.pk}/status.json")
    # then it says where it is, uncached
    assert response.status_code == 200 and response["Cache-Control"] == "no-store"
    body = response.json()
    assert {
        k: body[k] for k in ("id", "status", "status_display", "progress", "error", "done", "finished")
    } == {
        "id": run.pk,
        "status": "running",
        "status_display": "Running",
        "progress": 0.5,
        "error": "",
        "done": False,
        "finished": False,
    }


# --- Execution --------------------------------------------------------------------------------
def queued(policy: DispatchPolicy, monday: date, user=None) -> SimulationRun:
    return SimulationRun.objects.create(
        policy=policy, requested_by=user, start_date=monday, end_date=monday + timedelta(days=7)
    )


def test_a_run_replays_the_week_under_live_and_draft_and_shows_the_comparison(week, supervisor, jd):
    # given the live JD policy and a round-robin draft of the same scope
    policy("jd", active=True, channel=jd)
    draft = policy("jd rr", active=False, channel=jd, kind="round_robin")
    run = queued(draft, week.monday, supervisor)

    # when it is executed
    started = clock.monotonic()
    simulation_execute(run_id=run.pk)
    elapsed = clock.monotonic() - started

    # then it is done, with both runs over the twelve orders stored
    run.refresh_from_db()
    assert (run.status, run.progress, run.error) == ("done", 1.0, "")
    assert run.started_at and run.finished_at and elapsed < 5
    live, tried = run.result["runs"]
    assert (live["policy"], tried["policy"]) == ("live", "draft: jd rr")
    # (a repair not fixed the first time comes back as a repeat order: at least the twelve)
    assert live["orders"] >= 12 and tried["orders"] >= 12
    assert run.result["scenario"]["orders"] == 12 and run.result["scenario"]["agents"] == 2
    assert run.result["draft"] == {"id": draft.pk, "name": "jd rr", "active": False}
    assert len(live["series"]["waiting"]) == 7 * 24

    # and the run's page shows the table side by side and the charts' data
    response = client_for(supervisor).get(f"/dispatch/simulations/{run.pk}/")
    page = response.content.decode()
    assert 'id="comparison"' in page and 'data-figure="accept_minutes.p90"' in page
    assert "Live policies" in page and "With “jd rr”" in page
    assert 'id="sim-series"' in page and "vendor/echarts/echarts.min.js" in page


def test_a_run_over_an_empty_week_fails_with_the_reason(week, draft):
    # given a run over a week long before the history
    run = queued(draft, week.monday - timedelta(days=21))
    # when it is executed, then it failed and says why
    simulation_execute(run_id=run.pk)
    run.refresh_from_db()
    assert run.status == "failed" and run.finished_at is not None and run.result is None
    assert run.error.startswith("No orders became ready between")


def test_only_a_queued_run_is_executed(week, draft):
    # given a run already done
    run = queued(draft, week.monday)
    SimulationRun.objects.filter(pk=run.pk).update(status="done", progress=1.0, result={"runs": []})
    # when its task is delivered again, then it is left as it was
    assert simulation_execute(run_id=run.pk) is None
    run.refresh_from_db()
    assert (run.status, run.result) == ("done", {"runs": []})


def test_a_run_whose_worker_died_is_sent_again_and_then_finishes(
    week, draft, django_capture_on_commit_callbacks
):
    # given a run a worker started and then went silent for eleven minutes (the process died)
    run = queued(draft, week.monday)
    simulation_execute_started(run, minutes_ago=11)
    # when the beat's repair runs
    with django_capture_on_commit_callbacks(execute=False) as sent:
        counts = simulations_recover()
    # then it is queued again and sent, and the sent task runs it to the end
    run.refresh_from_db()
    assert counts == {"requeued": 1, "resent": 0, "failed": 0}
    assert (run.status, run.progress) == ("queued", 0.0) and len(sent) == 1
    simulation_execute(run_id=run.pk)
    run.refresh_from_db()
    assert (run.status, run.attempts) == ("done", 2)


def test_a_run_that_keeps_killing_its_worker_fails_after_three_attempts(draft):
    run = queued(draft, date(2026, 11, 16))
    simulation_execute_started(run, minutes_ago=30, attempts=3)

    counts = simulations_recover()

    run.refresh_from_db()
    assert counts == {"requeued": 0, "resent": 0, "failed": 1}
    assert run.status == "failed" and run.finished_at is not None
    assert run.error == "The worker running this simulation stopped 3 times; it was not tried again."


def test_a_queued_run_whose_task_was_lost_is_sent_again_and_a_live_one_is_left_alone(
    draft, django_capture_on_commit_callbacks
):
    # given a run queued three minutes ago that no worker picked up, and one running right now
    lost = queued(draft, date(2026, 11, 16))
    SimulationRun.objects.filter(pk=lost.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=3))
    alive = queued(draft, date(2026, 11, 9))
    simulation_execute_started(alive, minutes_ago=1)
    # when the repair runs
    with django_capture_on_commit_callbacks(execute=False) as sent:
        counts = simulations_recover()
    # then only the lost one is sent again
    assert counts == {"requeued": 0, "resent": 1, "failed": 0} and len(sent) == 1
    alive.refresh_from_db()
    assert alive.status == "running"


def simulation_execute_started(run: SimulationRun, *, minutes_ago: float, attempts: int = 1) -> None:
    """The state a worker leaves a run in when it starts and later stops writing progress."""
    beat = timezone.now() - timedelta(minutes=minutes_ago)
    SimulationRun.objects.filter(pk=run.pk).update(
        status="running", started_at=beat, heartbeat_at=beat, progress=0.4, attempts=attempts
    )


def test_progress_is_written_at_most_once_a_second(draft):
    # given a running run and its progress callback
    run = queued(draft, date(2026, 11, 16))
    SimulationRun.objects.filter(pk=run.pk).update(status="running")
    report = _ProgressWriter(run.pk)
    report.at -= 2  # the last write was two seconds ago
    # when the runner reports a thousand times in a burst
    with CaptureQueriesContext(connection) as queries:
        for n in range(1000):
            report(n / 1000)
    # then one UPDATE went out
    assert len(queries) == 1
    run.refresh_from_db()
    assert run.progress == 0.01


def test_the_defaults_documented_in_the_module_hold():
    assert history.DEFAULT_WORK_MINUTES == 15
    assert history.MIN_OFFERS_FOR_ACCEPTANCE == 10
    assert set(history.on_site_categories()) >= {"appliance_install", "repair"}


# --- A real worker, and a real browser --------------------------------------------------------
def make_roles() -> None:
    from django.contrib.auth.models import Group

    for role in ("agent", "supervisor", "admin", "warehouse", "customer_service", "risk_reviewer"):
        Group.objects.get_or_create(name=role)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_celery_worker_process_finishes_a_run_posted_on_the_page(production_env, spawn, not_eager):  # noqa: F811
    # given a Celery worker process on Redis and this test's database, last week's history
    argv = [str(BIN / "celery"), "-A", "config", "worker", "--pool", "solo", "--concurrency", "1"]
    argv += ["--loglevel", "info", "--without-gossip", "--without-mingle", "--without-heartbeat"]
    argv += ["--purge", "--hostname", f"sim-e2e-{clock.time_ns()}@%h"]
    worker = spawn("celery-worker", argv, env=production_env)
    make_roles()
    week = make_history()
    draft = policy("try me", active=False, kind="round_robin")
    supervisor = UserFactory(username="sim-sup", roles=["supervisor"])
    wait_until(
        lambda: "ready." in worker.output() or worker.proc.poll() is not None,
        timeout=START_TIMEOUT,
        what="the Celery worker to be ready",
    )
    assert worker.proc.poll() is None, worker.output()

    # when a supervisor posts last week on the simulator page
    response = client_for(supervisor).post(
        "/dispatch/simulations/", {"policy": draft.pk, "week": week.monday.isoformat()}
    )
    assert response.status_code == 302
    run = SimulationRun.objects.get()

    # then the worker process runs it to the end and the comparison is stored
    wait_until(
        lambda: SimulationRun.objects.get(pk=run.pk).status in {"done", "failed"},
        timeout=20,
        what="the worker to run the simulation",
    )
    run.refresh_from_db()
    assert run.status == "done", run.error
    assert [r["policy"] for r in run.result["runs"]] == ["live", "draft: try me"]
    assert "run_simulation_task" in worker.output()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_supervisor_starts_a_run_in_the_browser_and_sees_the_comparison_appear(page_for, monkeypatch):  # noqa: F811
    # given last week's history, a draft and a supervisor; the worker (tested above) is played
    # by this test, so that the page is seen waiting first
    monkeypatch.setattr("dispatch.sim.services._enqueue", lambda run_id: None)

    def given():
        make_roles()
        make_history()
        policy("try me", active=False, kind="round_robin")
        UserFactory(username="sim-browser", roles=["supervisor"])

    off_the_loop(given)
    page = page_for("en-US")
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    log_in(page, "sim-browser", PASSWORD)

    # when they open the simulator from the navigation and run the draft on last week
    page.click("header nav >> text=Simulator")
    page.select_option("select[name=policy]", label="try me (draft)")
    page.click("#sim-form button[type=submit]")

    # then the run's page shows it queued, with its progress bar
    expect(page.locator("#sim-state")).to_have_text("Queued")
    expect(page.locator("#sim-bar")).to_be_visible()
    assert page.locator("#comparison").count() == 0

    # when the worker runs it
    run_id = off_the_loop(lambda: SimulationRun.objects.get().pk)
    off_the_loop(lambda: simulation_execute(run_id=run_id))

    # then the page, polling, shows the comparison table and both charts
    table = page.locator("#comparison")
    table.wait_for()
    assert table.locator("tr[data-figure]").count() == 19
    expect(page.locator("#sim-state")).to_have_text("Done")
    expect(page.locator("#chart-accept canvas")).to_have_count(1)
    expect(page.locator("#chart-waiting canvas")).to_have_count(1)
    if os.environ.get("SIM_SCREENSHOT"):
        page.screenshot(path=os.environ["SIM_SCREENSHOT"], full_page=True)
    assert not [e for e in errors if "favicon" not in e and "/ws/" not in e], errors
