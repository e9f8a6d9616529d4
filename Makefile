# On a fresh Debian/Ubuntu machine with Python 3.11+:
#   make run      create .venv, install the exporter, serve examples/demo.yml on :10132
#   make test     install what the tests need (Debian packages, test tools), lint, run every test
#   make install  as root: the exporter in a venv under /opt built on /usr/bin/python3, the
#                 command linked into /usr/local/bin, a systemd unit, a system user,
#                 /etc/azurestack-exporter/config.yml (kept if present)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
CONFIG ?= examples/demo.yml
ARGS   ?=

# make install writes only where these say (docs/operations.md describes each; the tests
# install into a temporary tree with them). There is no DESTDIR: a virtual environment
# records its own path, so it cannot be built in one place and moved to another.
# The virtual environment that holds the exporter.
PREFIX         ?= /opt/azurestack-exporter
# Where a link to the command goes, so that `azurestack-exporter` is on PATH; empty: no link.
BINDIR         ?= /usr/local/bin
# The configuration, config.yml (kept if present) and secrets/.
SYSCONFDIR     ?= /etc/azurestack-exporter
# The systemd unit.
UNITDIR        ?= /etc/systemd/system
# The systemd-sysusers file that declares the azurestack-exporter user.
SYSUSERSDIR    ?= /usr/lib/sysusers.d
# The Python the service runs on. Not the first python3 on PATH: that may be one under a
# home directory (pyenv), which the service's user cannot run.
SERVICE_PYTHON ?= /usr/bin/python3
# yes: create the azurestack-exporter user and group when absent; no: never.
CREATE_USER    ?= yes
# What make install runs to reload systemd; ":" or empty: nothing is run.
SYSTEMCTL      ?= systemctl
# The unprivileged uid and gid (nobody) as which make install checks, when root, that the
# service's user can run the interpreter and the installed command.
UNPRIVILEGED   := 65534

.PHONY: run venv install uninstall test test-deps test-floor lint clean bench bench-load bench-attacks bench-config catalog backtest mutate mutate-rules mutate-subjects

# Debian and Ubuntu ship venv apart from Python: say so instead of failing halfway.
define need_venv
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "error: $(PYTHON) cannot create virtual environments: apt-get install python3-venv" >&2; exit 1; }
endef

$(BIN)/pip:
	$(need_venv)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

venv: $(BIN)/pip
	$(BIN)/pip install --quiet .

run: venv
	$(BIN)/azurestack-exporter --config.file=$(CONFIG) $(ARGS)

# Run $(1) with arguments $(2) as UNPRIVILEGED, with no groups, from /, with an empty
# environment (as systemd starts the service); on failure print $(3) and stop. Only root can
# change its uid: other users are told the check was not made.
define as_unprivileged
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "note: not root, so not checked that an unprivileged user can run $(1)"; \
	elif ! command -v setpriv >/dev/null 2>&1; then \
	  echo "error: setpriv (util-linux) is needed to check that the service's user can run $(1)" >&2; exit 1; \
	elif ! out=$$(cd / && setpriv --reuid=$(UNPRIVILEGED) --regid=$(UNPRIVILEGED) --clear-groups env -i $(1) $(2) 2>&1); then \
	  echo "error: an unprivileged user (uid $(UNPRIVILEGED)) cannot run $(1): $$out" >&2; \
	  echo "$(3)" >&2; exit 1; \
	fi
endef

unrunnable_python = the service, which runs as its own user, would fail the same way: name a Python every \
  user can read and run, such as the distribution's: make install SERVICE_PYTHON=/usr/bin/python3
unreadable_prefix = every file under $(PREFIX) must be readable by every user

