"""Schemas of every checkpoint and published table (Spark DDL strings, one home).

Every checkpoint carries every image of the partition: a row that failed a stage keeps its id
and gets `quarantine_stage`/`quarantine_reason` (its payload columns are null), and later stages
pass it through. So counts never shrink between stages and publish splits the final rows into
features and quarantine: each input file lands in exactly one of them.
"""

QUARANTINE_COLS = "quarantine_stage string, quarantine_reason string"
BASE = "image_id string, sha256 string, width int, height int"
BOX = "label string, score double, x1 int, y1 int, x2 int, y2 int"

# Set when the image's content (sha256) was already published with the same model: the row names
# its source ("dt=<date>/<image_id>"), skips detect/crop/embed, and publish copies the source's values.
REUSED = "reused_from string"

DETECTION = "struct<label_id:int, label:string, score:double, x1:int, y1:int, x2:int, y2:int>"

# orientation_ok: false when the EXIF could not be read and the picture was taken as stored
INGEST = f"{BASE}, format string, size_bytes long, orientation_ok boolean, content binary, {QUARANTINE_COLS}"
# picture_embedding: the whole picture's descriptor (L2-normalised), an output of the detector's own
# backbone in the same inference; embed codes it (picture de-duplication)
DETECT = (f"{BASE}, content binary, detections array<{DETECTION}>, picture_embedding array<float>, "
          f"{REUSED}, {QUARANTINE_COLS}")
CROP = f"{BASE}, {BOX}, crop binary, picture_embedding array<float>, {REUSED}, {QUARANTINE_COLS}"
# Two descriptors and codes: of the crop (object similarity, the search index) and of the whole
# picture (picture de-duplication: the duplicates table); both codes have code_bits bits.
DESCRIPTORS = ("code binary, code_bits int, embedding array<float>, "
               "picture_code binary, picture_embedding array<float>")
EMBED = f"{BASE}, {BOX}, {DESCRIPTORS}, {REUSED}, {QUARANTINE_COLS}"

# The output contract (README "Output contract"): column order matters to readers of the files.
FEATURES = f"{BASE}, {BOX}, {DESCRIPTORS}, model string, {REUSED}"
QUARANTINE = "image_id string, stage string, reason string"
# Near-duplicates of a partition: one row per image that has one in this or an earlier partition,
# its group (named by the group's earliest key) and its nearest match.
DUPLICATES = "image_id string, group_id string, match_partition string, match_image_id string, hamming int"

STAGE_SCHEMAS = {"ingest": INGEST, "detect": DETECT, "crop": CROP, "embed": EMBED}


def digest(stage: str) -> str:
    """A digest of `stage`'s checkpoint schema, recorded in its `_stage.json`: a checkpoint written
    with another schema (by another version) is not current, and is made again. A `picture_embedding`
    column's meaning is part of it (`descriptor.PICTURE_DESCRIPTOR`: its values change with it, its
    type does not)."""
    import hashlib

    from imgfeat.descriptor import PICTURE_DESCRIPTOR

    schema = STAGE_SCHEMAS[stage]
    if "picture_embedding" in columns(schema):
        schema += f"; picture_embedding={PICTURE_DESCRIPTOR}"
    return hashlib.sha256(schema.encode()).hexdigest()[:12]


def columns(ddl: str) -> list[str]:
    """Column names of a DDL string (top-level commas only)."""
    names, depth, start = [], 0, 0
    for i, ch in enumerate(ddl + ","):
        if ch in "<(":
            depth += 1
        elif ch in ">)":
            depth -= 1
        elif ch == "," and depth == 0:
            names.append(ddl[start:i].split()[0])
            start = i + 1
    return names
