"""Sample input partitions made of real photos that package registries ship.

No registry carries a product-photo data set, so a partition mixes
- whole real photos: darknet's demo photos (Debian `darknet`), scikit-image's bundled photos and
  the object photos among the `lomiri-wallpapers-16.04` wallpapers;
- composed "product in scene" pictures: a real-photo cut-out from Debian `qabcs-data` (transparent
  PNGs) pasted onto a real landscape/macro wallpaper (`mate-backgrounds` nature/,
  `lomiri-wallpapers-16.04`). The alpha channel gives the exact object box, and the same cut-out
  on several backgrounds gives known same-object groups.

Everything is fetched into the cache at setup and never committed (qabcs-data is GPL-3+, the
wallpapers carry their own licences). Usage:

    python -m devtools.sample_photos --out DIR --count N [--seed S] [--cache DIR] [--truth FILE]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from PIL import Image

from imgfeat.paths import cache_dir as default_cache_dir

JPEG_QUALITY = 92
ALPHA_MIN = 16  # alpha below this is matting noise: dropped so the box is the visible object
GROUP_SIZE = 3  # each cut-out is shown on this many different backgrounds
BACKGROUND_SIZES = ((640, 480), (800, 600), (1024, 768), (960, 640), (720, 540))
MAX_PHOTO_SIDE = 1024  # wallpapers are 2-16 MP; a pipeline input needs no more than this

# darknet's demo photos; scream.jpg is left out (a painting).
DARKNET = ("dog", "eagle", "giraffe", "horses", "kite", "person")
# skimage.data photos that load offline (checked with scikit-image 0.26); camera is grayscale.
# Left out: `clock` (motion-blurred beyond recognition), textures (brick, grass, gravel),
# microscopy/medical (cell, immunohistochemistry, retina), astronomy (hubble_deep_field, moon),
# coins, scans (page, text), synthetic images, `cat` (= chelsea); brain, eagle, lily, skin, ...
# need a download and fail offline.
SKIMAGE = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle", "camera")

# Wallpapers: package -> (folder in the .deb, {file stem: role}). "bg" = scenery without a
# prominent COCO object (used as backgrounds), "photo" = shows objects (used whole).
# Left out: abstract/rendered ones (mate abstract/ and desktop/, analogpattern, umang);
# desktop-base (SVG artwork) and gnome-backgrounds 43 (mostly rendered) hold no real photos.
WALLPAPERS = {
    "mate-backgrounds": ("./usr/share/backgrounds/mate/nature/", {
        s: "bg" for s in ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow",
                          "LadyBird", "RainDrops", "Storm", "TwoWings", "Wood", "YellowFlower")}),
    "lomiri-wallpapers-16.04": ("./usr/share/backgrounds/", {
        "Bridge_by_Sander_Klootwijk": "bg", "Dragonfly_by_Bolly": "bg",
        "aitzgorri_by_Aitzol_Berasategi": "bg", "life_by_Aitzol_Berasategi": "bg",
        "picosdeeuropa_by_Aitzol_Berasategi": "bg", "seeding_by_Clements_Engelhardt": "bg",
        "sunset_by_Aitzol_Berasategi": "bg",
        "friends_by_Aitzol_Berasategi": "photo",  # two dogs at a door
        "Wine_by_Jakkub_Mede": "photo",  # bottle, glass, chair
        "greentock_by_Peter_Nerlich": "photo",  # wall clock
        "free_by_Peter_Nerlich": "photo",  # bird, lamps
        "Picture_0B_by_freespace": "photo",  # fig in a bowl
        "Picture_1A_by_freespace": "photo",  # paint brushes
    }),
}

# qabcs-data cut-outs that are real photos, chosen by looking at all 328 (left out: clip art, 3-D
# renders, painted illustrations, and mostly semi-transparent ones: jellyfish, shadberry, yupka,
# hand_organ), mapped to the COCO class a detector should find, or None. Keys are paths under
# usr/share/qabcs/abcs/all/pics/.
QABCS_DIR = "./usr/share/qabcs/abcs/all/pics/"
CUTOUTS: dict[str, str | None] = {
    # COCO classes
    "animals/albatross": "bird", "animals/booby": "bird", "animals/duck": "bird",
    "animals/eagle-owl": "bird", "animals/emu": "bird", "animals/flamingo": "bird",
    "animals/goose": "bird", "animals/heron": "bird", "animals/owl": "bird",
    "animals/pheasant": "bird", "animals/wood_grouse": "bird",
    "animals/bear": "bear", "animals/giant_panda": "bear",
    "animals/calf": "cow", "animals/cow": "cow", "animals/foal": "horse", "animals/york": "dog",
    "food/apples": "apple", "food/bananas": "banana", "food/uglifruit": "orange",
    "food/donut": "donut", "food/whopper": "sandwich",
    "food/sherry": "bottle", "food/yakult": "bottle",
    "food/olivier": "bowl", "food/uszka": "bowl", "food/gelatin": "bowl", "food/beet_salad": "bowl",
    "instrument/spoons": "spoon", "misc/display": "tv",
    "toys/dogmatix": "teddy bear", "toys/cheburashka": "teddy bear",
    "toys/football": "sports ball", "toys/skateboard": "skateboard", "toys/crane": "truck",
    "instrument/instrument": "person", "misc/schooler": "person",
    # real photos of objects outside COCO's 80 classes
    **dict.fromkeys((
        "animals/aesculapian_snake", "animals/blister_beetle", "animals/chimpanzee",
        "animals/chinchilla", "animals/ferret", "animals/fish", "animals/jerboa", "animals/koala",
        "animals/lion", "animals/lynx", "animals/misgurnus", "animals/moose", "animals/moth",
        "animals/otter", "animals/porcupine", "animals/rhinoceros", "animals/snail",
        "animals/wallaby", "animals/weevil", "animals/xenopus",
        "food/beans", "food/blackberry", "food/casserole", "food/cauliflower_au_gratin",
        "food/clove", "food/corn", "food/curry_sausage", "food/date", "food/eclair", "food/egg",
        "food/fennel", "food/garlic", "food/ginger", "food/gooseberry", "food/halva",
        "food/kidney_beans", "food/kiwi", "food/lavash", "food/lazanki", "food/meat",
        "food/nectarine", "food/oil", "food/otak-otak", "food/peanut", "food/pineapple",
        "food/plum", "food/roast", "food/sorrel", "food/sprats", "food/squid", "food/stewed_duck",
        "food/stuffed_stomach", "food/wasabi", "food/whole_grain_bread",
        "instrument/aeoline", "instrument/bagpipes", "instrument/bass_drum", "instrument/cello",
        "instrument/changu", "instrument/cuica", "instrument/drums", "instrument/dulzaina",
        "instrument/electric_guitar", "instrument/erhu", "instrument/flute", "instrument/gamba",
        "instrument/hang", "instrument/harmonica", "instrument/ipu",
        "instrument/jack", "instrument/natural_horn", "instrument/oedephon", "instrument/organ",
        "instrument/pipe", "instrument/rabel", "instrument/ratchet", "instrument/saxophone",
        "instrument/squeezebox", "instrument/timpani", "instrument/topshuur",
        "instrument/washint", "instrument/western_concert_flute", "instrument/yobel",
        "instrument/youhikko", "instrument/yueqin", "instrument/zhaleyka", "instrument/zither",
        "instrument/zozulka",
        "misc/camera_lens", "misc/ear", "misc/grommet",
        "toys/adjutant", "toys/gamekeeper", "toys/helicopter", "toys/kinder_surprise_egg",
        "toys/ole_lukoje", "toys/quadrocopter", "toys/robot", "toys/rubber_ball",
        "toys/sailorboy", "toys/top", "toys/ursula", "toys/watercolor", "toys/whirligig",
        "toys/xbox", "toys/zoetrope",
    )),
}


# --------------------------------------------------------------------------- fetching

_apt_updated = False


def _apt_download(package: str, dest: Path) -> Path:
    """`apt-get download` one package into dest; runs `apt-get update` once if apt has no lists."""
    global _apt_updated
    for attempt in (1, 2):
        try:
            res = subprocess.run(["apt-get", "download", package], cwd=dest,
                                 capture_output=True, text=True)
        except OSError as exc:  # no apt-get: not a Debian-like machine
            raise RuntimeError(f"fetching Debian package {package!r} needs apt-get: {exc}") from exc
        debs = sorted(dest.glob(f"{package}_*.deb"))
        if res.returncode == 0 and debs:
            return debs[-1]
        if attempt == 1 and not _apt_updated:  # a fresh machine has empty apt lists
            _apt_updated = True
            subprocess.run(["apt-get", "update"], capture_output=True, text=True)
            continue
        break
    raise RuntimeError(f"fetching Debian package {package!r} failed (apt-get download exit "
                       f"{res.returncode}): {res.stderr.strip()[-500:]}")


def _extract(deb: Path, wanted: dict[str, Path]) -> None:
    """Stream the .deb's file tree (dpkg-deb --fsys-tarfile) and write only the wanted members."""
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                if member.isfile() and member.name in wanted:
                    target = wanted[member.name]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    with tar.extractfile(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
        err = proc.stderr.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"dpkg-deb could not read {deb.name}: {err.strip()[-500:]}")


