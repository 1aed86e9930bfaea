"""Persistence: one interface (:class:`Store`), value types, and the backends behind them."""

from pillarbox.store.interface import ChangeSubscription, Store

__all__ = ["ChangeSubscription", "Store"]
