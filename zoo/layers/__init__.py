"""Attention layers: `BahdanauAttention` (additive) and `LuongAttention` (dot, general, concat)."""

from zoo.layers.bahdanau_attention import BahdanauAttention
from zoo.layers.base_attention import BaseAttention
from zoo.layers.luong_attention import LuongAttention

__all__ = ["BahdanauAttention", "LuongAttention", "BaseAttention"]
