"""The world the risk benchmark builds and the traffic it screens: channels, places, phone
prefixes, the hot IPs, devices and cards the history shares, and orders as channels send them.
The SQL that writes the history and the Python that writes the screened orders must agree on
every per-customer and hot value; both are defined here."""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.utils import timezone

SEED = 20251111
DRY_RUN_WINDOW = 100_000  # orders the dry run's window should hold
INGEST_BATCH = 100
CUSTOMERS_PER_ORDER = 0.2  # 1,000,000 orders from 200,000 customers
HOT_KEYS = 20  # hot IPs (NAT gateways, 网吧), shared devices (emulators) and cards
BURST_EVERY = 1000  # the history holds a burst of 5 orders in every 1,000 after the first orders
BURST_SIZE = 5
REVIEW_DAYS = 60  # decided reviews cover the bursts and suspicious orders of the last 60 days
CHANNELS = (
    ("jd", "京东", "JD", 4),
    ("taobao", "淘宝", "TB", 3),
    ("pdd", "拼多多", "PDD", 2),
    ("mini", "小程序", "MP", 1),
)
# The ingest generator's 16 cities and some far ones, so phones' home cities spread over China.
EXTRA_PLACES = (
    ("新疆维吾尔自治区", "乌鲁木齐市", "天山区", ("解放北路", "中山路", "新华南路")),
    ("黑龙江省", "哈尔滨市", "南岗区", ("红军街", "西大直街", "学府路")),
    ("云南省", "昆明市", "五华区", ("东风西路", "人民中路", "青年路")),
    ("广西壮族自治区", "南宁市", "青秀区", ("民族大道", "东葛路", "金湖路")),
    ("甘肃省", "兰州市", "城关区", ("东岗西路", "庆阳路", "张掖路")),
)
WAREHOUSES = (
    # (code, name, an address to place it, provinces served, default)
    ("gz", "广州白云仓", "广东省广州市白云区", ["广东省", "广西壮族自治区", "福建省", "湖南省", "云南省"], False),
    ("cd", "成都双流仓", "四川省成都市双流区", ["四川省", "重庆市", "陕西省"], False),
    ("wlmq", "乌鲁木齐仓", "新疆维吾尔自治区乌鲁木齐市新市区", ["新疆维吾尔自治区", "甘肃省"], False),
    ("sh", "上海嘉定仓", "上海市上海市嘉定区", [], True),
)  # fmt: skip
TRANSIT = ("集运仓", "中转仓", "代收点")
HOT_AMOUNTS = (Decimal("1000.00"), Decimal("2999.00"), Decimal("499.00"))
COUPONS = ("DOUBLE11-50", "NEWUSER-20", "618-30", "VIP-100")
NOTES_TEXT = ("请周末送货", "放快递柜", "送货前打电话", "发票抬头：个人", "加急，明天要用", "门卫代收")
CATALOGUE_SQL = (
    ("DJ-001", "羽绒服", "apparel"), ("AP-203", "空气炸锅", "appliance"), ("FR-009", "阳澄湖大闸蟹礼盒", "fresh"),
    ("SV-002", "空调清洗上门服务", "home_service"), ("SV-017", "洗衣机维修", "repair"), ("BK-440", "儿童绘本套装", "books"),
    ("EL-512", "蓝牙耳机", "electronics"), ("EL-730", "智能手机", "electronics"), ("DJ-014", "羊毛围巾", "apparel"),
    ("AP-118", "电饭煲", "appliance"),
)  # fmt: skip
MOBILE = ("135", "136", "137", "138", "139", "150", "151", "152", "158", "186", "187", "188", "177")


# --- Hot and per-customer values: the SQL that writes the history and the Python that
# --- writes the screened orders must agree on them --------------------------------------------
def hot_ip(k: int) -> str:
    return f"116.228.{10 + k}.1"


def hot_device(k: int) -> str:
    return f"emu-{k:04d}"


def hot_card_token(k: int) -> str:
    return f"hotcard-{k}"


def home_ip(ci: int) -> str:
    return f"{(113, 116, 183, 223, 36, 58)[ci % 6]}.{ci * 7 % 256}.{ci * 13 % 256}.{1 + ci % 254}"


def home_device(ci: int) -> str:
    return "dev-" + hashlib.md5(f"d{ci}".encode()).hexdigest()[:16]  # noqa: S324 - an id, not a secret


def home_card_token(ci: int) -> str:
    return f"card-{ci}"


def card_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# SQL twins of the functions above (ci and k are SQL expressions).
SQL_HOME_IP = (
    "((ARRAY[113,116,183,223,36,58])[1 + {ci} %% 6] || '.' || ({ci} * 7 %% 256) || '.' || "
    "({ci} * 13 %% 256) || '.' || (1 + {ci} %% 254))"
)
SQL_HOME_DEVICE = "('dev-' || substr(md5('d' || {ci}), 1, 16))"
SQL_HOME_CARD = "encode(sha256(convert_to('card-' || {ci}, 'UTF8')), 'hex')"


@dataclass
class Place:
    province: str
    city: str
    district: str
    streets: tuple[str, ...]
    adcode: str
    latitude: Decimal | None
    longitude: Decimal | None
    prefixes: list[str] = field(default_factory=list)  # 7-digit mobile prefixes homed in its province

    def address(self, r: random.Random, transit: str = "") -> str:
        town = self.province if self.province == self.city else self.province + self.city
        if transit:
            return f"{town}{self.district}{r.choice(self.streets)}{r.randint(1, 999)}号物流园{transit}{r.randint(1, 9)}号库"
        return (
            f"{town}{self.district}{r.choice(self.streets)}{r.randint(1, 999)}号"
            f"{r.randint(1, 30)}栋{r.randint(1, 6)}单元{r.randint(1, 33):02d}{r.randint(1, 8):02d}室"
        )


