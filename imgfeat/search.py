"""Similarity search over published binary codes: a sharded index, one shard per partition.

WAREHOUSE/index/<code>/shards/dt=<date>/ holds one partition's image_id, packed code and label as
Parquet sorted by image_id, committed like a checkpoint by a Spark executor (`spark/index.py`); a
new partition adds or replaces its own shard only. The committed shard directories are the index.

A query reads only the code column of each shard (8 bytes a picture for 64-bit codes), searches
it exhaustively by Hamming distance with faiss (IndexBinaryFlat: exact), and merges the shards'
candidates by (distance, key): exactly the order of one flat index over every shard, whose keys
"dt=<date>/<image_id>" sort by shard, then by row. Keys and labels are read for the hits only;
re-ranking vectors for the candidates only: the learned layer's outputs before the sign, from the
shard's row groups (`vector`), or, for shards without them, the float embeddings from the features
table (a read of each candidate's partition: slow at store scale, so only on request).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

SHARD_SCHEMA = "image_id string, code binary, label string"
# Read by row group for a hit: its key, label and (re-ranking) the learned layer's vector.
HIT_COLUMNS = ("image_id", "label", "vector")
# The duplicates job also reads the picture's code and vector from the shard (search never does).
SHARD_DUPLICATES_SCHEMA = f"{SHARD_SCHEMA}, picture_code binary, picture_vector binary"
# Shards are written in row groups of about this size, so a hit's key and label cost one small read
# (a whole shard's image_id column, 7.5 MB at 100k pictures, made 10M-row queries 50x slower).
SHARD_ROW_GROUP_BYTES = 256 << 10
RERANK_CANDIDATES = 100  # the nearest codes re-ranked by their vectors (or float embeddings)
CACHED_GROUPS = 256  # row groups of image_id and label kept in memory between lookups (about 64 MB)


class SearchError(ValueError):
    """A query that cannot be answered; the message says why."""


def shard_table(rows):
    """A shard as Arrow (sorted by image_id): rows of (image_id, code bytes, label or None[,
    vector: packed float16 or None]). The Spark job writes the same columns; tests and the
    benchmark write shards with this."""
    import pyarrow as pa

    rows = sorted(rows, key=lambda r: r[0])
    columns = {"image_id": pa.array([r[0] for r in rows], pa.string()),
               "code": pa.array([bytes(r[1]) for r in rows], pa.binary()),
               "label": pa.array([r[2] for r in rows], pa.string())}
    if rows and len(rows[0]) > 3:
        columns["vector"] = pa.array([None if r[3] is None else bytes(r[3]) for r in rows], pa.binary())
    return pa.table(columns)


@dataclass
class Shard:
    """One partition's rows: codes in memory, keys and labels read by row group when needed."""
    date: str
    path: str
    bits: int
    codes: np.ndarray  # uint8 [n, bits/8], rows in image_id order
    _groups: list | None = field(default=None, repr=False)  # [(first row, file fragment, row group id)]
    _faiss: object = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.codes)

    def row_groups(self) -> list:
        """The shard's row groups in row order, from its files' footers (read once)."""
        if self._groups is None:
            self._groups = _row_groups(self.path)
        return self._groups

    def locate_row(self, row: int) -> tuple[int, int]:
        """(row group, offset in it) of `row`."""
        groups = self.row_groups()
        group = bisect.bisect_right(groups, row, key=lambda g: g[0]) - 1
        return group, row - groups[group][0]

    def read_group(self, group: int):
        """`HIT_COLUMNS` of one row group (those the shard has), as Arrow."""
        _, fragment, rg = self.row_groups()[group]
        names = fragment.physical_schema.names
        return fragment.subset(row_group_ids=[rg]).to_table(columns=[c for c in HIT_COLUMNS if c in names])

    def find(self, image_id: str) -> int | None:
        """The row of `image_id` (rows are sorted by it)."""
        ids = _read_parquet(self.path, ["image_id"]).column("image_id").to_numpy(zero_copy_only=False)
        i = int(np.searchsorted(ids, image_id))
        return i if i < len(ids) and ids[i] == image_id else None

    def _index(self):
        import faiss

        if self._faiss is None:
            self._faiss = faiss.IndexBinaryFlat(self.bits)
            self._faiss.add(np.ascontiguousarray(self.codes))
        return self._faiss

    def knn(self, code: np.ndarray, k: int) -> list[tuple[int, int]]:
        """(distance, row) of the shard's min(k, rows) nearest, by distance; at the last distance,
        faiss picks which of the tied rows come back."""
        if not len(self) or k <= 0:
            return []
        dist, rows = self._index().search(code, min(k, len(self)))
        return list(zip(dist[0].tolist(), rows[0].tolist()))

    def within(self, code: np.ndarray, radius: int) -> list[tuple[int, int]]:
        """(distance, row) of every row at most `radius` away."""
        _, d, rows = self._index().range_search(code, radius + 1)
        return list(zip(d.tolist(), rows.tolist()))


