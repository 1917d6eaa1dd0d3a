"""engine=bigdl: the detect and embed stages through BigDL's distributed predict.

BigDL's models live in the executors' JVMs, out of reach of Python workers, so a BigDL stage runs
in three steps over the same rows:
  1. Python workers decode and resize (`stages.<stage>.prepare`), as with any engine;
  2. `model.predict(rdd)` runs the network in the executors' JVMs: BigDL broadcasts the model once
     per executor and, on the MKL-DNN engine, runs one partition per node with all its cores;
  3. Python workers finish each row by image_id (`postprocess` + `detect.finish`, `embed.finish`).
"""

from __future__ import annotations

import numpy as np

from imgfeat import schemas
from imgfeat.descriptor import rmac
from imgfeat.engines import INPUT_SIZE


def _prepare(stage_module, drop: tuple[str, ...]):
    def fn(it):
        import pandas as pd

        from imgfeat.stages._rows import records

        for batch in it:
            rows, pending, pixels = stage_module.prepare(records(batch.drop(columns=[c for c in drop if c in batch])))
            for row in rows:
                row["pixels"] = None
            for i, p in zip(pending, pixels):
                rows[i]["pixels"] = p.tobytes()
            yield pd.DataFrame(rows)
    return fn


def _rows_and_outputs(spark, df, stage_module, drop, schema, model_dir: str, which: str, batch_size: int):
    """(rows RDD keyed by image_id, RDD of (image_id, network output))."""
    from bigdl.dllib.utils.common import get_node_and_core_number

    from imgfeat.engines import ssd
    from imgfeat.engines.bigdl import runtime as bigdl

    from pyspark import StorageLevel

    nodes = get_node_and_core_number()[0]
    # One partition per node: BigDL's MKL-DNN predict would coalesce to that anyway, and then
    # its output would no longer line up with the ids it is zipped with.
    # Read twice (predict, then the join): kept on disk, not in the heap BigDL's models need.
    rows = (df.mapInPandas(_prepare(stage_module, drop), f"{schema}, pixels binary")
            .repartition(nodes).rdd.persist(StorageLevel.DISK_ONLY))
    todo = rows.filter(lambda r: r.pixels is not None)
    x = todo.map(lambda r: ssd.preprocess(np.frombuffer(r.pixels, np.uint8).reshape(1, INPUT_SIZE, INPUT_SIZE, 3))[0])
    model = bigdl.load(model_dir, which)
    outputs = todo.map(lambda r: r.image_id).zip(bigdl.predict_rdd(model, x, batch_size * nodes))
    return rows.map(lambda r: (r.image_id, r)), outputs


def _to_frame(spark, rdd, schema: str):
    cols = schemas.columns(schema)
    return spark.createDataFrame(rdd.map(lambda row: tuple(row.get(c) for c in cols)), schema)


def _missing() -> Exception:
    # An image sent to predict without an output is the engine's failure, never "nothing found".
    return RuntimeError("BigDL's predict returned no output for this image")


def detect(spark, df, model_dir: str, threshold: float, batch_size: int):
    from imgfeat.engines.bigdl import runtime as bigdl
    from imgfeat.stages import detect as stage

    manifest = bigdl.load_manifest(model_dir)
    heads = manifest["detector"]["heads"]
    anchors = spark.sparkContext.broadcast(np.load(f"{model_dir}/{manifest['anchors']['file']}"))
    rows, outputs = _rows_and_outputs(spark, df, stage, ("format", "size_bytes"), schemas.DETECT,
                                      model_dir, "detector", batch_size)

    def postprocess(it):
        for image_id, packed in it:
            yield image_id, bigdl.detections(np.asarray(packed)[None], heads, anchors.value)[0]

    def finish(kv):
        row, det = kv[1]
        row = row.asDict()
        if row.pop("pixels") is None:  # quarantined or reused: nothing was inferred
            return row
        return stage.finish(row, _missing() if det is None else det, threshold)

    return _to_frame(spark, rows.leftOuterJoin(outputs.mapPartitions(postprocess)).map(finish), schemas.DETECT)


def embed(spark, df, model_dir: str, coder, picture_coder, batch_size: int):
    from imgfeat.stages import embed as stage
    from imgfeat.stages._rows import quarantine

    rows, outputs = _rows_and_outputs(spark, df, stage, (), schemas.EMBED, model_dir, "backbone", batch_size)

    def finish(kv):
        row, features = kv[1]
        row = row.asDict()
        if row.pop("pixels") is None:
            return row
        if features is None:
            return quarantine(row, stage.STAGE, f"inference_error: {_missing()}", stage.PAYLOAD)
        stage.finish([row], rmac(np.asarray(features, np.float32)[None]), coder, picture_coder)
        return row

    return _to_frame(spark, rows.leftOuterJoin(outputs).map(finish), schemas.EMBED)
