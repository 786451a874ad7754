"""Maker/taker fees with volume tiers.

    fee = notional x rate_bps / 1e4,   rate = the tier with the largest min_volume <= cumulative volume

The cumulative volume is the fee window's traded notional (``FeeConfig.starting_volume`` plus everything the
backtest traded before this fill), as venues tier by trailing 30-day volume. A fill is charged at the tier
reached before it (the venue re-tiers periodically, never mid-order).
"""

from __future__ import annotations

from research.backtest.config import FeeConfig


class FeeSchedule:
    def __init__(self, cfg: FeeConfig):
        self.tiers = sorted(cfg.tiers, key=lambda t: t.min_volume)
        self.volume = float(cfg.starting_volume)

    def rate_bps(self, maker: bool) -> float:
        tier = self.tiers[0]
        for t in self.tiers:
            if t.min_volume <= self.volume:
                tier = t
        return tier.maker_bps if maker else tier.taker_bps

    def charge(self, notional: float, maker: bool) -> float:
        """Fee of one fill (quote currency); adds the fill to the cumulative volume."""
        fee = abs(notional) * self.rate_bps(maker) / 1e4
        self.volume += abs(notional)
        return fee
