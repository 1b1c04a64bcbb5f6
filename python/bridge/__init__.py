"""kairos.bridge: see kairos.bridge.v1 for the generated contract stubs."""
