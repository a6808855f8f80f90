"""Compact snapshots for per-series detector state.

A bank holds thousands of these per worker and Bytewax pickles them at every checkpoint: slot
values as a plain tuple, in `__slots__` order, carry no attribute names.
"""
from __future__ import annotations


class SlotState:
    """Base for `__slots__` classes whose pickled state is the tuple of their slot values."""

    __slots__ = ()

    def __getstate__(self) -> tuple:
        return tuple(getattr(self, name) for name in self.__slots__)

    def __setstate__(self, st: tuple) -> None:
        for name, v in zip(self.__slots__, st):
            setattr(self, name, v)
