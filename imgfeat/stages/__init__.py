"""Stage logic as plain functions over pandas batches: ingest, detect, crop, embed. No stage module
imports pyspark; imgfeat.spark does the wiring (and holds the DataFrame steps: reuse, publish)."""
