"""spark-submit entrypoint: refresh the similarity index and a partition's duplicates (see imgfeat.spark.index)."""

import sys

from imgfeat.spark.index import main

if __name__ == "__main__":
    sys.exit(main())
