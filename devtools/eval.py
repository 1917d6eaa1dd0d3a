"""make eval: the quality of the binary codes, on groups of real pictures (`eval_corpus`).

Every evaluation picture goes through ingest, detect, crop and embed in-process (`pipeline`), and
queries all the others of its split. Two splits: `tuning` (the near-duplicate and same-object groups
every default was chosen on) and `held_out` (near-duplicate groups nothing was tuned on), and the
held-out split scored again as `held_junk`: with its ambiguous pairs of groups (a composite and its
own background photo whole, `eval_corpus.held_out_junk`) counted neither as matches nor as false
matches, as the Oxford and Paris buildings benchmarks score with their "junk" images; and
`held_new`, a second held-out split without such pairs (`eval_corpus.held_new`). For each
code length K it compares
- learned: the DeepBit layer, trained with BigDL on Spark from the disjoint training pictures
  (`imgfeat.spark.train_descriptor.fit`, the code the train_descriptor DAG runs);
- projection: the fixed SimHash projection (what runs without a trained layer);
- whitened: with --rounds > 0, the learned layer's start (`deepbit.whitened_init`), before them;
- itq: iterative quantization (faiss's ITQTransform, PCA + learned rotation) on the same training set;
- verified (whole pictures): what the duplicates table publishes, the learned code's pairs within a
  radius kept when the layer's vectors (`Coder.vectors`) have at least a cosine; per rate, the radius
  and cosine with the highest recall;
- and the float embedding (cosine distance) as the upper reference.
Metrics: mAP@10 over the near-duplicate and the same-object queries; recall of near-duplicate
pairs at false-match rates of at most 1% and 0.1% over all pairs of different groups, with a 95%
interval from resampling the groups, the Hamming radius that achieves it (what `duplicates` uses),
and per edit (the share of groups whose original and edited copy match). Then the issue's goal
rows at the default code length, met or not; each recall goal with what bounds it: the float
descriptor's recall at that rate (the ceiling before any code), the code's weakest edit and, for the
held-out split, the value with its junk pairs ignored.
Store scale: a radius is a false-match rate per pair, so a store of millions needs rates far below
0.1%. Over thousands of distinct pictures (`eval_corpus.distractors`) it measures the learned
picture code's rate at the duplicates job's default radius (its candidates, `index.VERIFIED_RADIUS`),
and, at 1e-5 and 1e-6 a pair, the
recall of that code verified by the similarity of its layer's vectors (what the duplicates job
does, `index.DUPLICATE_SIMILARITY`) against the code alone at the radius that rate allows.
Writes var/eval/report.json.

    python -m devtools.eval [--bits 32,64,128] [--rounds 0] [--epochs 30] [--described object,picture]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time

import numpy as np

from imgfeat import deepbit, descriptor, paths

TOP_K = 10
FALSE_MATCH_RATES = (1e-2, 1e-3)
BOOTSTRAP = 1000
# The goals at the default code length (issue 17): near-duplicate recall at each false-match rate,
# on both splits, and same-object mAP@10 at 1.5x the learned 64-bit layer's before (0.150).
GOAL_BITS = 64
GOAL_RECALL = {1e-2: 0.95, 1e-3: 0.80}
GOAL_MAP_SAME_OBJECT = 1.5 * 0.150
# False matches per pair of distinct pictures a store of millions needs (1e-6: ten a picture at ten
# million; the distractors' pairs, about 12 million, resolve no lower).
STORE_RATES = (1e-5, 1e-6)
DISTRACTORS = 5000
JUNK_SPLIT = "held_junk"  # the held-out split, its ambiguous pairs ignored
NEW_SPLIT = "held_new"  # the second held-out split (`eval_corpus.held_new`)


def rate_name(rate: float) -> str:
    return f"{rate * 100:g}%"


def _ranked(row: np.ndarray, query: int) -> np.ndarray:
    """The others than `query` by (distance in `row`, item)."""
    order = np.lexsort((np.arange(len(row)), row.astype(np.float64)))
    return order[order != query]


def average_precision_at_k(dist: np.ndarray, groups: np.ndarray, k: int = TOP_K) -> np.ndarray:
    """AP@k of each item as a query against all others; ties are broken by item order."""
    n = len(groups)
    out = np.zeros(n)
    for i in range(n):
        top = _ranked(dist[i], i)[:k]
        rel = groups[top] == groups[i]
        relevant = min(k, int((groups == groups[i]).sum()) - 1)
        if relevant:
            out[i] = float((np.cumsum(rel) / np.arange(1, len(top) + 1) * rel).sum() / relevant)
    return out


def recall_at_false_match_rate(dist: np.ndarray, groups: np.ndarray, positives: np.ndarray,
                               rate: float = FALSE_MATCH_RATES[-1], ignore: np.ndarray | None = None) -> tuple[float, float]:
    """(recall of the `positives` pairs, threshold) at the largest threshold whose false-match rate
    (pairs of different groups within it, but those `ignore` marks) is at most `rate`."""
    iu = np.triu_indices(len(groups), 1)
    d = dist[iu]
    same = groups[iu[0]] == groups[iu[1]]
    pos = d[same & positives[iu[0]]]
    neg = np.sort(d[~same if ignore is None else ~same & ~ignore[iu]])
    allowed = int(np.floor(rate * len(neg)))
    # the threshold t counts pairs with d <= t: stay below the (allowed+1)-th smallest negative
    limit = neg[allowed] if allowed < len(neg) else np.inf
    candidates = np.unique(np.concatenate([pos, neg]))
    ok = candidates[candidates < limit]
    t = float(ok.max()) if len(ok) else float("-inf")
    return float(np.mean(pos <= t)) if len(pos) else 0.0, t


def recall_interval(dist: np.ndarray, groups: np.ndarray, positives: np.ndarray, threshold: float,
                    reps: int = BOOTSTRAP, seed: int = 0) -> tuple[float, float]:
    """95% interval of the recall of the `positives` pairs within `threshold`, from resampling the
    groups with replacement (pairs of one group are not independent; groups are)."""
    names = np.unique(groups[positives])
    hits, pairs = np.zeros(len(names)), np.zeros(len(names))
    for j, g in enumerate(names):
        idx = np.where((groups == g) & positives)[0]
        d = dist[np.ix_(idx, idx)][np.triu_indices(len(idx), 1)]
        hits[j], pairs[j] = (d <= threshold).sum(), len(d)
    pick = np.random.default_rng(seed).integers(0, len(names), (reps, len(names)))
    r = hits[pick].sum(1) / np.maximum(pairs[pick].sum(1), 1)
    return float(np.quantile(r, 0.025)), float(np.quantile(r, 0.975))


def recall_per_edit(dist: np.ndarray, ids: np.ndarray, groups: np.ndarray, threshold: float) -> dict:
    """Per edit: the share of near-duplicate groups whose `original` and edited copy are within
    `threshold` (ids are `<group>/<edit>.jpg`)."""
    edit = np.array([i.rsplit("/", 1)[-1].rsplit(".", 1)[0] for i in ids])
    originals = {g: i for i, (g, e) in enumerate(zip(groups, edit)) if e == "original"}
    out = {}
    for name in sorted(set(edit) - {"original"}):
        matched = [dist[originals[groups[i]], i] <= threshold for i in np.where(edit == name)[0]
                   if groups[i] in originals]
        out[name] = round(float(np.mean(matched)), 3) if matched else None
    return out


def hamming_matrix(codes: np.ndarray) -> np.ndarray:
    bits = np.unpackbits(codes, axis=1).astype(np.float32)
    return bits @ (1 - bits).T + (1 - bits) @ bits.T


def junk_mask(groups: np.ndarray, pairs: list[tuple[str, str]]) -> np.ndarray:
    """[n, n]: the pairs of items whose groups are one of `pairs` (either way round)."""
    out = np.zeros((len(groups), len(groups)), bool)
    for a, b in pairs:
        out |= np.outer(groups == a, groups == b)
    return out | out.T


def score(dist: np.ndarray, split: dict) -> dict:
    """The metrics of one method on one split (`ids`, `groups`, `kinds` arrays; `ignore`, if any:
    pairs counted neither as matches nor as false matches, and left out of the rankings)."""
    groups, kinds = split["groups"], split["kinds"]
    near = kinds == "near_duplicate"
    ignore = split.get("ignore")
    ap = average_precision_at_k(dist if ignore is None else np.where(ignore, np.inf, dist), groups)
    out = {"map_near_duplicate": round(float(ap[near].mean()), 4),
           "map_same_object": round(float(ap[kinds == "same_object"].mean()), 4) if (kinds == "same_object").any() else None}
    for rate in FALSE_MATCH_RATES:
        recall, radius = recall_at_false_match_rate(dist, groups, near, rate, ignore)
        lo, hi = recall_interval(dist, groups, near, radius)
        out[f"recall@{rate_name(rate)}"] = {
            "recall": round(recall, 4), "interval": [round(lo, 4), round(hi, 4)], "radius": radius,
            "per_edit": recall_per_edit(dist[np.ix_(near, near)], split["ids"][near], groups[near], radius)}
    return out


def score_verified(dist: np.ndarray, sim: np.ndarray, split: dict) -> dict:
    """The duplicates job's method on one split: a pair matches when its codes are within a radius
    (`dist`) and its vectors' cosine (`sim`) is at least a similarity. Per false-match rate, the
    radius and similarity with the highest recall (the code rows choose their radius the same way),
    its interval and per edit. No ranking: its mAP is the vectors' own (cosine order)."""
    groups, kinds = split["groups"], split["kinds"]
    near = kinds == "near_duplicate"
    ignore = split.get("ignore")
    i, j = np.triu_indices(len(groups), 1)
    pos = (groups[i] == groups[j]) & near[i]
    other = groups[i] != groups[j]
    if ignore is not None:
        other &= ~ignore[i, j]
    ap = average_precision_at_k(1 - sim if ignore is None else np.where(ignore, np.inf, 1 - sim), groups)
    out = {"map_near_duplicate": round(float(ap[near].mean()), 4),
           "map_same_object": round(float(ap[kinds == "same_object"].mean()), 4) if (kinds == "same_object").any() else None}
    for rate in FALSE_MATCH_RATES:
        allowed = int(np.floor(rate * other.sum()))
        best = (-1.0, 0, -1.0)
        for radius in range(int(dist.max()) + 1):
            within = dist[i, j] <= radius
            t = similarity_threshold(sim[i, j][within & other], allowed)
            recall = float(np.mean(within[pos] & (sim[i, j][pos] >= t)))
            if recall > best[0]:
                best = (recall, radius, t)
        recall, radius, t = best
        apart = np.where((dist <= radius) & (sim >= t), 0, 1)  # 0: a match
        lo, hi = recall_interval(apart, groups, near, 0)
        out[f"recall@{rate_name(rate)}"] = {
            "recall": round(recall, 4), "interval": [round(lo, 4), round(hi, 4)], "radius": radius,
            "similarity": round(t, 4), "per_edit": recall_per_edit(apart[np.ix_(near, near)], split["ids"][near], groups[near], 0)}
    return out


