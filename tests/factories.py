"""factory_boy factories shared by all tests."""

from __future__ import annotations

import hashlib

import factory
from django.contrib.auth.models import Group, User
from django.utils import timezone
from rest_framework.authtoken.models import Token

from orders.models import Channel

PASSWORD = "paidan-test-pw"


class ChannelFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Channel
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"ch{n}")
    name = factory.LazyAttribute(lambda o: o.code.upper())
    tag_prefix = factory.LazyAttribute(lambda o: o.code.upper()[:6])
    webhook_secret = "s3cret-hook-key"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def roles(self, create: bool, extracted: list[str] | None, **kwargs: object) -> None:
        if create and extracted:
            # get_or_create: a transactional test before this one may have flushed the groups
            # the data migration made.
            self.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in extracted))
        if create:
            self.save()


def token_for(user: User) -> str:
    return Token.objects.get_or_create(user=user)[0].key


def order_payload(**overrides: object) -> dict:
    """A complete, valid order as a channel would send it."""
    payload = {
        "channel": "jd",
        "external_id": "JD100001",
        "source_updated_at": "2026-11-20T10:00:00+08:00",
        "source_created_at": "2026-11-20T09:58:00+08:00",
        "customer": {
            "name": "王小明",
            "phone": "13510001000",
            "account_id": "jd_u_778",
            "account_created_at": "2024-03-01T00:00:00+08:00",
            "is_vip": False,
        },
        "address": "广东省深圳市南山区科技园南区8栋1203",
        "items": [{"sku": "DJ-001", "name": "羽绒服", "qty": 1, "price": "599.00"}],
        "amount": "599.00",
        "currency": "CNY",
        "coupon_code": "",
        "note": "",
        "category": "apparel",
        "urgency": "normal",
        "client_ip": "113.88.10.7",
        "device_id": "dev-abc",
        "card_fingerprint": "4111111111111111",
    }
    # Each order its own shopper session, as in life: the same IP, device or card on many
    # orders is what risk screening looks for, and tests about that say so.
    ext = str(overrides.get("external_id", payload["external_id"]))
    h = int(hashlib.sha256(ext.encode()).hexdigest()[:12], 16)
    payload["client_ip"] = f"10.{h >> 16 & 255}.{h >> 8 & 255}.{h & 255}"
    payload["device_id"] = f"dev-{h:012x}"
    payload["card_fingerprint"] = f"4111{h % 10**12:012d}"
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(payload.get(key), dict):
            payload[key] = {**payload[key], **value}
        else:
            payload[key] = value
    return payload


class SkillFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "agents.Skill"
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"skill{n}")
    name = factory.LazyAttribute(lambda o: o.code)
    keywords = factory.LazyAttribute(lambda o: [o.code])


class RegionFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "agents.Region"
        django_get_or_create = ("code",)

    code = factory.Sequence(lambda n: f"region{n}")
    name = factory.LazyAttribute(lambda o: o.code)
    provinces = factory.LazyFunction(list)


class AgentFactory(factory.django.DjangoModelFactory):
    """An online agent with a user in the agent group. `skills={"code": level}`,
    `regions=[Region]`."""

    class Meta:
        model = "agents.Agent"
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory, roles=["agent"])
    display_name = factory.LazyAttribute(lambda o: o.user.username)
    status = "online"
    capacity = 5

    @factory.post_generation
    def skills(self, create: bool, extracted: dict[str, int] | None, **kwargs: object) -> None:
        from agents.models import AgentSkill

        for code, level in (extracted or {}).items():
            AgentSkill.objects.create(agent=self, skill=SkillFactory(code=code), level=level)

    @factory.post_generation
    def regions(self, create: bool, extracted: list | None, **kwargs: object) -> None:
        if extracted:
            self.regions.add(*extracted)


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = "orders.Customer"
        django_get_or_create = ("channel", "account_key")

    channel = factory.SubFactory(ChannelFactory)
    account_key = factory.Sequence(lambda n: f"acct{n}")


class OrderFactory(factory.django.DjangoModelFactory):
    """An order as stored, without ingest (no screening, no pool entry): for tests of reads
    that set every timestamp themselves."""

    class Meta:
        model = "orders.Order"

    channel = factory.SubFactory(ChannelFactory)
    customer = factory.LazyAttribute(lambda o: CustomerFactory(channel=o.channel))
    external_id = factory.Sequence(lambda n: f"EXT{n}")
    tag = factory.Sequence(lambda n: f"T-{n:06d}")
    amount = "100.00"
    source_updated_at = factory.LazyFunction(timezone.now)
    province = "广东省"
    category = "apparel"
