"""`manage.py bench ingest`: how fast orders come in through the real HTTP API, measured
against a bare `bulk_create` of the same rows in the same run. `manage.py bench dispatch`
(dashboards.benchmarks.dispatch): seed 000's burst, the matcher, and smart vs round robin.
`manage.py bench risk` (dashboards.benchmarks.risk): screening cost per order on a year of
history, ingest with screening against without, and the rule dry run. `manage.py bench reports`
(dashboards.benchmarks.reports): every report page on a year of orders, read from the rollups.
`manage.py bench sim` (dashboards.benchmarks.sim): the simulator on a Double 11 day, no database.

It runs on PostgreSQL in a database of its own (`<name>_bench`, dropped and re-created each
time, so real data is never touched), starts daphne on it as the Procfile does, and drives it
with real HTTP: the batch API (1,000 orders a request) and the single-order API (4 concurrent
clients). Figures are medians over `--runs`; docs/benchmarks.md records them.
"""

from __future__ import annotations

import cProfile
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote

import psycopg
import requests
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from psycopg import sql

from dashboards.benchmarks.common import machine, profile_text

BATCH_SIZE = 1000  # the API's maximum per request
SINGLE_CLIENTS = 4
START_TIMEOUT = 60.0
TARGETS = {"batch_orders_per_s": 2000, "single_http_orders_per_s": 100}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴莫孔汤"
GIVEN_NAMES = (
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛",
    "明", "超", "秀兰", "霞", "平", "刚", "桂英", "文", "辉", "鑫", "宇", "浩然", "子涵", "欣怡",
    "梓萱", "思远", "俊杰", "雨桐", "一鸣", "晓东", "佳怡", "建华", "志强", "婷婷",
)  # fmt: skip
# (province, city, district, streets); municipalities repeat the province as the city.
PLACES = (
    ("广东省", "深圳市", "南山区", ("科技园南路", "深南大道", "后海大道")),
    ("广东省", "广州市", "天河区", ("天河路", "体育西路", "珠江新城华夏路")),
    ("北京市", "北京市", "朝阳区", ("建国路", "朝阳北路", "望京街")),
    ("上海市", "上海市", "浦东新区", ("世纪大道", "张杨路", "陆家嘴环路")),
    ("浙江省", "杭州市", "西湖区", ("文三路", "教工路", "古墩路")),
    ("江苏省", "南京市", "鼓楼区", ("中山北路", "湖南路", "广州路")),
    ("四川省", "成都市", "武侯区", ("人民南路", "科华北路", "天府大道北段")),
    ("湖北省", "武汉市", "洪山区", ("珞喻路", "雄楚大道", "光谷大道")),
    ("陕西省", "西安市", "雁塔区", ("小寨东路", "太白南路", "高新路")),
    ("山东省", "青岛市", "市南区", ("香港中路", "山东路", "延安三路")),
    ("福建省", "厦门市", "思明区", ("厦禾路", "湖滨南路", "莲前西路")),
    ("湖南省", "长沙市", "岳麓区", ("麓山南路", "桐梓坡路", "枫林三路")),
    ("重庆市", "重庆市", "渝中区", ("解放碑民族路", "中山三路", "大坪正街")),
    ("天津市", "天津市", "和平区", ("南京路", "滨江道", "营口道")),
    ("河南省", "郑州市", "金水区", ("花园路", "农业路", "经三路")),
    ("辽宁省", "沈阳市", "和平区", ("南京北街", "太原街", "三好街")),
)
MOBILE_PREFIXES = ("135", "136", "137", "138", "139", "150", "151", "152", "158", "186", "187", "188", "177")
CATALOGUE = (
    ("DJ-001", "羽绒服", "599.00", "apparel"),
    ("DJ-014", "羊毛围巾", "129.00", "apparel"),
    ("AP-203", "空气炸锅", "399.00", "appliance"),
    ("AP-118", "电饭煲", "299.00", "appliance"),
    ("FR-009", "阳澄湖大闸蟹礼盒", "488.00", "fresh"),
    ("FR-031", "智利车厘子 2kg", "238.00", "fresh"),
    ("SV-002", "空调清洗上门服务", "150.00", "home_service"),
    ("SV-017", "洗衣机维修", "80.00", "repair"),
    ("BK-440", "儿童绘本套装", "89.90", "books"),
    ("EL-512", "蓝牙耳机", "259.00", "electronics"),
)
NOTES = ("", "", "", "请周末送货", "放快递柜", "送货前打电话", "发票抬头：个人", "加急，明天要用")


