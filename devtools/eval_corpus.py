"""The evaluation corpus: groups of real pictures that should find each other, and a disjoint
training set, from the real photos of `sample_photos` (no registry ships a product-photo set).

- near-duplicate groups: a picture and its edits (`augment.NEAR_DUPLICATE_EDITS`: rescaled,
  re-compressed, cropped, flipped, brighter); the pictures are the whole photos and cut-outs
  composed onto backgrounds;
- same-object groups: one cut-out composed onto GROUP_SIZE different backgrounds;
- training pictures: other cut-outs on other backgrounds. Cut-outs and backgrounds are split by a
  hash of their name, so no object or scenery of the training set appears in the evaluation;
- held-out near-duplicate groups (`held_out`): the evaluation cut-outs that `build` leaves unused,
  composed with another seed, and the evaluation backgrounds as whole photos, each with the same
  edits. They were fixed before any result on them was seen, and no default is tuned on them.
  `held_out_junk` names its ambiguous pairs of groups: a composite and its own background whole;
- a second held-out split (`held_new`), without them: the same cut-outs on half of the evaluation
  backgrounds, and the other half whole;
- distractors (`distractors`): thousands of distinct pictures, for the false-match rate per pair a
  store of millions needs: each an evaluation cut-out on one of the non-overlapping tiles of the
  evaluation backgrounds; two of them are distinct pictures when they share neither.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

from devtools import sample_photos
from imgfeat import augment

GROUP_SIZE = 3
MAX_SIDE = 800
TILES = 3  # rows of non-overlapping tiles cut from each background (4:3, as many columns as fit)  # whole photos are bounded: the detector sees 300x300 anyway


def _held_out(name: str) -> bool:
    return hashlib.sha1(name.encode()).digest()[0] % 2 == 0


def build(cache_dir: Path, near_dup_composed: int = 18, same_object: int = 40, train_per_cutout: int = 4,
          seed: int = 0) -> tuple[list[tuple[str, bytes]], list[tuple[str, bytes, str, str]]]:
    """-> (training files [(image_id, jpeg)], evaluation files [(image_id, jpeg, group, kind)])."""
    photos, backgrounds, cutouts = sample_photos.catalogue(sample_photos.fetch_sources(cache_dir))
    rng = random.Random(seed)
    eval_bgs = [b for b in backgrounds if _held_out(b[1])]
    train_bgs = [b for b in backgrounds if not _held_out(b[1])]
    eval_cuts = [c for c in cutouts if _held_out(c[1])]
    train_cuts = [c for c in cutouts if not _held_out(c[1])]

    evaluation = []
    originals = []
    for path, source in photos:
        img = sample_photos.load_rgb(path)
        img.thumbnail((MAX_SIDE, MAX_SIDE))
        originals.append((source, img))
    for path, source, name, _ in eval_cuts[:near_dup_composed]:
        originals.append((source, sample_photos.compose(sample_photos.load_cutout(path), rng.choice(eval_bgs)[0], rng)[0]))
    for i, (source, img) in enumerate(originals):
        evaluation += near_duplicate_group(f"dup{i:03d}", img)
    for i, (path, source, name, _) in enumerate(eval_cuts[near_dup_composed:near_dup_composed + same_object]):
        cutout = sample_photos.load_cutout(path)
        group = f"obj{i:03d}"
        for j, (bg_path, _) in enumerate(rng.sample(eval_bgs, GROUP_SIZE)):
            evaluation.append((f"{group}/{j}.jpg", augment.jpeg(sample_photos.compose(cutout, bg_path, rng)[0], 92),
                               group, "same_object"))

    training = []
    for path, source, name, _ in train_cuts:
        cutout = sample_photos.load_cutout(path)
        for j, (bg_path, _) in enumerate(rng.sample(train_bgs, train_per_cutout)):
            training.append((f"train/{name}/{j}.jpg", augment.jpeg(sample_photos.compose(cutout, bg_path, rng)[0], 92)))
    return training, evaluation


def near_duplicate_group(group: str, img) -> list[tuple[str, bytes, str, str]]:
    """A picture and its edits (`augment.NEAR_DUPLICATE_EDITS`): [(image_id, jpeg, group, kind)]."""
    out = [(f"{group}/original.jpg", augment.jpeg(img, 92), group, "near_duplicate")]
    for edit, fn in augment.NEAR_DUPLICATE_EDITS.items():
        out.append((f"{group}/{edit}.jpg", augment.jpeg(fn(img), 92), group, "near_duplicate"))
    return out


def held_out(cache_dir: Path, skip: int = 18 + 40, seed: int = 1) -> list[tuple[str, bytes, str, str]]:
    """Near-duplicate groups no choice was tuned on: the evaluation cut-outs after the first `skip`
    (those `build` uses), composed on evaluation backgrounds, and those backgrounds whole."""
    originals, _ = _held_out_originals(cache_dir, skip, seed)
    return [item for i, img in enumerate(originals) for item in near_duplicate_group(f"held{i:03d}", img)]


def held_out_junk(cache_dir: Path, skip: int = 18 + 40, seed: int = 1) -> list[tuple[str, str]]:
    """The held-out split's ambiguous group pairs, (composite, background): a cut-out composed on a
    view of a background photo, and that photo whole. By the labels they are different pictures, yet
    the composite is the photo cropped with an object pasted on, so a scorer may ignore them (as the
    Oxford and Paris buildings benchmarks ignore their "junk" images)."""
    _, backgrounds_of = _held_out_originals(cache_dir, skip, seed)
    return [(f"held{i:03d}", f"held{b:03d}") for i, b in backgrounds_of.items()]


def held_new(cache_dir: Path, skip: int = 18 + 40, seed: int = 2) -> list[tuple[str, bytes, str, str]]:
    """A second held-out split, without the first one's ambiguity (defined 2026-12-04, before any
    result on it was seen): the same evaluation cut-outs, composed with another seed on every other
    evaluation background only, and the other backgrounds whole; no photo is used both ways."""
    originals, _ = _held_out_originals(cache_dir, skip, seed, composed_on=slice(0, None, 2), whole=slice(1, None, 2))
    return [item for i, img in enumerate(originals) for item in near_duplicate_group(f"new{i:03d}", img)]


def _held_out_originals(cache_dir: Path, skip: int, seed: int, composed_on: slice = slice(None),
                        whole: slice = slice(None)) -> tuple[list, dict]:
    """(a held-out split's originals: the evaluation cut-outs after `skip`, each composed on one of
    the evaluation backgrounds `composed_on` picks, then the backgrounds `whole` picks, whole;
    {composite's index: the index of its background whole, if whole is one})."""
    _, backgrounds, cutouts = sample_photos.catalogue(sample_photos.fetch_sources(cache_dir))
    rng = random.Random(seed)
    eval_bgs = [b for b in backgrounds if _held_out(b[1])]
    under, wholes = eval_bgs[composed_on], eval_bgs[whole]
    cuts = [c for c in cutouts if _held_out(c[1])][skip:]
    originals, backgrounds_of = [], {}
    for i, (path, *_) in enumerate(cuts):
        bg = rng.choice(under)
        if bg in wholes:
            backgrounds_of[i] = len(cuts) + wholes.index(bg)
        originals.append(sample_photos.compose(sample_photos.load_cutout(path), bg[0], rng)[0])
    for path, _ in wholes:
        img = sample_photos.load_rgb(path)
        img.thumbnail((MAX_SIDE, MAX_SIDE))
        originals.append(img)
    return originals, backgrounds_of


def distractors(cache_dir: Path, count: int = 5000, seed: int = 7) -> list[tuple[str, bytes, int, int]]:
    """`count` pictures, each a distinct (evaluation cut-out, background tile) pair, the cut-out at
    a random place and scale as `sample_photos.compose` puts it: [(image_id, jpeg, cutout, tile)].
    Pictures that share a cut-out or a tile are not distinct; all other pairs are."""
    from PIL import Image

    _, backgrounds, cutouts = sample_photos.catalogue(sample_photos.fetch_sources(cache_dir))
    tiles = []
    for path, source in backgrounds:
        if _held_out(source):
            img = sample_photos.load_rgb(path)
            th = img.height // TILES
            tw = min(img.width // TILES, th * 4 // 3)
            tiles += [img.crop((c * tw, r * th, (c + 1) * tw, (r + 1) * th))
                      for r in range(TILES) for c in range(img.width // tw)]
    cuts = [path for path, source, *_ in cutouts if _held_out(source)]
    rng = random.Random(seed)
    pairs = rng.sample([(c, t) for c in range(len(cuts)) for t in range(len(tiles))], count)
    loaded = {}
    out = []
    for k, (c, t) in enumerate(pairs):
        cutout = loaded.setdefault(c, sample_photos.load_cutout(cuts[c]))
        size = rng.choice(sample_photos.BACKGROUND_SIZES)
        rel = rng.uniform(0.2, 0.6)
        width = max(8, round(min(rel * size[0], rel * size[1] * cutout.width / cutout.height)))
        height = round(cutout.height * width / cutout.width)
        img, _ = sample_photos.paste(tiles[t].resize(size, Image.Resampling.BILINEAR), cutout,
                                     rng.randint(0, size[0] - width), rng.randint(0, size[1] - height), width)
        out.append((f"distractor/{k:05d}.jpg", augment.jpeg(img, 92), c, t))
    return out