class Index:
    """Every shard of one code, in partition order."""

    def __init__(self, code: str, bits: int, shards: list[Shard], features_root: str | None = None):
        self.code, self.bits, self.shards, self.features_root = code, bits, shards, features_root
        self._groups: OrderedDict = OrderedDict()  # (date, row group) -> Arrow table, least recent first

    def _cell(self, shard: Shard, row: int, column: str):
        """One value of a hit's row group, which stays among the CACHED_GROUPS most recently used
        (memory is bounded by that, not by the store, however many queries touch however many shards)."""
        group, offset = shard.locate_row(row)
        key = (shard.date, group)
        table = self._groups.pop(key, None)
        if table is None:
            table = shard.read_group(group)
        self._groups[key] = table
        while len(self._groups) > CACHED_GROUPS:
            self._groups.popitem(last=False)
        return table.column(column)[offset].as_py() if column in table.column_names else None

    def label(self, shard: Shard, row: int) -> str | None:
        return self._cell(shard, row, "label")

    def vector(self, shard: Shard, row: int) -> np.ndarray | None:
        """A row's re-ranking vector (the learned layer's outputs before the sign), or None: a
        projection's code, or a shard written before the vectors."""
        packed = self._cell(shard, row, "vector")
        return None if packed is None else np.frombuffer(packed, "<f2").astype(np.float32)

    def __len__(self) -> int:
        return sum(len(s) for s in self.shards)

    def _shard(self, date: str) -> Shard | None:
        return next((s for s in self.shards if s.date == date), None)

    def locate(self, key: str) -> tuple[Shard, int]:
        """(shard, row) of "dt=<date>/<image_id>", or of a bare image_id that only one partition has."""
        if key.startswith("dt=") and "/" in key:
            date, image_id = key[3:].split("/", 1)
            shard = self._shard(date)
            row = None if shard is None else shard.find(image_id)
            if row is not None:
                return shard, row
        found = [(s, r) for s in self.shards if (r := s.find(key)) is not None]
        if len(found) == 1:
            return found[0]
        if found:
            raise SearchError(f"image_id {key!r} is in {len(found)} partitions: name one as dt=<date>/{key}")
        raise SearchError(f"image_id {key!r} is not in the index of {self.code} ({len(self)} images)")

    def key(self, shard: Shard, row: int) -> str:
        return f"dt={shard.date}/{self._cell(shard, row, 'image_id')}"

    def embeddings(self, keys: list[str]) -> dict[str, np.ndarray]:
        """The float embeddings of `keys`, read from the features table (their partitions only)."""
        import pyarrow.compute as pc

        if self.features_root is None:
            raise SearchError(f"index {self.code}: no features table to read embeddings from")
        by_date: dict[str, set] = {}
        for k in keys:
            date, image_id = k[3:].split("/", 1)
            by_date.setdefault(date, set()).add(image_id)
        out = {}
        for date, ids in by_date.items():
            t = _read_parquet(f"{self.features_root}/dt={date}", ["image_id", "embedding"],
                              pc.field("image_id").isin(sorted(ids)))
            for image_id, emb in zip(t.column("image_id").to_pylist(), t.column("embedding").to_pylist()):
                out[f"dt={date}/{image_id}"] = np.asarray(emb, np.float32)
        return out

    def search(self, code: np.ndarray, k: int, vector: np.ndarray | None = None, embedding=None,
               candidates: int = RERANK_CANDIDATES, exclude: str | None = None) -> list[dict]:
        """The k nearest images of one packed code, by (Hamming distance, key); `exclude`: a key
        left out (the query's own row). Re-ranked: the `candidates` nearest are ordered by cosine
        similarity, of their vectors with `vector` (the query's, from the same layer) when every
        candidate has one, else of their float embeddings with `embedding` (an array, or a function
        that reads it) when given; each hit then says which (`reranked_by`) and its `cosine`."""
        code = np.ascontiguousarray(np.asarray(code, np.uint8).reshape(1, -1))
        if code.shape[1] * 8 != self.bits:
            raise SearchError(f"a {code.shape[1] * 8}-bit query code against the {self.bits}-bit index {self.code}")
        rerank = vector is not None or embedding is not None
        n = max(k, candidates if rerank else k) + (exclude is not None)
        # One k-NN scan per shard gives every row nearer than the n-th distance overall (a shard
        # holding n of them would lower it). Rows at exactly that distance compete by key, so only a
        # shard that may have more of them than it returned is scanned again for all of them.
        knn = [s.knn(code, n) for s in self.shards]
        distances = sorted(d for rows in knn for d, _ in rows)
        last = distances[n - 1] if len(distances) >= n else None
        found = []
        for i, (shard, rows) in enumerate(zip(self.shards, knn)):
            if last is not None and len(rows) == n < len(shard) and rows[-1][0] == last:
                rows = shard.within(code, last)
            found += [(d, i, row) for d, row in rows if last is None or d <= last]
        found.sort()  # shards in partition order, rows in image_id order: (distance, key) order
        hits, places = [], []
        for d, i, row in found:
            shard = self.shards[i]
            key = self.key(shard, row)
            if key != exclude:
                hits.append({"key": key, "hamming": int(d), "label": self.label(shard, row)})
                places.append((shard, row))
            if len(hits) == n - (exclude is not None):
                break
        vectors = [self.vector(shard, row) for shard, row in places] if vector is not None else []
        if vector is not None and all(v is not None for v in vectors):
            by, query, vectors = "vectors", vector, dict(zip((h["key"] for h in hits), vectors))
        elif embedding is not None:
            by, query = "embeddings", embedding() if callable(embedding) else embedding
            vectors = self.embeddings([h["key"] for h in hits])
        else:
            return hits[:k]
        query = np.asarray(query, np.float32)
        for h in hits:
            h["cosine"], h["reranked_by"] = round(float(vectors[h["key"]] @ query), 4), by
        hits.sort(key=lambda h: (-h["cosine"], h["hamming"], h["key"]))
        return hits[:k]


