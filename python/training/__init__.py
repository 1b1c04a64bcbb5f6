"""kairos.training: the ``kairos-train`` CLI. Not built yet: issue #6 builds it.

Imports market data, computes ``kairos.features``, labels, trains torch models with walk-forward
validation, exports ONNX with a parity check, backtests against baselines and registers models in
MLflow. torch is needed here only (the ``training`` extra); the services never import it.
"""
