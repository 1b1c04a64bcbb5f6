"""The local Kairos stack: service processes, health checks, replay, observers, the demo."""
