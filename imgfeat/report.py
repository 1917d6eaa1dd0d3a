"""The run report of one partition: what a person checks after a run, as one HTML page.

Plain functions over plain values (imgfeat/spark/report.py gathers them with Spark): the choice of
sample pictures, their thumbnails with the kept box drawn, the inline SVG charts, and the page,
rendered by Jinja2 from `templates/report.html`.
"""

from __future__ import annotations

import importlib.resources

import numpy as np

from imgfeat import decode
from imgfeat.layout import STAGES
from imgfeat.stages.crop import padded

THUMB = 192  # longest side of a thumbnail, pixels
SAMPLES = 48
SCORE_BINS = 10


def choose_samples(doubtful: list[str], shuffled: list[str], n: int = SAMPLES) -> list[str]:
    """Image ids to show: the doubtful ones first (no detection, then the lowest scores: the ones to
    look at), up to half of `n`, then the others in `shuffled`'s order (a fixed shuffle: a re-run
    shows the same pictures)."""
    chosen = doubtful[: n // 2]
    taken = set(chosen)
    return chosen + [i for i in shuffled if i not in taken][: n - len(chosen)]


def thumbnails(content: bytes, width: int, height: int, box: tuple[int, int, int, int], label: str | None,
               size: int = THUMB) -> tuple[bytes, bytes]:
    """(the picture with its kept box and label drawn, its crop) as JPEG thumbnails.
    The picture is decoded no larger than the thumbnail needs; the box is in original pixels."""
    import cv2

    rgb = decode.decode_rgb(content, min_size=size)
    scale = rgb.shape[1] / width
    x1, y1, x2, y2 = (round(v * scale) for v in box)
    cx1, cy1, cx2, cy2 = (round(v * scale) for v in padded(box, width, height))
    region = rgb[cy1:max(cy2, cy1 + 1), cx1:max(cx2, cx1 + 1)]  # as the crop stage cuts it
    picture = np.ascontiguousarray(_fit(rgb, size))
    k = picture.shape[1] / rgb.shape[1]
    p1, p2 = (round(x1 * k), round(y1 * k)), (round(x2 * k) - 1, round(y2 * k) - 1)
    cv2.rectangle(picture, p1, p2, (255, 40, 40), 2)
    if label:
        cv2.putText(picture, label, (p1[0] + 3, p1[1] + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return _jpeg(picture), _jpeg(_fit(region, size))


def _fit(rgb: np.ndarray, size: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    k = min(1.0, size / max(h, w))
    if k == 1.0:
        return rgb.copy()
    return cv2.resize(rgb, (max(1, round(w * k)), max(1, round(h * k))), interpolation=cv2.INTER_AREA)


def _jpeg(rgb: np.ndarray) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 82])
    if not ok:
        raise decode.BadImage("undecodable", "JPEG encoding failed")
    return buf.tobytes()


def bars(counts: dict[str, int], ordered: bool = False, width: int = 360, bar: int = 16) -> dict:
    """A horizontal bar chart's geometry for the template: one bar per key, longest first (or in
    the keys' order)."""
    top = max(counts.values(), default=0) or 1
    items = list(counts.items()) if ordered else sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {"height": bar * len(items) + 4, "width": width,
            "bars": [{"y": 2 + i * bar, "w": round((width - 160) * v / top), "name": k, "count": v}
                     for i, (k, v) in enumerate(items)]}


def score_bins(counts: dict[int, int], bins: int = SCORE_BINS) -> dict[str, int]:
    """Bin index (floor(score * bins), the top bin closed) -> count, as the chart's named bins."""
    return {f"{i / bins:.1f}-{(i + 1) / bins:.1f}": counts.get(i, 0) for i in range(bins)}


def render_template(name: str, **values) -> str:
    """A page of imgfeat/templates/ (they ship in the --py-files zip), rendered by Jinja2: values
    escaped, an unknown name an error."""
    import jinja2

    source = importlib.resources.files("imgfeat").joinpath(f"templates/{name}").read_text()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(source).render(**values)


def render(manifest: dict, labels: dict[str, int], scores: dict[str, int], reasons: list[dict],
           samples: list[dict], cores: int, groups: list[dict] | None = None, radius: int | None = None,
           similarity: float | None = None) -> str:
    """The page. `reasons`: {code, count, examples}; `samples`: {image_id, label, score, thumb, crop}
    with thumbnail paths relative to the page; `groups`: the near-duplicate groups, {group_id, count,
    members: [{image_id, hamming, match, thumb?}]} within Hamming distance `radius` (and, with a
    `similarity`, vectors at least that close), or None when they are not computed yet."""
    stages = [{"name": name, **s, "ips": s["rows"] / s["duration_s"] if s.get("duration_s") else None}
              for name, s in manifest["stages"].items()]
    stages.sort(key=lambda s: STAGES.index(s["name"]) if s["name"] in STAGES else len(STAGES))
    return render_template(
        "report.html", m=manifest, stages=stages, cores=cores, labels=bars(labels),
        scores=bars(scores, ordered=True), reasons=reasons, samples=samples, groups=groups, radius=radius,
        similarity=similarity,
        conserved=manifest["published"] + manifest["quarantined"] == manifest["images_in"])
