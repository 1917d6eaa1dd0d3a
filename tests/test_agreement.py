"""devtools.agreement: how a precision's results are compared with f32's (the bench's gates)."""

from __future__ import annotations

from devtools import agreement


def box(label, x1, y1, x2, y2):
    return {"label": label, "x1": x1, "y1": y1, "x2": x2, "y2": y2}


def test_the_same_object_is_the_same_label_with_boxes_of_iou_at_least_0_9():
    a = box("dog", 0, 0, 100, 100)
    assert agreement.same_object(a, box("dog", 0, 0, 100, 95))  # IoU 0.95
    assert not agreement.same_object(a, box("dog", 0, 0, 100, 85))  # IoU 0.85
    assert not agreement.same_object(a, box("cat", 0, 0, 100, 100))
    none = box(None, None, None, None, None)
    assert agreement.same_object(none, dict(none)) and not agreement.same_object(a, none)


def test_f32_against_itself_agrees_on_every_picture(photos, model_dir):
    from conftest import jpeg

    files = [(f"{name}.jpg", jpeg(rgb)) for name, rgb in sorted(photos.items())]
    r = agreement.compare(files, model_dir, "f32")
    assert r["pictures"] == len(files) and r["kept_agree"] == 1.0
    assert r["cosine_min"] > 0.9999 and agreement.passes(r)
