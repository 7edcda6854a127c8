.PHONY: install test lint bench check

install:
	python3 -m venv .venv && .venv/bin/pip install -e '.[test]' ruff

test:
	.venv/bin/pytest

lint:
	.venv/bin/ruff check lakeproxy tests bench

bench:
	.venv/bin/python bench/core_bench.py --objects 10000,100000 --changes 10,1000

check: lint test
