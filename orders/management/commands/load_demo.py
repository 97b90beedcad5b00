"""`manage.py load_demo`: the realistic demo a newcomer sees after `make run`.

Users, channels, regions, teams, skills, 15 agents and ~300 orders spread over the last
three days, every order written through the real services (ingest, transition, edit) so the
audit trail reads like a real one. A fixed seed makes the content the same on every machine;
the virtual clock (time-machine) puts each step at its moment in the past. Idempotent: what
exists is left alone, so a second run changes nothing.
"""

from __future__ import annotations

import heapq
import os
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import time_machine
from django.contrib.auth.hashers import make_password
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from agents.models import Agent, AgentSkill, Region, Skill, Team, UserContact
from dashboards.reports.services import backlog_snapshot_take, reports_rollup
from dispatch.models import DispatchPolicy
from orders import normalize as norm
from orders.actors import Actor, system_actor, user_actor
from orders.exceptions import exception_raise
from orders.mapping import apply_mapping
from orders.models import STAGE_LABELS, Channel, ExceptionType, Order, Warehouse
from orders.services import order_edit, order_ingest_batch, order_transition
from orders.states import Role, Stage, TransitionError
from riskcontrol.defaults import REVIEW_SKILL
from riskcontrol.models import Review
from riskcontrol.services import review_decide

SEED = 20251111
PASSWORD = "paidan-demo"  # noqa: S105 - the published demo password
ORDER_COUNT = 300
SPECIAL_ORDERS = 31  # dirty-data and risky orders planned one by one below
DEMO_ACTOR = "system:demo"

# username, groups, superuser, staff, role shown in the logins table
USERS = [
    ("admin", ["admin"], True, True, "admin (superuser)"),
    ("supervisor", ["supervisor"], False, False, "supervisor · 客服主管"),
    *[(f"agent{n}", ["agent"], False, False, "agent · 客服") for n in range(1, 16)],
    ("warehouse", ["warehouse"], False, False, "warehouse · 仓储"),
    ("reviewer", ["risk_reviewer"], False, False, "risk reviewer · 风控专员"),
    ("cs", ["customer_service"], False, False, "customer service · 售后客服"),
]

# Douyin sends its own JSON; the mapping (set in admin) turns it into our fields.
DOUYIN_MAPPING = {
    "external_id": "order_sn",
    "source_created_at": "create_time",
    "source_updated_at": "update_time",
    "customer.name": "buyer.nick_name",
    "customer.phone": "buyer.mobile",
    "customer.account_id": "buyer.open_id",
    "address": "receiver.full_address",
    "amount": "pay_amount",
    "note": "buyer_words",
    "items": {
        "path": "sku_list",
        "fields": {"sku": "sku_id", "name": "product_name", "qty": "num", "price": "sku_price"},
    },
}

CHANNELS = [
    # code, name, tag prefix, kind, share of orders
    ("taobao", "淘宝", "TB", Channel.Kind.MARKETPLACE, 35),
    ("jd", "京东", "JD", Channel.Kind.MARKETPLACE, 25),
    ("douyin", "抖音小店", "DY", Channel.Kind.MARKETPLACE, 25),
    ("miniapp", "自有小程序", "MP", Channel.Kind.MINI_PROGRAM, 15),
]

REGIONS = [
    ("east", "华东", ["上海市", "江苏省", "浙江省", "安徽省"]),
    ("south", "华南", ["广东省", "广西壮族自治区", "福建省", "海南省"]),
    ("north", "华北", ["北京市", "天津市", "河北省", "山西省", "山东省"]),
]

# Ship-from warehouses (code, name, city, lat, lng, provinces); Chengdu is the default.
WAREHOUSES = [
    ("sh", "上海青浦仓", "上海市", "31.1497", "121.1240", ["上海市", "江苏省", "浙江省", "安徽省"], False),
    (
        "gz",
        "广州白云仓",
        "广州市",
        "23.1570",
        "113.2731",
        ["广东省", "广西壮族自治区", "福建省", "海南省"],
        False,
    ),
    (
        "tj",
        "天津武清仓",
        "天津市",
        "39.3834",
        "117.0443",
        ["北京市", "天津市", "河北省", "山西省", "山东省"],
        False,
    ),
    ("cd", "成都双流仓", "成都市", "30.5745", "103.9235", [], True),
]

# (name, kind, criteria, filters): the default smart criteria with proximity weighed 8 instead
# of 2 (engineers drive less, load spreads less), and the classic round robin without filters.
DRAFT_POLICIES = [
    (
        "草稿：就近优先",
        "smart",
        [
            {"criterion": "urgency", "weight": 7},
            {"criterion": "vip", "weight": 5},
            {"criterion": "returning", "weight": 4},
            {"criterion": "channel_team", "weight": 2},
            {"criterion": "skill", "weight": 3},
            {"criterion": "load", "weight": 2},
            {"criterion": "proximity", "weight": 8},
            {"criterion": "quality", "weight": 1},
        ],
        ["skill", "area"],
    ),
    ("草稿：轮询", "round_robin", [], []),
]

TEAMS = [("presales", "售前咨询"), ("aftersales", "售后服务"), ("install", "安装维修"), ("warehouse", "仓储")]

SKILLS = [
    ("aircon_install", "空调安装", ["空调", "安装", "移机"]),
    ("appliance_repair", "家电维修", ["维修", "检修", "不制冷", "故障"]),
    ("down_jacket", "羽绒服", ["羽绒服", "保暖", "冲锋衣"]),
    ("fresh_food", "生鲜", ["冷链", "生鲜", "海鲜", "大闸蟹"]),
    ("electronics", "数码", ["耳机", "手表", "充电", "平板"]),
    ("logistics", "物流查询", ["快递", "物流", "发货"]),
    ("returns", "退换货", ["退货", "换货", "退款", "补发"]),
]

