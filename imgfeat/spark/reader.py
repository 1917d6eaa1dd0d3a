"""ingest's reader: every file of an input partition, as ingest-stage rows computed on executors.

The listing decides what is read (imgfeat.inputs); nothing rejected there is ever opened.
- A local partition is listed by imgfeat.inputs on the driver and read file by file by Python
  workers. Spark's own scan would follow links out of the partition, drop broken links, empty
  files and names that are not UTF-8 without a trace, and fail a whole job on a file over 2 GiB.
- A remote partition (hdfs://, s3a://, ...) is listed by Spark's scan (no content); only the
  files that pass `inputs.check` are read, through a name glob and a pushed-down length filter.
`image_id` is the exact path relative to the partition: Spark's `path` column is the plain
`Path.toString()`, so it is cut, never URL-decoded (only `inputFiles()` is URL-encoded).
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from imgfeat import decode, inputs, params
from imgfeat.schemas import INGEST

# pathGlobFilter is case-sensitive: *.{[jJ][pP][gG],...}
_GLOB = "*.{" + ",".join("".join(f"[{c.lower()}{c.upper()}]" for c in ext[1:]) for ext in decode.EXTENSIONS) + "}"


def list_partition(spark, part_uri: str) -> list[inputs.Listed]:
    """The partition's input files (`part_uri` qualified, as HadoopFS.qualify returns it)."""
    local = params.local_path(part_uri)
    if local is not None:
        return inputs.list_local(local) or []
    prefix = part_uri.rstrip("/") + "/"
    scan = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(part_uri)
    sizes = {r.path[len(prefix):]: r.length for r in scan.select("path", "length").collect()}
    # The scan drops zero-byte files; inputFiles() lists them too (URL-encoded, so decode those).
    base = unquote(urlsplit(prefix).path)
    for uri in scan.inputFiles():
        path = unquote(urlsplit(uri).path)
        if path.startswith(base):
            sizes.setdefault(path[len(base):], 0)
    return inputs.list_files(list(sizes.items()))


def read_partition(spark, part_uri: str, entries: list[inputs.Listed], partitions: int):
    """Ingest-stage rows (schema INGEST) of every entry: rejected ones straight from the listing,
    the others read and validated by Python workers."""
    from pyspark.sql import functions as F

    from imgfeat.stages import ingest

    wanted = [(e.image_id,) for e in entries if e.problem is None]
    ids = spark.createDataFrame(wanted, "image_id string")
    local = params.local_path(part_uri)
    if local is not None:
        rows = ids.repartition(partitions).mapInPandas(
            lambda it: (ingest.read_and_ingest_batch(b, local) for b in it), INGEST)
    else:
        prefix = part_uri.rstrip("/") + "/"
        content = (spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                   .option("pathGlobFilter", _GLOB).option("ignoreMissingFiles", "true").load(part_uri))
        content = (content.where((F.col("length") > 0) & (F.col("length") <= inputs.MAX_FILE_BYTES))
                   .select(F.expr(f"substring(path, {len(prefix) + 1})").alias("image_id"), "content"))
        # A file gone between listing and reading joins no content: quarantined as `vanished`.
        rows = (ids.join(content, "image_id", "left").repartition(partitions)
                .mapInPandas(lambda it: (ingest.ingest_batch(b) for b in it), INGEST))
    rejected = [ingest.rejected(e) for e in entries if e.problem is not None]
    if rejected:
        # ingest.COLUMNS is INGEST's column order
        rows = rows.unionByName(spark.createDataFrame([[r[c] for c in ingest.COLUMNS] for r in rejected], INGEST))
    return rows
