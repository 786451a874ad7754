"""Product specifications and exact decimal formatting of ticks and lots."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


def decimals_of(step: Decimal) -> int:
    """Number of decimal places needed to write multiples of ``step`` exactly (0.01 -> 2, 1 -> 0)."""
    exponent = step.normalize().as_tuple().exponent
    return max(0, -int(exponent))


def format_units(units: int, step: Decimal, decimals: int) -> str:
    """Write ``units * step`` exactly with ``decimals`` places, e.g. (123456, 0.01, 2) -> "1234.56"."""
    value = Decimal(int(units)) * step
    return f"{value:.{decimals}f}"


@dataclass(frozen=True)
class Product:
    """A spot product as the venue lists it (Coinbase Advanced Trade naming)."""

    symbol: str  # venue product id, e.g. "BTC-USD"
    base: str
    quote: str
    tick_size: Decimal  # quote_increment
    size_increment: Decimal  # base_increment
    min_size: Decimal  # base_min_size

    @property
    def price_decimals(self) -> int:
        return decimals_of(self.tick_size)

    @property
    def size_decimals(self) -> int:
        return decimals_of(self.size_increment)

    def price_str(self, ticks: int) -> str:
        return format_units(ticks, self.tick_size, self.price_decimals)

    def size_str(self, lots: int) -> str:
        return format_units(lots, self.size_increment, self.size_decimals)

    def price_ticks(self, text: str) -> int:
        """Parse a venue price string back to ticks; raises ValueError if it is off the tick grid."""
        return _to_units(text, self.tick_size, f"{self.symbol} price")

    def size_lots(self, text: str) -> int:
        return _to_units(text, self.size_increment, f"{self.symbol} size")


def _to_units(text: str, step: Decimal, what: str) -> int:
    units, remainder = divmod(Decimal(text), step)
    if remainder != 0:
        raise ValueError(f"{what} {text!r} is not a multiple of {step}")
    return int(units)