# username, display name, region, home district (for coordinates), teams, {skill: level},
# status, capacity
AGENTS = [
    ("agent1", "陈思远", "east", "上海市浦东新区", ["presales"], {"down_jacket": 5, "logistics": 4}, "online", 8),
    ("agent2", "王雅婷", "east", "浙江省杭州市西湖区", ["aftersales"], {"returns": 4, "down_jacket": 3}, "online", 6),
    ("agent3", "刘建国", "east", "江苏省南京市鼓楼区", ["install"], {"aircon_install": 5, "appliance_repair": 4}, "busy", 4),
    ("agent4", "周晓燕", "east", "安徽省合肥市蜀山区", ["presales"], {"fresh_food": 4, "logistics": 3}, "break", 5),
    ("agent5", "吴磊", "east", "江苏省苏州市吴中区", ["warehouse", "aftersales"], {"logistics": 5, "returns": 2}, "online", 7),
    ("agent6", "李嘉欣", "south", "广东省广州市天河区", ["presales"], {"electronics": 4, "down_jacket": 2}, "online", 8),
    ("agent7", "黄志强", "south", "广东省深圳市南山区", ["install"], {"aircon_install": 4, "appliance_repair": 5}, "online", 4),
    ("agent8", "林雨桐", "south", "福建省厦门市思明区", ["aftersales"], {"returns": 5, "electronics": 3}, "busy", 6),
    ("agent9", "梁伟", "south", "广西壮族自治区南宁市青秀区", ["install"], {"appliance_repair": 3, "aircon_install": 2}, "offline", 3),
    ("agent10", "郑美玲", "south", "广东省深圳市福田区", ["presales", "aftersales"], {"fresh_food": 5, "returns": 3}, "online", 7),
    ("agent11", "张浩然", "north", "北京市朝阳区", ["presales"], {"electronics": 5, "logistics": 3}, "online", 8),
    ("agent12", "赵敏", "north", "天津市南开区", ["aftersales"], {"returns": 4, "fresh_food": 2}, "busy", 5),
    ("agent13", "孙立军", "north", "山东省济南市历下区", ["install"], {"appliance_repair": 5, "aircon_install": 4}, "online", 4),
    ("agent14", "马晓丽", "north", "河北省石家庄市长安区", ["warehouse"], {"logistics": 4}, "break", 6),
    ("agent15", "高鹏", "north", "山西省太原市小店区", ["install", "aftersales"], {"aircon_install": 3, "returns": 2}, "offline", 3),
]  # fmt: skip

# Delivery areas per region: (province, city or "" for a municipality, districts).
AREAS = {
    "east": [
        ("上海市", "", ["浦东新区", "徐汇区", "闵行区", "静安区", "杨浦区"]),
        ("江苏省", "南京市", ["鼓楼区", "玄武区", "江宁区"]),
        ("江苏省", "苏州市", ["姑苏区", "吴中区"]),
        ("浙江省", "杭州市", ["西湖区", "滨江区", "余杭区"]),
        ("浙江省", "宁波市", ["鄞州区", "海曙区"]),
        ("安徽省", "合肥市", ["蜀山区", "包河区"]),
    ],
    "south": [
        ("广东省", "广州市", ["天河区", "海珠区", "番禺区"]),
        ("广东省", "深圳市", ["南山区", "福田区", "宝安区", "龙岗区"]),
        ("广东省", "佛山市", ["禅城区", "顺德区"]),
        ("广西壮族自治区", "南宁市", ["青秀区", "西乡塘区"]),
        ("福建省", "福州市", ["鼓楼区", "仓山区"]),
        ("福建省", "厦门市", ["思明区", "湖里区"]),
        ("海南省", "海口市", ["龙华区", "美兰区"]),
    ],
    "north": [
        ("北京市", "", ["朝阳区", "海淀区", "丰台区", "东城区"]),
        ("天津市", "", ["南开区", "和平区", "河西区"]),
        ("河北省", "石家庄市", ["长安区", "裕华区"]),
        ("山西省", "太原市", ["小店区", "迎泽区"]),
        ("山东省", "济南市", ["历下区", "市中区"]),
        ("山东省", "青岛市", ["市南区", "崂山区"]),
    ],
}
ROADS = ["人民路", "中山路", "解放路", "建设路", "文化路", "和平路", "新华路", "长江路", "滨河路", "科技路"]
ESTATES = [
    "阳光花园",
    "锦绣华庭",
    "翠湖苑",
    "万科城",
    "碧桂园",
    "绿地新都会",
    "金地格林小镇",
    "保利香槟国际",
    "华润城",
    "龙湖春江郦城",
]
VAGUE_ADDRESSES = ["学校门口小卖部", "老地方，到了打电话", "公司前台找小王", "小区南门快递柜旁边"]
WAREHOUSE_ADDRESSES = [
    "浙江省金华市义乌市稠城街道国际商贸城中转仓B区",
    "广东省深圳市宝安区福永街道代收点A12",
    "河北省石家庄市裕华区槐安东路临时仓3号库",
    "福建省福州市仓山区盖山镇物流园中转仓",
]

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶贺顾毛郝龚邵万严武戴孔汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红建文辉力斌宇浩凯子轩梓涵欣怡雨晨博思远佳琪一鸣俊杰婷晓峰"
MOBILE_PREFIXES = ["135", "136", "138", "139", "150", "158", "186", "188", "177", "131", "133", "189"]
INVALID_PHONES = ["1380013800", "12345678", "021-1234", "186 0000"]
ISP_NETS = [
    "113.88",
    "183.14",
    "117.136",
    "36.110",
    "223.104",
    "112.97",
    "120.229",
    "14.153",
    "61.140",
    "221.218",
]

