"""Spark application of the 'embed' stage (submitted by the image_features DAG)."""

import sys

from imgfeat.spark.runner import main

if __name__ == "__main__":
    sys.exit(main("embed"))
