"""Decoding and validation on a corpus of awkward and broken files built from a real photo."""

import numpy as np
import pytest

from devtools import badfiles
from imgfeat import decode


# Published cases whose displayed size is not the photo's (451 x 300).
SIZES = {"exif-flipped.jpg": (300, 451), "gray16-large.png": (4000, 3000)}


@pytest.fixture(scope="module")
def corpus(photos):
    return badfiles.build(photos["chelsea"])


# notes.txt is refused by its extension, which is ingest's check (tests/test_stages.py).
@pytest.mark.parametrize("name", sorted(n for n in badfiles.EXPECTED if not n.endswith(".txt")))
def test_each_file_is_accepted_or_rejected_with_its_reason(corpus, name):
    expected = badfiles.EXPECTED[name]
    if expected is None:
        info = decode.inspect(corpus[name])
        w, h = SIZES.get(name, (451, 300))
        assert (info.width, info.height) == (w, h)
        assert info.orientation_ok is (name != "exif-garbage.png")
        rgb = decode.decode_rgb(corpus[name])
        assert rgb.shape == (h, w, 3) and rgb.dtype == np.uint8
    else:
        with pytest.raises(decode.BadImage) as e:
            decode.inspect(corpus[name])
        assert e.value.code == expected
        assert e.value.reason.startswith(expected + ":")


def test_pixel_limit_is_checked_before_decoding():
    bomb = badfiles.declared_huge_png(20000, 20000)
    with pytest.raises(decode.BadImage, match=r"^too_many_pixels: 20000x20000 > 100000000"):
        decode.decode_rgb(bomb)
    with pytest.raises(decode.BadImage, match="too_many_pixels"):
        decode.inspect(badfiles.build(np.zeros((20, 20, 3), np.uint8))["declared-huge.png"], max_pixels=10**6)


def test_sixteen_bit_is_scaled_not_clipped(corpus, photos):
    gray8 = decode.decode_rgb(corpus["grayscale.JPG"]).astype(int)
    gray16 = decode.decode_rgb(corpus["gray16.png"]).astype(int)
    assert gray16.max() < 255 and abs(gray16.mean() - gray8.mean()) < 2


def test_alpha_is_composited_over_white(corpus, photos):
    rgb = decode.decode_rgb(corpus["alpha.png"]).astype(int)
    original = photos["chelsea"].astype(int)
    expected = (original * 200 + 255 * 55) / 255  # alpha 200 over white
    assert np.abs(rgb - expected).max() <= 2


def test_cmyk_and_gif_become_rgb(corpus, photos):
    cmyk = decode.decode_rgb(corpus["cmyk.jpg"]).astype(int)
    assert np.abs(cmyk.mean(axis=(0, 1)) - photos["chelsea"].mean(axis=(0, 1))).max() < 6
    gif = decode.decode_rgb(corpus["animated.gif"]).astype(int)  # the first frame, unrotated
    assert np.abs(gif - photos["chelsea"].astype(int)).mean() < 12


def test_exif_orientation_is_applied(photos):
    import io

    from PIL import Image

    img = Image.fromarray(photos["chelsea"])  # 451 x 300
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, "JPEG", exif=exif.tobytes())
    info = decode.inspect(buf.getvalue())
    assert (info.width, info.height) == (300, 451)
    assert decode.decode_rgb(buf.getvalue()).shape == (451, 300, 3)


def test_png_encoding_is_lossless(photos):
    crop = photos["coffee"][10:200, 20:300]
    assert np.array_equal(decode.decode_rgb(decode.encode_png(crop)), crop)