@dataclass
class World:
    """What the history was built from, for the screened orders to collide with."""

    now: datetime
    history: int
    customers: int
    places: list[Place]
    prefixes: list[tuple[str, str]]  # (7-digit prefix, home city)
    channel_codes: list[str]
    channel_weights: list[int]
    sample_customers: list[tuple] = field(
        default_factory=list
    )  # (ci, account_id, channel code, phone raw, created)
    blacklisted: dict[str, list[str]] = field(default_factory=dict)  # kind → raw values a payload can carry
    build_seconds: dict[str, float] = field(default_factory=dict)
    decided_reviews: int = 0


# --- The screened orders ------------------------------------------------------------------
class Payloads:
    """Orders as a channel sends them, colliding with the history as live traffic does."""

    def __init__(self, world: World, seed: int) -> None:
        from dashboards.management.commands.bench import GIVEN_NAMES, SURNAMES

        self.world = world
        self.random = random.Random(seed)  # noqa: S311 - test data, not secrets
        self.seed = seed
        self.names = (SURNAMES, GIVEN_NAMES)
        self.made = 0

    def _amount(self) -> Decimal:
        r = self.random
        value = math.exp(math.log(180) + 0.85 * r.gauss(0, 1))
        return Decimal(str(round(min(50000.0, max(9.9, value)), 1))).quantize(Decimal("0.01"))

    def _phone(self, place: Place) -> str:
        r = self.random
        prefixes = place.prefixes if r.random() < 0.85 else [p for p, _c in self.world.prefixes]
        return r.choice(prefixes) + f"{r.randint(0, 9999):04d}"

    def make(self, external_id: str) -> dict:
        r, world = self.random, self.world
        self.made += 1
        now = timezone.now()
        coupon = ""
        if world.sample_customers and r.random() < 0.65:
            ci, account_id, channel, phone, created, vip = r.choice(world.sample_customers)
            place = world.places[ci % len(world.places)] if r.random() < 0.85 else r.choice(world.places)
            ip = (
                home_ip(ci)
                if r.random() < 0.7
                else f"223.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
            )
            device = home_device(ci) if r.random() < 0.9 else ""
            card = home_card_token(ci) if r.random() < 0.8 else ""
            if r.random() < 0.15:
                coupon = r.choice(COUPONS)
            new = False
        else:
            channel = r.choices(world.channel_codes, weights=world.channel_weights)[0]
            account_id = f"n{self.seed}-{self.made}"
            place = r.choice(world.places)
            phone = self._phone(place)
            u = r.random()
            age = r.uniform(0, 7) if u < 0.2 else r.uniform(8, 30) if u < 0.35 else r.uniform(31, 1800)
            created = now - timedelta(days=age)
            vip = False
            ip = f"{r.choice((113, 116, 183, 223, 36, 58))}.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)}"
            device = f"dev-{r.getrandbits(64):016x}"
            card = f"{r.getrandbits(64):016x}" if r.random() < 0.8 else ""
            if r.random() < 0.25:
                coupon = r.choice(COUPONS)
            new = True
        amount = self._amount()
        note = r.choice(NOTES_TEXT) if r.random() < 0.2 else ""
        transit = ""
        u = r.random()
        if u < 0.03:
            ip = hot_ip(r.randrange(HOT_KEYS))
        elif u < 0.045:
            device = hot_device(r.randrange(HOT_KEYS))
        elif u < 0.06:
            k = r.randrange(HOT_KEYS)
            card, amount = hot_card_token(k), HOT_AMOUNTS[k % 3]
        elif u < 0.07:
            amount, note = Decimal(1000 * r.randint(1, 5)), ""
        elif u < 0.075:
            transit = r.choice(TRANSIT)
        elif u < 0.078 and world.blacklisted:
            kind = r.choice(sorted(world.blacklisted))
            value = r.choice(world.blacklisted[kind])
            if kind == "ip":
                ip = value
            elif kind == "phone":
                phone = value
            elif kind == "device":
                device = value
            else:
                card = value
        elif u < 0.085 and new:
            # The composite's pattern: a new account, a big amount, a transit warehouse.
            transit, amount = r.choice(TRANSIT), Decimal(r.randint(30, 90) * 100)
        item = r.choice(CATALOGUE_SQL)
        updated = now - timedelta(seconds=r.randint(5, 120))
        return {
            "channel": channel,
            "external_id": external_id,
            "source_created_at": (updated - timedelta(minutes=r.randint(1, 30))).isoformat(),
            "source_updated_at": updated.isoformat(),
            "customer": {
                "name": r.choice(self.names[0]) + r.choice(self.names[1]),
                "phone": phone,
                "account_id": account_id,
                "account_created_at": created.isoformat() if created else None,
                "is_vip": vip,
            },
            "address": place.address(r, transit),
            "items": [{"sku": item[0], "name": item[1], "qty": 1, "price": str(amount)}],
            "amount": str(amount),
            "currency": "CNY",
            "coupon_code": coupon,
            "note": note,
            "category": item[2],
            "urgency": "expedited" if r.random() < 0.1 else "normal",
            "client_ip": ip,
            "device_id": device,
            "card_fingerprint": card,
        }