def _fetch_deb(package: str, wanted: dict[str, str], out: Path) -> None:
    """Download `package` and copy the wanted members (deb path -> name under out)."""
    with tempfile.TemporaryDirectory() as tmp:
        deb = _apt_download(package, Path(tmp))
        _extract(deb, {m: out / name for m, name in wanted.items()})
    missing = [name for name in wanted.values() if not (out / name).is_file()]
    if missing:
        raise RuntimeError(f"Debian package {package!r} lacks {len(missing)} expected files, "
                           f"e.g. {missing[:3]}")


def _fetch_skimage(out: Path) -> None:
    try:
        import skimage.data as data
    except ImportError as exc:
        raise RuntimeError("scikit-image (PyPI package 'scikit-image') is needed") from exc
    for name in SKIMAGE:
        arr = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
        Image.fromarray(arr).save(out / f"{name}.png")  # lossless copy of the bundled photo


def _sources() -> dict[str, tuple[str | None, dict[str, str]]]:
    """Cache folder -> (Debian package, or None for skimage; {member of the .deb: file name})."""
    return {
        "darknet": ("darknet", {f"./usr/share/darknet/data/{n}.jpg": f"{n}.jpg" for n in DARKNET}),
        "skimage": (None, {n: f"{n}.png" for n in SKIMAGE}),
        "qabcs": ("qabcs-data", {f"{QABCS_DIR}{k}.png": f"{k}.png" for k in CUTOUTS}),
        **{f"wallpapers/{pkg}": (pkg, {f"{folder}{s}.jpg": f"{s}.jpg" for s in stems})
           for pkg, (folder, stems) in WALLPAPERS.items()},
    }


