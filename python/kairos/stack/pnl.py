"""An independent P&L recomputation from fills, to check the execution service's books.

Average-cost accounting per symbol, in exact decimals: a fill that reduces or flips a position
realizes (exit - average entry) x closed lots x contract size; commissions are costs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from kairos.execution.v1 import execution_pb2
from kairos.types.v1 import types_pb2


def to_decimal(d: types_pb2.Decimal) -> Decimal:
    return Decimal(d.units).scaleb(-d.scale)


@dataclass
class Book:
    """One symbol's position as the fills imply it."""

    net_lots: Decimal = Decimal(0)
    avg_price: Decimal = Decimal(0)
    realized: Decimal = Decimal(0)
    commission: Decimal = Decimal(0)

    def apply(self, side_sign: int, lots: Decimal, price: Decimal, contract_size: Decimal) -> None:
        signed = lots * side_sign
        if self.net_lots == 0 or (self.net_lots > 0) == (signed > 0):
            total = self.net_lots + signed
            self.avg_price = (self.avg_price * abs(self.net_lots) + price * lots) / abs(total)
            self.net_lots = total
            return
        closed = min(abs(signed), abs(self.net_lots))
        direction = 1 if self.net_lots > 0 else -1
        self.realized += (price - self.avg_price) * closed * direction * contract_size
        remaining = self.net_lots + signed
        if remaining == 0:
            self.avg_price = Decimal(0)
        elif (remaining > 0) != (self.net_lots > 0):
            self.avg_price = price  # flipped: the rest opens a new position at this fill's price
        self.net_lots = remaining

    def unrealized(self, mark: Decimal, contract_size: Decimal) -> Decimal:
        return (mark - self.avg_price) * self.net_lots * contract_size if self.net_lots else Decimal(0)


def recompute(
    fills: Iterable[execution_pb2.Fill], contract_size: Decimal = Decimal(100_000)
) -> dict[str, Book]:
    """Books per symbol from fills (deduplicated by trade id, applied in time order)."""
    seen: set[str] = set()
    books: dict[str, Book] = {}
    for fill in sorted(fills, key=lambda f: (f.time_us, f.trade_id)):
        if fill.trade_id in seen:
            continue
        seen.add(fill.trade_id)
        sign = 1 if fill.side == execution_pb2.ORDER_SIDE_BUY else -1
        book = books.setdefault(fill.symbol, Book())
        book.apply(sign, to_decimal(fill.quantity), to_decimal(fill.price), contract_size)
        book.commission += to_decimal(fill.commission)
    return books
