# Deployment and observability (issue #9): Dockerfiles, compose, Prometheus rules, Grafana
# dashboards, Kubernetes manifests, NATS streams. See docs/operations.md.
#
# Validation needs no container engine and no cluster: compose files go through `docker compose
# config`, Prometheus files through promtool (Debian `prometheus`), dashboards through a JSON and
# PromQL check, stream definitions through kairos-streams -check, manifests through kustomize build
# plus kubernetes-validate (pinned on PyPI; it ships the Kubernetes JSON schemas, so it runs offline).

APT_PACKAGES += prometheus
LINT_TARGETS += lint-deploy
TEST_TARGETS += test-deploy

DEPLOY_TOOLS := $(ROOT)/tools/deploy
KUBEVAL := $(TOOLS)/kubeval/bin/kubernetes-validate
# The oldest and newest Kubernetes versions the manifests are validated against (kubernetes-validate
# ships their schemas; native gRPC probes need 1.27 or later).
K8S_VERSIONS := 1.30.0 1.37.0
K8S_OVERLAYS := deploy/k8s/overlays/dev deploy/k8s/overlays/scaleout deploy/k8s/overlays/scaleout-tls
DEPLOY_PY := $(PY) $(DEPLOY_TOOLS)/kairos_deploy.py
COMPOSE_BIN = $$(command -v docker >/dev/null && echo "docker compose" || echo $(TOOLS)/docker/cli-plugins/docker-compose)

# kustomize, nats-server (tests) and the Kairos ops tools, from the pinned tools/deploy module.
$(STAMP)/deploy-tools: $(DEPLOY_TOOLS)/go.mod $(DEPLOY_TOOLS)/go.sum $(wildcard $(DEPLOY_TOOLS)/cmd/*/*.go)
	cd $(DEPLOY_TOOLS) && GOWORK=off go build -o $(TOOLS)/bin/ tool ./cmd/...
	@mkdir -p $(@D) && touch $@

# kubernetes-validate in a venv of its own (exact versions, kept out of the project's uv.lock).
$(STAMP)/kubeval: $(DEPLOY_TOOLS)/kubeval-requirements.txt
	python3 -m venv $(TOOLS)/kubeval
	$(TOOLS)/kubeval/bin/pip install --quiet --no-deps -r $<
	@mkdir -p $(@D) && touch $@

.PHONY: deploy-tools
deploy-tools: $(STAMP)/deploy-tools $(STAMP)/kubeval ## Build the deployment tools (kustomize, kairos-streams, kairos-healthprobe, nats-server)

.PHONY: lint-deploy
lint-deploy: setup $(STAMP)/compose deploy-tools ## Validate compose files, Prometheus config/rules, dashboards, NATS streams, k8s manifests
	@echo "compose config: base + dev override + training profile"
	@KAIROS_POSTGRES_PASSWORD=lint DOCKER_CONFIG=$(TOOLS)/docker $(COMPOSE_BIN) -f docker-compose.yml -f docker-compose.dev.yml --profile training config --quiet
	@DOCKER_CONFIG=$(TOOLS)/docker $(COMPOSE_BIN) --env-file .env.example -f docker-compose.yml --profile training config --quiet
	$(DEPLOY_PY) check-env
	promtool check config deploy/prometheus/prometheus.yml deploy/prometheus/prometheus-k8s.yml
	promtool check rules deploy/prometheus/rules/*.yml
	$(PY) $(DEPLOY_TOOLS)/dashboards.py --check
	$(DEPLOY_PY) check-dashboards
	kairos-streams -check -dir deploy/nats/streams
	@d=$$(mktemp -d) && cp deploy/nats/nats.conf deploy/nats/auth.conf $$d/ && \
	  python3 -c "from pathlib import Path; import sys; v=['COLLECTOR','INFERENCE','EXECUTION','OBSERVER','STREAMS','RECORDER']; Path(sys.argv[1]).write_text(''.join(f'KAIROS_NATS_{n}_PASSWORD: \"lint\"\n' for n in v))" $$d/passwords.conf && \
	  nats-server -t -c $$d/nats.conf; rc=$$?; rm -rf $$d; exit $$rc
	@set -e; mkdir -p $(BUILD)/deploy; for o in $(K8S_OVERLAYS); do \
	  out=$(BUILD)/deploy/k8s-$$(basename $$o).yaml; kustomize build $$o > $$out; \
	  $(DEPLOY_PY) check-k8s-nats $$out; \
	  for v in $(K8S_VERSIONS); do \
	    echo "kustomize build $$o | kubernetes-validate --strict -k $$v"; $(KUBEVAL) --strict --quiet -k $$v $$out; \
	  done; \
	done
	cd $(DEPLOY_TOOLS) && GOWORK=off go vet ./... && test -z "$$(gofmt -l .)" && GOWORK=off staticcheck ./...

.PHONY: test-deploy
test-deploy: setup ## Unit-test the alert rules (promtool test rules) and the deploy tools; the Python deploy tests run with pytest
	promtool test rules deploy/prometheus/tests/*.yml
	cd $(DEPLOY_TOOLS) && GOWORK=off go test -count=1 ./...

.PHONY: dashboards
dashboards: setup ## Regenerate deploy/grafana/dashboards from tools/deploy/dashboards.py
	$(PY) $(DEPLOY_TOOLS)/dashboards.py

.PHONY: config-docs
config-docs: setup ## Regenerate the configuration reference in docs/operations.md from each service's --help
	$(DEPLOY_PY) config-docs --bin-dir $(BUILD)/deploy/bin