# What can be checked first is checked before anything is written.
install:
	@[ -x "$(SERVICE_PYTHON)" ] && [ -f "$(SERVICE_PYTHON)" ] || { \
	  echo "error: SERVICE_PYTHON=$(SERVICE_PYTHON) is not the path of an executable file" >&2; exit 1; }
	@"$(SERVICE_PYTHON)" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { \
	  echo "error: SERVICE_PYTHON=$(SERVICE_PYTHON) is older than Python 3.11" >&2; exit 1; }
	@"$(SERVICE_PYTHON)" -c 'import ensurepip, venv' 2>/dev/null || { \
	  echo "error: $(SERVICE_PYTHON) cannot create virtual environments: apt-get install python3-venv" >&2; exit 1; }
	$(call as_unprivileged,$(SERVICE_PYTHON),-I -c 'import encodings; import ssl; import venv',$(unrunnable_python))
	@if [ -n "$(BINDIR)" ] && [ -e "$(BINDIR)/azurestack-exporter" ] && [ ! -L "$(BINDIR)/azurestack-exporter" ]; then \
	  echo "error: $(BINDIR)/azurestack-exporter exists and is not a link: remove it, or make install BINDIR=" >&2; \
	  exit 1; fi
	umask 022 && "$(SERVICE_PYTHON)" -m venv --clear $(PREFIX)
	umask 022 && $(PREFIX)/bin/pip install --quiet --upgrade pip
	umask 022 && $(PREFIX)/bin/pip install --quiet .
	$(call as_unprivileged,$(PREFIX)/bin/azurestack-exporter,--version,$(unreadable_prefix))
	install -d -m 0755 $(UNITDIR) $(SYSUSERSDIR)
	sed -e 's#/opt/azurestack-exporter#$(PREFIX)#g' -e 's#/etc/azurestack-exporter#$(SYSCONFDIR)#g' \
	  deploy/systemd/azurestack-exporter.service > $(UNITDIR)/azurestack-exporter.service
	chmod 0644 $(UNITDIR)/azurestack-exporter.service
	install -m 0644 deploy/systemd/azurestack-exporter.sysusers $(SYSUSERSDIR)/azurestack-exporter.conf
	if [ "$(CREATE_USER)" = yes ] && ! getent passwd azurestack-exporter >/dev/null; then \
	  if command -v systemd-sysusers >/dev/null 2>&1; then systemd-sysusers $(SYSUSERSDIR)/azurestack-exporter.conf; \
	  else useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
	    azurestack-exporter; fi; fi
	install -d -m 0750 $(SYSCONFDIR) $(SYSCONFDIR)/secrets
	[ -e $(SYSCONFDIR)/config.yml ] || install -m 0640 examples/azurestack-exporter.yml $(SYSCONFDIR)/config.yml
	@# The service reads its configuration through its group, whoever created it.
	if getent group azurestack-exporter >/dev/null; then \
	  chgrp azurestack-exporter $(SYSCONFDIR) $(SYSCONFDIR)/secrets $(SYSCONFDIR)/config.yml; \
	else echo "note: no group azurestack-exporter yet: create it (systemd-sysusers), then make install again"; fi
	if [ -n "$(BINDIR)" ]; then install -d -m 0755 $(BINDIR) && \
	  ln -sfn $(PREFIX)/bin/azurestack-exporter $(BINDIR)/azurestack-exporter; fi
	if [ -d /run/systemd/system ] && [ -n "$(SYSTEMCTL)" ] && [ "$(SYSTEMCTL)" != : ]; then $(SYSTEMCTL) daemon-reload; fi
	@echo "installed $(PREFIX)/bin/azurestack-exporter$(if $(BINDIR), (linked as $(BINDIR)/azurestack-exporter))"
	@echo "next: edit $(SYSCONFDIR)/config.yml, then"
	@echo "  $(if $(BINDIR),azurestack-exporter,$(PREFIX)/bin/azurestack-exporter) --config.check --config.file=$(SYSCONFDIR)/config.yml"
	@echo "  systemctl enable --now azurestack-exporter"

uninstall:
	-if [ -n "$(SYSTEMCTL)" ] && [ "$(SYSTEMCTL)" != : ]; then $(SYSTEMCTL) disable --now azurestack-exporter; fi
	if [ -n "$(BINDIR)" ] && [ "$$(readlink $(BINDIR)/azurestack-exporter)" = $(PREFIX)/bin/azurestack-exporter ]; then \
	  rm -f $(BINDIR)/azurestack-exporter; fi
	rm -rf $(PREFIX) $(UNITDIR)/azurestack-exporter.service $(SYSUSERSDIR)/azurestack-exporter.conf
	-if [ -d /run/systemd/system ] && [ -n "$(SYSTEMCTL)" ] && [ "$(SYSTEMCTL)" != : ]; then $(SYSTEMCTL) daemon-reload; fi
	@echo "kept $(SYSCONFDIR) and the azurestack-exporter user"