class OrderGenerator:
    """Distinct, realistic orders: varied names, phones, addresses, items and ids."""

    def __init__(self, seed: int) -> None:
        self.random = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.now = timezone.now()

    def order(self, channel: str, external_id: str) -> dict:
        r = self.random
        province, city, district, streets = r.choice(PLACES)
        town = province if province == city else province + city
        address = (
            f"{town}{district}{r.choice(streets)}{r.randint(1, 999)}号"
            f"{r.randint(1, 30)}栋{r.randint(1, 6)}单元{r.randint(1, 33):02d}{r.randint(1, 8):02d}室"
        )
        products = r.sample(CATALOGUE, r.choice((1, 1, 1, 2, 3)))
        lines = [
            {"sku": sku, "name": name, "qty": r.choice((1, 1, 1, 2, 3)), "price": price}
            for sku, name, price, _category in products
        ]
        amount = sum((Decimal(i["price"]) * i["qty"] for i in lines), Decimal("0"))
        updated = self.now - timedelta(seconds=r.randint(60, 86_400))
        uid = r.randint(10_000_000, 99_999_999)
        return {
            "channel": channel,
            "external_id": external_id,
            "source_created_at": (updated - timedelta(minutes=r.randint(1, 30))).isoformat(),
            "source_updated_at": updated.isoformat(),
            "customer": {
                "name": r.choice(SURNAMES) + r.choice(GIVEN_NAMES),
                "phone": r.choice(MOBILE_PREFIXES) + f"{r.randint(0, 99_999_999):08d}",
                "account_id": f"u{uid}",
                "account_created_at": (updated - timedelta(days=r.randint(0, 2000))).isoformat(),
                "is_vip": r.random() < 0.08,
            },
            "address": address,
            "items": lines,
            "amount": str(amount),
            "currency": "CNY",
            "coupon_code": r.choice(("", "", "", "", "DOUBLE11-50", "NEWUSER-20")),
            "note": r.choice(NOTES),
            "category": products[0][3],
            "urgency": "expedited" if r.random() < 0.1 else "normal",
            "client_ip": f"{r.choice((113, 116, 183, 223, 36, 58))}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}",
            "device_id": f"dev-{r.getrandbits(48):012x}",
            "card_fingerprint": f"{r.getrandbits(64):016x}",
        }


