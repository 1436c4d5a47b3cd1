"""Request bodies and their validation (pydantic, strict about unknown fields)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

# ISO 4217 active codes.
CURRENCIES = frozenset(
    """AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BRL BSD BTN BWP BYN BZD CAD
    CDF CHF CLP CNY COP CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD
    HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL
    LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR
    PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP
    TRY TTD TWD TZS UAH UGX USD UYU UZS VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG""".split()
)

MAX_PRICE = Decimal("1000000000000")  # 10^12: fits BIGINT as minor units with room to spare

# Each pattern below is exactly what the validator accepts, so the OpenAPI document (built from these
# models) promises no more and no less than the service takes: schemathesis checks both directions.
PRICE_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,2})?$"
_PRICE = re.compile(PRICE_PATTERN)
# Some text that is not whitespace, and no NUL (PostgreSQL cannot store it).
LINE_PATTERN = r"^[^\x00]*[^\s\x00][^\x00]*$"
TEXT_PATTERN = r"^[^\x00]*$"


def _price(value: Any) -> Decimal:
    """A price: a string of digits with at most 2 decimals, or a JSON number that is one."""
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, str):
        if not _PRICE.match(value):
            raise ValueError("must be a decimal string such as 1250.50 (at most 12 digits and 2 decimals)")
        return Decimal(value)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    else:
        raise ValueError("must be a decimal string such as 1250.50, or a number")
    if not number.is_finite() or number < 0 or number >= MAX_PRICE or number != number.quantize(Decimal("0.01")):
        raise ValueError("must be at least 0, below 10^12, with at most 2 decimals")
    return number


_PRICE_SCHEMA = {
    "anyOf": [
        {"type": "string", "pattern": PRICE_PATTERN},
        {"type": "number", "minimum": 0, "exclusiveMaximum": 1e12, "multipleOf": 0.01},
    ],
    "examples": ["1250.50"],
}
_CURRENCY_SCHEMA = {"type": "string", "enum": sorted(CURRENCIES), "default": "TRY"}


def _strip(value: str) -> str:
    return value.strip()


# Lengths apply to the text as sent; surrounding whitespace is then removed. (The models check patterns
# with Python's ``re``, as schemathesis does, so ``\s`` and ``str.strip`` agree on what whitespace is.)
Title = Annotated[str, Field(min_length=1, max_length=200, pattern=LINE_PATTERN), AfterValidator(_strip)]
Description = Annotated[str, Field(max_length=5000, pattern=TEXT_PATTERN)]
City = Annotated[str, Field(min_length=1, max_length=100, pattern=LINE_PATTERN), AfterValidator(_strip)]
Price = Annotated[Decimal, BeforeValidator(_price), WithJsonSchema(_PRICE_SCHEMA)]
Currency = Annotated[str, AfterValidator(lambda value: _currency(value)), WithJsonSchema(_CURRENCY_SCHEMA)]


def _currency(value: str) -> str:
    if value not in CURRENCIES:
        raise ValueError("must be an ISO 4217 currency code such as TRY, EUR or USD")
    return value


class ListingCreate(BaseModel):
    """A new listing. ``price`` may be a JSON string ("1250.50") or number; at most 2 decimals."""

    model_config = ConfigDict(extra="forbid", regex_engine="python-re")

    title: Title
    description: Description = ""
    price: Price
    currency: Currency = "TRY"
    city: City


def _no_default(schema: dict[str, Any]) -> None:
    """A PATCH field is left out, never null: the document shows no ``null`` default."""
    schema.pop("default", None)


class ListingUpdate(BaseModel):
    """A partial update: only the fields given change (at least one; none may be null)."""

    model_config = ConfigDict(extra="forbid", regex_engine="python-re", json_schema_extra={"minProperties": 1})

    title: Title = Field(None, json_schema_extra=_no_default)  # type: ignore[assignment]
    description: Description = Field(None, json_schema_extra=_no_default)  # type: ignore[assignment]
    price: Price = Field(None, json_schema_extra=_no_default)  # type: ignore[assignment]
    currency: Currency = Field(None, json_schema_extra=_no_default)  # type: ignore[assignment]
    city: City = Field(None, json_schema_extra=_no_default)  # type: ignore[assignment]

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = [name for name, value in data.items() if value is None]
            if nulls:
                raise ValueError(f"may be left out, but not null: {', '.join(sorted(nulls))}")
        return data


class CacheProbeWrite(BaseModel):
    """Body of ``POST /test-cache``."""

    model_config = ConfigDict(extra="forbid")

    value: Annotated[str, StringConstraints(max_length=1024)] | None = None


def field_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as the problem body's ``errors``: one per field, no input echoed back."""
    errors = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = ".".join(str(part) for part in error["loc"]) or "body"
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        errors.append({"field": location, "message": message})
    return errors


class ListingOut(BaseModel):
    """A listing as the API returns it (documentation schema)."""

    id: int
    title: str
    description: str
    price: Annotated[str, Field(pattern=r"^\d+\.\d{2}$", examples=["1250.00"])]
    currency: str
    city: str
    owner_id: str
    created_at: Annotated[str, Field(description="RFC 3339, UTC")]
    updated_at: Annotated[str, Field(description="RFC 3339, UTC")]


class ListingPage(BaseModel):
    items: list[ListingOut]
    next_cursor: str | None


class Problem(BaseModel):
    """RFC 9457 problem details."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None


class CacheProbe(BaseModel):
    key: str
    value: str
    ttl: int


class RedisStatus(BaseModel):
    model_config = ConfigDict(extra="allow")

    status: str
    redis_version: str | None
    ping_ms: float


# Sign-in and sessions (/auth/*).

Phone = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=32)]


class OtpRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: Phone


class PhoneLogin(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone: Phone
    code: Annotated[str, StringConstraints(pattern=r"^\d{6}$")]


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=8192)]


class TokenResponse(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    refresh_token: str


class SessionOut(BaseModel):
    session_id: str
    created_at: str
    last_seen: str
    ip: str
    user_agent: str
    current: bool


class SessionList(BaseModel):
    sessions: list[SessionOut]
