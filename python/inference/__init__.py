"""kairos.inference: the model server (issue #5).

A grpc.aio server for ``kairos.inference.v1.InferenceService`` that keeps per-symbol feature state
(computed by ``kairos.features``), runs ONNX Runtime models with micro-batching, hot-swaps models from
the MLflow registry and publishes signals on NATS. ``kairos.inference.v1`` holds the generated stubs.
"""
