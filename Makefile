# The two commands of README.md. Both prepare the machine first (scripts/setup.sh).
PYTEST_ARGS ?=

.PHONY: run test bench setup-run setup-test

# Development unless told otherwise: the README's try-it registers a webhook at http://127.0.0.1.
run: export SANAD_ENV ?= development
run: setup-run
	.venv/bin/sanad keys init
	.venv/bin/sanad migrate
	# A fictional Dhi Qar partner directory; partners already present (by name) are kept as they are.
	.venv/bin/sanad partner seed deploy/seed/dhi_qar_partners.yaml
	.venv/bin/sanad run

# The browser tier runs in a pytest of its own: nameko's eventlet monkey-patching breaks Playwright.
test: setup-test
	PYTHONWARNINGS=ignore:::nameko.cli.commands .venv/bin/nameko test tests --ignore=tests/browser $(PYTEST_ARGS)
	.venv/bin/python -m pytest tests/browser -p no:pytest_nameko $(PYTEST_ARGS)

# The benchmark (issue 8; docs/performance.md): its own database, vhost and stack on the local servers.
# BENCH_ARGS passes options, e.g. BENCH_ARGS="--repetitions 5" or "--at HEAD" (see python -m bench --help).
BENCH_ARGS ?=
bench: setup-run
	.venv/bin/pip install -q --disable-pip-version-check -r requirements-bench.txt
	PYTHONWARNINGS=ignore:::nameko.cli.commands .venv/bin/python -m bench $(BENCH_ARGS)

setup-run:
	scripts/setup.sh run

setup-test:
	scripts/setup.sh test
