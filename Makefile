# hookline: `make help` lists the targets.

SHELL := bash
.DEFAULT_GOAL := help

CARGO ?= cargo
KAFKA := testcontainers/kafka.sh
APICURIO := testcontainers/apicurio.sh
# Installs what a target needs and is missing (a no-op when all is there).
SETUP := bash scripts/setup.sh
# Seconds per fuzz target in `make test`; `make fuzz` takes FUZZ_LONG.
FUZZ_SECONDS ?= 15
FUZZ_LONG ?= 600

.PHONY: setup
setup: ## Install the system packages the build and the tests need (done by every target that needs them)
	$(SETUP) test

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

.PHONY: run
run: ## The whole flow in one process (embedded Kafka, local receivers); no services needed
	@$(SETUP) build
	$(CARGO) run --quiet -- demo

.PHONY: replica
replica: build up topics ## Run one replica against the local broker
	$(CARGO) run --quiet -- run

.PHONY: topics
topics: build up ## Create or reconcile hookline's topics on the local broker
	$(CARGO) run --quiet -- setup-topics

.PHONY: build
build: ## Build the hookline binary
	@$(SETUP) build
	$(CARGO) build

.PHONY: up
up: ## Start the local Kafka broker and schema registry (reused when running)
	@$(SETUP) test
	bash $(KAFKA) up
	bash $(APICURIO) up

.PHONY: down
down: ## Stop the local broker and schema registry and remove their data
	bash $(APICURIO) down
	bash $(KAFKA) down

.PHONY: status
status: ## Show whether the local broker and schema registry run
	bash $(KAFKA) status; k=$$?; bash $(APICURIO) status; a=$$?; exit $$((k || a))

.PHONY: test
test: up ## Run unit, integration and interoperability tests against the local services
	$(CARGO) test --all-targets --features fault-injection
	bash tests/api/schemathesis.sh
	bash tests/interop/run.sh
	bash fuzz/run.sh $(FUZZ_SECONDS)

.PHONY: soak
soak: up ## Full chaos run in key and in partition order: 3 replicas, 50 tenants, 50,000 events, kills, a freeze, a broker restart; a 60 s broker outage
	HOOKLINE_SOAK=full $(CARGO) test --release --test it soak -- --nocapture
	HOOKLINE_SOAK=full HOOKLINE_SOAK_ORDERING=partition $(CARGO) test --release --test it soak -- --nocapture
	HOOKLINE_SOAK=full $(CARGO) test --release --test it outage:: -- --nocapture

.PHONY: fuzz
fuzz: ## Fuzz every target for FUZZ_LONG seconds each (nightly and cargo-fuzz)
	bash fuzz/run.sh $(FUZZ_LONG)

.PHONY: bench
bench: up ## Benchmarks (about 15 minutes after the build; BENCH_ARGS=--quick for 4 min): table + target/bench/results.json
	$(CARGO) build --release --bins
	$(CARGO) run --release --quiet --bin hookline-bench -- $(BENCH_ARGS)

.PHONY: lint
lint: ## cargo fmt --check, clippy with warnings as errors, and the import rules (scripts/check-imports.sh)
	@$(SETUP) build
	bash scripts/check-imports.sh
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
