"""The SSD's own pre- and post-processing, shared by both engines (TF's, reimplemented).

Both engines run only the network: MobileNetV2 and the 12 box-predictor heads, from an input that
is already normalised. TF's frozen graph also holds a per-image resize loop before the network and a
per-image NMS loop after it; converted to OpenVINO they were 55% of the detector's time (profiled:
`Loop` nodes 289 of 526 ms for a batch of 16), for work that numpy and OpenCV do here:
  preprocess   uint8 NHWC RGB [N,300,300,3] -> float32 NCHW in [-1, 1] (TF's Preprocessor; the
               images are already 300x300, so its resize is the identity)
  postprocess  box encodings [N,1917,4] + class logits [N,1917,91] -> Detections: decode against the
               anchors, sigmoid, per-class score filter, clip, class-aware NMS (TF's postprocessor)
The constants are the frozen graph's own; `bigdl.convert` checks them against it.
"""

from __future__ import annotations

import numpy as np

from imgfeat.engines.common import Detections

NUM_CLASSES = 91  # logits include background (0); output ids are COCO 1..90
BOX_SCALES = np.array([10.0, 10.0, 5.0, 5.0], np.float32)  # TF's FasterRcnnBoxCoder (y, x, h, w)
# TF postprocessing as exported in this frozen graph (convert() checks them): per-class
# score filter > 0.3, boxes clipped to [0, 1], NMS IoU 0.6, 100 per class, 100 in total.
SCORE_THRESHOLD = 0.3
IOU_THRESHOLD = 0.6
MAX_PER_CLASS = 100
MAX_TOTAL = 100


def preprocess(batch: np.ndarray) -> np.ndarray:
    """uint8 NHWC RGB [N,300,300,3] -> float32 NCHW in [-1, 1] (TF's Preprocessor: x/127.5 - 1)."""
    x = np.asarray(batch, np.float32).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x * np.float32(1 / 127.5) - np.float32(1.0))


def decode_boxes(box_encodings: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """TF's FasterRcnnBoxCoder.decode: [..., 4] (ty, tx, th, tw) -> (ymin, xmin, ymax, xmax)."""
    ha, wa = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    ya, xa = anchors[:, 0] + ha / 2, anchors[:, 1] + wa / 2
    t = box_encodings / BOX_SCALES
    h, w = np.exp(t[..., 2]) * ha, np.exp(t[..., 3]) * wa
    yc, xc = t[..., 0] * ha + ya, t[..., 1] * wa + xa
    return np.stack([yc - h / 2, xc - w / 2, yc + h / 2, xc + w / 2], -1)


def postprocess(box_encodings: np.ndarray, logits: np.ndarray, anchors: np.ndarray,
                score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = IOU_THRESHOLD,
                max_per_class: int = MAX_PER_CLASS, max_total: int = MAX_TOTAL,
                pictures: np.ndarray | None = None) -> list[Detections]:
    """TF's postprocessing: decode, sigmoid, per-class score filter, clip to the image, drop empty
    boxes, class-aware NMS, at most `max_per_class` per class and `max_total` in all, by score.
    `pictures` [N, 960]: each picture's descriptor, from the same inference (`Detections.picture`)."""
    import cv2

    boxes = np.clip(decode_boxes(box_encodings, anchors), 0.0, 1.0)
    scores = 1.0 / (1.0 + np.exp(-np.asarray(logits[..., 1:], np.float32)))  # skip background
    out = []
    for i, (b, s) in enumerate(zip(boxes, scores)):
        anchor, cls = np.nonzero(s > score_threshold)
        bx, sc = b[anchor], s[anchor, cls]
        ok = (bx[:, 2] > bx[:, 0]) & (bx[:, 3] > bx[:, 1])  # TF drops boxes clipped to zero area
        bx, sc, cls = bx[ok], sc[ok], cls[ok]
        # OpenCV's batched NMS is per class; its boxes are (x, y, w, h)
        xywh = np.stack([bx[:, 1], bx[:, 0], bx[:, 3] - bx[:, 1], bx[:, 2] - bx[:, 0]], 1)
        keep = np.asarray(cv2.dnn.NMSBoxesBatched(xywh.tolist(), sc.tolist(), cls.tolist(),
                                                  score_threshold, iou_threshold), int).reshape(-1)
        keep = keep[np.lexsort((-sc[keep], cls[keep]))]  # by class, then score: rank within class
        first = np.r_[0, np.flatnonzero(np.diff(cls[keep])) + 1]
        rank = np.arange(len(keep)) - np.repeat(first, np.diff(np.r_[first, len(keep)]))
        keep = keep[rank < max_per_class] if len(keep) else keep
        keep = keep[np.argsort(-sc[keep], kind="stable")][:max_total]
        out.append(Detections(bx[keep].astype(np.float32), (cls[keep] + 1).astype(np.int32),
                              sc[keep].astype(np.float32), None if pictures is None else pictures[i]))
    return out
