"""The year of history the risk benchmark screens against, written server-side: customers and
orders by `INSERT … SELECT generate_series` with the indexes and constraints built after the
load, then warehouses, the blacklist and the reviewers' past decisions."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.core.management.base import CommandError
from django.db import connection
from django.utils import timezone

from dashboards.benchmarks.risk.reviews import blacklist, reviews, sample_customers
from dashboards.benchmarks.risk.world import (
    BURST_EVERY,
    BURST_SIZE,
    CATALOGUE_SQL,
    CHANNELS,
    COUPONS,
    CUSTOMERS_PER_ORDER,
    EXTRA_PLACES,
    HOT_AMOUNTS,
    HOT_KEYS,
    MOBILE,
    NOTES_TEXT,
    SEED,
    SQL_HOME_CARD,
    SQL_HOME_DEVICE,
    SQL_HOME_IP,
    TRANSIT,
    WAREHOUSES,
    Place,
    World,
)


# --- The history -------------------------------------------------------------------------
def build_history(*, history: int, log: Callable) -> World:
    """Channels, warehouses, customers, `history` orders over the last 365 days, blacklist
    entries and decided reviews, in the (empty, migrated) bench database."""
    from orders.models import Channel
    from riskcontrol.defaults import install_defaults
    from riskcontrol.models import RiskPolicy, Rule

    if history < BURST_EVERY * 2:
        raise CommandError(f"--history must be at least {BURST_EVERY * 2:,} orders.")
    from agents.models import Skill

    install_defaults(Rule, RiskPolicy, Skill)
    _check_every_rule_type_on()
    now = timezone.now()
    world = World(
        now=now,
        history=history,
        customers=max(1, int(history * CUSTOMERS_PER_ORDER)),
        places=_places(),
        prefixes=[],
        channel_codes=[c[0] for c in CHANNELS],
        channel_weights=[c[3] for c in CHANNELS],
    )
    world.prefixes = _phone_prefixes(world.places)
    channels = [
        Channel.objects.create(code=code, name=name, tag_prefix=prefix, kind=Channel.Kind.MARKETPLACE)
        for code, name, prefix, _w in CHANNELS
    ]
    _warehouses()
    clock = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = off")
        cursor.execute("SELECT setseed(%s)", [0.20251111])
        _load_lookup_tables(cursor, world)
        with _bulk_load(cursor, "orders_customer"), _bulk_load(cursor, "orders_order"):
            _insert_customers(cursor, world, channels)
            world.build_seconds["customers"] = round(time.perf_counter() - clock, 1)
            log(f"  {world.customers:,} customers in {world.build_seconds['customers']} s")
            clock = time.perf_counter()
            _insert_orders(cursor, world)
            world.build_seconds["orders"] = round(time.perf_counter() - clock, 1)
            log(f"  {history:,} orders in {world.build_seconds['orders']} s")
            clock = time.perf_counter()
            _finish_customers(cursor, world)
            world.build_seconds["customer_totals"] = round(time.perf_counter() - clock, 1)
            clock = time.perf_counter()
        world.build_seconds["indexes_and_constraints"] = round(time.perf_counter() - clock, 1)
        log(f"  indexes and constraints in {world.build_seconds['indexes_and_constraints']} s")
    clock = time.perf_counter()
    world.blacklisted = blacklist(world)
    decided = world.decided_reviews = reviews(world)
    world.build_seconds["blacklist_and_reviews"] = round(time.perf_counter() - clock, 1)
    log(f"  {decided} decided reviews, blacklist, in {world.build_seconds['blacklist_and_reviews']} s")
    clock = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit = on")
        for table in ("orders_customer", "orders_order", "riskcontrol_rulehit", "riskcontrol_review"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
    world.build_seconds["vacuum_analyze"] = round(time.perf_counter() - clock, 1)
    log(f"  VACUUM ANALYZE in {world.build_seconds['vacuum_analyze']} s")
    world.sample_customers = sample_customers(world)
    return world


def _check_every_rule_type_on() -> None:
    from riskcontrol.engine import RuleKind
    from riskcontrol.models import Rule

    kinds: set[str] = set()

    def visit(kind: str, params: dict) -> None:
        kinds.add(kind)
        if kind == RuleKind.COMPOSITE:
            for part in params.get("all", []):
                visit(part["kind"], part["params"])

    for kind, params in Rule.objects.filter(is_active=True).values_list("kind", "params"):
        visit(kind, params)
    missing = {k.value for k in RuleKind} - kinds
    if missing:
        raise CommandError(f"the default rules leave rule types off: {sorted(missing)}")


def _places() -> list[Place]:
    from dashboards.management.commands.bench import PLACES
    from orders.normalize import parse_address

    places = []
    for province, city, district, streets in (*PLACES, *EXTRA_PLACES):
        town = province if province == city else province + city
        parsed = parse_address(f"{town}{district}{streets[0]}1号")
        if parsed.province != province or parsed.district != district:
            raise CommandError(f"the address table does not place {town}{district} as expected: {parsed}")
        places.append(
            Place(province, city, district, tuple(streets), parsed.adcode, parsed.latitude, parsed.longitude)
        )
    return places


def _phone_prefixes(places: list[Place]) -> list[tuple[str, str]]:
    """~3,000 real 7-digit mobile prefixes with their home city (phonenumbers' zh geocoder, as
    ingest stores it); each place gets the ones homed in its province."""
    from orders.normalize import normalize_phone

    r = random.Random(SEED)  # noqa: S311 - test data, not secrets
    seen, out = set(), []
    for _ in range(4000):
        prefix = r.choice(MOBILE) + f"{r.randint(0, 9999):04d}"
        if prefix in seen:
            continue
        seen.add(prefix)
        city = normalize_phone(prefix + "0000").home_city
        if city:
            out.append((prefix, city))
    for place in places:
        # The geocoder writes 广西南宁市, the address table 广西壮族自治区: the first two
        # characters tell every province apart.
        place.prefixes = [p for p, city in out if city.startswith(place.province[:2])]
        if not place.prefixes:
            place.prefixes = [p for p, _city in out]
    return out


def _warehouses() -> None:
    from orders.models import Warehouse
    from orders.normalize import parse_address

    for code, name, where, provinces, default in WAREHOUSES:
        parsed = parse_address(where)
        Warehouse.objects.create(
            code=code, name=name, city=parsed.city, latitude=parsed.latitude, longitude=parsed.longitude,
            provinces=provinces, is_default=default,
        )  # fmt: skip


def _load_lookup_tables(cursor, world: World) -> None:
    cursor.execute(
        "CREATE TEMP TABLE bench_place (k int PRIMARY KEY, province text, city text, district text, "
        "adcode text, lat numeric, lng numeric, streets text[], prefixes text[], prefix_cities text[])"
    )
    city_of = dict(world.prefixes)
    for k, p in enumerate(world.places):
        cursor.execute(
            "INSERT INTO bench_place VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [k, p.province, p.city, p.district, p.adcode, p.latitude, p.longitude, list(p.streets),
             p.prefixes, [city_of.get(x, "") for x in p.prefixes]],
        )  # fmt: skip
    cursor.execute("CREATE TEMP TABLE bench_prefix (k int PRIMARY KEY, prefix text, city text)")
    cursor.execute(
        "INSERT INTO bench_prefix SELECT k - 1, p, c FROM unnest(%s::text[], %s::text[]) WITH ORDINALITY AS t(p, c, k)",
        [[p for p, _c in world.prefixes], [c for _p, c in world.prefixes]],
    )


def _insert_customers(cursor, world: World, channels: list) -> None:
    """Customers 1..C live at place ci % places; 85% have a phone homed in that province.
    Burst customers (one order each, accounts hours old) come after them, in burst order."""
    from dashboards.management.commands.bench import GIVEN_NAMES, SURNAMES

    weights = [c[3] for c in CHANNELS]
    channel_of = [channels[i].pk for i, w in enumerate(weights) for _ in range(w)]  # 10 slots
    bursts = burst_count(world)
    cursor.execute(
        f"""
        INSERT INTO orders_customer (channel_id, account_key, account_id, name, phone, phone_home_city,
                                     account_created_at, is_vip, order_count, first_order_at, last_order_at)
        SELECT (%(channels)s::bigint[])[1 + s.ci %% 10], 'acct:' || s.acct, s.acct,
               (%(surnames)s::text[])[1 + (s.ci * 31) %% {len(SURNAMES)}]
                   || (%(given)s::text[])[1 + (s.ci * 17) %% {len(GIVEN_NAMES)}],
               '+86' || chosen.prefix || lpad(((s.ci * 7919) %% 10000)::text, 4, '0'), chosen.city,
               NULL, s.ci %% 13 = 0, 0, NULL, NULL
        FROM (
            SELECT ci, 'h' || ci AS acct FROM generate_series(1, %(c)s::bigint) ci
            UNION ALL
            SELECT %(c)s + b, 'b' || b FROM generate_series(1, %(burst_orders)s::bigint) b
        ) s
        JOIN bench_place p ON p.k = s.ci %% %(np)s
        CROSS JOIN LATERAL (
            SELECT p.prefixes[1 + (s.ci * 40503) %% array_length(p.prefixes, 1)] AS prefix,
                   p.prefix_cities[1 + (s.ci * 40503) %% array_length(p.prefixes, 1)] AS city
            WHERE (s.ci * 2654435761) %% 100 < 85
            UNION ALL
            SELECT prefix, city FROM bench_prefix
            WHERE k = (s.ci * 40503) %% %(npre)s AND (s.ci * 2654435761) %% 100 >= 85
        ) chosen
        ORDER BY s.ci
        """,  # noqa: S608 - only constants are formatted in; values are bound
        {
            "channels": channel_of,
            "surnames": list(SURNAMES),
            "given": list(GIVEN_NAMES),
            "c": world.customers,
            "burst_orders": bursts * BURST_SIZE,
            "np": len(world.places),
            "npre": len(world.prefixes),
        },
    )
    # Each customer's home IP, device and card, computed once rather than per order.
    cursor.execute(
        f"""
        CREATE TEMP TABLE bench_home AS
        SELECT ci, {SQL_HOME_IP.format(ci="ci")} AS ip, {SQL_HOME_DEVICE.format(ci="ci")} AS device,
               {SQL_HOME_CARD.format(ci="ci")} AS card
        FROM generate_series(1, %s::bigint) ci
        """,  # noqa: S608 - only constants are formatted in; values are bound
        [world.customers + bursts * BURST_SIZE],
    )
    cursor.execute("ALTER TABLE bench_home ADD PRIMARY KEY (ci)")
    cursor.execute("SELECT min(id), max(id), count(*) FROM orders_customer")
    low, high, count = cursor.fetchone()
    if count != world.customers + bursts * BURST_SIZE or high - low + 1 != count:
        raise CommandError("customers were not written with consecutive ids")
    world.customer_base = low  # type: ignore[attr-defined]


@contextmanager
def _bulk_load(cursor, table: str) -> Iterator[None]:
    """Drop the table's foreign keys, unique constraints and the indexes that back no
    constraint, and create them again afterwards from their own definitions: a bulk load then
    one sort per index and one join per foreign key, instead of a million inserts into each of
    a dozen B-trees and a million deferred key checks (measured here for 1,000,000 orders:
    the rows alone 5-6 s, with the indexes 139 s, with the two foreign keys +26 s)."""
    indexes_query = """
        SELECT i.relname, pg_get_indexdef(x.indexrelid)
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
        WHERE x.indrelid = %s::regclass
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)
        ORDER BY i.relname
    """
    constraints_query = """
        SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint
        WHERE conrelid = %s::regclass AND contype IN ('f', 'u') ORDER BY contype, conname
    """
    cursor.execute(indexes_query, [table])
    indexes = cursor.fetchall()
    cursor.execute(constraints_query, [table])
    constraints = cursor.fetchall()
    for name, _definition in constraints:
        cursor.execute(f'ALTER TABLE "{table}" DROP CONSTRAINT "{name}"')
    for name, _definition in indexes:
        cursor.execute(f'DROP INDEX "{name}"')
    yield
    cursor.execute("SET maintenance_work_mem = '256MB'")
    for _name, definition in indexes:
        cursor.execute(definition)
    for name, definition in reversed(constraints):  # unique constraints first, then foreign keys
        cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
    cursor.execute("RESET maintenance_work_mem")
    cursor.execute(indexes_query, [table])
    rebuilt = cursor.fetchall()
    cursor.execute(constraints_query, [table])
    if rebuilt != indexes or cursor.fetchall() != constraints:
        raise CommandError(f"the indexes and constraints of {table} were not rebuilt as they were")


def burst_count(world: World) -> int:
    return max(0, (world.history - world.customers) // BURST_EVERY)


def _insert_orders(cursor, world: World) -> None:
    """One statement. Order g (1..N): orders 1..C are each customer's first; the rest go to
    customers skewed towards the frequent ones (1 + C·u^1.5). The last 5 of every 1,000 after
    them are a burst of one of four kinds (same IP and device; card testing on one card and
    amount; new accounts with big amounts to a transit warehouse, the composite's pattern; an
    office's honest orders behind one IP), 45 s apart, each from an account made hours before.
    2% of orders fall in the last 24 hours (a busy day), the rest over the year."""
    c = world.customers
    n = world.history
    sql = f"""
    INSERT INTO orders_order (
        external_id, tag, customer_name, customer_phone, customer_phone_raw, customer_phone_city,
        is_vip, is_returning, address, province, city, district, adcode, latitude, longitude,
        items, amount, currency, coupon_code, note, category, urgency, kind, client_ip, device_id,
        card_fingerprint, source_created_at, source_updated_at, stale_deliveries, stage, held_stage,
        stage_entered_at, due_at, flags, is_flagged, received_at, updated_at, channel_id, customer_id,
        owner_id, risk_score, sla_level)
    SELECT
        'H' || g, 'H-' || g, cu.name, cu.phone, substr(cu.phone, 4), cu.phone_home_city,
        cu.is_vip, g > %(c)s AND NOT burst,
        CASE WHEN transit IS NULL
             THEN addr_town || p.district || p.streets[1 + g %% array_length(p.streets, 1)] || (1 + g %% 999) || '号'
                  || (1 + g %% 30) || '栋' || (1 + g %% 6) || '单元' || lpad((1 + g %% 33)::text, 2, '0') || '0' || (1 + g %% 8) || '室'
             ELSE addr_town || p.district || p.streets[1 + g %% array_length(p.streets, 1)] || (1 + g %% 999)
                  || '号物流园' || transit || (1 + g %% 9) || '号库' END,
        p.province, p.city, p.district, p.adcode, p.lat, p.lng,
        jsonb_build_array(jsonb_build_object('sku', (%(skus)s::text[])[1 + g %% 10], 'name', (%(names)s::text[])[1 + g %% 10],
                                             'qty', 1, 'price', amount::text)),
        amount, 'CNY', coupon, note, (%(cats)s::text[])[1 + g %% 10],
        CASE WHEN r_misc < 0.1 THEN 'expedited' ELSE 'normal' END, 'normal',
        v.ip::inet, v.device, v.card,
        at - interval '3 minutes', at - interval '1 minute', 0,
        CASE WHEN at < %(now)s - interval '7 days' THEN CASE WHEN r_stage < 0.05 THEN 'cancelled' ELSE 'done' END
             WHEN r_stage < 0.3 THEN 'pending_review' WHEN r_stage < 0.6 THEN 'picking'
             WHEN r_stage < 0.9 THEN 'shipping' ELSE 'done' END,
        '', at,
        CASE WHEN at >= %(now)s - interval '7 days' AND r_stage < 0.9 THEN at + interval '4 hours' END,
        '[]'::jsonb, false, at, at, cu.channel_id, cu.id, NULL, 0, 0
    FROM (
        SELECT g, random() AS r_time, random() AS r_time2, random() AS r_cust, random() AS r_ip, random() AS r_dev,
               random() AS r_card, random() AS r_amt, random() AS r_amt2, random() AS r_note, random() AS r_coupon,
               random() AS r_place, random() AS r_addr, random() AS r_stage, random() AS r_misc,
               g > %(c)s AND (g - %(c)s - 1) %% {BURST_EVERY} >= {BURST_EVERY - BURST_SIZE}
                   AND (g - %(c)s - 1) / {BURST_EVERY} < %(bursts)s AS burst,
               (g - %(c)s - 1) / {BURST_EVERY} AS bb,
               (g - %(c)s - 1) %% {BURST_EVERY} - {BURST_EVERY - BURST_SIZE} AS j
        FROM generate_series(1, %(n)s::bigint) g
    ) s
    CROSS JOIN LATERAL (
        SELECT CASE WHEN burst THEN %(c)s + bb * {BURST_SIZE} + j + 1
                    WHEN g <= %(c)s THEN g
                    ELSE least(%(c)s, 1 + floor(%(c)s * power(r_cust, 1.5))::int) END AS ci,
               CASE WHEN burst THEN bb %% 4 END AS burst_kind
    ) who
    JOIN orders_customer cu ON cu.id = %(base)s + who.ci - 1
    JOIN bench_home home ON home.ci = who.ci
    JOIN bench_place p ON p.k = CASE WHEN burst OR r_place < 0.85 THEN who.ci %% %(np)s ELSE floor(r_place * 1000)::int %% %(np)s END
    CROSS JOIN LATERAL (
        SELECT
            CASE WHEN burst THEN %(now)s - (2 + 363 * ((bb * 0.6180339887) - floor(bb * 0.6180339887))) * interval '1 day'
                                 + j * interval '45 seconds'
                 WHEN r_time < 0.02 THEN %(now)s - r_time2 * interval '1 day'
                 ELSE %(now)s - interval '1 day' - r_time2 * interval '364 days' END AS at,
            CASE WHEN p.province = p.city THEN p.province ELSE p.province || p.city END AS addr_town,
            CASE WHEN burst_kind = 2 THEN (%(transit)s::text[])[1 + bb %% 3]
                 WHEN NOT burst AND r_addr < 0.003 THEN (%(transit)s::text[])[1 + g %% 3] END AS transit,
            CASE WHEN burst_kind IN (0, 2, 3) THEN '45.' || (bb %% 256) || '.' || (bb / 256 %% 256) || '.7'
                 WHEN burst THEN home.ip
                 WHEN r_ip < 0.03 THEN '116.228.' || (10 + floor(r_ip / 0.03 * {HOT_KEYS})::int) || '.1'
                 WHEN r_ip < 0.70 THEN home.ip
                 WHEN r_ip < 0.95 THEN '223.' || (g %% 256) || '.' || (g / 256 %% 256) || '.' || (1 + g * 7 %% 254)
                 END AS ip,
            CASE WHEN burst_kind IN (0, 1) THEN 'emu-b' || bb
                 WHEN burst THEN 'dev-b' || bb || '-' || j
                 WHEN r_dev < 0.01 THEN 'emu-' || lpad(floor(r_dev / 0.01 * {HOT_KEYS})::int::text, 4, '0')
                 WHEN r_dev < 0.97 THEN home.device
                 ELSE '' END AS device,
            CASE WHEN burst_kind = 1 THEN encode(sha256(convert_to('burstcard-' || bb, 'UTF8')), 'hex')
                 WHEN burst THEN encode(sha256(convert_to('burstcard-' || bb || '-' || j, 'UTF8')), 'hex')
                 WHEN r_card < 0.01 THEN encode(sha256(convert_to('hotcard-' || floor(r_card / 0.01 * {HOT_KEYS})::int, 'UTF8')), 'hex')
                 WHEN r_card < 0.85 THEN home.card
                 ELSE '' END AS card,
            CASE WHEN burst_kind = 1 THEN (%(hot_amounts)s::numeric[])[1 + bb %% 3]
                 WHEN burst_kind = 2 THEN 3000 + (bb * 7919 %% 60) * 100
                 WHEN NOT burst AND r_card < 0.01 THEN (%(hot_amounts)s::numeric[])[1 + floor(r_card / 0.01 * {HOT_KEYS})::int %% 3]
                 WHEN r_misc > 0.995 THEN 1000 * (1 + g %% 5)
                 ELSE greatest(9.9, least(50000, round(exp(ln(180) + 0.85 * sqrt(-2 * ln(greatest(r_amt, 1e-12)))
                                                        * cos(2 * pi() * r_amt2))::numeric, 1))) END AS amount,
            CASE WHEN burst_kind = 2 OR (NOT burst AND r_coupon < 0.15) THEN (%(coupons)s::text[])[1 + g %% 4] ELSE '' END AS coupon,
            CASE WHEN burst OR r_misc > 0.995 OR r_note < 0.8 THEN '' ELSE (%(notes)s::text[])[1 + g %% 6] END AS note
    ) v
    ORDER BY v.at
    """  # noqa: S608 - only constants are formatted in; values are bound
    # In time order, as a live table fills: ids rise with time and a window of days is a
    # contiguous stretch of the heap (the usual-amount and dry-run scans depend on it).
    cursor.execute("SET work_mem = '512MB'")
    cursor.execute(
        sql,
        {
            "c": c,
            "n": n,
            "bursts": burst_count(world),
            "base": world.customer_base,  # type: ignore[attr-defined]
            "np": len(world.places),
            "now": world.now,
            "skus": [s for s, _n, _c in CATALOGUE_SQL],
            "names": [nm for _s, nm, _c in CATALOGUE_SQL],
            "cats": [cat for _s, _n, cat in CATALOGUE_SQL],
            "transit": list(TRANSIT),
            "hot_amounts": list(HOT_AMOUNTS),
            "coupons": list(COUPONS),
            "notes": list(NOTES_TEXT),
        },
    )
    if cursor.rowcount != n:
        raise CommandError(f"{n} history orders asked for, {cursor.rowcount} written")
    cursor.execute("RESET work_mem")


def _finish_customers(cursor, world: World) -> None:
    """Order counts and first/last order times from the orders; accounts made before the first
    order (1 in 20 only hours before it; burst accounts 1-47 hours before)."""
    cursor.execute(
        """
        UPDATE orders_customer cu
        SET order_count = a.n, first_order_at = a.first_at, last_order_at = a.last_at,
            account_created_at = CASE
                WHEN cu.account_id LIKE 'b%%' THEN a.first_at - (1 + cu.id %% 47) * interval '1 hour'
                WHEN cu.id %% 20 = 0 THEN a.first_at - (1 + cu.id %% 72) * interval '1 hour'
                ELSE a.first_at - (1 + (cu.id * 37) %% 1500) * interval '1 day' END
        FROM (SELECT customer_id, count(*) AS n, min(received_at) AS first_at, max(received_at) AS last_at
              FROM orders_order GROUP BY customer_id) a
        WHERE cu.id = a.customer_id
        """,
        [],
    )