def reranked(dist: np.ndarray, float_dist: np.ndarray, candidates: int) -> np.ndarray:
    """What `similar` ranks by when it re-ranks: each query's `candidates` nearest by (code distance,
    item), ordered by `float_dist` (of the layer's vectors by default, or of the float descriptors),
    ahead of all the rest."""
    out = np.full(dist.shape, np.inf)
    for q in range(len(dist)):
        near = _ranked(dist[q], q)[:candidates]
        out[q, near] = float_dist[q, near]
    return out


def near_pairs(split: dict) -> tuple[np.ndarray, np.ndarray]:
    """(i, j), i < j: the split's near-duplicate pairs."""
    i, j = np.triu_indices(len(split["groups"]), 1)
    same = (split["groups"][i] == split["groups"][j]) & (split["kinds"][i] == "near_duplicate")
    return i[same], j[same]


def similarity_threshold(candidates: np.ndarray, allowed: int) -> float:
    """The least similarity t at which at most `allowed` of the `candidates` are >= t."""
    s = np.sort(np.asarray(candidates, np.float64))[::-1]
    return float(np.nextafter(s[allowed], np.inf)) if allowed < len(s) else -1.0


def store_scale(coder: descriptor.Coder, radius: int, distractors: dict, splits: dict) -> dict:
    """The learned picture code at store-scale false-match rates (`STORE_RATES`), over the pairs of
    distinct `distractors` ({"picture": descriptors, "cutout", "tile"}): its rate at `radius`;
    per rate, the similarity (`Coder.vectors`) that verifies the code's candidates down to it and
    the recall so verified, against the code alone at the largest radius within that rate."""
    x, cut, tile = distractors["picture"], distractors["cutout"], distractors["tile"]
    i, j = np.triu_indices(len(x), 1)
    distinct = (cut[i] != cut[j]) & (tile[i] != tile[j])
    d = hamming_matrix(coder.codes(x))[i, j][distinct]
    v = coder.vectors(x)
    sim = (v @ v.T)[i, j][distinct]
    pairs = int(distinct.sum())
    found = {}
    for name, split in splits.items():
        a, b = near_pairs(split)
        sv = coder.vectors(split["picture"])
        found[name] = (hamming_matrix(coder.codes(split["picture"]))[a, b], (sv @ sv.T)[a, b])
    recall = lambda keep: {n: round(float(np.mean(keep(*f))), 4) for n, f in found.items()}  # noqa: E731
    out = {"bits": coder.bits, "radius": radius, "distinct_pairs": pairs,
           "false_match_rate": float(np.mean(d <= radius)), "recall": recall(lambda h, s: h <= radius), "at": {}}
    for rate in STORE_RATES:
        allowed = int(np.floor(rate * pairs))
        t = similarity_threshold(sim[d <= radius], allowed)
        within = [r for r in range(coder.bits + 1) if np.sum(d <= r) <= allowed]
        alone = max(within) if within else -1
        out["at"][f"{rate:g}"] = {"similarity": round(t, 4),
                                  "verified_recall": recall(lambda h, s: (h <= radius) & (s >= t)),
                                  "code_alone": {"radius": alone, "recall": recall(lambda h, s: h <= alone)}}
    return out


