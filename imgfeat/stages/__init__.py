"""Stage logic as plain functions over pandas batches (ingest, detect, crop, embed) or Spark
DataFrames (publish). No stage module creates a SparkSession; imgfeat.spark does the wiring."""
