"""What risk control already knows in the benchmark's history: blacklist entries, and reviews
decided in the last 60 days with the hits the engine finds on those orders."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import connection

from dashboards.benchmarks.risk.world import (
    BURST_EVERY,
    REVIEW_DAYS,
    SEED,
    World,
    home_card_token,
    home_device,
    home_ip,
    hot_card_token,
    hot_device,
    hot_ip,
)


def blacklist(world: World) -> dict[str, list[str]]:
    """~115 live entries (IPs, phones, devices and cards of history customers, one hot IP, one
    hot device, one hot card, street-number fragments) and 10 expired ones. Returns the raw
    values of live entries a screened order can carry."""
    from riskcontrol.models import BlacklistEntry
    from riskcontrol.params import clean_list_value

    r = random.Random(SEED + 1)  # noqa: S311 - test data, not secrets
    # 40 phones, 30 IPs, 20 devices and 20 cards of customers (1 in 1,800 of 200,000; as
    # rare in a small history: at least one of each).
    sizes = [max(1, round(n * min(1.0, world.customers / 200_000))) for n in (40, 30, 20, 20)]
    picks = r.sample(range(1, world.customers + 1), min(world.customers, sum(sizes)))
    cut = [sum(sizes[:i]) for i in range(5)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT account_id, phone FROM orders_customer WHERE account_id = ANY(%s)",
            [[f"h{ci}" for ci in picks[cut[0] : cut[1]]]],
        )
        phones = [phone[3:] for _a, phone in cursor.fetchall()]
    live = {
        "ip": [hot_ip(0)] + [home_ip(ci) for ci in picks[cut[1] : cut[2]]],
        "phone": phones,
        "device": [hot_device(1)] + [home_device(ci) for ci in picks[cut[2] : cut[3]]],
        "card": [hot_card_token(2)] + [home_card_token(ci) for ci in picks[cut[3] : cut[4]]],
        "address": ["解放北路88号", "珞喻路666号", "天河路1号"],
    }
    now = world.now
    entries = {}
    for kind, values in live.items():
        for value in values:
            stored = clean_list_value(kind, value)
            entries[(kind, stored)] = BlacklistEntry(
                kind=kind,
                value=stored,
                reason=f"bench: known {kind}",
                created_at=now - timedelta(days=r.randint(1, 300)),
            )
    for k in range(10):
        stored = clean_list_value("ip", f"61.{k}.{k}.9")
        entries[("ip", stored)] = BlacklistEntry(
            kind="ip", value=stored, reason="bench: expired", created_at=now - timedelta(days=200),
            expires_at=now - timedelta(days=20),
        )  # fmt: skip
    BlacklistEntry.objects.bulk_create(entries.values())
    return {k: v for k, v in live.items() if k != "address"}


# Share of reviewed hits reviewers confirmed, by where the order came from.
CONFIRMED_SHARE = {
    "burst0": 0.85,
    "burst1": 0.95,
    "burst2": 0.8,
    "burst3": 0.1,
    "transit": 0.3,
    "round": 0.13,
}


def reviews(world: World) -> int:
    """Decided reviews of the last 60 days, with the hits the engine finds on those orders:
    every burst order the rules would have held, and 120 each of the transit-address and
    round-amount orders. Reviewers confirmed most bursts, few round amounts (seed 002: 87% of
    those were genuine) and few of an office's orders behind one IP."""
    from django.contrib.auth.models import User

    from riskcontrol import engine
    from riskcontrol import selectors as sel
    from riskcontrol.explain import explain
    from riskcontrol.models import Review, ReviewDecision, RuleHit

    since = world.now - timedelta(days=REVIEW_DAYS)
    c = world.customers
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT channel_id, avg(amount) FROM orders_order WHERE received_at >= %s GROUP BY channel_id",
            [world.now - timedelta(days=30)],
        )
        channel_avg = {cid: Decimal(avg) for cid, avg in cursor.fetchall()}
        cursor.execute(
            """
            (SELECT o.id, o.external_id, o.received_at, o.amount, o.note, o.address, o.coupon_code, o.client_ip::text,
                    o.device_id, o.card_fingerprint, o.channel_id, cu.account_created_at, 'burst'
             FROM orders_order o JOIN orders_customer cu ON cu.id = o.customer_id
             WHERE o.received_at >= %(since)s AND cu.account_id LIKE 'b%%')
            UNION ALL
            (SELECT o.id, o.external_id, o.received_at, o.amount, o.note, o.address, o.coupon_code, o.client_ip::text,
                    o.device_id, o.card_fingerprint, o.channel_id, cu.account_created_at, 'transit'
             FROM orders_order o JOIN orders_customer cu ON cu.id = o.customer_id
             WHERE o.received_at >= %(since)s AND o.address LIKE '%%物流园%%' AND cu.account_id LIKE 'h%%'
             ORDER BY o.id LIMIT 120)
            UNION ALL
            (SELECT o.id, o.external_id, o.received_at, o.amount, o.note, o.address, o.coupon_code, o.client_ip::text,
                    o.device_id, o.card_fingerprint, o.channel_id, cu.account_created_at, 'round'
             FROM orders_order o JOIN orders_customer cu ON cu.id = o.customer_id
             WHERE o.received_at >= %(since)s AND o.amount >= 1000 AND o.amount %% 1000 = 0 AND o.note = ''
                   AND o.address NOT LIKE '%%物流园%%' AND cu.account_id LIKE 'h%%'
             ORDER BY o.id LIMIT 120)
            """,
            {"since": since},
        )
        rows = cursor.fetchall()
    book = sel.RuleBook(now=world.now)
    thresholds = book.thresholds_for(None)
    history = engine.History()
    snaps = []
    for oid, ext, at, amount, note, address, coupon, ip, device, card, channel_id, created, source in rows:
        if source == "burst":
            g = int(ext[1:])
            source = f"burst{(g - c - 1) // BURST_EVERY % 4}"
        snap = engine.OrderSnap(
            key=(oid, source), at=at.timestamp(), amount=amount, note=note, address=address, coupon=coupon,
            ip=ip or "", device=device, card=card, channel_id=channel_id,
            customer_prior_orders=0 if source.startswith("burst") else 1,
            account_age_days=(at - created).total_seconds() / 86400 if created else None,
            channel_avg_amount=channel_avg.get(channel_id),
        )  # fmt: skip
        history.add_order(snap, seq=oid)
        snaps.append(snap)
    r = random.Random(SEED + 2)  # noqa: S311 - test data, not secrets
    reviewer = User.objects.create_user("bench-reviewer", password=None)
    reviews, decisions, hits, outcome_of = [], [], [], {}
    for snap in sorted(snaps, key=lambda s: s.key):
        oid, source = snap.key
        verdict = engine.evaluate(
            snap, book.rules_for(snap.channel_id), history, seq=oid,
            review_threshold=thresholds.review, quarantine_threshold=thresholds.quarantine,
        )  # fmt: skip
        if verdict.decision != engine.Decision.QUARANTINE:
            continue
        confirmed = r.random() < CONFIRMED_SHARE[source]
        state = Review.State.CONFIRMED if confirmed else Review.State.FALSE_POSITIVE
        at = datetime.fromtimestamp(snap.at, tz=world.now.tzinfo)
        texts = [explain(h.kind, h.facts)[:300] for h in verdict.hits]
        reviews.append(
            Review(
                order_id=oid, state=state, score=verdict.score, reason="; ".join(texts[:3])[:300], created_at=at,
                decided_at=at + timedelta(hours=r.uniform(0.2, 8)), decided_by=reviewer, note="bench",
            )
        )  # fmt: skip
        hits += [
            RuleHit(
                order_id=oid, rule_id=h.rule_id, at=at, kind=h.kind, weight=h.weight, facts=h.facts,
                explanation=text, outcome=state.value,
            )
            for h, text in zip(verdict.hits, texts, strict=True)
        ]  # fmt: skip
        outcome_of[oid] = (state, verdict.score)
    Review.objects.bulk_create(reviews)
    for review in reviews:
        decision = (
            ReviewDecision.Decision.CONFIRMED
            if review.state == Review.State.CONFIRMED
            else ReviewDecision.Decision.FALSE_POSITIVE
        )
        decisions.append(
            ReviewDecision(review=review, decision=decision, note="bench", by=reviewer, at=review.decided_at)
        )
    ReviewDecision.objects.bulk_create(decisions)
    RuleHit.objects.bulk_create(hits)
    with connection.cursor() as cursor:
        for state, stage in ((Review.State.CONFIRMED, "cancelled"), (Review.State.FALSE_POSITIVE, None)):
            ids = [oid for oid, (s, _score) in outcome_of.items() if s == state]
            scores = [outcome_of[oid][1] for oid in ids]
            cursor.execute(
                """
                UPDATE orders_order o SET flags = '["risk"]'::jsonb, is_flagged = true, risk_score = t.score,
                    stage = COALESCE(%s, o.stage)
                FROM unnest(%s::bigint[], %s::float8[]) AS t(id, score) WHERE o.id = t.id
                """,
                [stage, ids, scores],
            )
    return len(reviews)


def sample_customers(world: World) -> list[tuple]:
    """Every history customer (or 100,000 spread over them), for returning orders: a benchmark
    ingests in minutes what a shop takes hours for, and a smaller pool would have the same
    customers order three times in five minutes, which the velocity rules rightly flag."""
    step = max(1, world.customers // 100_000)
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT cu.account_id, ch.code, cu.phone, cu.account_created_at, cu.is_vip
            FROM orders_customer cu JOIN orders_channel ch ON ch.id = cu.channel_id
            WHERE cu.account_id LIKE 'h%%' AND cu.id %% %s = 0 ORDER BY cu.id
            """,
            [step],
        )
        return [
            (int(a[1:]), a, code, phone[3:], created, vip)
            for a, code, phone, created, vip in cursor.fetchall()
        ]
