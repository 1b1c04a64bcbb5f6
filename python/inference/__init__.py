"""kairos.inference: see kairos.inference.v1 for the generated contract stubs."""
