"""kairos.marketdata: see kairos.marketdata.v1 for the generated contract stubs."""
