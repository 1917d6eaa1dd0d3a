"""devtools: the project's dev and test tooling (local Airflow, dev HDFS and Spark cluster, sample
photos, hostile corpus, fuzzer, bench, eval). Never shipped: only imgfeat/ goes into the
--py-files zip (imgfeat.packaging), and nothing in imgfeat imports devtools at module level."""
