"""Decoding and validation on a corpus of awkward and broken files built from a real photo."""

import numpy as np
import pytest

from imgfeat import badfiles, decode


@pytest.fixture(scope="module")
def corpus(photos):
    return badfiles.build(photos["chelsea"])


# notes.txt is refused by its extension, which is ingest's check (tests/test_stages.py).
@pytest.mark.parametrize("name", sorted(n for n in badfiles.EXPECTED if not n.endswith(".txt")))
def test_each_file_is_accepted_or_rejected_with_its_reason(corpus, name):
    expected = badfiles.EXPECTED[name]
    if expected is None:
        info = decode.inspect(corpus[name])
        assert (info.width, info.height) == (451, 300)
        rgb = decode.decode_rgb(corpus[name])
        assert rgb.shape == (300, 451, 3) and rgb.dtype == np.uint8
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
