"""kairos.inference: the model server. Not built yet: issue #5 builds it.

A grpc.aio server for ``kairos.inference.v1.InferenceService`` that keeps per-symbol feature state
(computed by ``kairos.features``), runs ONNX Runtime models with micro-batching, hot-swaps models from
the MLflow registry and publishes signals on NATS. ``kairos.inference.v1`` holds the generated stubs.
"""