class Command(BaseCommand):
    help = _(
        "Benchmark on PostgreSQL (needs DATABASE_URL). ingest: the batch API and the "
        "single-order API over real HTTP through daphne, against a bare bulk_create baseline. "
        "dispatch (needs REDIS_URL too): a 500-order burst on 50 agents until every order is "
        "offered or waits with a reason, the matcher on 1,000 x 200, smart vs round robin. "
        "risk: screening cost per order on a year of history, ingest with screening against "
        "without, and the rule dry run. "
        "board (needs REDIS_URL too): the board page with 5,000 open orders (time, queries), and "
        "push latency from a committed stage change to a board socket on daphne, each beside a "
        "baseline, and the overdue scan over --history orders. "
        "reports: every report page (7 days and a year) on --history orders over a year, read from "
        "the rollups, beside a bare count(*) over the orders. "
        "sim: the double11 day simulated under smart, round robin and round robin with filters "
        "(one seed per run), beside the engine's share and a bare event-heap replay, and the "
        "Erlang C check; it uses no database. "
        "Uses its own database <name>_bench, dropped and re-created on every run."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "what",
            choices=["ingest", "dispatch", "risk", "board", "reports", "sim"],
            help=_("What to measure."),
        )
        parser.add_argument("--json", action="store_true", help=_("Print one JSON object."))
        parser.add_argument("--runs", type=int, default=3, help=_("Runs; figures are medians."))
        parser.add_argument(
            "--batch-orders", type=int, default=10_000, help=_("Orders per run through the batch API.")
        )
        parser.add_argument(
            "--single-orders", type=int, default=1_000, help=_("Orders per run through the single API.")
        )
        parser.add_argument(
            "--history", type=int, default=1_000_000, help=_("risk: orders of history to build first.")
        )
        parser.add_argument(
            "--samples",
            type=int,
            default=400,
            help=_(
                "risk: single-order ingests per run, each way. board: stage changes timed for push latency."
            ),
        )
        parser.add_argument(
            "--open-orders", type=int, default=5_000, help=_("board: open orders on the board to render.")
        )
        parser.add_argument(
            "--ingest-orders", type=int, default=3_000, help=_("risk: orders per ingest pass, each way.")
        )
        parser.add_argument(
            "--profile",
            type=int,
            default=0,
            metavar="N",
            help=_(
                "Also profile, in this process, order_ingest_batch of N orders (ingest), a burst "
                "of N orders from ingest to the last matching round (dispatch) or N single-order "
                "ingests with screening (risk), and print the hot spots."
            ),
        )

    def handle(self, *args: object, **options: object) -> None:
        runs = int(options["runs"])
        batch_orders = int(options["batch_orders"])
        single_orders = int(options["single_orders"])
        if options["what"] == "dispatch":
            self._dispatch(runs=runs, as_json=bool(options["json"]), profile=int(options["profile"]))
            return
        if options["what"] == "risk":
            self._risk(options)
            return
        if options["what"] == "board":
            self._board(options)
            return
        if options["what"] == "reports":
            self._reports(options)
            return
        if options["what"] == "sim":
            self._sim(options)
            return
        if runs < 1 or batch_orders < BATCH_SIZE or single_orders < SINGLE_CLIENTS:
            raise CommandError(
                _(
                    "--runs must be at least 1, --batch-orders at least %(batch)d, --single-orders at least %(single)d."
                )
                % {"batch": BATCH_SIZE, "single": SINGLE_CLIENTS}
            )
        db = connections["default"].settings_dict
        if settings.EMBEDDED or connections["default"].vendor != "postgresql":
            raise CommandError(
                _(
                    "The ingest benchmark runs on PostgreSQL: set DATABASE_URL (e.g. "
                    "postgres://postgres@127.0.0.1:5432/paidan). It creates and uses its own "
                    "database <name>_bench and never touches <name>."
                )
            )
        bench_db = self._prepare_database(db)
        token, channel_code = _bench_fixtures()

        generator = OrderGenerator(seed=20251111)
        port = _free_port()
        log = tempfile.NamedTemporaryFile(prefix="paidan-bench-daphne-", suffix=".log", delete=False)  # noqa: SIM115
        env = _daphne_env(db, bench_db)
        daphne = subprocess.Popen(  # noqa: S603 - our own daphne, arguments are ours
            [
                str(Path(sys.executable).parent / "daphne"),
                "-b",
                "127.0.0.1",
                "-p",
                str(port),
                "config.asgi:application",
            ],
            cwd=settings.BASE_DIR,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        per_run: list[dict] = []
        try:
            _wait_for_port(daphne, port, Path(log.name))
            client = _Client(base, token)
            # Warm up: the first requests load the address data and fill the pool.
            client.batch([generator.order(channel_code, f"WARM-{i}") for i in range(50)])
            client.single(generator.order(channel_code, "WARM-single"))
            for run in range(1, runs + 1):
                self._log(_("Run %(run)d of %(runs)d …") % {"run": run, "runs": runs})
                per_run.append(
                    _one_run(
                        run=run,
                        client=client,
                        generator=generator,
                        channel_code=channel_code,
                        batch_orders=batch_orders,
                        single_orders=single_orders,
                    )
                )
        finally:
            daphne.terminate()
            try:
                daphne.wait(15)
            except subprocess.TimeoutExpired:
                daphne.kill()
            log.close()
        Path(log.name).unlink()  # kept only when the run failed, for its traceback

        result = _summary(per_run, bench_db=bench_db, batch_orders=batch_orders, single_orders=single_orders)
        if options["profile"]:
            result["profile"] = _profile(generator, channel_code, int(options["profile"]))
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
        else:
            self._print_table(result)

    def _dispatch(self, *, runs: int, as_json: bool, profile: int) -> None:
        from dashboards.benchmarks import dispatch

        if runs < 1:
            raise CommandError(_("--runs must be at least 1."))
        db = connections["default"].settings_dict
        if settings.EMBEDDED or connections["default"].vendor != "postgresql" or not settings.REDIS_URL:
            raise CommandError(
                _(
                    "The dispatch benchmark runs on PostgreSQL and Redis: set DATABASE_URL (e.g. "
                    "postgres://postgres@127.0.0.1:5432/paidan) and REDIS_URL. It creates and uses "
                    "its own database <name>_bench and never touches <name>."
                )
            )
        bench_db = self._prepare_database(db)
        result = dispatch.run(
            runs=runs, bench_db=bench_db, worker_env=_daphne_env(db, bench_db), profile=profile, log=self._log
        )
        if as_json:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
        else:
            self.stdout.write(dispatch.table(result))

    def _risk(self, options: dict) -> None:
        from dashboards.benchmarks import risk

        runs, history = int(options["runs"]), int(options["history"])
        samples, ingest_orders = int(options["samples"]), int(options["ingest_orders"])
        if runs < 1 or history < 2_000 or samples < 1 or ingest_orders < 1:
            raise CommandError(
                _("--runs, --samples and --ingest-orders must be at least 1, --history at least 2,000.")
            )
        db = connections["default"].settings_dict
        if settings.EMBEDDED or connections["default"].vendor != "postgresql":
            raise CommandError(
                _(
                    "The risk benchmark runs on PostgreSQL: set DATABASE_URL (e.g. "
                    "postgres://postgres@127.0.0.1:5432/paidan). It creates and uses its own "
                    "database <name>_bench and never touches <name>."
                )
            )
        bench_db = self._prepare_database(db)
        result = risk.run(
            runs=runs, history=history, samples=samples, ingest_orders=ingest_orders, bench_db=bench_db,
            profile=int(options["profile"]), log=self._log,
        )  # fmt: skip
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
        else:
            self.stdout.write(risk.table(result))

    def _board(self, options: dict) -> None:
        from dashboards.benchmarks import board

        runs, samples = int(options["runs"]), int(options["samples"])
        open_orders, history = int(options["open_orders"]), int(options["history"])
        if runs < 1 or samples < 1 or open_orders < 100 or history < 1_000:
            raise CommandError(
                _(
                    "--runs and --samples must be at least 1, --open-orders at least 100, --history at least 1,000."
                )
            )
        db = connections["default"].settings_dict
        if settings.EMBEDDED or connections["default"].vendor != "postgresql" or not settings.REDIS_URL:
            raise CommandError(
                _(
                    "The board benchmark runs on PostgreSQL and Redis: set DATABASE_URL (e.g. "
                    "postgres://postgres@127.0.0.1:5432/paidan) and REDIS_URL. It creates and uses "
                    "its own database <name>_bench and never touches <name>."
                )
            )
        bench_db = self._prepare_database(db)
        result = board.run(
            runs=runs, samples=samples, open_orders=open_orders, history=history, bench_db=bench_db,
            env=_daphne_env(db, bench_db), log=self._log,
        )  # fmt: skip
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
        else:
            self.stdout.write(board.table(result))

    def _reports(self, options: dict) -> None:
        from dashboards.benchmarks import reports

        runs, history = int(options["runs"]), int(options["history"])
        if runs < 1 or history < 1_000:
            raise CommandError(_("--runs must be at least 1, --history at least 1,000."))
        db = connections["default"].settings_dict
        if settings.EMBEDDED or connections["default"].vendor != "postgresql":
            raise CommandError(
                _(
                    "The reports benchmark runs on PostgreSQL: set DATABASE_URL (e.g. "
                    "postgres://postgres@127.0.0.1:5432/paidan). It creates and uses its own "
                    "database <name>_bench and never touches <name>."
                )
            )
        bench_db = self._prepare_database(db)
        result = reports.run(runs=runs, history=history, bench_db=bench_db, log=self._log)
        if options["json"]:
            self.stdout.write(json.dumps(result, ensure_ascii=False))
        else:
            self.stdout.write(reports.table(result))

    def _sim(self, options: dict) -> None:
        from dashboards.benchmarks import sim

        if int(options["runs"]) < 1:
            raise CommandError(_("--runs must be at least 1."))
        result = sim.run(runs=int(options["runs"]), log=self._log)
        self.stdout.write(json.dumps(result, ensure_ascii=False) if options["json"] else sim.table(result))

    def _prepare_database(self, db: dict) -> str:
        """`<name>_bench`, dropped, re-created and migrated; this process now uses it."""
        bench_db = f"{db['NAME']}_bench"
        self._log(_("Preparing database %s …") % bench_db)
        _recreate_database(db, bench_db)
        _use_database(bench_db)
        call_command("migrate", verbosity=0, interactive=False)
        return bench_db

    def _log(self, message: str) -> None:
        self.stderr.write(message)

    def _print_table(self, result: dict) -> None:
        for key in ("batch_orders_per_s", "single_http_orders_per_s", "bulk_baseline_rows_per_s"):
            target = TARGETS.get(key)
            suffix = f"   (target ≥ {target:,})" if target else ""
            self.stdout.write(f"{key:<28} {result[key]:>10,.0f}{suffix}")
        self.stdout.write(f"{'batch_to_baseline':<28} {result['batch_to_baseline']:>10.3f}")
        self.stdout.write(f"{'single_to_baseline':<28} {result['single_to_baseline']:>10.3f}")
        if "profile" in result:
            self.stdout.write(result["profile"]["text"])


class _Client:
    def __init__(self, base: str, token: str) -> None:
        self.base, self.token = base, token
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.trust_env = False
            session.headers["Authorization"] = f"Token {self.token}"
            self._local.session = session
        return session

    def batch(self, orders: list[dict]) -> dict:
        response = self._session().post(
            f"{self.base}/api/orders/batch/", json={"orders": orders}, timeout=120
        )
        if response.status_code != 200:
            raise CommandError(f"batch API answered {response.status_code}: {response.text[:500]}")
        body = response.json()
        if body["created"] != len(orders):
            raise CommandError(f"batch API did not create every order: {json.dumps(body)[:500]}")
        return body

    def single(self, order: dict) -> int:
        response = self._session().post(f"{self.base}/api/orders/", json=order, timeout=60)
        if response.status_code != 201:
            raise CommandError(f"single API answered {response.status_code}: {response.text[:500]}")
        return response.json()["id"]


def _one_run(
    *,
    run: int,
    client: _Client,
    generator: OrderGenerator,
    channel_code: str,
    batch_orders: int,
    single_orders: int,
) -> dict:
    from orders.models import Order, OrderEvent

    # Batch API: 1,000 orders a request, one request at a time.
    batches = [
        [generator.order(channel_code, f"B{run}-{start + i:06d}") for i in range(BATCH_SIZE)]
        for start in range(0, batch_orders - batch_orders % BATCH_SIZE, BATCH_SIZE)
    ]
    sent = sum(len(b) for b in batches)
    started = time.perf_counter()
    for batch in batches:
        client.batch(batch)
    batch_seconds = time.perf_counter() - started
    audited = OrderEvent.objects.filter(order__external_id__startswith=f"B{run}-", kind="ingested").count()
    if audited != sent:
        raise CommandError(f"run {run}: {sent} orders sent in batches but {audited} ingest audit events")

    # Single-order API: 4 clients, each with its own keep-alive connection.
    singles = [generator.order(channel_code, f"S{run}-{i:06d}") for i in range(single_orders)]
    started = time.perf_counter()
    with ThreadPoolExecutor(SINGLE_CLIENTS) as pool:
        list(pool.map(client.single, singles))
    single_seconds = time.perf_counter() - started

    # Baseline: the very rows the batch API stored, inserted again by a bare bulk_create.
    rows = list(Order.objects.filter(external_id__startswith=f"B{run}-"))
    for order in rows:
        order.pk = None
        order.external_id = f"L{order.external_id}"
        order.tag = f"{order.tag}-L"
    started = time.perf_counter()
    with transaction.atomic():
        Order.objects.bulk_create(rows, batch_size=BATCH_SIZE)
    baseline_seconds = time.perf_counter() - started

    return {
        "run": run,
        "batch_orders": sent,
        "batch_seconds": round(batch_seconds, 3),
        "batch_orders_per_s": round(sent / batch_seconds, 1),
        "single_orders": single_orders,
        "single_seconds": round(single_seconds, 3),
        "single_http_orders_per_s": round(single_orders / single_seconds, 1),
        "bulk_baseline_rows": len(rows),
        "bulk_baseline_seconds": round(baseline_seconds, 3),
        "bulk_baseline_rows_per_s": round(len(rows) / baseline_seconds, 1),
    }


def _summary(per_run: list[dict], *, bench_db: str, batch_orders: int, single_orders: int) -> dict:
    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in per_run), 1)

    batch, single, baseline = (
        median("batch_orders_per_s"),
        median("single_http_orders_per_s"),
        median("bulk_baseline_rows_per_s"),
    )
    with connections["default"].cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg_version = cursor.fetchone()[0]
    return {
        "benchmark": "ingest",
        "date": timezone.now().isoformat(timespec="seconds"),
        "batch_orders_per_s": batch,
        "single_http_orders_per_s": single,
        "bulk_baseline_rows_per_s": baseline,
        "batch_to_baseline": round(batch / baseline, 3),
        "single_to_baseline": round(single / baseline, 3),
        "targets": TARGETS,
        "meets_targets": batch >= TARGETS["batch_orders_per_s"]
        and single >= TARGETS["single_http_orders_per_s"],
        "runs": per_run,
        "parameters": {
            "runs": len(per_run),
            "batch_orders_per_run": batch_orders,
            "orders_per_batch_request": BATCH_SIZE,
            "single_orders_per_run": single_orders,
            "single_clients": SINGLE_CLIENTS,
            "database": bench_db,
            "channel_layer": "redis" if os.environ.get("REDIS_URL") else "in-memory",
        },
        "machine": machine(pg_version),
    }