def fetch_sources(cache_dir: str | os.PathLike | None = None) -> Path:
    """Fetch the real photos into `cache_dir/sources/` once; return that folder.

    Layout: darknet/*.jpg, skimage/*.png, qabcs/<category>/<name>.png,
    wallpapers/<package>/<stem>.jpg. A source whose files are all there is not fetched again;
    otherwise it is rebuilt in a temporary folder and renamed into place when complete.
    """
    root = Path(cache_dir if cache_dir is not None else default_cache_dir()) / "sources"
    for name, (package, files) in _sources().items():
        final = root / name
        if all((final / f).is_file() for f in files.values()):
            continue
        tmp = final.with_name(final.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        if package:
            _fetch_deb(package, files, tmp)
        else:
            _fetch_skimage(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    return root


# --------------------------------------------------------------------------- composing

def load_rgb(path: Path, min_size: tuple[int, int] | None = None) -> Image.Image:
    with Image.open(path) as im:
        if min_size:
            im.draft("RGB", min_size)  # JPEG decodes at a reduced scale: big wallpapers load fast
        return im.convert("RGB")


def load_cutout(path: Path) -> Image.Image:
    """The cut-out as RGBA, matting noise removed and cropped to the visible object."""
    with Image.open(path) as im:
        obj = im.convert("RGBA")
    obj.putalpha(obj.getchannel("A").point(lambda a: 0 if a < ALPHA_MIN else a))
    return obj.crop(obj.getchannel("A").getbbox())


def _random_view(img: Image.Image, size: tuple[int, int], zoom: float,
                 rng: random.Random) -> Image.Image:
    """A random crop with the aspect of `size` covering `zoom` of the largest such crop, resized."""
    w, h = size
    scale = min(img.width / w, img.height / h) * zoom
    cw, ch = round(w * scale), round(h * scale)
    x, y = rng.randint(0, img.width - cw), rng.randint(0, img.height - ch)
    return img.resize(size, Image.Resampling.LANCZOS, box=(x, y, x + cw, y + ch))


def paste(background: Image.Image, cutout: Image.Image, x: int, y: int,
          width: int) -> tuple[Image.Image, list[int]]:
    """Alpha-paste `cutout` (RGBA) resized to `width` px wide with its top-left at (x, y).

    Returns the RGB picture and the object's box [x1, y1, x2, y2] in pixels (x2, y2 exclusive):
    the bounding box of the pasted alpha channel.
    """
    height = max(1, round(cutout.height * width / cutout.width))
    # resize with premultiplied alpha, or transparent pixels bleed their colour into the edges
    obj = cutout.convert("RGBa").resize((width, height), Image.Resampling.LANCZOS).convert("RGBA")
    alpha = obj.getchannel("A").point(lambda a: 0 if a < ALPHA_MIN else a)
    obj.putalpha(alpha)
    out = background.convert("RGB")
    out.paste(obj, (x, y), obj)
    x1, y1, x2, y2 = alpha.getbbox()
    return out, [x + x1, y + y1, x + x2, y + y2]


def compose(cutout: Image.Image, bg_path: Path, rng: random.Random) -> tuple[Image.Image, list[int]]:
    """The cut-out on a random view of the background (one of BACKGROUND_SIZES), at a random
    place and scale: its longer relative side spans 20-60% of the picture (its width, for most
    objects; tall ones are limited by the height instead). -> picture, object box."""
    size = rng.choice(BACKGROUND_SIZES)
    bg = _random_view(load_rgb(bg_path, size), size, rng.uniform(0.6, 1.0), rng)
    rel = rng.uniform(0.2, 0.6)
    width = max(8, round(min(rel * size[0], rel * size[1] * cutout.width / cutout.height)))
    height = round(cutout.height * width / cutout.width)
    x = rng.randint(0, size[0] - width)
    y = rng.randint(0, size[1] - height)
    return paste(bg, cutout, x, y, width)


def catalogue(root: Path) -> tuple[list, list, list]:
    photos = [(root / "darknet" / f"{n}.jpg", f"debian:darknet/{n}.jpg") for n in DARKNET]
    photos += [(root / "skimage" / f"{n}.png", f"skimage.data:{n}") for n in SKIMAGE]
    backgrounds = []
    for pkg, (_, stems) in WALLPAPERS.items():
        for stem, role in stems.items():
            item = (root / "wallpapers" / pkg / f"{stem}.jpg", f"debian:{pkg}/{stem}.jpg")
            (backgrounds if role == "bg" else photos).append(item)
    cutouts = [(root / "qabcs" / f"{k}.png", f"debian:qabcs-data/{k}.png", k.split("/")[1], coco)
               for k, coco in CUTOUTS.items()]
    return photos, backgrounds, cutouts


def build_partition(out_dir: str | os.PathLike, count: int, seed: int = 0,
                    cache_dir: str | os.PathLike | None = None) -> list[dict]:
    """Write `count` JPEGs (quality 92) under out_dir, deterministic per seed; one record each.

    About half are whole real photos (`photos/`; once the distinct photos are used up, further
    ones are random crops/rescalings of them), the rest composed pictures of a cut-out on a real
    background (`composed/shelf-a/`, `composed/shelf-b/`), each cut-out on GROUP_SIZE
    backgrounds; cut-outs of COCO classes come first. Only images are written to out_dir.

    Record keys: image_id (path relative to out_dir, '/'-separated), source, kind ("photo" or
    "composed"), object (COCO class name or None), box ([x1, y1, x2, y2], x2/y2 exclusive, or
    None), group (cut-out name shared by the pictures of the same object, or None), background
    (source of the background or None), width, height.
    """
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty; a partition is written into a new folder")
    photos, backgrounds, cutouts = catalogue(fetch_sources(cache_dir))
    rng = random.Random(seed)
    n_composed = count // 2
    n_photos = count - n_composed

    rng.shuffle(photos)
    coco = [c for c in cutouts if c[3]]
    other = [c for c in cutouts if not c[3]]
    rng.shuffle(coco)
    rng.shuffle(other)
    order = coco + other  # prefer objects a COCO detector knows

    records: list[dict] = []

    def save(img: Image.Image, folder: str, **rec) -> None:
        image_id = f"{folder}/img_{len(records):04d}.jpg"
        path = out / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, "JPEG", quality=JPEG_QUALITY)
        records.append({"image_id": image_id, **rec, "width": img.width, "height": img.height})

    for i in range(n_photos):
        path, source = photos[i % len(photos)]
        img = load_rgb(path, (MAX_PHOTO_SIDE, MAX_PHOTO_SIDE))
        if i < len(photos):  # the photo itself, only bounded in size
            img.thumbnail((MAX_PHOTO_SIDE, MAX_PHOTO_SIDE), Image.Resampling.LANCZOS)
        else:  # a reuse: a different crop and scale keeps the file contents distinct
            s = rng.uniform(0.5, 1.0) * min(1.0, MAX_PHOTO_SIDE / max(img.size))
            img = _random_view(img, (round(img.width * s), round(img.height * s)),
                               rng.uniform(0.6, 0.95), rng)
        save(img, "photos", source=source, kind="photo", object=None, box=None, group=None,
             background=None)

    for g in range(math.ceil(n_composed / GROUP_SIZE)):
        path, source, name, coco_name = order[g % len(order)]
        cutout = load_cutout(path)
        for bg_path, bg_source in rng.sample(backgrounds, GROUP_SIZE):
            if len(records) == count:
                break
            img, box = compose(cutout, bg_path, rng)
            save(img, f"composed/shelf-{'ab'[g % 2]}", source=source, kind="composed",
                 object=coco_name, box=box, group=name, background=bg_source)
    return records


# --------------------------------------------------------------------------- CLI

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.sample_photos",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, help="partition folder to create (new or empty)")
    ap.add_argument("--count", type=int, required=True, help="number of images to write")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=None,
                    help="where sources are fetched (default: $IMGFEAT_CACHE or <repo>/.cache)")
    ap.add_argument("--truth", default=None, help="write the records as JSON here (outside --out)")
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    if args.truth and out in Path(args.truth).resolve().parents:
        ap.error("--truth must be outside --out: the pipeline reads the whole partition")
    t0 = time.perf_counter()
    records = build_partition(out, args.count, seed=args.seed, cache_dir=args.cache)
    if args.truth:
        Path(args.truth).parent.mkdir(parents=True, exist_ok=True)
        Path(args.truth).write_text(json.dumps(records, indent=1))
    n_comp = sum(r["kind"] == "composed" for r in records)
    print(f"wrote {len(records)} images ({len(records) - n_comp} photos, {n_comp} composed) "
          f"to {out} in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
