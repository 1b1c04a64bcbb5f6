# The operator console and alerting (issue #19): kairos-console (python/kairos/console), its browser
# tests in python/tests/console (Debian's chromium and chromium-driver, driven by Selenium from
# uv.lock), and Alertmanager (deploy/alertmanager) with amtool, built from the pinned
# tools/alertmanager module at the compose/Kubernetes image's version.

APT_PACKAGES += chromium chromium-driver
LINT_TARGETS += lint-alertmanager

ALERTMANAGER_TOOLS := $(ROOT)/tools/alertmanager

$(STAMP)/alertmanager: $(ALERTMANAGER_TOOLS)/go.mod $(ALERTMANAGER_TOOLS)/go.sum
	cd $(ALERTMANAGER_TOOLS) && GOWORK=off go build -o $(TOOLS)/bin/ tool
	@mkdir -p $(@D) && touch $@

.PHONY: alertmanager-tools
alertmanager-tools: $(STAMP)/alertmanager ## Build alertmanager and amtool (tools/alertmanager, the image's version)

.PHONY: lint-alertmanager
lint-alertmanager: setup $(STAMP)/alertmanager ## Validate deploy/alertmanager with amtool check-config
	amtool check-config deploy/alertmanager/alertmanager.yml

# The console's tests need the alertmanager binary and the C++ bridge extension (replay).
test: $(STAMP)/alertmanager