def _profile(generator: OrderGenerator, channel_code: str, count: int) -> dict:
    """cProfile of one order_ingest_batch call of `count` orders, in this process."""
    from orders.actors import system_actor
    from orders.services import order_ingest_batch

    payloads = [generator.order(channel_code, f"P-{i:06d}") for i in range(count)]
    order_ingest_batch(payloads=[generator.order(channel_code, "P-warm")], actor=system_actor("bench"))
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    results = order_ingest_batch(payloads=payloads, actor=system_actor("bench"))
    profiler.disable()
    seconds = time.perf_counter() - started
    return {
        "orders": count,
        "created": sum(r.status == "created" for r in results),
        "seconds_profiled": round(seconds, 3),
        "text": profile_text(profiler, cumulative=35, tottime=25),
    }


def _recreate_database(db: dict, name: str) -> None:
    if name == db["NAME"] or not name.endswith("_bench"):
        raise CommandError(f"refusing to drop {name!r}")
    connections["default"].close()
    with psycopg.connect(
        dbname="postgres",
        user=db["USER"],
        password=db["PASSWORD"] or None,
        host=db["HOST"] or None,
        port=db["PORT"] or None,
        autocommit=True,
    ) as admin:
        quoted = sql.Identifier(name)
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(quoted))
        admin.execute(sql.SQL("CREATE DATABASE {}").format(quoted))


