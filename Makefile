# The two commands of README.md. Both prepare the machine first (scripts/setup.sh).
PYTEST_ARGS ?=

.PHONY: run test setup-run setup-test

run: setup-run
	.venv/bin/sanad keys init
	.venv/bin/sanad migrate
	.venv/bin/sanad run

test: setup-test
	PYTHONWARNINGS=ignore:::nameko.cli.commands .venv/bin/nameko test tests $(PYTEST_ARGS)

setup-run:
	scripts/setup.sh run

setup-test:
	scripts/setup.sh test
