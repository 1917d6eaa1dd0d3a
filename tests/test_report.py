"""The run report's parts (imgfeat/report.py): the sample choice, the thumbnails, the page."""

from __future__ import annotations

import io
import re

import numpy as np
from PIL import Image

from conftest import jpeg
from imgfeat import report


def test_doubtful_pictures_come_first_then_the_fixed_shuffle_without_repeats():
    doubtful = [f"d{i}" for i in range(30)]
    shuffled = ["d3", "a", "b", "c"]
    assert report.choose_samples(doubtful, shuffled, n=8) == ["d0", "d1", "d2", "d3", "a", "b", "c"]
    assert report.choose_samples([], ["a", "b"], n=8) == ["a", "b"]


def test_the_thumbnail_shows_the_box_where_it_is_and_the_crop_is_the_padded_box(photos):
    rgb = photos["chelsea"]  # 451 x 300
    h, w = rgb.shape[:2]
    box = (100, 50, 300, 250)
    thumb, crop = report.thumbnails(jpeg(rgb), w, h, box, "cat")
    t = np.asarray(Image.open(io.BytesIO(thumb)))
    assert max(t.shape[:2]) == report.THUMB
    k = t.shape[1] / w
    # the box's left edge is drawn red, where the box is in the thumbnail
    x, y = round(box[0] * k), round(150 * k)
    assert t[y, x, 0] > 200 and t[y, x, 1] < 90
    c = Image.open(io.BytesIO(crop))
    # the crop stage's padding: 8% of 200 px each side, 232 x 232 at the decoded scale
    assert abs(c.size[0] / c.size[1] - 1) < 0.03


def test_the_page_shows_the_counts_reasons_charts_and_samples():
    manifest = {"partition_date": "2026-11-03", "input": "/in", "model": "m", "commit_id": "c", "revision": 1,
                "images_in": 5, "published": 3, "quarantined": 2,
                "images_by_source": {"inferred": 2, "reused_this_partition": 1, "reused_other_partitions": 0},
                "stages": {"publish": {"rows": 3, "quarantined": 2, "duration_s": 2.0, "bytes": 2_000_000},
                           "ingest": {"rows": 5, "quarantined": 2, "duration_s": 0.5, "bytes": 1_000_000}}}
    html = report.render(manifest, {"cat": 2, "(none)": 1}, report.score_bins({0: 1, 9: 2}),
                         [{"code": "truncated", "count": 2, "examples": ["a.jpg", "b<x>.jpg"]}],
                         [{"image_id": "c.jpg", "label": "cat", "score": 0.91, "thumb": "thumbs/0.jpg",
                           "crop": "thumbs/0-crop.jpg"}], cores=2)
    assert '5 ingested = <span id="published">3</span> published' in html
    assert 'class="ok"' in html and "does not add up" not in html
    assert html.index("<td>ingest</td>") < html.index("<td>publish</td>")
    assert "<td>10.0</td><td>5.00</td><td>1.0</td>" in re.sub(r">\s+<", "><", html)  # ingest: 5 rows in 0.5 s on 2 cores, 1 MB
    assert "b&lt;x&gt;.jpg" in html  # ids are escaped
    assert html.count('class="thumb"') == 1 and 'src="thumbs/0-crop.jpg"' in html
    assert html.count("<rect") == 2 + 10  # two labels, ten score bins
    broken = report.render({**manifest, "published": 2}, {}, report.score_bins({}), [], [], cores=2)
    assert "does not add up" in broken and 'class="bad"' in broken


def test_the_page_shows_duplicate_groups_as_rows_with_distances_or_says_they_are_pending():
    manifest = {"partition_date": "2026-11-03", "input": "/in", "model": "m", "commit_id": "c", "revision": 1,
                "images_in": 3, "published": 3, "quarantined": 0,
                "images_by_source": {"inferred": 3, "reused_this_partition": 0, "reused_other_partitions": 0},
                "stages": {"publish": {"rows": 3, "quarantined": 0, "duration_s": 2.0, "bytes": 2_000_000}}}
    args = (manifest, {"cup": 3}, report.score_bins({9: 3}), [], [])
    groups = [{"group_id": "dt=2026-11-01/a.jpg", "count": 2, "members": [
        {"image_id": "b.jpg", "hamming": 0, "match": "dt=2026-11-01/a.jpg", "thumb": "thumbs/d0.jpg"},
        {"image_id": "c.jpg", "hamming": 3, "match": "dt=2026-11-03/b.jpg", "thumb": "thumbs/d1.jpg"}]}]
    html = re.sub(r"\s+", " ", report.render(*args, cores=2, groups=groups, radius=6))
    assert html.count('class="group"') == 1 and html.count('class="dupthumb"') == 2
    assert ('<code>c.jpg</code> · hamming <span class="hamming">3</span> to <code>dt=2026-11-03/b.jpg</code>' in html)
    assert "within Hamming distance 6" in html and "2 pictures of this partition" in html
    assert 'id="no-duplicates"' in report.render(*args, cores=2, groups=[], radius=6)
    verified = re.sub(r"\s+", " ", report.render(*args, cores=2, groups=groups, radius=11, similarity=0.835))
    assert "within Hamming distance 11 of another picture's (and vectors of cosine 0.835 or more)," in verified
    assert 'id="duplicates-pending"' in report.render(*args, cores=2)


def test_the_search_page_says_when_the_hits_were_reranked_and_shows_their_cosine():
    page = dict(warehouses=["/w"], warehouse="/w", image_id="", k=2, asked="q.jpg", index="deepbit64-x, 9 images",
                error=None, candidates=100)
    plain = [{"key": "dt=2026-11-01/a.jpg", "hamming": 3, "label": "cup"}]
    html = re.sub(r"\s+", " ", report.render_template("search.html", **page, hits=plain))
    assert "by Hamming distance of their codes." in html and "cosine" not in html
    reranked = [{**plain[0], "cosine": 0.81234, "reranked_by": "vectors"}]
    html = re.sub(r"\s+", " ", report.render_template("search.html", **page, hits=reranked))
    assert "by Hamming distance of their codes: the 100 nearest re-ranked by the cosine of their vectors." in html
    assert 'hamming <span class="hamming">3</span> · cosine <span class="cosine">0.812</span>' in html
