"""How `score_activation="sigmoid"` limits sharpness (docs/layers.md).

Run from the repository root: `python docs/results/layers/sigmoid_sharpness.py`;
its output is docs/results/layers/sigmoid_sharpness.txt.
"""
import keras
import numpy as np

from zoo.layers import BahdanauAttention

keras.utils.set_random_seed(0)
rng = np.random.default_rng(0)
query = rng.normal(size=(256, 32)).astype("float32")      # 256 decoder states
value = rng.normal(size=(256, 10, 32)).astype("float32")  # Tv = 10 source positions

plain = BahdanauAttention(32)
matching = BahdanauAttention(32, score_activation="sigmoid")
plain.build(query.shape, value.shape)
matching.build(query.shape, value.shape)
plain.v.assign(100 * plain.v / np.linalg.norm(plain.v))  # drive the raw scores large
for source, target in zip(plain.weights, matching.weights, strict=True):
    target.assign(source)                                 # the same weights in both

for name, layer in [("plain", plain), ("sigmoid", matching)]:
    _, weights = layer(query, value)
    weights = np.asarray(weights)
    entropy = -(weights * np.log(np.maximum(weights, 1e-30))).sum(-1)
    print(f"{name:8s} max weight {weights.max(-1).mean():.3f} (largest {weights.max():.3f}), "
          f"entropy {entropy.mean():.3f} nats")

raw = np.asarray(plain.compute_scores(query, plain.project_key(value)))
print(f"plain    mean |raw score| {np.abs(raw).mean():.0f}")
