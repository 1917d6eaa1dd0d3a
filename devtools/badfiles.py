"""A corpus of awkward and broken image files, built from one real photo.

Used by the tests (every case's expected outcome) and planted in the sample partition so that
`make run` shows the quarantine at work. `EXPECTED` maps file name -> reason code, or None when
the file is a valid image that must be published.
"""

from __future__ import annotations

import functools
import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

EXPECTED = {
    "truncated.jpg": "truncated",
    "zero-bytes.jpg": "empty_file",
    "text-named.jpg": "undecodable",
    "declared-huge.png": "too_many_pixels",
    "one-pixel.png": "too_small",
    "notes.txt": "unsupported_extension",
    "cmyk.jpg": None,
    "gray16.png": None,
    "alpha.png": None,
    "grayscale.JPG": None,
    "animated.gif": None,
    "exif-garbage.png": None,  # EXIF chunk without a TIFF header: decoded as stored
    "exif-flipped.jpg": None,  # a corrupted EXIF tag: ImageOps.exif_transpose raises, we do not
    "icon.png": "undecodable",  # an ICO behind .png: not one of the README's formats
    "drawing.jpg": "undecodable",  # an EPS behind .jpg: not one of the README's formats
    "gray16-large.png": None,  # 12 MP of 16-bit gray in 0.5 MB: decoded without float64 copies
}


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def declared_huge_png(width: int = 60000, height: int = 60000) -> bytes:
    """A valid PNG header declaring width x height, with almost no data: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
            + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + _png_chunk(b"IEND", b""))


def exif_flipped_jpeg(img: Image.Image) -> bytes:
    """A JPEG rotated by EXIF (orientation 6) whose Model tag (0x0110) was turned into
    StripOffsets (0x0111) by one flipped bit: the orientation still reads, but
    ImageOps.exif_transpose raises struct.error when it writes the EXIF back."""
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "Camera"
    exif[0x0110] = "Model X"
    raw = exif.tobytes()  # b"Exif\0\0" + TIFF header ("MM" or "II") + IFD
    big_endian = raw.removeprefix(b"Exif\0\0")[:2] == b"MM"
    entry = b"\x01\x10\x00\x02" if big_endian else b"\x10\x01\x02\x00"  # tag 0x0110, type ASCII
    flipped = b"\x01\x11\x00\x02" if big_endian else b"\x11\x01\x02\x00"
    assert raw.count(entry) == 1
    return _save(img, "JPEG", quality=90, exif=raw.replace(entry, flipped))


def gray16_gradient(width: int = 4000, height: int = 3000) -> np.ndarray:
    """A smooth 16-bit ramp (0 at the top left, 65534 at the bottom right): large, compresses well."""
    x = (np.arange(width) * 65535 // (width - 1) // 2).astype(np.uint16)
    y = (np.arange(height) * 65535 // (height - 1) // 2).astype(np.uint16)
    return x[None, :] + y[:, None]  # at most 2 * 32767: no overflow


@functools.lru_cache(maxsize=1)
def _gray16_large_png() -> bytes:
    return _save(Image.fromarray(gray16_gradient()), "PNG")


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def build(photo: np.ndarray) -> dict[str, bytes]:
    """File name -> bytes, for every case of EXPECTED, derived from an RGB photo."""
    rgb = Image.fromarray(photo)
    jpeg = _save(rgb, "JPEG", quality=90)
    gray16 = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    alpha = rgb.convert("RGBA")
    alpha.putalpha(Image.fromarray(np.full(photo.shape[:2], 200, np.uint8)))
    frames = [rgb.quantize(64), rgb.rotate(5).quantize(64), rgb.rotate(10).quantize(64)]
    gif = io.BytesIO()
    frames[0].save(gif, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    files = {
        "truncated.jpg": jpeg[: len(jpeg) * 6 // 10],
        "zero-bytes.jpg": b"",
        "text-named.jpg": b"this is a text file, not a JPEG\n",
        "declared-huge.png": declared_huge_png(),
        "one-pixel.png": _save(Image.new("RGB", (1, 1), (200, 10, 10)), "PNG"),
        "notes.txt": b"shooting notes: not an image\n",
        "cmyk.jpg": _save(rgb.convert("CMYK"), "JPEG", quality=90),
        "gray16.png": _save(Image.fromarray(gray16), "PNG"),
        "alpha.png": _save(alpha, "PNG"),
        "grayscale.JPG": _save(rgb.convert("L"), "JPEG", quality=90),
        "animated.gif": gif.getvalue(),
        "exif-garbage.png": _save(rgb, "PNG", exif=b"Exif\0\0garbage"),
        "exif-flipped.jpg": exif_flipped_jpeg(rgb),
        "icon.png": _save(rgb.resize((64, 64)), "ICO", sizes=[(64, 64)]),
        "drawing.jpg": _save(rgb.resize((32, 24)), "EPS"),
        "gray16-large.png": _gray16_large_png(),
    }
    assert set(files) == set(EXPECTED)
    return files


def write(directory: Path, photo: np.ndarray, prefix: str = "") -> dict[str, str | None]:
    """Write the corpus into `directory`; returns image_id (relative to it) -> expected reason code."""
    directory.mkdir(parents=True, exist_ok=True)
    expected = {}
    for name, data in build(photo).items():
        (directory / name).write_bytes(data)
        expected[prefix + name] = EXPECTED[name]
    return expected


# --- names, links and special files (a local file system only) -------------------------------
# image_id (bytes of the relative path, as on disk) -> expected reason code, None: published.
# Names that URL decoding would change or merge, names with shell/glob characters, non-UTF-8
# bytes; links inside and out of the partition; a FIFO; files too large to read at all.
NAMES_AND_LINKS = {
    b"names/p#1.jpg": None,
    b"names/photo%20one.jpg": None,
    b"names/photo one.jpg": None,
    b"names/cat.jpg": None,
    b"names/cat%2Ejpg": "unsupported_extension",
    b"names/x.jpg?y": "unsupported_extension",
    b"names/tab\there.jpg": None,
    b"names/new\nline.jpg": None,
    b"names/12:30:00.jpg": None,
    "names/café-日本.jpg".encode(): None,
    b"names/[x]{a,b}*.jpg": None,
    b"names/back\\slash.jpg": None,
    b"names/caf\xe9-latin1.jpg": "invalid_name",
    b"links/inside.jpg": None,
    b"links/outside.jpg": "link_outside_partition",
    b"links/broken.jpg": "broken_link",
    b"links/outside-dir": "directory_link",
    b"special/fifo.jpg": "not_a_regular_file",
    b"big/holiday.mp4": "unsupported_extension",
    b"big/huge.jpg": "too_large",
}


def escaped_id(rel: bytes) -> str:
    """The image_id of a relative path: itself, or a lossless escape when it is not UTF-8."""
    return rel.decode("utf-8", "backslashreplace")


def write_names_and_links(directory: Path, photo: np.ndarray, outside: Path, prefix: str = "") -> dict[str, str | None]:
    """Write NAMES_AND_LINKS into `directory` (links point into `outside`, a directory that is
    not part of the partition); returns image_id -> expected reason code."""
    import os

    from imgfeat.inputs import MAX_FILE_BYTES

    jpeg = _save(Image.fromarray(photo), "JPEG", quality=90)
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "elsewhere.jpg").write_bytes(jpeg)
    root = os.fsencode(directory)
    for rel, code in NAMES_AND_LINKS.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if rel.startswith(b"links/"):
            target = {b"links/inside.jpg": os.path.join(root, b"names/p#1.jpg"),
                      b"links/outside.jpg": os.fsencode(outside / "elsewhere.jpg"),
                      b"links/broken.jpg": os.fsencode(outside / "missing.jpg"),
                      b"links/outside-dir": os.fsencode(outside)}[rel]
            os.symlink(target, path)
        elif rel.startswith(b"special/"):
            os.mkfifo(path)
        elif rel.startswith(b"big/"):
            with open(path, "wb") as f:  # sparse: takes no disk space
                f.truncate(3 * 2**30 if rel.endswith(b".mp4") else MAX_FILE_BYTES + 1)
        else:
            with open(path, "wb") as f:
                f.write(jpeg)
    return {prefix + escaped_id(rel): code for rel, code in NAMES_AND_LINKS.items()}
