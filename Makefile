# smtni: `make demo` and `make test` set up what they need by themselves.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SIM    ?= verilator
TB     ?= fabric
COMPONENT ?= fabric
DEVICE ?= ecp5-25k
JOBS   ?= 2

.PHONY: setup test demo verilog sim waves formal synth bench soak mutants experiments clean

## setup: create .venv and install smtni with its tools (idempotent; fast once done)
setup: $(STAMP)

$(STAMP): pyproject.toml
	@command -v iverilog >/dev/null || { apt-get update -qq && apt-get install -y -qq iverilog; }
	@command -v make >/dev/null && command -v g++ >/dev/null && command -v perl >/dev/null \
		|| { apt-get update -qq && apt-get install -y -qq make g++ perl; }
	@test -f /usr/include/lz4.h || { apt-get update -qq && apt-get install -y -qq liblz4-dev; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

## test: the whole suite (unit tests, cocotb on Icarus and Verilator, Verilog lint, CLI); the
## slowest tests are listed at the end
test: setup
	$(BIN)/python -m pytest -n $(JOBS) --dist worksteal --durations=20 $(PYTEST_ARGS)

## demo: 2 nodes playing ping-pong in every notification mode, PIO and DMA, on Verilator: a latency table
demo: setup
	$(BIN)/smtni demo

## verilog: write sim_build/verilog/$(COMPONENT).v (NODES=n to set the node count)
verilog: setup
	$(BIN)/smtni verilog $(COMPONENT) $(if $(NODES),--nodes $(NODES))

## sim: run testbench $(TB) on $(SIM) with a waveform (SEED=n to replay)
sim: setup
	$(BIN)/smtni sim $(TB) --sim $(SIM) --waves $(if $(SEED),--seed $(SEED))

## waves: list the signals of FILE, or tabulate SIGNALS in it
waves: setup
	$(BIN)/smtni waves $(FILE) $(if $(SIGNALS),--signals $(SIGNALS))

## formal: isolation proofs of TLB, NI, RX, TX, Fabric, each broken variant failing (PROOF=name)
formal: setup
	$(BIN)/python -m tb.formal $(PROOF)

## synth: LUTs, FFs, RAM blocks and Fmax of $(COMPONENT) on $(DEVICE) (NODES=n as for verilog)
synth: setup
	$(BIN)/smtni synth $(COMPONENT) --device $(DEVICE) $(if $(NODES),--param nodes=$(NODES))

## bench: one table of co-simulation speed (clock loops, native harness, demo, 4-node random) and System build times
bench: setup
	$(BIN)/python -m tb.bench

## soak: SEEDS random NODES-node runs of MESSAGES messages with link faults, side by side on $(JOBS) Dask workers
soak: setup
	$(BIN)/smtni soak --sim $(SIM) --nodes $(or $(NODES),2) --messages $(or $(MESSAGES),2500) \
		--seeds $(or $(SEEDS),40) --workers $(JOBS) $(if $(SEED),--seed $(SEED)) \
		--fault-rate $(or $(FAULT_RATE),0.05) --json results/soak.json

## mutants: mutmut on rtl/, each file against its own unit tests (FILES=tlb, TIMEOUT=s, MINUTES=m)
mutants: setup
	$(BIN)/python -m tb.mutants $(FILES) $(if $(TIMEOUT),--timeout $(TIMEOUT)) \
		$(if $(MINUTES),--minutes $(MINUTES))

## experiments: every experiment's sweep into results/NAME/ (quick; FULL=1 for the whole space,
## SIM=, WORKERS=, SEED=)
experiments: setup
	@for name in $$($(BIN)/smtni experiment --list | cut -d' ' -f1); do \
		$(BIN)/smtni experiment $$name $(if $(FULL),--full,--quick) --sim $(SIM) \
			$(if $(WORKERS),--workers $(WORKERS)) $(if $(SEED),--seed $(SEED)) || exit $$?; \
	done

clean:
	rm -rf sim_build/icarus sim_build/verilator sim_build/verilog sim_build/synth sim_build/formal