def _split(items: list, engine) -> dict:
    """A split's labels and its two descriptors: `object` (the pipeline's: of the crop) and
    `picture` (the same backbone over the whole picture)."""
    from imgfeat import pipeline

    rows = pipeline.crops([(i, c) for i, c, _, _ in items], engine)
    return {"ids": np.array([i for i, *_ in items]), "groups": np.array([g for _, _, g, _ in items]),
            "kinds": np.array([k for *_, k in items]),
            "object": pipeline.embeddings(rows, engine),
            "picture": pipeline.embeddings(rows, engine, "picture")}


def run(bits_list: list[int], rounds: int, epochs: int, described: list[str]) -> dict:
    import faiss

    from devtools import eval_corpus
    from imgfeat import pipeline, search
    from imgfeat.engines import get_engine
    from imgfeat.engines.bigdl import runtime as bigdl
    from imgfeat.spark import index, train_descriptor

    started = time.time()
    model_dir = str(paths.model_dir())
    training, evaluation = eval_corpus.build(paths.cache_dir())
    engine = get_engine("openvino", model_dir)
    splits = {"tuning": _split(evaluation, engine), "held_out": _split(eval_corpus.held_out(paths.cache_dir()), engine)}
    # the held-out split again, its composites and their own backgrounds whole ignored (`held_out_junk`)
    held = splits["held_out"]
    splits[JUNK_SPLIT] = {**held, "ignore": junk_mask(held["groups"], eval_corpus.held_out_junk(paths.cache_dir()))}
    splits[NEW_SPLIT] = _split(eval_corpus.held_new(paths.cache_dir()), engine)
    train_rows = [r for r in pipeline.crops(training, engine) if r["crop"] is not None]
    if "picture" in described:
        items = eval_corpus.distractors(paths.cache_dir(), DISTRACTORS)
        distractors = {"picture": pipeline.embeddings(pipeline.crops([(k, c) for k, c, *_ in items], engine), engine,
                                                      "picture"),
                       "cutout": np.array([c for *_, c, _ in items]), "tile": np.array([t for *_, t in items])}
    # what each descriptor is trained on: the training crops, or the training pictures whole
    samples = {"object": [(r["sha256"], r["crop"]) for r in train_rows],
               "picture": [(hashlib.sha256(c).hexdigest(), c) for _, c in training]}

    bigdl.init_spark(engine=train_descriptor.ENGINE_TYPE)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.getOrCreate()
    rows, stores, reranks = [], [], []
    for what in described:
        for name, split in splits.items():
            emb = split[what]
            rows.append({"described": what, "split": name, "method": "float", "bits": 32 * emb.shape[1],
                         **score(1 - emb @ emb.T, split)})
        views = train_descriptor.describe(
            spark, spark.createDataFrame(samples[what], "sha256 string, image binary"), model_dir, what)
        stacked = np.stack([v for _, v in views.collect()], axis=1)  # [views, N, dim]
        x_train = stacked[0]  # the samples themselves
        for bits in bits_list:
            w, c, rep = train_descriptor.fit_described(spark, views, bits, rounds, epochs)
            itq = faiss.ITQTransform(x_train.shape[1], bits, True)
            itq.train(x_train)
            coders = {"learned": descriptor.Coder(bits, "learned", w, c).codes,
                      # the learned layer's start, before BigDL's rounds: what the rounds add
                      **({"whitened": descriptor.Coder(bits, "whitened", *deepbit.whitened_init(stacked, bits)).codes}
                         if rounds else {}),
                      "projection": lambda e: descriptor.binary_codes(e, bits),
                      "itq": lambda e: np.packbits(itq.apply(e) > 0, axis=1)}
            if what == "picture":
                coder = descriptor.Coder(bits, "learned", w, c)
                stores.append(store_scale(coder, index.default_radius("picture-deepbit", bits, "picture", verified=True),
                                          distractors, {n: splits[n] for n in ("tuning", "held_out")}))
            for name, split in splits.items():
                for method, codes in coders.items():
                    rows.append({"described": what, "split": name, "method": method, "bits": bits,
                                 **score(hamming_matrix(codes(split[what])), split),
                                 **({"training": rep} if method == "learned" and name == "tuning" else {})})
                if what == "object" and name != JUNK_SPLIT:  # what `similar` returns: the code's nearest, re-ranked by the
                    # layer's vectors (the default) or by the float descriptor (shards without vectors)
                    v = descriptor.Coder(bits, "learned", w, c).vectors(split[what])
                    for by, sim in (("vectors", v @ v.T), ("float", split[what] @ split[what].T)):
                        ap = average_precision_at_k(reranked(hamming_matrix(coders["learned"](split[what])), 1 - sim,
                                                             search.RERANK_CANDIDATES), split["groups"])
                        kinds = split["kinds"]
                        reranks.append({"split": name, "bits": bits, "by": by, "candidates": search.RERANK_CANDIDATES,
                                        "map_near_duplicate": round(float(ap[kinds == "near_duplicate"].mean()), 4),
                                        "map_same_object": round(float(ap[kinds == "same_object"].mean()), 4)
                                        if (kinds == "same_object").any() else None})
                if what == "picture":  # what the duplicates table publishes: the code verified by its vectors
                    v = coder.vectors(split[what])
                    rows.append({"described": what, "split": name, "method": "verified", "bits": bits,
                                 **score_verified(hamming_matrix(coder.codes(split[what])), v @ v.T, split)})
        views.unpersist()
    spark.stop()
    corpus = {"training_pictures": len(training), "training_crops": len(train_rows)}
    for name, split in splits.items():
        if name == JUNK_SPLIT:
            continue
        kinds = split["kinds"]
        corpus[name] = {"pictures": len(kinds),
                        "near_duplicate_groups": len(set(split["groups"][kinds == "near_duplicate"])),
                        "same_object_groups": len(set(split["groups"][kinds == "same_object"]))}
    return {"corpus": corpus, "described": described, "top_k": TOP_K, "false_match_rates": list(FALSE_MATCH_RATES),
            "rounds": rounds, "epochs": epochs, "rows": rows, "goals": goals(rows, reranks), "store_scale": stores,
            "rerank": reranks,
            "seconds": round(time.time() - started, 1)}


