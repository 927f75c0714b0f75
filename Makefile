# hookline: `make help` lists the targets.

SHELL := bash
.DEFAULT_GOAL := help

CARGO ?= cargo
KAFKA := testcontainers/kafka.sh

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

.PHONY: run
run: build up topics ## Run one replica against the local broker
	$(CARGO) run --quiet -- run

.PHONY: topics
topics: build up ## Create or reconcile hookline's topics on the local broker
	$(CARGO) run --quiet -- setup-topics

.PHONY: build
build: ## Build the hookline binary
	$(CARGO) build

.PHONY: up
up: ## Start the local Kafka broker (reused when already running)
	bash $(KAFKA) up

.PHONY: down
down: ## Stop the local Kafka broker and remove its data
	bash $(KAFKA) down

.PHONY: status
status: ## Show whether the local Kafka broker runs
	bash $(KAFKA) status

.PHONY: test
test: up ## Run unit and integration tests against the local broker
	$(CARGO) test --all-targets

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings as errors
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
