"""What every recipe's tuning trial runner shares: its data, built once per process."""

from __future__ import annotations

import time


class CachedTrialData:
    """Builds a trial's data once per process and shares it between every trial whose config
    has the same `DATA_FIELDS` (a search space only touches model and training fields).

    A runner sets `DATA_FIELDS` and implements `load(config)`, returning `(data, train,
    validation, summary)`; `data(config)` returns the cached `(data, train, validation)`.
    """

    DATA_FIELDS: tuple[str, ...] = ()

    def __init__(self):
        self._data = {}

    def load(self, config):
        raise NotImplementedError

    def data(self, config):
        key = tuple(getattr(config, f) for f in self.DATA_FIELDS)
        if key not in self._data:
            t0 = time.time()
            data, train, validation, summary = self.load(config)
            print(f"data: {summary} ({time.time() - t0:.1f}s, once per process)")
            self._data[key] = (data, train, validation)
        return self._data[key]
