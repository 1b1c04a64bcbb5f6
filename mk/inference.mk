# Inference server (python/kairos/inference): its tests run in the shared `pytest` step of `make test`
# (python/tests/inference); this fragment adds the benchmark and a way to run the server by hand.

BENCH_TARGETS += bench-inference

INFERENCE_MODEL ?= $(ROOT)/python/tests/data/model/model.onnx

.PHONY: bench-inference
bench-inference: setup ## Benchmark inference: kairos-inference vs mlflow models serve vs raw ORT (bench/results/inference.json)
	$(PY) bench/inference.py --out bench/results/inference.json

.PHONY: run-inference
run-inference: setup ## Run kairos-inference on loopback with the model fixture (INFERENCE_MODEL=... to change; NATS off unless KAIROS_INFERENCE_NATS_URL)
	KAIROS_INFERENCE_NATS_URL=$${KAIROS_INFERENCE_NATS_URL-} $(ROOT)/.venv/bin/kairos-inference --model $(INFERENCE_MODEL)
