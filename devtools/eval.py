"""make eval: the quality of the binary codes, on groups of real pictures (`eval_corpus`).

Every evaluation picture goes through ingest, detect, crop and embed in-process (`pipeline`), and
queries all the others. For each code length K it compares
- learned: the DeepBit layer, trained with BigDL on Spark from the disjoint training pictures
  (`imgfeat.spark.train_descriptor.fit`, the code the train_descriptor DAG runs);
- projection: the fixed SimHash projection (what runs without a trained layer);
- itq: iterative quantization (faiss's ITQTransform, PCA + learned rotation) on the same training set;
- and the float embedding (cosine distance) as the upper reference.
Metrics: mAP@10 over the near-duplicate and the same-object queries; recall of near-duplicate
pairs at a false-match rate of at most 0.1% over all pairs of different groups, and the Hamming
radius that achieves it (what `duplicates` uses). Writes var/eval/report.json.

    python -m devtools.eval [--bits 32,64,128] [--rounds 5] [--epochs 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from imgfeat import descriptor, paths

TOP_K = 10
FALSE_MATCH_RATE = 1e-3


def average_precision_at_k(dist: np.ndarray, groups: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """AP@k of each item as a query against all others; ties are broken by item order."""
    n = len(groups)
    out = np.zeros(n)
    for i in range(n):
        d = dist[i].astype(np.float64).copy()
        d[i] = np.inf
        top = np.lexsort((np.arange(n), d))[:k]
        rel = groups[top] == groups[i]
        relevant = min(k, int((groups == groups[i]).sum()) - 1)
        if relevant:
            out[i] = float((np.cumsum(rel) / np.arange(1, k + 1) * rel).sum() / relevant)
    return out


def recall_at_false_match_rate(dist: np.ndarray, groups: np.ndarray, positives: np.ndarray,
                               rate: float = FALSE_MATCH_RATE) -> tuple[float, float]:
    """(recall of the `positives` pairs, threshold) at the largest threshold whose false-match rate
    (pairs of different groups within it) is at most `rate`."""
    iu = np.triu_indices(len(groups), 1)
    d = dist[iu]
    same = groups[iu[0]] == groups[iu[1]]
    pos = d[same & positives[iu[0]]]
    neg = np.sort(d[~same])
    allowed = int(np.floor(rate * len(neg)))
    # the threshold t counts pairs with d <= t: stay below the (allowed+1)-th smallest negative
    limit = neg[allowed] if allowed < len(neg) else np.inf
    candidates = np.unique(np.concatenate([pos, neg]))
    ok = candidates[candidates < limit]
    t = float(ok.max()) if len(ok) else float("-inf")
    return float(np.mean(pos <= t)) if len(pos) else 0.0, t


def hamming_matrix(codes: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(codes, axis=1).astype(np.float32)
    return bits @ (1 - bits).T + (1 - bits) @ bits.T


def score(dist: np.ndarray, groups: np.ndarray, kinds: np.ndarray) -> dict:
    ap = average_precision_at_k(dist, groups)
    recall, radius = recall_at_false_match_rate(dist, groups, kinds == "near_duplicate")
    return {"map_near_duplicate": round(float(ap[kinds == "near_duplicate"].mean()), 4),
            "map_same_object": round(float(ap[kinds == "same_object"].mean()), 4),
            "recall_near_duplicate": round(recall, 4), "radius": radius}


def run(bits_list: list[int], rounds: int, epochs: int) -> dict:
    import faiss

    from devtools import eval_corpus
    from imgfeat import augment, pipeline
    from imgfeat.engines import get_engine
    from imgfeat.engines.bigdl import runtime as bigdl
    from imgfeat.spark import train_descriptor

    started = time.time()
    model_dir = str(paths.model_dir())
    training, evaluation = eval_corpus.build(paths.cache_dir())
    engine = get_engine("openvino", model_dir)
    eval_rows = pipeline.crops([(i, c) for i, c, _, _ in evaluation], engine)
    emb = pipeline.embeddings(eval_rows, engine)
    groups = np.array([g for _, _, g, _ in evaluation])
    kinds = np.array([k for *_, k in evaluation])
    train_rows = [r for r in pipeline.crops(training, engine) if r["crop"] is not None]

    bigdl.init_spark(engine=train_descriptor.ENGINE_TYPE)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    crops = spark.createDataFrame([(r["sha256"], r["crop"]) for r in train_rows], "sha256 string, crop binary")
    rotated = train_descriptor.describe(spark, crops, model_dir)
    x_train = np.stack([v[augment.ROTATIONS.index(0.0)] for _, v in rotated.collect()])

    rows = [{"method": "float", "bits": 32 * emb.shape[1], **score(1 - emb @ emb.T, groups, kinds)}]
    for bits in bits_list:
        w, c, rep = train_descriptor.fit_described(spark, rotated, bits, rounds, epochs)
        learned = descriptor.Coder(bits, "learned", w, c).codes(emb)
        itq = faiss.ITQTransform(emb.shape[1], bits, True)
        itq.train(x_train)
        codes = {"learned": learned, "projection": descriptor.binary_codes(emb, bits),
                 "itq": np.packbits(itq.apply(emb) > 0, axis=1)}
        for method, code in codes.items():
            rows.append({"method": method, "bits": bits, **score(hamming_matrix(code), groups, kinds),
                         **({"training": rep} if method == "learned" else {})})
    spark.stop()
    return {"corpus": {"training_pictures": len(training), "training_crops": len(train_rows),
                       "evaluation_pictures": len(evaluation),
                       "near_duplicate_groups": len(set(groups[kinds == "near_duplicate"])),
                       "same_object_groups": len(set(groups[kinds == "same_object"]))},
            "top_k": TOP_K, "false_match_rate": FALSE_MATCH_RATE, "rounds": rounds, "epochs": epochs,
            "rows": rows, "seconds": round(time.time() - started, 1)}


def table(report: dict) -> str:
    lines = [f"{'method':<11}{'bits':>5}  {'mAP@10 near-dup':>15}  {'mAP@10 same-obj':>15}  "
             f"{'recall@FMR0.1%':>14}  {'radius':>6}"]
    for r in report["rows"]:
        radius = "-" if r["method"] == "float" else f"{r['radius']:.0f}"
        bits = "f32" if r["method"] == "float" else str(r["bits"])
        lines.append(f"{r['method']:<11}{bits:>5}  {r['map_near_duplicate']:>15.3f}  {r['map_same_object']:>15.3f}  "
                     f"{r['recall_near_duplicate']:>14.3f}  {radius:>6}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.eval", description=__doc__.split("\n")[0])
    ap.add_argument("--bits", default="32,64,128", help="code lengths, comma-separated")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--epochs", type=int, default=30)
    a = ap.parse_args(argv)
    bits = [int(b) for b in a.bits.split(",")]
    from imgfeat.cli import chatter_to

    log = paths.var_dir() / "logs" / "eval.log"
    print(f"eval: describing the corpus and training {a.bits}-bit codes with BigDL "
          f"(library output: {log}) ...", flush=True)
    with chatter_to(log):  # BigDL's JVM prints every block id it stores, and `creating:` per layer
        report = run(bits, a.rounds, a.epochs)
    out = paths.var_dir() / "eval" / "report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["corpus"]))
    print(table(report))
    print(f"({report['seconds']:.0f} s; {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
