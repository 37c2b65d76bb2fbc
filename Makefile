# Fresh-clone entry points (README): `make test`, `make data`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test train data bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: 2.13.0 is the CPU build this project is developed and tested with
	$(PY) -m pip install -q "torch==2.13.0"
	# constraints.txt pins what the code relies on (Ray, transformers, peft, MLflow internals)
	$(PY) -m pip install -q -c constraints.txt -e ".[test]"
	touch $@

test: install
	$(PY) -m pytest -q
	# multi-node tests start their own local cluster: never in the process of tests/' single Ray
	$(PY) -m pytest -q tests_multinode

train: install
	$(PY) jobs/train_poisson.py --output runs/train_poisson

data: install
	$(PY) jobs/make_data.py --task words_all --num 200 --output runs/data/words_all

bench: install
	$(PY) benchmarks/bench_decoding.py
	$(PY) benchmarks/bench_data_pipeline.py

clean:
	rm -rf $(VENV) runs .pytest_cache
