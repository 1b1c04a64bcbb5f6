"""kairos.collector: see kairos.collector.v1 for the generated contract stubs."""