def _row(rows: list[dict], described: str, split: str, method: str, bits: int) -> dict | None:
    return next((r for r in rows if (r.get("described", "object"), r["split"], r["method"], r["bits"])
                 == (described, split, method, bits)), None)


def _limits(rows: list[dict], what: str, split: str, row: dict | None, key: str) -> dict:
    """What bounds a recall goal: the float descriptor's recall (the ceiling before any code) and the
    code's weakest edit, when measured."""
    ref = next((r for r in rows if (r.get("described", "object"), r["split"], r["method"]) == (what, split, "float")), None)
    out = {"ceiling": ref[key]["recall"] if ref else None, "weakest_edit": None}
    per_edit = (row or {}).get(key, {}).get("per_edit")
    if per_edit:
        out["weakest_edit"] = list(min(per_edit.items(), key=lambda kv: kv[1]))
    return out


def _margin(rows: list[dict], what: str, split: str, bits: int, metrics: list) -> float | None:
    """The learned code's least lead over the projection and ITQ across `metrics`, None unmeasured."""
    learned = _row(rows, what, split, "learned", bits)
    others = [_row(rows, what, split, m, bits) for m in ("projection", "itq")]
    if not (learned and all(others)):
        return None
    return round(min(f(learned) - max(f(o) for o in others) for f in metrics), 4)