def _save(img, fmt, **kw) -> bytes:
    import io

    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def _old_to_8bit(arr):
    """The formula decode used before (a float64 copy of the whole image)."""
    arr = np.asarray(arr, dtype=np.float64)
    top = 65535.0 if arr.max() > 255 else 255.0
    return np.clip(arr * (255.0 / top), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_unreadable_exif_is_decoded_as_stored(photos, fmt):
    from PIL import Image, ImageOps

    data = _save(Image.fromarray(photos["chelsea"]), fmt, exif=b"Exif\0\0garbage", lossless=True)
    with pytest.raises(SyntaxError):  # the trigger: Pillow cannot read this EXIF
        ImageOps.exif_transpose(Image.open(__import__("io").BytesIO(data)))
    assert decode.inspect(data) == decode.ImageInfo(451, 300, fmt, False)
    assert np.array_equal(decode.decode_rgb(data), photos["chelsea"])  # lossless, unrotated


def test_orientation_survives_an_exif_that_pillow_cannot_rewrite(corpus, photos):
    import io
    import struct

    from PIL import Image, ImageOps

    data = corpus["exif-flipped.jpg"]
    with pytest.raises(struct.error):  # exif_transpose fails while writing the EXIF back
        ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    info = decode.inspect(data)
    assert (info.width, info.height, info.orientation_ok) == (300, 451, True)
    stored = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert np.array_equal(decode.decode_rgb(data), np.rot90(stored, -1))  # orientation 6 applied


@pytest.mark.parametrize("fmt", ["ICO", "EPS", "PCX", "TGA", "PPM", "SGI"])
def test_formats_outside_the_readme_are_undecodable(photos, fmt):
    from PIL import Image

    data = _save(Image.fromarray(photos["chelsea"][:64, :64]), fmt)
    with pytest.raises(decode.BadImage, match="^undecodable: not a recognised image format$"):
        decode.inspect(data)
    with pytest.raises(decode.BadImage, match="^undecodable"):
        decode.decode_rgb(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_the_readme_formats_decode(photos, fmt):
    from PIL import Image

    info = decode.inspect(_save(Image.fromarray(photos["coffee"]), fmt))
    assert (info.width, info.height, info.format, info.orientation_ok) == (600, 400, fmt, True)


@pytest.mark.parametrize("mode, values", [
    ("I;16", [0, 1, 255, 256, 257, 514, 1000, 32767, 65534, 65535]),  # > 255: scaled by 65535
    ("I;16", [0, 1, 7, 100, 200, 254, 255]),  # all <= 255: scaled by 255, i.e. kept
    ("I", [-5, 0, 256, 65535, 70000, 2**31 - 1]),  # 32-bit: clipped
    ("F", [-1.5, 0.0, 0.4, 254.9, 255.0, 300.7, 65535.0, 1e9]),
    ("F", [0.0, 0.99, 127.5, 254.99]),
])
def test_high_depth_gray_matches_the_old_float_formula(mode, values):
    from PIL import Image

    rng = np.random.RandomState(0)
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    arr = rng.choice(np.array(values, dtype), size=(37, 53)).astype(dtype)
    arr[0, : len(values)] = values  # every value present at least once
    img = Image.fromarray(arr, mode) if mode != "I;16" else Image.fromarray(arr)
    rgb = decode.decode_rgb(_save(img, "TIFF" if mode != "I;16" else "PNG"))
    assert rgb.shape == (37, 53, 3)
    assert np.array_equal(rgb[:, :, 0], _old_to_8bit(arr)) and (rgb == rgb[:, :, :1]).all()


def test_strip_by_strip_conversion_equals_whole_image(corpus, monkeypatch):
    whole = {n: decode.decode_rgb(corpus[n]) for n in ("alpha.png", "gray16.png", "animated.gif", "cmyk.jpg")}
    monkeypatch.setattr(decode, "STRIP_PIXELS", 1000)  # many strips, one of them partial
    for name, rgb in whole.items():
        assert np.array_equal(decode.decode_rgb(corpus[name]), rgb), name


def test_min_size_decodes_small_with_both_sides_kept(corpus, photos):
    from PIL import Image

    # 16-bit PNG 4000 x 3000 -> reduced 10 times (Image.reduce: the mean of each 10 x 10 block).
    full = decode.decode_rgb(corpus["gray16-large.png"])
    small = decode.decode_rgb(corpus["gray16-large.png"], min_size=300)
    assert small.shape == (300, 400, 3)
    blocks = full.reshape(300, 10, 400, 10, 3).mean(axis=(1, 3))
    assert np.abs(small - blocks).max() <= 1
    # JPEG 1804 x 1200 -> libjpeg's 1/4 scale (451 x 300); 1/8 would be < 300.
    big = np.asarray(Image.fromarray(photos["chelsea"]).resize((1804, 1200), Image.BICUBIC))
    data = _save(Image.fromarray(big), "JPEG", quality=90)
    assert decode.decode_rgb(data, min_size=300).shape == (300, 451, 3)
    assert decode.decode_rgb(data, min_size=301).shape == (600, 902, 3)
    assert decode.decode_rgb(data, min_size=5000).shape == (1200, 1804, 3)  # never enlarged
    assert decode.decode_rgb(data).shape == (1200, 1804, 3)
    # Rotated by EXIF: the orientation is applied to the reduced pixels.
    exif = Image.Exif()
    exif[0x0112] = 8
    rotated = _save(Image.fromarray(big), "JPEG", quality=90, exif=exif.tobytes())
    assert np.array_equal(decode.decode_rgb(rotated, min_size=300), np.rot90(decode.decode_rgb(data, min_size=300)))


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.9, 0.99])
def test_inspect_at_eighth_scale_still_finds_truncation(photos, keep):
    from PIL import Image

    big = np.asarray(Image.fromarray(photos["astronaut"]).resize((2048, 2048)))
    for progressive in (False, True):
        data = _save(Image.fromarray(big), "JPEG", quality=90, progressive=progressive)
        assert decode.inspect(data) == decode.ImageInfo(2048, 2048, "JPEG", True)
        with pytest.raises(decode.BadImage) as e:
            decode.inspect(data[: int(len(data) * keep)])
        assert e.value.code == "truncated"
