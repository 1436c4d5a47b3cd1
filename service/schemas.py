"""Request bodies and their validation (pydantic, strict about unknown fields)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

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

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Description = Annotated[str, StringConstraints(max_length=5000)]
City = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
Price = Annotated[Decimal, Field(ge=0, lt=MAX_PRICE, decimal_places=2, allow_inf_nan=False)]


def _currency(value: str) -> str:
    if value not in CURRENCIES:
        raise ValueError("must be an ISO 4217 currency code such as TRY, EUR or USD")
    return value


class ListingCreate(BaseModel):
    """A new listing. ``price`` may be a JSON string ("1250.50") or number; at most 2 decimals."""

    model_config = ConfigDict(extra="forbid")

    title: Title
    description: Description = ""
    price: Price
    currency: str = "TRY"
    city: City

    @field_validator("currency")
    @classmethod
    def _check_currency(cls, value: str) -> str:
        return _currency(value)


class ListingUpdate(BaseModel):
    """A partial update: only the fields given change."""

    model_config = ConfigDict(extra="forbid")

    title: Title | None = None
    description: Description | None = None
    price: Price | None = None
    currency: str | None = None
    city: City | None = None

    @field_validator("currency")
    @classmethod
    def _check_currency(cls, value: str | None) -> str | None:
        return None if value is None else _currency(value)

    @field_validator("title", "price", "city")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out, but not null")
        return value


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
