"""kairos.training: the ``kairos-train`` CLI.

Imports market data, computes ``kairos.features``, labels, trains torch models with walk-forward
validation, exports ONNX with a parity check, backtests against baselines and registers models in
MLflow. torch is needed here only (the ``training`` extra); the services never import it.
"""
