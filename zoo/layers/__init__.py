"""The zoo's layers: attention (`BahdanauAttention` additive, `LuongAttention` dot, general and
concat), the `BidirectionalLSTMEncoder` and the `AttentiveLSTMDecoder` they plug into, and
`make_attention`, an attention layer by its recipe name."""

from zoo.layers.bahdanau_attention import BahdanauAttention
from zoo.layers.base_attention import BaseAttention
from zoo.layers.luong_attention import LuongAttention

# The attention forms a recipe can name, and `none` for the bottleneck baseline.
ATTENTION_TYPES = {
    "bahdanau": lambda units: BahdanauAttention(units),
    "normed_bahdanau": lambda units: BahdanauAttention(units, normalize=True),
    "sigmoid_bahdanau": lambda units: BahdanauAttention(units, score_activation="sigmoid"),
    "luong_dot": lambda units: LuongAttention("dot"),
    "luong_scaled_dot": lambda units: LuongAttention("dot", scale="sqrt"),
    "luong_general": lambda units: LuongAttention("general"),
    "luong_concat": lambda units: LuongAttention("concat", units=units),
    "none": lambda units: None,
}


def make_attention(name: str, units: int):
    """An attention layer by name (`ATTENTION_TYPES`), or None for `"none"`."""
    if name not in ATTENTION_TYPES:
        raise ValueError(
            f"unknown attention {name!r}; choose one of: {', '.join(ATTENTION_TYPES)}"
        )
    return ATTENTION_TYPES[name](units)


from zoo.layers.decoders import AttentiveLSTMDecoder  # noqa: E402  (it imports base_attention)
from zoo.layers.encoders import BidirectionalLSTMEncoder  # noqa: E402

__all__ = ["ATTENTION_TYPES", "AttentiveLSTMDecoder", "BahdanauAttention", "BaseAttention",
           "BidirectionalLSTMEncoder", "LuongAttention", "make_attention"]
