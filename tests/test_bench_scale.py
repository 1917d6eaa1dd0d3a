"""The scale benchmark's code at a small size (`make bench BENCH_ARGS=--scale` runs it at 1 and 10
million rows): synthetic stores, one partition added to the index, reuse, search, exactness."""

import json

import pytest

pytestmark = pytest.mark.spark


def test_the_scale_bench_measures_two_sizes_and_checks_exactness(spark, tmp_path):
    from devtools import bench_scale

    report = bench_scale.run([10_000, 20_000], per_partition=5_000, base=tmp_path, spark=spark)
    # 2% of the rows are planted in groups of 10 codes within 2 bits: each of them is a duplicate
    # (two random 64-bit codes fall within 5 bits of each other with odds of about 1 in 2 * 10^12)
    assert report["exactness"] == {"rows": 5_000, "duplicate_images": 100,
                                   "duplicates_exact": {"mih": True, "scan": True}, "similar_exact": True}
    small, large = report["results"]
    assert (small["rows"], small["indexed_images"], large["indexed_images"]) == (10_000, 10_000, 20_000)
    assert small["method"] == large["method"] == "scan"  # at radius 5, a store this small is cheaper scanned
    assert small["duplicate_images"] == large["duplicate_images"] == 100
    assert all(r["peak_rss_mb"]["add"]["jvm"] > 0 for r in report["results"])
    # the default search re-ranks by the shards' vectors: over every partition but the one added
    assert [r["reranked"]["rows"] for r in report["results"]] == [5_000, 15_000]
    assert json.loads((tmp_path / "report.json").read_text()) == report


def test_the_verified_bench_finds_the_planted_groups_among_crowded_codes(spark, tmp_path):
    """Codes crowded round 200 centres (100 candidates within 14 bits a picture at 20,000 rows: two
    codes of a centre are 12 bits apart at most), random vectors: verified, the duplicates are the
    partition's planted pictures, all of them."""
    from devtools import bench_scale

    report = bench_scale.run_verified([20_000], per_partition=5_000, base=tmp_path, spark=spark, centres=200,
                                      alone=False)
    [result] = report["results"]
    assert (result["verified"]["duplicate_images"], result["verified"]["planted_found"]) == (100, 100)
    assert (report["radius"], result["candidates_a_picture"]) == (14, 100.0) and "radius_alone" not in result
    assert json.loads((tmp_path / "verified.json").read_text()) == report
