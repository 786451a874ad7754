"""A plain dict-per-side book over normalized L2 rows: the collector's cross-check against ccxt's book.

Deliberately simple (no speed tricks): it is also the obviously-right reference that faster books are tested
against.
"""

from __future__ import annotations

from l2lab.schema import FLAG_BOOK_RESET, FLAG_DUPLICATE, FLAG_FRAME_END, L2_GAP, SIDE_BID


class ShadowBook:
    def __init__(self):
        self.sides = ({}, {})
        self.valid = False  # whole (after a snapshot), not inside a gap
        self._in_snapshot = False

    def apply(self, rows) -> None:
        for kind, side, price, size, flags in zip(rows["kind"].tolist(), rows["side"].tolist(),
                                                   rows["price"].tolist(), rows["size"].tolist(),
                                                   rows["flags"].tolist()):
            if flags & FLAG_DUPLICATE:
                continue
            if kind == L2_GAP:
                self.valid = False
                continue
            if flags & FLAG_BOOK_RESET:
                self.sides = ({}, {})
                self._in_snapshot = True
            if size == 0:
                self.sides[side].pop(price, None)
            else:
                self.sides[side][price] = size
            if flags & FLAG_FRAME_END and self._in_snapshot:
                self.valid = True
                self._in_snapshot = False

    def best(self, scale) -> tuple[float | None, float | None]:
        bids, asks = self.sides
        div = 10.0**scale.price_exp
        return (max(bids) / div if bids else None, min(asks) / div if asks else None)

    def levels(self, side: int) -> list[tuple[int, int]]:
        """(price, size) mantissas, best first."""
        return sorted(self.sides[side].items(), reverse=(side == SIDE_BID))
