"""Kairos: low-latency AI trading stack for MetaTrader 5.

Sub-packages: ``kairos.features`` (shared feature pipeline), ``kairos.inference`` (model server),
``kairos.training`` (training CLI), ``kairos.sdk`` (typed client SDK). ``kairos.<domain>.v1``
packages are the protobuf/gRPC stubs generated from ``proto/kairos/<domain>/v1``.
"""
