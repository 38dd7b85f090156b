"""Hypothesis strategies derived from msgspec type information.

``for_type(cls)`` builds values that satisfy every constraint declared on
the Struct (lengths, ranges, patterns, literals), so round-trip tests cover
each message type as the protocol defines it, with no hand-kept examples.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import msgspec.inspect as mi
from hypothesis import strategies as st

JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.text(max_size=20),
)


def _int(info: mi.IntType) -> st.SearchStrategy[int]:
    lo = info.ge if info.ge is not None else (info.gt + 1 if info.gt is not None else -(2**63))
    hi = info.le if info.le is not None else (info.lt - 1 if info.lt is not None else 2**63 - 1)
    return st.integers(min_value=lo, max_value=hi)


def _float(info: mi.FloatType) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=info.ge if info.ge is not None else info.gt,
        max_value=info.le if info.le is not None else info.lt,
        exclude_min=info.gt is not None,
        exclude_max=info.lt is not None,
        allow_nan=False,
        allow_infinity=False,
    ).filter(math.isfinite)


def _str(info: mi.StrType) -> st.SearchStrategy[str]:
    lo = info.min_length or 0
    hi = info.max_length if info.max_length is not None else 40
    alphabet = st.characters(blacklist_categories=("Cs",))
    if info.pattern:
        return st.from_regex(info.pattern, fullmatch=True, alphabet=alphabet).filter(
            lambda s: lo <= len(s) <= hi
        )
    return st.text(alphabet=alphabet, min_size=lo, max_size=min(hi, lo + 40))


def _from_info(info: mi.Type) -> st.SearchStrategy[Any]:
    if isinstance(info, mi.Metadata):
        return _from_info(info.type)
    if isinstance(info, mi.IntType):
        return _int(info)
    if isinstance(info, mi.FloatType):
        return _float(info)
    if isinstance(info, mi.StrType):
        return _str(info)
    if isinstance(info, mi.BoolType):
        return st.booleans()
    if isinstance(info, mi.NoneType):
        return st.none()
    if isinstance(info, mi.LiteralType):
        return st.sampled_from(info.values)
    if isinstance(info, mi.UnionType):
        return st.one_of(*(_from_info(t) for t in info.types))
    if isinstance(info, mi.ListType):
        hi = info.max_length if info.max_length is not None else 4
        return st.lists(
            _from_info(info.item_type), min_size=info.min_length or 0, max_size=min(hi, 4)
        )
    if isinstance(info, mi.DictType):
        return st.dictionaries(_from_info(info.key_type), _from_info(info.value_type), max_size=3)
    if isinstance(info, mi.StructType):
        return for_type(info.cls)
    if isinstance(info, mi.AnyType):
        return JSON_SCALARS
    raise NotImplementedError(f"no strategy for {info!r}")


def for_type(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Instances of ``cls`` honouring its declared constraints."""
    info = mi.type_info(cls)
    assert isinstance(info, mi.StructType)
    fields = {}
    for f in info.fields:
        strategy = _from_info(f.type)
        fields[f.name] = strategy
    return st.builds(cls, **fields)
