"""The local Kairos stack: service processes, health checks, and the settings `kairos up` and the demo share."""
