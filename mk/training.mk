# kairos-train (python/kairos/training) and kairos.features: the model fixture and the training benchmark.
# The Python tests (python/tests/training, python/tests/features) run with the shared pytest step.

TRAINING_DATA := $(ROOT)/../shared/data
MODEL_FIXTURE := python/tests/data/model
# 2012-03-01T00:00:00Z, the end of the fixture's data: the card's created_utc, so regeneration is byte-identical.
MODEL_FIXTURE_EPOCH := 1330560000

BENCH_TARGETS += bench-training

.PHONY: model-fixture
# --band-mult 0: no flat band, so the calibrated fixture takes directional views and the e2e stack
# (signal threshold 0.10 on p_up - p_down) places orders; with the cost band it predicts flat on the
# thin 2020-01-01 ticks of the replay.
model-fixture: setup ## Regenerate the test model (python/tests/data/model) from real GBPUSD M1 bars, deterministically
	SOURCE_DATE_EPOCH=$(MODEL_FIXTURE_EPOCH) $(ROOT)/.venv/bin/kairos-train run \
	  --data $(TRAINING_DATA)/gbpusd-m1-bid-2012.csv --timeframe M1 --arch mlp --candidate mlp --window 16 --band-mult 0 \
	  --seed 0 --threads 1 \
	  --run $(BUILD)/model-fixture --no-register --out $(MODEL_FIXTURE)
	sha256sum $(MODEL_FIXTURE)/model.onnx $(MODEL_FIXTURE)/model.card.json

.PHONY: bench-training
bench-training: setup ## Training benchmark: feature rows/s and the import..parity pipeline on 30k GBPUSD M1 bars
	$(PY) bench/training.py --data $(TRAINING_DATA) --out bench/results/training.json

BENCH_TARGETS += bench-gate
TEST_TARGETS += bench-gate-quick

.PHONY: bench-gate
bench-gate: setup ## Gate benchmark: power on planted-edge series and false positives on random walks, through the real pipeline (~1-2 h on 2 cores)
	$(PY) bench/gate.py --out bench/results/gate.json

.PHONY: bench-gate-quick
bench-gate-quick: setup ## Smoke test of the gate benchmark: one short series per kind (a few minutes)
	$(PY) bench/gate.py --quick --out $(BUILD)/bench-gate-quick.json
