"""kairos.execution: see kairos.execution.v1 for the generated contract stubs."""