def goals(rows: list[dict], reranks: list[dict] = ()) -> list[dict]:
    """The issue's goal rows, per descriptor: [{goal, value, met}] (value None when not measured);
    a recall goal also says what bounds it (`_limits`: ceiling, weakest_edit); the search's
    re-ranked same-object mAP beside the code's."""
    out = []
    splits = [s for s in ("tuning", "held_out", NEW_SPLIT) if any(r["split"] == s for r in rows)]
    for what in dict.fromkeys(r.get("described", "object") for r in rows):
        # the code alone, and (pictures) the code verified by its vectors: the duplicates table's method
        for method in ("learned", "verified"):
            for split in splits:
                row = _row(rows, what, split, method, GOAL_BITS)
                if method == "verified" and row is None:
                    continue
                for rate, target in GOAL_RECALL.items():
                    key = f"recall@{rate_name(rate)}"
                    value = row[key]["recall"] if row else None
                    name = "learned" if method == "learned" else "learned, verified by its vectors,"
                    junk = _row(rows, what, JUNK_SPLIT, method, GOAL_BITS) if split == "held_out" else None
                    out.append({"goal": f"{what} {split}: {name} {GOAL_BITS}-bit near-duplicate {key} >= {target}",
                                "value": value, "met": value is not None and value >= target,
                                **_limits(rows, what, split, row, key),
                                **({"junk_ignored": junk[key]["recall"]} if junk else {})})
        row = _row(rows, what, "tuning", "learned", GOAL_BITS)
        value = row["map_same_object"] if row else None
        out.append({"goal": f"{what} tuning: learned {GOAL_BITS}-bit mAP@10 same-object >= {GOAL_MAP_SAME_OBJECT:.3f}",
                    "value": value, "met": value is not None and value >= GOAL_MAP_SAME_OBJECT})
        for r in reranks if what == "object" else ():
            if (r["split"], r["bits"], r.get("by", "float")) == ("tuning", GOAL_BITS, "vectors"):
                out.append({"goal": f"object tuning: search ({GOAL_BITS}-bit code's {r['candidates']} nearest re-ranked "
                                    f"by its vectors) mAP@10 same-object >= {GOAL_MAP_SAME_OBJECT:.3f}",
                            "value": r["map_same_object"], "met": r["map_same_object"] >= GOAL_MAP_SAME_OBJECT})
        for bits in sorted({r["bits"] for r in rows if r["method"] == "learned"}):
            for split in splits:
                metrics = [lambda r, k=f"recall@{rate_name(rate)}": r[k]["recall"] for rate in FALSE_MATCH_RATES]
                if split == "tuning":
                    metrics.append(lambda r: r["map_same_object"])
                margin = _margin(rows, what, split, bits, metrics)
                junk = _margin(rows, what, JUNK_SPLIT, bits, metrics) if split == "held_out" else None
                out.append({"goal": f"{what} {split}: learned {bits}-bit ahead of projection and itq on every recall"
                                    + (" and same-object mAP" if split == "tuning" else ""),
                            "value": margin, "met": margin is not None and margin > 0,
                            **({"junk_ignored": junk} if junk is not None else {})})
    return out


