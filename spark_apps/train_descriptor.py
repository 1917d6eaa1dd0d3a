"""spark-submit entrypoint: learn the DeepBit code layer (see imgfeat.spark.train_descriptor)."""

import sys

from imgfeat.spark.train_descriptor import main

if __name__ == "__main__":
    sys.exit(main())
