"""Peer benchmark for the execution service: NautilusTrader's backtest order lifecycle.

The issue compares the Kairos paper venue with NautilusTrader's full order lifecycle (submit,
pre-trade risk, order state machine, simulated fill, portfolio update). This script runs that
lifecycle in a NautilusTrader ``BacktestEngine`` on the same real EURUSD ticks: a strategy sends a
market order on every quote (alternating buy and sell, so the position stays bounded) and the figure
is filled orders per second of ``engine.run()`` wall time. It runs in its own virtualenv
(``make bench-execution`` builds it under build/), so the project never depends on NautilusTrader.
"""

from __future__ import annotations

import argparse
import json
import time
from decimal import Decimal
from pathlib import Path

import nautilus_trader
from nautilus_trader.backtest.engine import BacktestEngine, BacktestEngineConfig
from nautilus_trader.config import LoggingConfig, StrategyConfig
from nautilus_trader.model.currencies import USD
from nautilus_trader.model.data import QuoteTick
from nautilus_trader.model.enums import AccountType, OmsType, OrderSide
from nautilus_trader.model.events import OrderFilled
from nautilus_trader.model.identifiers import Venue
from nautilus_trader.model.objects import Money, Price, Quantity
from nautilus_trader.test_kit.providers import TestInstrumentProvider
from nautilus_trader.trading.strategy import Strategy


class EveryTick(Strategy):
    """Sends one market order per quote tick and counts the fills."""

    def __init__(self, config: StrategyConfig, instrument_id: object) -> None:
        super().__init__(config)
        self.instrument_id = instrument_id
        self.sent = 0
        self.filled = 0

    def on_start(self) -> None:
        self.subscribe_quote_ticks(self.instrument_id)

    def on_quote_tick(self, tick: QuoteTick) -> None:
        side = OrderSide.BUY if self.sent % 2 == 0 else OrderSide.SELL
        order = self.order_factory.market(self.instrument_id, side, Quantity.from_int(10_000))
        self.submit_order(order)
        self.sent += 1

    def on_order_filled(self, event: OrderFilled) -> None:
        self.filled += 1


def quote_ticks(path: Path, instrument_id: object) -> list[QuoteTick]:
    """The ticks of ``path`` as Nautilus quote ticks, read by the project's one market-data reader
    (``kairos.training.data``, which needs only numpy and pandas: ``make bench-execution`` puts
    ``python/`` on PYTHONPATH)."""
    from kairos.training.data import read_ticks

    ticks = read_ticks(str(path))
    return [
        QuoteTick(
            instrument_id=instrument_id,
            bid_price=Price.from_str(f"{bid:.5f}"),
            ask_price=Price.from_str(f"{ask:.5f}"),
            bid_size=Quantity.from_int(10_000_000),
            ask_size=Quantity.from_int(10_000_000),
            ts_event=int(t) * 1_000_000,
            ts_init=int(t) * 1_000_000,
        )
        for t, bid, ask in zip(ticks["time_msc"], ticks["bid"], ticks["ask"], strict=True)
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--ticks", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    instrument = TestInstrumentProvider.default_fx_ccy("EUR/USD", Venue("SIM"))
    engine = BacktestEngine(BacktestEngineConfig(logging=LoggingConfig(log_level="ERROR")))
    engine.add_venue(
        Venue("SIM"),
        oms_type=OmsType.NETTING,
        account_type=AccountType.MARGIN,
        starting_balances=[Money(1_000_000_000, USD)],
        base_currency=USD,
        default_leverage=Decimal(100),
    )
    engine.add_instrument(instrument)
    engine.add_data(quote_ticks(args.ticks, instrument.id))
    strategy = EveryTick(StrategyConfig(), instrument.id)
    engine.add_strategy(strategy)
    start = time.perf_counter()
    engine.run()
    elapsed = time.perf_counter() - start

    result = {
        "nautilus_version": nautilus_trader.__version__,
        "nautilus_orders": strategy.filled,
        "nautilus_backtest_orders_per_s": strategy.filled / elapsed,
    }
    engine.dispose()
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