def table(report: dict) -> str:
    rates = [rate_name(r) for r in report["false_match_rates"]]
    head = f"{'described':<10}{'split':<10}{'method':<11}{'bits':>5}  {'mAP@10 dup':>10}  {'mAP@10 obj':>10}"
    for r in rates:
        head += f"  {'recall@' + r + ' [95%]':>24}  {'radius':>6}"
    lines = [head]
    for row in report["rows"]:
        bits = "f32" if row["method"] == "float" else str(row["bits"])
        obj = "-" if row["map_same_object"] is None else f"{row['map_same_object']:.3f}"
        line = f"{row.get('described', 'object'):<10}{row['split']:<10}{row['method']:<11}{bits:>5}  {row['map_near_duplicate']:>10.3f}  {obj:>10}"
        for r in rates:
            m = row[f"recall@{r}"]
            radius = "-" if row["method"] == "float" else f"{m['radius']:.0f}"
            line += f"  {m['recall']:>8.3f} [{m['interval'][0]:.3f}-{m['interval'][1]:.3f}]  {radius:>6}"
        lines.append(line)
    verified = [row for row in report["rows"] if row["method"] == "verified"]
    if verified:
        lines += ["", "verified: a match within the radius whose vectors' cosine is at least (per rate, radius / similarity):"]
        lines += [f"  {row['split']:<10}{row['bits']:>4} bits  " + "  ".join(
            f"{r}: {row[f'recall@{r}']['radius']} / {row[f'recall@{r}']['similarity']:.3f}" for r in rates) for row in verified]
    edits = sorted(report["rows"][0][f"recall@{rates[0]}"]["per_edit"])
    lines += ["", f"per edit at the default {GOAL_BITS} bits (share of groups whose original and edit match):",
              f"{'described':<10}{'split':<10}{'method':<11}{'at':>5}  " + "  ".join(f"{e:>12}" for e in edits)]
    for row in report["rows"]:
        if row["method"] == "float" or row["bits"] == GOAL_BITS:
            for r in rates:
                per = row[f"recall@{r}"]["per_edit"]
                lines.append(f"{row.get('described', 'object'):<10}{row['split']:<10}{row['method']:<11}{r:>5}  "
                             + "  ".join(f"{per[e]:>12.3f}" for e in edits))
    for st in report.get("store_scale", []):
        if st is report["store_scale"][0]:
            lines += ["", f"store scale: learned picture codes over {st['distinct_pairs']:,} pairs of distinct pictures"
                          " (recall: tuning / held-out near-duplicate pairs):"]
        rec = lambda r: f"{r['tuning']:.3f} / {r['held_out']:.3f}"  # noqa: E731
        lines.append(f"  {st['bits']:>3} bits, radius {st['radius']}: {st['false_match_rate']:.1e} of them match, "
                     f"recall {rec(st['recall'])}")
        for rate, at in st["at"].items():
            lines.append(f"      at {rate} a pair: verified (similarity >= {at['similarity']:.4f}) {rec(at['verified_recall'])}; "
                         f"code alone (radius {at['code_alone']['radius']}) {rec(at['code_alone']['recall'])}")
    for r in report.get("rerank", []):
        if r is report["rerank"][0]:
            lines += ["", f"search (the learned object code's {r['candidates']} nearest, re-ranked by the layer's vectors "
                          "as similar does, or by the float descriptor as --rerank does for shards without vectors): "
                          "mAP@10 near-duplicate / same-object"]
        same = "-" if r["map_same_object"] is None else f"{r['map_same_object']:.3f}"
        lines.append(f"  {r['split']:<9}{r['bits']:>4} bits  by {r.get('by', 'float'):<8} {r['map_near_duplicate']:.3f} / {same}")
    lines += ["", "goals:"]
    for g in report["goals"]:
        value = "-" if g["value"] is None else f"{g['value']:.3f}"
        bounds = []
        if g.get("ceiling") is not None:
            bounds.append(f"float descriptor {g['ceiling']:.3f}")
        if g.get("weakest_edit"):
            bounds.append(f"weakest edit {g['weakest_edit'][0]} {g['weakest_edit'][1]:.3f}")
        if g.get("junk_ignored") is not None:
            bounds.append(f"its junk pairs ignored {g['junk_ignored']:.3f}")
        lines.append(f"  {'met    ' if g['met'] else 'NOT met'}  {g['goal']}: {value}"
                     + (f"  ({'; '.join(bounds)})" if bounds else ""))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.eval", description=__doc__.split("\n")[0])
    ap.add_argument("--bits", default="32,64,128", help="code lengths, comma-separated")
    ap.add_argument("--rounds", type=int, default=0,
                    help="rounds of BigDL's optimizer after the whitened start (default: the DAG's, 0)")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--described", default="object,picture",
                    help="descriptors to evaluate: object (the crop's, published) and picture (the whole picture's)")
    a = ap.parse_args(argv)
    bits = [int(b) for b in a.bits.split(",")]
    from imgfeat.cli import chatter_to

    log = paths.var_dir() / "logs" / "eval.log"
    refine = f", {a.rounds} rounds of BigDL's optimizer each" if a.rounds else ""
    print(f"eval: describing the corpus and learning {a.bits}-bit codes{refine} (library output: {log}) ...", flush=True)
    with chatter_to(log):  # BigDL's JVM prints every block id it stores, and `creating:` per layer
        report = run(bits, a.rounds, a.epochs, a.described.split(","))
    out = paths.var_dir() / "eval" / "report.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report["corpus"]))
    print(table(report))
    print(f"({report['seconds']:.0f} s; {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
