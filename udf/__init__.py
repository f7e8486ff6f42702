"""openEO adapters: the UDF, the process-graph templates and the dependency archive."""
