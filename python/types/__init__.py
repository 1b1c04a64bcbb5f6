"""kairos.types: see kairos.types.v1 for the generated contract stubs."""