def _read_parquet(path: str, columns: list[str], filter=None):
    """Columns of a Parquet directory on a local path or a Hadoop URI (WebHDFS)."""
    import pyarrow.parquet as pq

    from imgfeat import params, storage

    local = params.local_path(path)
    if local is not None:
        return pq.read_table(local, columns=columns, filters=filter, memory_map=True)
    fs, p = storage.filesystem(path)
    return pq.read_table(p, columns=columns, filters=filter, filesystem=fs)


def _row_groups(path: str) -> list:
    """[(first row, file fragment, row group id)] of a Parquet directory, in the row order of
    `_read_parquet` (the same discovery)."""
    import pyarrow.parquet as pq

    from imgfeat import params, storage

    local = params.local_path(path)
    if local is not None:
        dataset = pq.ParquetDataset(local, memory_map=True)
    else:
        fs, p = storage.filesystem(path)
        dataset = pq.ParquetDataset(p, filesystem=fs)
    out, start = [], 0
    for fragment in dataset.fragments:
        fragment.ensure_complete_metadata()
        for rg in fragment.row_groups:
            out.append((start, fragment, rg.id))
            start += rg.num_rows
    return out


def _shard_dates(warehouse: str, code: str) -> list[str]:
    """The partitions with a committed shard of `code`, in order."""
    from imgfeat import storage
    from imgfeat.layout import SUCCESS, Warehouse

    root = Warehouse(warehouse).index_shards(code)
    return sorted(n[3:] for n in storage.list_names(root)
                  if n.startswith("dt=") and storage.exists(f"{root}/{n}/{SUCCESS}"))


def load_index(warehouse: str, bits: int | None = None, code: str | None = None) -> Index:
    """The index of `code`; else of the learned code (latest version) or, failing that, the
    projection, of `bits` bits (or of any length when there is one)."""
    from imgfeat import storage
    from imgfeat.descriptor import code_bits_of
    from imgfeat.layout import Warehouse

    wh = Warehouse(warehouse)
    root = wh.index_root()
    dates = {c: _shard_dates(warehouse, c) for c in storage.list_names(root)}  # each code's shards, listed once
    codes = [c for c, d in dates.items() if d]
    if not codes:
        raise SearchError(f"no similarity index under {root}: the feature_index DAG builds one after each publish")
    if code is None:
        fitting = [c for c in codes if bits is None or code_bits_of(c) == bits]
        if not fitting:
            raise SearchError(f"no index of {bits}-bit codes under {root}; it has {', '.join(codes)}")
        lengths = {code_bits_of(c) for c in fitting}
        if len(lengths) > 1:
            raise SearchError(f"indexes of several code lengths under {root} ({', '.join(codes)}): choose one with --code-bits")
        learned = sorted(c for c in fitting if c.startswith("deepbit"))
        code = learned[-1] if learned else fitting[0]
    elif code not in codes:
        raise SearchError(f"no index of code {code} under {root}; it has {', '.join(codes)}")
    index_bits = code_bits_of(code)
    if bits is not None and index_bits != bits:
        raise SearchError(f"the index {code} holds {index_bits}-bit codes, not {bits}")
    shards = []
    for date in dates[code]:
        path = wh.index_shard(code, date)
        codes_ = _packed(_read_parquet(path, ["code"]).column("code"), index_bits)
        shards.append(Shard(date, path, index_bits, codes_))
    return Index(code, index_bits, shards, wh.features_root())