# category: (share, expedited share, [(sku, name, price)], notes)
CATALOGUE: dict[str, tuple[int, float, list[tuple[str, str, str]], list[str]]] = {
    "apparel": (
        30,
        0.05,
        [
            ("DJ-2301", "加厚连帽羽绒服 男款 黑色 XL", "899.00"),
            ("DJ-2302", "轻薄羽绒服 女款 米白 M", "599.00"),
            ("CF-1108", "三合一冲锋衣 户外防水", "459.00"),
            ("NY-0520", "德绒保暖内衣套装", "129.00"),
            ("WJ-0311", "羊绒围巾 灰色", "199.00"),
        ],
        [
            "",
            "",
            "",
            "请尽快发货",
            "羽绒服要保暖款，麻烦确认一下充绒量",
            "换货：尺码偏小，换大一码",
            "补发：上次少发了一件",
        ],
    ),
    "appliance_install": (
        15,
        0.1,
        [
            ("KT-GREE-35", "格力 云佳 1.5匹 变频挂式空调", "2799.00"),
            ("KT-MIDEA-72", "美的 3匹 新一级能效立式柜机", "5699.00"),
            ("SV-KT-INSTALL", "空调安装辅材及服务", "150.00"),
            ("SV-KT-MOVE", "空调移机服务", "260.00"),
            ("RSQ-16L", "燃气热水器 16L 含安装", "1899.00"),
        ],
        ["空调需要安装，周六上午上门", "新房安装，需要打孔", "空调移机，从客厅移到卧室", ""],
    ),
    "fresh_food": (
        20,
        0.3,
        [
            ("XS-DZX-8", "阳澄湖大闸蟹 8只装礼盒", "388.00"),
            ("XS-CLZ-2KG", "智利车厘子 JJ级 2kg", "259.00"),
            ("XS-SWY-500", "挪威冰鲜三文鱼 500g", "168.00"),
            ("XS-XR-1KG", "冷冻黑虎虾仁 1kg", "139.00"),
            ("XS-NP-2KG", "原切牛排套餐 2kg", "299.00"),
        ],
        ["冷链配送，请勿放快递柜", "生鲜请尽快发货，家里有人", "送礼用，请不要放价格单", ""],
    ),
    "electronics": (
        20,
        0.05,
        [
            ("EJ-BT-PRO", "主动降噪蓝牙耳机", "899.00"),
            ("SB-WATCH-4", "智能手表 GPS版", "1299.00"),
            ("CD-65W", "65W 氮化镓充电器", "129.00"),
            ("CDB-20K", "20000mAh 充电宝", "149.00"),
            ("PB-11", "11英寸平板电脑 8+256G", "2499.00"),
        ],
        ["", "", "请开发票，抬头见备注", "换货：耳机左耳没声音", "快递请放门卫"],
    ),
    "repair": (
        15,
        0.25,
        [
            ("SV-KT-REPAIR", "空调上门检修（不制冷）", "80.00"),
            ("SV-XYJ-REPAIR", "洗衣机上门维修", "80.00"),
            ("SV-BX-REPAIR", "冰箱上门检修", "100.00"),
            ("PJ-YSJ", "空调压缩机更换（含工时）", "680.00"),
        ],
        [
            "空调不制冷，需要上门检修",
            "洗衣机不脱水，下午在家",
            "补发：上次配件漏发",
            "冰箱有异响，工作日晚上在家",
        ],
    ),
}
LAPTOP = ("LP-GAME-16", "16英寸游戏笔记本 RTX显卡", "5000.00")
TABLET = ("PB-11", "11英寸平板电脑 8+256G", "2499.00")


@dataclass
class DemoCustomer:
    name: str
    phone: str
    address: str
    region: str
    is_vip: bool
    account_created_at: datetime
    accounts: dict[str, str] = field(default_factory=dict)  # channel code → account id


@dataclass
class Step:
    """One thing that happens to a planned order at a moment."""

    at: datetime
    kind: str  # ingest | transition | edit | exception (`to` is the exception type code)
    actor: str  # a demo username or "system"
    to: str = ""
    reason: str = ""
    payload: dict | None = None
    changes: dict | None = None


@dataclass
class PlannedOrder:
    channel: str
    external_id: str
    steps: list[Step]
    order_id: int | None = None