def _use_database(name: str) -> None:
    """Point this process's default connection (and its pool) at `name`."""
    conn = connections["default"]
    conn.close()
    if hasattr(conn, "close_pool"):
        conn.close_pool()
    conn.settings_dict["NAME"] = name


def _bench_fixtures() -> tuple[str, str]:
    from django.contrib.auth.models import Group, User
    from rest_framework.authtoken.models import Token

    from orders.models import Channel

    user = User.objects.create_user("bench", password=None)
    user.groups.add(Group.objects.get(name="supervisor"))
    token = Token.objects.create(user=user).key
    Channel.objects.create(code="bench", name="Bench", tag_prefix="BN", kind=Channel.Kind.API)
    return token, "bench"


def _daphne_env(db: dict, bench_db: str) -> dict[str, str]:
    auth = quote(db["USER"] or "postgres", safe="")
    if db["PASSWORD"]:
        auth += ":" + quote(db["PASSWORD"], safe="")
    url = f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{bench_db}"
    env = {k: v for k, v in os.environ.items() if k != "CELERY_TASK_ALWAYS_EAGER"}
    env["DATABASE_URL"] = url
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CommandError(
                f"daphne exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}"
            )
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise CommandError(f"daphne did not listen on {port} within {START_TIMEOUT:.0f} s")
