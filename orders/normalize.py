"""Turns what a channel sends into clean values: phones, addresses, ids, order kinds.

Pure functions (phonenumbers and cpca ship their data); nothing here touches the database.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from decimal import Decimal

import cpca
import phonenumbers
from phonenumbers import geocoder

# Flags an order can carry; dirty data is kept and flagged, never dropped.
FLAG_ADDRESS_AMBIGUOUS = "address_ambiguous"
FLAG_ADDRESS_MISSING = "address_missing"
FLAG_PHONE_INVALID = "phone_invalid"
FLAG_PHONE_MISSING = "phone_missing"
FLAG_CUSTOMER_NAME_MISSING = "customer_name_missing"
FLAG_NO_ITEMS = "no_items"
FLAG_AMOUNT_MISMATCH = "amount_mismatch"

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"), None)


def normalize_external_id(raw: str) -> str:
    """One canonical form per id, so look-alikes are one order: NFKC folds full-width
    letters and digits (ＪＤ１２３ → JD123), zero-width characters and edge spaces go."""
    return unicodedata.normalize("NFKC", raw).translate(_ZERO_WIDTH).strip()


def external_id_problem(value: str) -> str | None:
    """Why a normalised id is unusable, or None."""
    if not value:
        return "is empty"
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        return "contains control characters"
    if len(value) > 128:
        return "is longer than 128 characters"
    return None


@dataclass(frozen=True, slots=True)
class Phone:
    e164: str
    home_city: str  # zh geocoder description, e.g. 广东省深圳市; "" when unknown
    valid: bool


def normalize_phone(raw: str, region: str = "CN") -> Phone:
    text = unicodedata.normalize("NFKC", raw or "").strip()
    if not text:
        return Phone(e164="", home_city="", valid=False)
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException:
        return Phone(e164="", home_city="", valid=False)
    if not phonenumbers.is_valid_number(parsed):
        return Phone(e164="", home_city="", valid=False)
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    home = geocoder.description_for_number(parsed, "zh")
    # Some prefixes (199…) resolve only to the country: no home city is known then.
    return Phone(e164=e164, home_city="" if home in {"中国", ""} else home, valid=True)


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    province: str
    city: str
    district: str
    adcode: str
    latitude: Decimal | None
    longitude: Decimal | None
    ambiguous: bool


_MUNICIPAL = "市辖区"


def parse_address(raw: str) -> ParsedAddress:
    """Province / city / district with coordinates from cpca's adcode table (GCJ-02 centres).

    The finest level found gives the coordinates. Without a city the address is ambiguous:
    it is kept as written and flagged for a customer-service reconfirmation."""
    text = unicodedata.normalize("NFKC", raw or "").strip()
    if not text:
        return ParsedAddress("", "", "", "", None, None, ambiguous=True)
    record = cpca._get_one_addr(text, False, {})
    province = record.get("省") or ""
    city = record.get("市") or ""
    district = record.get("区") or ""
    adcode = record.get("adcode") or ""
    if city == _MUNICIPAL:  # Beijing, Shanghai, Tianjin, Chongqing: the city is the province
        city = province
    info = _finest_info(adcode)
    latitude = longitude = None
    if info is not None and info.latitude and info.longitude:
        latitude = Decimal(str(info.latitude)).quantize(Decimal("0.000001"))
        longitude = Decimal(str(info.longitude)).quantize(Decimal("0.000001"))
    return ParsedAddress(
        province=province,
        city=city,
        district=district,
        adcode=adcode,
        latitude=latitude,
        longitude=longitude,
        ambiguous=not city,
    )


def _finest_info(adcode: str):
    if not adcode:
        return None
    full = adcode.ljust(12, "0")
    info = cpca.ad_2_addr_dict.get(full)
    if info is None or not info.latitude:
        # Fall back to the city, then the province, when a district has no coordinates.
        for prefix in (full[:4], full[:2]):
            info = cpca.ad_2_addr_dict.get(prefix.ljust(12, "0"))
            if info is not None and info.latitude:
                return info
    return info


_RESHIPMENT_WORDS = ("补发", "重发", "补寄", "reship")
_EXCHANGE_WORDS = ("换货", "售后换", "调换", "exchange")


def detect_kind(note: str) -> str | None:
    """'reshipment' or 'exchange' when the note says so, else None."""
    text = (note or "").lower()
    if any(word in text for word in _EXCHANGE_WORDS):
        return "exchange"
    if any(word in text for word in _RESHIPMENT_WORDS):
        return "reshipment"
    return None


_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def hash_card_fingerprint(raw: str) -> str:
    """We keep only a SHA-256; a value that already is one is kept as sent."""
    value = (raw or "").strip().lower()
    if not value or _HEX64.match(value):
        return value
    return hashlib.sha256(value.encode()).hexdigest()
