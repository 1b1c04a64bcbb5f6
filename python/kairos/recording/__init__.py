"""Recording of the collector's ticks and bars as a partitioned Parquet dataset (ADR 0084)."""