test-deps: $(BIN)/pip
	bash tests/install-system-packages.sh
	$(BIN)/pip install --quiet --upgrade --upgrade-strategy eager '.[test]'  # the newest each range allows

lint: test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The floor suite (below) runs beside the main suite, at a lower priority: the main suite
# mostly waits on the processes it starts, so the two take little longer than the main one
# alone. Its output follows the main suite's; either failing fails the target.
test: lint
	@rm -f $(FLOOR_VENV).log $(FLOOR_VENV).rc
	@( nice -n 10 $(MAKE) --no-print-directory floor-suite >$(FLOOR_VENV).log 2>&1; echo $$? >$(FLOOR_VENV).rc ) & \
	floor=$$!; \
	$(BIN)/pytest; main=$$?; \
	wait $$floor; \
	echo "---- make test-floor (ran beside the main suite)"; cat $(FLOOR_VENV).log; \
	rc=$$(cat $(FLOOR_VENV).rc); echo "---- main suite exit $$main, floor suite exit $$rc"; \
	[ "$$main" = 0 ] && [ "$$rc" = 0 ]

# The dependency-sensitive tests against the oldest release of each runtime dependency that
# pyproject.toml allows (tests/constraints-floor.txt); `make test` runs them against the newest.
FLOOR_VENV ?= .venv-floor
FLOOR_TESTS := tests/test_versions.py tests/test_catalog.py tests/test_policy.py tests/test_forecast.py \
	tests/test_runs.py tests/test_config.py tests/test_report.py tests/test_border.py tests/test_webconfig.py \
	tests/test_admin_client.py tests/test_updategraph.py tests/test_fuzz.py tests/test_exposition.py \
	tests/test_scrub.py tests/test_service.py tests/test_freshness.py
test-floor: test-deps
	$(MAKE) --no-print-directory floor-suite

floor-suite:
	rm -rf $(FLOOR_VENV)
	$(PYTHON) -m venv $(FLOOR_VENV)
	$(FLOOR_VENV)/bin/pip install --quiet -c tests/constraints-floor.txt . \
	  'pytest>=8,<10' 'hypothesis>=6.100,<7' 'PyJWT[crypto]>=2.8,<3'
	$(FLOOR_VENV)/bin/python -m pytest -q -p no:cacheprovider $(FLOOR_TESTS)

# Benchmarks (not tests): they print figures, measured against a floor in the same run.
bench: test-deps
	bash tests/install-system-packages.sh bench
	$(BIN)/python bench/bench.py $(ARGS)

bench-load: test-deps
	bash tests/install-system-packages.sh bench
	$(BIN)/python bench/load.py

# Loading a 5,000-stamp configuration with libyaml's parser against PyYAML's own, same run.
bench-config: test-deps
	$(BIN)/python bench/config_load.py $(ARGS)

# Client attacks at full scale: a scraper's success rate and RSS per attack, against a baseline.
bench-attacks: test-deps
	$(BIN)/python bench/attacks.py $(ARGS)

# The bundled catalog is generated from its sourced table; the forecast is replayed on it.
catalog: venv
	$(BIN)/python tools/build_catalog.py

backtest: venv
	$(BIN)/python tools/backtest_forecast.py --compare

# Mutation testing (not part of make test: over an hour on 2 cores): the pure core, the
# configuration, the web configuration and the admin client with mutmut, the alerting
# rules with tools/mutate_rules.py and promtool, and the subjects of the end-to-end tests
# with tools/remove_subjects.py. Fails when a module is below 90 % killed, or when a rules
# mutant or a removed subject survives.
mutate: test-deps mutate-rules mutate-subjects
	$(BIN)/pip install --quiet 'mutmut>=3,<4' 'pytest-timeout>=2.3,<3'
	rm -rf mutants
	$(BIN)/mutmut run --max-children 2 || true
	$(BIN)/mutmut results --all true | $(BIN)/python tools/mutation_summary.py

mutate-rules: test-deps
	$(BIN)/python tools/mutate_rules.py --jobs 2

mutate-subjects: test-deps
	$(BIN)/python tools/remove_subjects.py

clean:
	rm -rf mutants $(VENV) $(FLOOR_VENV) build *.egg-info .pytest_cache .ruff_cache .hypothesis
