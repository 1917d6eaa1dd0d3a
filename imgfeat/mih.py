"""Multi-index hashing (Norouzi, Punjani and Fleet, 2012): candidate pairs within a Hamming radius
from exact matches on code substrings, so a join finds them instead of comparing every pair.

Split each K-bit code into m substrings. If two codes are within distance r, at least one of
their m substrings is within floor(r / m) of the other's (pigeonhole). So every pair within r
meets on some (position, value) where one side's value is the other's exactly and the query side
also lists its values' neighbours within floor(r / m). With m = r + 1 that is an exact match.
`plan` picks m: long substrings keep the buckets small, short ones need fewer probes.
"""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np

MAX_SUBSTRING_BITS = 62  # a substring's value must fit a signed 64-bit integer


def plan(bits: int, radius: int, n: int) -> tuple[int, int]:
    """(m substrings, neighbour radius s = radius // m) for probing n codes of `bits` bits: the m
    of least expected work per probing code, m x (probes per substring) x (1 + bucket size n / 2^L)
    for L-bit substrings of uniform codes. Short substrings make big buckets, long ones many probes."""
    fewest = math.ceil(bits / MAX_SUBSTRING_BITS)  # substrings must fit an int64
    best = None
    for m in range(fewest, max(radius + 1, fewest) + 1):  # beyond r + 1 substrings, probing gains nothing
        s = radius // m
        cost = expected_work(bits, m, s, n)
        if best is None or cost < best[0]:
            best = (cost, m, s)
    return best[1], best[2]


def expected_work(bits: int, m: int, s: int, n: int) -> float:
    """Rows a probing code makes against n uniform codes: its probes, and the bucket each meets."""
    return m * probes_per_substring(bits, m, s) * (1 + n / 2 ** (bits // m))


def ball(length: int, radius: int) -> int:
    """How many `length`-bit values are within `radius` of one (itself included)."""
    return sum(math.comb(length, i) for i in range(radius + 1))


def probes_per_substring(bits: int, m: int, s: int) -> int:
    """How many values a probing code looks up per substring: its own and those within s."""
    return ball(bits // m, s)


def bounds(bits: int, m: int) -> list[tuple[int, int]]:
    """[start, end) bit positions of the m substrings, as even as possible."""
    sizes = [bits // m + (j < bits % m) for j in range(m)]
    starts = np.cumsum([0] + sizes)
    return [(int(starts[j]), int(starts[j + 1])) for j in range(m)]


def unpack(codes) -> np.ndarray:
    """Packed codes (a sequence of equal-length bytes, or uint8 [n, bytes]) as bits [n, K], MSB first."""
    if not isinstance(codes, np.ndarray):
        codes = np.frombuffer(b"".join(codes), np.uint8).reshape(len(codes), -1) if len(codes) else \
            np.zeros((0, 0), np.uint8)
    return np.unpackbits(codes, axis=1)


def substrings(bit_rows: np.ndarray, m: int) -> np.ndarray:
    """int64 [n, m]: each code's m substring values."""
    out = np.zeros((len(bit_rows), m), np.int64)
    if bit_rows.shape[1] > m * MAX_SUBSTRING_BITS:
        raise ValueError(f"{m} substrings of {bit_rows.shape[1]} bits exceed {MAX_SUBSTRING_BITS} bits")
    for j, (a, b) in enumerate(bounds(bit_rows.shape[1], m)):
        weights = np.left_shift(np.int64(1), np.arange(b - a - 1, -1, -1, dtype=np.int64))
        out[:, j] = bit_rows[:, a:b].astype(np.int64) @ weights
    return out


def neighbour_masks(length: int, s: int) -> np.ndarray:
    """Every XOR mask of at most s bits within a `length`-bit substring (0 first)."""
    masks = [0]
    for w in range(1, s + 1):
        masks += [sum(1 << i for i in c) for c in combinations(range(length), w)]
    return np.array(masks, np.int64)


def probes(bit_rows: np.ndarray, m: int, s: int) -> list[tuple[int, np.ndarray]]:
    """For each substring position j: (j, int64 [n, V]) the values within s of each code's own."""
    values = substrings(bit_rows, m)
    return [(j, values[:, j:j + 1] ^ neighbour_masks(b - a, s)[None, :])
            for j, (a, b) in enumerate(bounds(bit_rows.shape[1], m))]


def words(codes) -> np.ndarray:
    """Packed codes (equal-length bytes) as int64 [n, ceil(K / 64)], big-endian, zero-padded: the
    Hamming distance is the sum of the popcounts of the words' XORs (Spark's bit_count)."""
    width = len(codes[0]) if len(codes) else 8
    padded = -width % 8
    buf = b"".join(bytes(c) + b"\0" * padded for c in codes)
    return np.frombuffer(buf, ">i8").reshape(len(codes), (width + padded) // 8).astype(np.int64)
