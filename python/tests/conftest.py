"""Every test process runs grpc as ``kairos-inference`` does (ADR 0120), so the inference servers the
tests start in process are the ones that run: grpc reads its settings when it loads, and this file is
read before any test module imports it."""

from kairos.inference.cli import grpc_defaults

grpc_defaults()
