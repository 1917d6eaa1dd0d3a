"""Mutated real photos (every README format, with and without EXIF): decode returns valid pixels
or raises BadImage with a known reason code, never anything else, and never hangs."""

import time

import numpy as np
import pytest

from devtools import fuzz
from imgfeat import decode

# Cases of fuzz.cases(1, ...) whose exception escaped the decode.py before this change
# (ImageOps.exif_transpose outside the try): SyntaxError on WebP EXIF, struct.error on JPEG EXIF.
ESCAPED_BEFORE = {"1:590": "chelsea-exif.webp", "1:414": "rocket-exif.webp",
                  "1:569": "astronaut-exif.jpg", "1:14387": "astronaut-progressive.jpg"}


@pytest.fixture(scope="module")
def files():
    return fuzz.seed_files()


def test_seed_files_are_valid_in_every_format(files):
    formats = set()
    for name, data in files.items():
        info = decode.inspect(data)
        formats.add(info.format)
        assert info.orientation_ok and fuzz.check(data) == "ok", name
    assert formats == set(decode.FORMATS)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_mutated_files_decode_or_raise_bad_image(files, seed):
    outcomes = {}
    for case, name, op, data in fuzz.cases(seed, 1500, files):
        t = time.monotonic()
        out = fuzz.check(data)
        assert not out.startswith("FAIL"), (case, name, op, out)
        assert time.monotonic() - t < 5, (case, name, op)  # a hang is a failure too
        outcomes[out] = outcomes.get(out, 0) + 1
    # The mutations reach both sides: some files still decode, some are refused for each reason.
    assert outcomes["ok"] > 200 and outcomes["undecodable"] > 200 and outcomes["truncated"] > 50, outcomes


def test_valid_mutated_files_give_uint8_rgb(files):
    n = 0
    for case, name, op, data in fuzz.cases(21, 400, files):
        try:
            rgb = decode.decode_rgb(data, max_pixels=fuzz.MAX_PIXELS)
        except decode.BadImage as e:
            assert e.code in fuzz.CODES
            continue
        assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and min(rgb.shape[:2]) >= 1
        n += 1
    assert n > 50


def test_cases_that_escaped_before_now_decode(files):
    found = {case: (name, data) for case, name, op, data in fuzz.cases(1, 14388, files) if case in ESCAPED_BEFORE}
    assert sorted(found) == sorted(ESCAPED_BEFORE)  # the generator still makes those cases
    for case, (name, data) in found.items():
        assert name == ESCAPED_BEFORE[case]
        assert fuzz.check(data) == "ok", case  # broken EXIF: still a picture