class Command(BaseCommand):
    help = "Load the demo (users, channels, agents, ~300 orders). Safe to run again: it changes nothing."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port",
            type=int,
            default=None,
            help="Port shown in the logins table (default: $PORT or 8000).",
        )
        parser.add_argument(
            "--print-logins",
            action="store_true",
            help="Only print the demo logins table; load nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        port = options["port"] or int(os.environ.get("PORT") or 8000)
        if options["print_logins"]:
            self._print_logins(port)
            return
        started = time.monotonic()
        now = timezone.now().replace(second=0, microsecond=0)
        with transaction.atomic():
            created = _ensure_setup()
            plan = plan_orders(now=now)
            missing = _missing(plan)
            if missing:
                run_plan(missing, now=now)
                _dispatch_now()
                _roll_up_reports(first=min(p.steps[0].at for p in missing))
        elapsed = time.monotonic() - started
        if not missing and not any(created.values()):
            self.stdout.write(
                _("The demo is already loaded (%(count)d demo orders present); nothing changed.")
                % {"count": len(plan)}
            )
        else:
            self._print_summary(created, loaded=len(missing), planned=len(plan), elapsed=elapsed)
        self._print_logins(port)

    def _print_summary(self, created: dict[str, int], *, loaded: int, planned: int, elapsed: float) -> None:
        labels = {
            "users": _("users"),
            "channels": _("channels"),
            "regions": _("regions"),
            "teams": _("teams"),
            "skills": _("skills"),
            "agents": _("agents"),
            "warehouses": _("warehouses"),
            "draft_policies": _("draft dispatch policies"),
        }
        made = ", ".join(f"{n} {labels[what]}" for what, n in created.items() if n) or _("nothing new")
        self.stdout.write(self.style.SUCCESS(_("Demo loaded in %(seconds).1f s.") % {"seconds": elapsed}))
        self.stdout.write("  " + _("created: %(list)s") % {"list": made})
        if loaded != planned:
            self.stdout.write(
                "  "
                + _("%(present)d of the %(planned)d demo orders were already present")
                % {"present": planned - loaded, "planned": planned}
            )
        demo = Order.objects.filter(channel__code__in=[c[0] for c in CHANNELS])
        stages = Counter(demo.values_list("stage", flat=True))
        by_stage = ", ".join(f"{STAGE_LABELS[s]} {stages.get(s.value, 0)}" for s in Stage)
        self.stdout.write(
            "  " + _("orders: %(added)d added; by stage: %(stages)s") % {"added": loaded, "stages": by_stage}
        )
        self.stdout.write(
            "  " + _("flagged orders: %(count)d") % {"count": demo.filter(is_flagged=True).count()}
        )

    def _print_logins(self, port: int) -> None:
        rows = [
            ("admin", "admin (superuser)"),
            ("supervisor", "supervisor · 客服主管"),
            ("agent1 … agent15", "agent · 客服"),
            ("warehouse", "warehouse · 仓储"),
            ("reviewer", "risk reviewer · 风控专员"),
            ("cs", "customer service · 售后客服"),
        ]
        width_user = max(len(u) for u, _ in rows) + 2
        width_role = max(_display_width(r) for _, r in rows) + 2
        line = "-" * (width_user + width_role + len(PASSWORD) + 4)
        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Paidan: http://127.0.0.1:{port}/"))
        self.stdout.write(line)
        self.stdout.write(f"  {'user'.ljust(width_user)}{_pad('role', width_role)}password")
        self.stdout.write(line)
        for username, role in rows:
            self.stdout.write(f"  {username.ljust(width_user)}{_pad(role, width_role)}{PASSWORD}")
        self.stdout.write(line)


def _display_width(text: str) -> int:
    # CJK characters take two terminal columns.
    return sum(2 if ord(ch) > 0x2E7F else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _display_width(text))


# --- people, channels, regions ------------------------------------------------------------


def _ensure_setup() -> dict[str, int]:
    """Create what is missing; never touch what exists. Returns counts of what was created."""
    created: Counter[str] = Counter()
    groups = {g.name: g for g in Group.objects.all()}
    # One hash for all demo users: PBKDF2 costs ~0.3 s per call and the password is shared.
    password_hash = make_password(PASSWORD)
    users: dict[str, User] = {}
    for username, group_names, superuser, staff, _role in USERS:
        user = User.objects.filter(username=username).first()
        if user is None:
            user = User.objects.create(
                username=username,
                password=password_hash,
                is_superuser=superuser,
                is_staff=staff,
                email=f"{username}@paidan.example",
            )
            user.groups.add(*[groups[g] for g in group_names if g in groups])
            created["users"] += 1
        users[username] = user

    for code, name, prefix, kind, _share in CHANNELS:
        _channel, made = Channel.objects.get_or_create(
            code=code,
            defaults={
                "name": name,
                "tag_prefix": prefix,
                "kind": kind,
                "webhook_secret": secrets.token_hex(24),
                "field_mapping": DOUYIN_MAPPING if code == "douyin" else {},
            },
        )
        created["channels"] += made

    regions = {}
    for code, name, provinces in REGIONS:
        region, made = Region.objects.get_or_create(
            code=code, defaults={"name": name, "provinces": provinces}
        )
        if made:
            region.supervisors.add(users["supervisor"])
        created["regions"] += made
        regions[code] = region
    teams = {}
    for code, name in TEAMS:
        teams[code], made = Team.objects.get_or_create(code=code, defaults={"name": name})
        created["teams"] += made
    skills = {}
    for code, name, keywords in SKILLS:
        skills[code], made = Skill.objects.get_or_create(
            code=code, defaults={"name": name, "keywords": keywords}
        )
        created["skills"] += made

    for code, name, city, lat, lng, provinces, default in WAREHOUSES:
        _warehouse, made = Warehouse.objects.get_or_create(
            code=code,
            defaults={"name": name, "city": city, "latitude": Decimal(lat), "longitude": Decimal(lng),
                      "provinces": provinces, "is_default": default and not Warehouse.objects.filter(is_default=True).exists()},
        )  # fmt: skip
        created["warehouses"] += made
    # Exceptions go to a team: after-sales reconfirms with customers, the warehouse handles
    # stock, and procurement hears of every shortage by e-mail.
    for code, team, emails in [
        ("address_ambiguous", "aftersales", ""),
        ("damaged", "aftersales", ""),
        ("other", "aftersales", ""),
        ("customer_delay", "aftersales", ""),
        ("out_of_stock", "warehouse", "procurement@demo.paidan.local"),
    ]:
        ExceptionType.objects.filter(code=code, team__isnull=True).update(
            team=teams[team], notify_emails=emails
        )
    # The supervisor's mobile, for SMS escalations (the demo's SMS backend only logs them).
    UserContact.objects.get_or_create(user=users["supervisor"], defaults={"phone": "+8613800138000"})
    # The risk desk: the reviewer takes review tasks from the pool like any agent.
    review_skill, _made = Skill.objects.get_or_create(code=REVIEW_SKILL["code"], defaults=REVIEW_SKILL)
    if not Agent.objects.filter(user=users["reviewer"]).exists():
        desk = Agent.objects.create(
            user=users["reviewer"], display_name="风控专员 周敏", status="online", capacity=8,
            supervisor=users["supervisor"],
        )  # fmt: skip
        AgentSkill.objects.create(agent=desk, skill=review_skill, level=4)
        created["agents"] += 1

    rng = random.Random(SEED)  # noqa: S311 - a fixed seed for repeatable demo data
    agents: dict[str, Agent] = {}
    new_agents: set[str] = set()
    for username, display, region, place, team_codes, levels, status, capacity in AGENTS:
        existing = Agent.objects.filter(user=users[username]).first()
        lat_jitter = Decimal(rng.uniform(-0.04, 0.04)).quantize(Decimal("0.000001"))
        lng_jitter = Decimal(rng.uniform(-0.04, 0.04)).quantize(Decimal("0.000001"))
        if existing is not None:
            agents[username] = existing
            continue
        centre = norm.parse_address(place)
        agent = Agent.objects.create(
            user=users[username],
            display_name=display,
            status=status,
            capacity=capacity,
            service_radius_km=30 if "install" in team_codes else 50,
            latitude=centre.latitude + lat_jitter if centre.latitude is not None else None,
            longitude=centre.longitude + lng_jitter if centre.longitude is not None else None,
            location_at=timezone.now() - timedelta(minutes=rng.randint(1, 20)),
            supervisor=users["supervisor"],
        )
        agent.teams.add(*[teams[t] for t in team_codes])
        agent.regions.add(regions[region])
        AgentSkill.objects.bulk_create(
            [AgentSkill(agent=agent, skill=skills[s], level=lvl) for s, lvl in levels.items()]
        )
        agents[username] = agent
        new_agents.add(username)
        created["agents"] += 1
    # Backups: the next colleague in the same region (agent1 → agent2 … agent5 → agent1).
    for index, row in enumerate(AGENTS):
        agent = agents[row[0]]
        if row[0] in new_agents:
            first = index - index % 5
            agent.backup = agents[AGENTS[first + (index + 1) % 5][0]]
            agent.save(update_fields=["backup"])
    # Drafts to try in the simulator before switching one on: none is active, so dispatch runs
    # on the built-in default until an admin decides.
    for name, kind, criteria, filters in DRAFT_POLICIES:
        _policy, made = DispatchPolicy.objects.get_or_create(
            name=name, defaults={"kind": kind, "criteria": criteria, "filters": filters, "is_active": False}
        )
        created["draft_policies"] += made
    return dict(created)


# --- the order plan (pure: seed in, steps out) ----------------------------------------------


def plan_orders(*, now: datetime) -> list[PlannedOrder]:
    """The same ~300 orders on every run; only their times move with `now`."""
    rng = random.Random(SEED)  # noqa: S311 - a fixed seed for repeatable demo data
    # Receipt times come from their own stream: how many draws they take depends on the time
    # of day, and the content (ids above all) must not, or a later run would plan other orders.
    clock = random.Random(SEED + 1)  # noqa: S311
    phones = _phone_pool(rng)
    customers: list[DemoCustomer] = []
    used_ids: set[str] = set()
    orders: list[PlannedOrder] = []

    def new_customer(region: str | None = None) -> DemoCustomer:
        region = region or rng.choice(["east", "east", "south", "south", "north"])
        province, city, district = _pick_area(rng, region)
        customer = DemoCustomer(
            name=_name(rng),
            phone=rng.choice(phones[province[:2]]),
            address=_street_address(rng, province, city, district),
            region=region,
            is_vip=rng.random() < 0.08,
            account_created_at=now - timedelta(days=rng.randint(30, 2400), minutes=rng.randint(0, 1440)),
        )
        customers.append(customer)
        return customer

    def external_id(channel: str) -> str:
        while True:
            value = {
                "taobao": lambda: str(rng.randrange(3 * 10**18, 4 * 10**18)),
                "jd": lambda: f"30{rng.randrange(10**10):010d}",
                "douyin": lambda: f"69{rng.randrange(10**17):017d}",
                "miniapp": lambda: f"MPO{rng.randrange(10**9):09d}",
            }[channel]()
            if value not in used_ids:
                used_ids.add(value)
                return value

    channel_codes = [c[0] for c in CHANNELS]
    channel_weights = [c[4] for c in CHANNELS]
    categories = list(CATALOGUE)
    category_weights = [CATALOGUE[c][0] for c in categories]

    def base_order(received: datetime, customer: DemoCustomer, channel: str, category: str) -> dict:
        _share, expedited_share, products, notes = CATALOGUE[category]
        lines = rng.sample(products, k=rng.choice([1, 1, 1, 2, 2, 3]))
        items = [
            {"sku": sku, "name": name, "qty": rng.choice([1, 1, 1, 2]), "price": price}
            for sku, name, price in lines
        ]
        total = _total(items)
        coupon, discount = "", Decimal("0")
        roll = rng.random()
        if roll < 0.1 and total >= 300:
            coupon, discount = "DOUBLE11-50", Decimal("50")
        elif roll < 0.15 and customer.is_vip and total >= 1000:
            coupon, discount = "VIP-100", Decimal("100")
        account = customer.accounts.setdefault(channel, f"{channel[:2]}_{rng.randrange(10**7, 10**8)}")
        return {
            "channel": channel,
            "external_id": external_id(channel),
            "source_created_at": (received - timedelta(seconds=rng.randint(20, 300))).isoformat(),
            "source_updated_at": (received - timedelta(seconds=rng.randint(1, 19))).isoformat(),
            "customer": {
                "name": customer.name,
                "phone": customer.phone,
                "account_id": account,
                "account_created_at": customer.account_created_at.isoformat(),
                "is_vip": customer.is_vip,
            },
            "address": customer.address,
            "items": items,
            "amount": str(total - discount),
            "currency": "CNY",
            "coupon_code": coupon,
            "note": rng.choice(notes),
            "category": category,
            "urgency": "expedited" if rng.random() < expedited_share else "normal",
            "client_ip": _ip(rng),
            "device_id": f"dev-{rng.randrange(16**10):010x}",
            "card_fingerprint": f"62{rng.randrange(10**14):014d}" if rng.random() < 0.7 else "",
        }

    # Receipt times: the last 72 hours, denser in the day than at night (local time).
    times = sorted(_receipt_time(clock, now) for _ in range(ORDER_COUNT - SPECIAL_ORDERS))
    for received in times:
        channel = rng.choices(channel_codes, channel_weights)[0]
        returning = [c for c in customers if channel in c.accounts]
        customer = rng.choice(returning) if returning and rng.random() < 0.2 else new_customer()
        payload = base_order(received, customer, channel, rng.choices(categories, category_weights)[0])
        steps = _ordinary_path(rng, received, now, payload)
        orders.append(PlannedOrder(channel, payload["external_id"], steps))

    # Dirty data, kept and flagged: vague addresses and malformed phones.
    for index, address in enumerate(VAGUE_ADDRESSES):
        # The last one is fixed by customer service 40 minutes after it arrived: it must have
        # arrived at least that long ago, at any time of day the demo is loaded.
        last = index == len(VAGUE_ADDRESSES) - 1
        received = _receipt_time(
            clock, now - timedelta(hours=2) if last else now, within_hours=28 if last else 30
        )
        payload = base_order(received, new_customer(), rng.choice(channel_codes), "apparel")
        payload["address"] = address
        steps = [Step(received, "ingest", "system", payload=payload)]
        steps.append(
            Step(
                received + timedelta(minutes=3),
                "exception",
                "cs",
                "address_ambiguous",
                "地址不明确：转客服与客户电话确认",
            )
        )
        orders.append(PlannedOrder(payload["channel"], payload["external_id"], steps))
    # One was fixed: customer service called, corrected the address and released it.
    fixed = orders[-1]
    fixed_at = fixed.steps[-1].at + timedelta(minutes=40)
    fixed.steps += [
        Step(
            fixed_at,
            "edit",
            "cs",
            changes={"address": "广东省深圳市南山区粤海街道科技南十二路2号"},
            reason="已与客户电话确认收货地址",
        ),
        Step(fixed_at + timedelta(minutes=1), "transition", "cs", Stage.PENDING_REVIEW, "地址已确认"),
        Step(fixed_at + timedelta(minutes=8), "transition", "cs", Stage.PICKING, "审核通过"),
    ]
    for phone in INVALID_PHONES:
        received = _receipt_time(clock, now, within_hours=20)
        payload = base_order(received, new_customer(), rng.choice(channel_codes), "electronics")
        payload["customer"]["phone"] = phone
        steps = [Step(received, "ingest", "system", payload=payload)]
        if phone != INVALID_PHONES[0]:
            steps.append(
                Step(
                    received + timedelta(minutes=12),
                    "exception",
                    "cs",
                    "other",
                    "手机号无效：站内信联系买家核实",
                )
            )
        orders.append(PlannedOrder(payload["channel"], payload["external_id"], steps))

    orders += _risky_orders(rng, clock, now, base_order, new_customer, phones)
    for planned in orders:
        # Steps happen in time order, and only those already past by `now`.
        planned.steps.sort(key=lambda s: s.at)
        past = [s for s in planned.steps if s.at <= now - timedelta(minutes=1)]
        planned.steps = planned.steps[: len(past)] if past else planned.steps[:1]
    return orders


def _total(items: list[dict]) -> Decimal:
    return sum((Decimal(i["price"]) * i["qty"] for i in items), Decimal("0"))


def _ordinary_path(rng: random.Random, received: datetime, now: datetime, payload: dict) -> list[Step]:
    """Review → picking → shipping → done with realistic delays; only what has happened by now.
    Some orders are cancelled, some hit an exception on the way (a few resolved)."""
    steps = [Step(received, "ingest", "system", payload=payload)]
    expedited = payload["urgency"] == "expedited"
    # A peak: many orders are reviewed within minutes, a good share waits for hours.
    review = received + timedelta(minutes=rng.randint(3, 40) if rng.random() < 0.5 else rng.randint(60, 720))
    picked = review + timedelta(minutes=rng.randint(30, 600) // (2 if expedited else 1))
    shipped = picked + timedelta(hours=rng.uniform(3, 24))
    roll = rng.random()
    plan: list[Step] = []
    if roll < 0.05:
        plan.append(Step(review, "transition", "cs", Stage.CANCELLED, "客户申请取消订单，已退款"))
    else:
        plan.append(Step(review, "transition", "cs", Stage.PICKING, "审核通过"))
        if roll < 0.10:
            held = picked - timedelta(minutes=10)
            plan.append(
                Step(held, "exception", "warehouse", "out_of_stock", "缺货：仓库无货，已锁单并通知采购")
            )
            if roll < 0.07:
                plan.append(
                    Step(held + timedelta(hours=5), "transition", "cs", Stage.PICKING, "采购到货，恢复配货")
                )
                plan.append(
                    Step(held + timedelta(hours=6), "transition", "warehouse", Stage.SHIPPING, "配货完成")
                )
            elif roll < 0.08:
                plan.append(
                    Step(
                        held + timedelta(hours=3),
                        "transition",
                        "supervisor",
                        Stage.CANCELLED,
                        "缺货短期内无法补货，与客户协商取消",
                    )
                )
        elif roll < 0.13:
            plan.append(Step(picked, "transition", "warehouse", Stage.SHIPPING, "配货完成"))
            held = picked + timedelta(minutes=rng.randint(20, 120))
            # The customer asks to delay: a note and the due time moved, the order stays in its stage.
            plan.append(Step(held, "exception", "cs", "customer_delay", "客户要求延期配送至周末"))
        else:
            plan.append(Step(picked, "transition", "warehouse", Stage.SHIPPING, "配货完成"))
            plan.append(
                Step(
                    shipped,
                    "transition",
                    "warehouse",
                    Stage.DONE,
                    f"已发货签收，运单号 SF{rng.randrange(10**12):012d}",
                )
            )
    # Only the past has happened; a step cut off leaves the order waiting in its stage.
    for step in plan:
        if step.at > now - timedelta(minutes=1):
            break
        steps.append(step)
    return steps


def _risky_orders(rng, clock, now, base_order, new_customer, phones) -> list[PlannedOrder]:
    """The cases risk control exists for (seed 004): warehouse addresses, an IP burst, one card
    with many same-amount orders, round amounts without a note, a far-away phone."""
    out: list[PlannedOrder] = []

    def add(payload: dict, steps: list[Step]) -> None:
        out.append(PlannedOrder(payload["channel"], payload["external_id"], steps))

    # Addresses at temporary warehouses / pick-up points (临时仓, 代收点, 中转仓).
    for n, address in enumerate(WAREHOUSE_ADDRESSES):
        received = _receipt_time(clock, now, within_hours=40)
        payload = base_order(received, new_customer(), "taobao" if n % 2 else "douyin", "electronics")
        payload["address"] = address
        payload["items"] = [{"sku": TABLET[0], "name": TABLET[1], "qty": 2, "price": TABLET[2]}]
        payload["amount"], payload["coupon_code"] = "4998.00", ""
        quarantine = Step(
            received + timedelta(minutes=1),
            "transition",
            "system",
            Stage.QUARANTINED,
            "风控：收货地址含中转仓/代收点/临时仓关键词",
        )
        steps = [Step(received, "ingest", "system", payload=payload), quarantine]
        decided = received + timedelta(minutes=35)
        if n == 1:
            steps.append(
                Step(decided, "transition", "reviewer", Stage.CANCELLED, "确认风险：收货人无法核实，取消订单")
            )
        elif n == 2:
            steps.append(
                Step(decided, "transition", "reviewer", Stage.PENDING_REVIEW, "误报：企业客户自有仓库，放行")
            )
            steps.append(Step(decided + timedelta(minutes=5), "transition", "cs", Stage.PICKING, "审核通过"))
        add(payload, steps)

    # One IP, six orders in eight minutes, different names and phones.
    burst_at = now - timedelta(hours=5, minutes=rng.randint(0, 50))
    for n in range(6):
        received = burst_at + timedelta(minutes=n * 1.5)
        payload = base_order(received, new_customer("south"), "miniapp", "electronics")
        payload["client_ip"] = "39.144.23.87"
        steps = [Step(received, "ingest", "system", payload=payload)]
        if n >= 2:
            steps.append(
                Step(
                    received + timedelta(minutes=1),
                    "transition",
                    "system",
                    Stage.QUARANTINED,
                    "风控：同一IP 10分钟内下单≥3笔",
                )
            )
        add(payload, steps)

    # One card, eight orders of the same amount within half an hour, spread over addresses.
    card = f"62{rng.randrange(10**14):014d}"
    card_at = now - timedelta(hours=20, minutes=rng.randint(0, 50))
    for n in range(8):
        received = card_at + timedelta(minutes=n * 3 + rng.randint(0, 2))
        payload = base_order(received, new_customer(), "jd", "electronics")
        payload["items"] = [{"sku": "SB-WATCH-4", "name": "智能手表 GPS版", "qty": 1, "price": "1299.00"}]
        payload["amount"], payload["coupon_code"], payload["note"] = "1299.00", "", ""
        payload["card_fingerprint"] = card
        steps = [Step(received, "ingest", "system", payload=payload)]
        if n >= 2:
            steps.append(
                Step(
                    received + timedelta(minutes=1),
                    "transition",
                    "system",
                    Stage.QUARANTINED,
                    "风控：同一银行卡多笔同金额订单",
                )
            )
            if n < 6:
                steps.append(
                    Step(
                        card_at + timedelta(hours=2),
                        "transition",
                        "reviewer",
                        Stage.CANCELLED,
                        "确认风险：盗刷嫌疑，已联系支付渠道",
                    )
                )
        else:
            steps.append(
                Step(received + timedelta(minutes=20), "transition", "cs", Stage.PICKING, "审核通过")
            )
        add(payload, steps)

    # Round amounts without a note.
    for n, hours in enumerate([2, 26, 50]):
        received = now - timedelta(hours=hours, minutes=rng.randint(0, 59))
        payload = base_order(received, new_customer(), "taobao", "electronics")
        payload["items"] = [{"sku": LAPTOP[0], "name": LAPTOP[1], "qty": 1, "price": LAPTOP[2]}]
        payload["amount"], payload["coupon_code"], payload["note"] = "5000.00", "", ""
        steps = [
            Step(received, "ingest", "system", payload=payload),
            Step(
                received + timedelta(minutes=1),
                "transition",
                "system",
                Stage.QUARANTINED,
                "风控：整额订单且无备注",
            ),
        ]
        if n:
            steps.append(
                Step(
                    received + timedelta(minutes=50),
                    "transition",
                    "reviewer",
                    Stage.PENDING_REVIEW,
                    "误报：老客户，电话核实无误",
                )
            )
            steps.append(
                Step(received + timedelta(minutes=55), "transition", "cs", Stage.PICKING, "审核通过")
            )
        add(payload, steps)

    # A phone registered in Heilongjiang for a delivery in Hainan, a new account using a coupon.
    for n in range(2):
        received = now - timedelta(hours=rng.randint(1, 30), minutes=rng.randint(0, 59))
        customer = new_customer("south")
        customer.phone = rng.choice(phones["黑龙"])
        customer.address = f"海南省海口市美兰区海府路{rng.randint(1, 200)}号"
        customer.account_created_at = received - timedelta(minutes=25)
        payload = base_order(received, customer, "douyin", "apparel")
        payload["coupon_code"] = "NEWUSER-20"
        payload["amount"] = str(_total(payload["items"]) - Decimal("20"))
        steps = [Step(received, "ingest", "system", payload=payload)]
        if n == 0:
            steps.append(
                Step(
                    received + timedelta(minutes=1),
                    "transition",
                    "system",
                    Stage.QUARANTINED,
                    "风控：手机号归属地距收货城市超过2000公里，新账户首单用券",
                )
            )
        add(payload, steps)

    # Two later deliveries from the source: a changed note (applied) and an older copy (ignored).
    for planned in out[:1]:
        first = planned.steps[0]
        newer = {
            **first.payload,
            "note": "请周末送货，工作日家里没人",
            "source_updated_at": (first.at + timedelta(minutes=9)).isoformat(),
        }
        older = {**first.payload, "source_updated_at": (first.at - timedelta(hours=1)).isoformat()}
        planned.steps += [
            Step(first.at + timedelta(minutes=10), "ingest", "system", payload=newer),
            Step(first.at + timedelta(minutes=11), "ingest", "system", payload=older),
        ]
    return out


def _receipt_time(rng: random.Random, now: datetime, within_hours: int = 72) -> datetime:
    local_now = timezone.localtime(now)
    while True:
        # Busier towards now (a promotion is running): density falls off with age.
        at = local_now - timedelta(minutes=int(rng.triangular(5, within_hours * 60, 5)))
        # Few orders between midnight and 8 am.
        if 8 <= at.hour <= 23 or rng.random() < 0.15:
            return at.replace(second=rng.randint(0, 59))


def _phone_pool(rng: random.Random) -> dict[str, list[str]]:
    """Real-looking mobiles bucketed by the province (first two characters) of their home
    city, so most customers' phones belong where they live."""
    pool: dict[str, list[str]] = {}
    wanted = [p[:2] for _, _, provinces in REGIONS for p in provinces] + ["黑龙"]
    while min(len(pool.get(p, [])) for p in wanted) < 12:
        number = f"{rng.choice(MOBILE_PREFIXES)}{rng.randrange(10**8):08d}"
        phone = norm.normalize_phone(number)
        if phone.valid and phone.home_city:
            pool.setdefault(phone.home_city[:2], []).append(number)
    return pool


def _pick_area(rng: random.Random, region: str) -> tuple[str, str, str]:
    province, city, districts = rng.choice(AREAS[region])
    return province, city, rng.choice(districts)


def _street_address(rng: random.Random, province: str, city: str, district: str) -> str:
    street = f"{rng.choice(ROADS)}{rng.randint(1, 999)}号"
    home = f"{rng.choice(ESTATES)}{rng.randint(1, 30)}栋{rng.randint(1, 32)}{rng.randint(1, 4):02d}室"
    # People write addresses differently: some leave out the province.
    head = f"{province}{city}" if rng.random() < 0.6 or not city else city
    return f"{head}{district}{street}{home}"


def _name(rng: random.Random) -> str:
    given = rng.choice(GIVEN) + (rng.choice(GIVEN) if rng.random() < 0.7 else "")
    return rng.choice(SURNAMES) + given


def _ip(rng: random.Random) -> str:
    return f"{rng.choice(ISP_NETS)}.{rng.randint(1, 254)}.{rng.randint(1, 254)}"


# --- running the plan through the services ------------------------------------------------


def _missing(plan: list[PlannedOrder]) -> list[PlannedOrder]:
    """The planned orders not in the database yet (none after a complete load)."""
    have: set[tuple[str, str]] = set()
    by_channel: dict[str, list[str]] = {}
    for planned in plan:
        by_channel.setdefault(planned.channel, []).append(planned.external_id)
    for code, ids in by_channel.items():
        have |= {
            (code, e)
            for e in Order.objects.filter(channel__code=code, external_id__in=ids).values_list(
                "external_id", flat=True
            )
        }
    return [p for p in plan if (p.channel, p.external_id) not in have]


def run_plan(plan: list[PlannedOrder], *, now: datetime) -> None:
    """Play every step in time order on the virtual clock, through the real services, and
    take the hourly backlog snapshot at each top of the hour the clock passes, as the beat
    would have: it counts the orders as they stood then."""
    actors = _actors()
    channels = {c.code: c for c in Channel.objects.filter(code__in=[c[0] for c in CHANNELS])}
    queue: list[tuple[datetime, int, int, PlannedOrder]] = []
    for seq, planned in enumerate(plan):
        heapq.heappush(queue, (planned.steps[0].at, seq, 0, planned))
    next_hour = _next_hour(queue[0][0]) if queue else now
    while queue:
        at, seq, index, planned = heapq.heappop(queue)
        while next_hour <= min(at, now):
            backlog_snapshot_take(now=next_hour)
            next_hour += timedelta(hours=1)
        step = planned.steps[index]
        with time_machine.travel(min(at, now), tick=False):
            _apply(step, planned, actors, channels)
        if index + 1 < len(planned.steps):
            nxt = planned.steps[index + 1]
            heapq.heappush(queue, (max(nxt.at, at), seq, index + 1, planned))
    while next_hour <= now:
        backlog_snapshot_take(now=next_hour)
        next_hour += timedelta(hours=1)


def _next_hour(at: datetime) -> datetime:
    top = timezone.localtime(at).replace(minute=0, second=0, microsecond=0)
    return top if top == at else top + timedelta(hours=1)


def _roll_up_reports(*, first: datetime) -> None:
    """Roll up the demo's days now, so the report pages have figures before the beat's first
    refresh (which covers only today and yesterday)."""
    reports_rollup(first=timezone.localdate(first), last=timezone.localdate())


def _dispatch_now() -> None:
    """Match the pool as the running system would, and let online agents take about two
    thirds of their offers: the board shows owners and each queue page keeps live offers."""
    from dispatch.models import Assignment
    from dispatch.services import assignment_accept, dispatch_tick

    rng = random.Random(20251111)  # noqa: S311 - demo choices, not secrets
    for _round in range(2):
        dispatch_tick()
        for offer in (
            Assignment.objects.filter(state=Assignment.State.OFFERED).select_related("agent").order_by("pk")
        ):
            if rng.random() < 0.67:
                assignment_accept(assignment_id=offer.pk, agent=offer.agent)
    dispatch_tick()


def _actors() -> dict[str, Actor]:
    """The people whose steps these are; a same-named account that is not in the demo role
    (made by an operator, not by us) is not used, the system makes those steps instead."""
    actors = {"system": system_actor(DEMO_ACTOR)}
    for username, group_names, *_rest in USERS:
        if username in ("supervisor", "warehouse", "reviewer", "cs"):
            actor = user_actor(User.objects.get(username=username))
            if {Role(g) for g in group_names} <= actor.roles:
                actors[username] = actor
    fallback = actors.get("supervisor", actors["system"])
    return {
        name: actors.get(name, fallback) for name in ("system", "supervisor", "warehouse", "reviewer", "cs")
    }


def _apply(step: Step, planned: PlannedOrder, actors: dict[str, Actor], channels: dict[str, Channel]) -> None:
    if step.kind == "ingest":
        channel = channels[planned.channel]
        payload = step.payload
        if channel.field_mapping:
            # This channel speaks its own JSON: send that and let the mapping translate it.
            payload = apply_mapping(channel.field_mapping, _as_douyin(payload))
        result = order_ingest_batch(payloads=[payload], actor=actors["system"], channel=channel)[0]
        if result.status == "rejected":
            raise RuntimeError(f"demo order {planned.external_id} was rejected: {result.errors}")
        planned.order_id = result.id
    elif step.kind == "edit":
        if actors[step.actor].user is None:
            return  # nobody in the demo may edit customer details: the order keeps them as sent
        order_edit(
            order_id=planned.order_id, actor=actors[step.actor], changes=step.changes, reason=step.reason
        )
    elif step.kind == "exception":
        # Delays are to a few days after the request: the customer's weekend.
        delay = timezone.now() + timedelta(days=3) if step.to == "customer_delay" else None
        exception_raise(
            order_id=planned.order_id, type_code=step.to, actor=actors[step.actor], note=step.reason,
            delay_until=delay,
        )  # fmt: skip
    else:
        _move(planned.order_id, step, actors)


def _move(order_id: int, step: Step, actors: dict[str, Actor]) -> None:
    reviewer = actors["reviewer"]
    if step.actor == "reviewer" and reviewer.user is not None:
        review = Review.objects.filter(order_id=order_id, state__in=Review.OPEN_STATES).first()
        if review is not None and step.to in (Stage.CANCELLED, Stage.PENDING_REVIEW):
            # The reviewer decides on the review page: the rules learn from the disposition.
            decision = "confirmed" if step.to == Stage.CANCELLED else "false_positive"
            review_decide(review_id=review.pk, user=reviewer.user, decision=decision, note=step.reason)
            return
    try:
        order_transition(order_id=order_id, to=step.to, actor=actors[step.actor], reason=step.reason)
    except TransitionError:
        # Risk screening at ingestion may already have done what the demo planned, or held an
        # order the demo did not plan to hold; anything else is a bug in the plan.
        current = Order.objects.values_list("stage", flat=True).get(pk=order_id)
        if current == step.to:
            return
        if current != Stage.QUARANTINED:
            raise
        review = Review.objects.filter(order_id=order_id, state__in=Review.OPEN_STATES).first()
        if review is not None and reviewer.user is not None:
            review_decide(
                review_id=review.pk, user=reviewer.user, decision="false_positive", note="复核通过，放行"
            )
        else:
            order_transition(
                order_id=order_id, to=Stage.PENDING_REVIEW, actor=reviewer, reason="复核通过，放行"
            )
        order_transition(order_id=order_id, to=step.to, actor=actors[step.actor], reason=step.reason)


def _as_douyin(payload: dict) -> dict:
    """Our order in the shape Douyin's open platform sends (see DOUYIN_MAPPING)."""

    def unix(value: str | None) -> int | None:
        return int(datetime.fromisoformat(value).timestamp()) if value else None

    rest = {
        k: v
        for k, v in payload.items()
        if k
        not in {
            "external_id",
            "customer",
            "address",
            "amount",
            "note",
            "items",
            "source_created_at",
            "source_updated_at",
        }
    }
    return {
        **rest,
        "order_sn": payload["external_id"],
        "create_time": unix(payload["source_created_at"]),
        "update_time": unix(payload["source_updated_at"]),
        "buyer": {
            "nick_name": payload["customer"]["name"],
            "mobile": payload["customer"]["phone"],
            "open_id": payload["customer"]["account_id"],
        },
        "customer": {k: payload["customer"][k] for k in ("account_created_at", "is_vip")},
        "receiver": {"full_address": payload["address"]},
        "pay_amount": payload["amount"],
        "buyer_words": payload["note"],
        "sku_list": [
            {"sku_id": i["sku"], "product_name": i["name"], "num": i["qty"], "sku_price": i["price"]}
            for i in payload["items"]
        ],
    }