def _packed(column, bits: int) -> np.ndarray:
    """A binary column of bits/8-byte codes as one uint8 [n, bits/8] array (no Python loop)."""
    import pyarrow as pa

    width = bits // 8
    parts = []
    for chunk in column.chunks:
        try:
            fixed = chunk.cast(pa.binary(width))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise SearchError(f"a shard holds codes that are not {bits} bits long") from None
        data = np.frombuffer(fixed.buffers()[1], np.uint8)
        parts.append(data[fixed.offset * width:(fixed.offset + len(fixed)) * width])
    return np.concatenate(parts or [np.zeros(0, np.uint8)]).reshape(-1, width)


def describe_file(data: bytes, name: str, warehouse: str, index: Index, model_dir: str) -> dict:
    """A query picture described as the pipeline would, with the index's code: {"code", "vector"
    (the learned layer's, None for the projection), "embedding", "row" (the crop row)}."""
    from imgfeat import descriptor, pipeline, storage
    from imgfeat.engines import get_engine
    from imgfeat.layout import Warehouse

    engine = get_engine("openvino", model_dir)
    row = pipeline.crops([(name, data)], engine)[0]
    if row.get("quarantine_stage"):
        raise SearchError(f"cannot use {name} as a query: {row['quarantine_reason']}")
    embedding = pipeline.embeddings([row], engine)[0]

    def read_text(path):
        data = storage.read_bytes(path)
        return None if data is None else data.decode()

    coder = descriptor.load_coder(read_text, Warehouse(warehouse), index.bits, index.code)
    vectors = coder.vectors(embedding[None])
    # float16, as the shards keep them: the query's cosine with itself stays 1
    vector = None if vectors is None else vectors[0].astype("<f2").astype(np.float32)
    return {"code": coder.codes(embedding[None])[0], "vector": vector, "embedding": embedding, "row": row}


def similar(warehouse: str, k: int, picture: bytes | None = None, name: str = "query", image_id: str | None = None,
            bits: int | None = None, code: str | None = None, rerank: bool | None = None,
            model_dir: str | None = None) -> tuple[Index, list[dict], str]:
    """The k published images most similar to a picture (described as the pipeline would) or to a
    published image (its own row left out): (index, hits, what was asked). The one path of
    `python -m imgfeat.cli similar` and of the Airflow UI's search page. `rerank` None: the nearest
    codes re-ranked by the learned layer's vectors where the index has them (read with the hits);
    True: else by the float embeddings (read from the features table); False: by the code alone."""
    if (picture is None) == (image_id is None):
        raise SearchError("give a picture or an image_id")
    index = load_index(warehouse, bits, code)
    if picture is not None:
        from imgfeat import paths

        query = describe_file(picture, name, warehouse, index, model_dir or str(paths.model_dir()))
        query_code, vector, embedding = query["code"], query["vector"], query["embedding"]
        exclude, asked = None, name
    else:
        shard, row = index.locate(image_id)
        exclude = asked = index.key(shard, row)
        query_code, vector = shard.codes[row], index.vector(shard, row)
        embedding = lambda: index.embeddings([exclude])[exclude]  # noqa: E731 (read only if needed)
    if rerank is False:
        vector = embedding = None
    elif rerank is None:
        embedding = None
    return index, index.search(query_code, k, vector, embedding, exclude=exclude), asked


def published_picture(warehouse: str, key: str) -> tuple[bytes, dict]:
    """The original bytes of the published image "dt=<date>/<image_id>" (read from the input
    partition its manifest names) and its features row (label, score, box, width, height)."""
    import pyarrow.compute as pc

    from imgfeat import storage
    from imgfeat.layout import Warehouse

    if not key.startswith("dt=") or "/" not in key:
        raise SearchError(f"{key!r} is not dt=<date>/<image_id>")
    date, image_id = key[3:].split("/", 1)
    wh = Warehouse(warehouse)
    manifest = storage.read_json(wh.manifest(date))
    if manifest is None:
        raise SearchError(f"partition dt={date} is not published in {warehouse}")
    rows = _read_parquet(wh.table("features", date), ["image_id", "label", "score", "x1", "y1", "x2", "y2", "width",
                                                       "height"], pc.field("image_id") == image_id).to_pylist()
    if not rows:
        raise SearchError(f"{key} is not a published image")
    data = storage.read_bytes(f"{manifest['input'].rstrip('/')}/{image_id}")
    if data is None:
        raise SearchError(f"{key}: its input file is gone from {manifest['input']}")
    return data, rows[0]
