"""Similarity search and near-duplicate groups over published binary codes, with faiss.

An index holds, for every image published with one code (`descriptor.Coder.name`), its key
"dt=<date>/<image_id>", its packed code, label and its float embedding (float16, for optional
re-ranking). Codes are searched exhaustively by Hamming distance (faiss IndexBinaryFlat): exact,
and measured by `make bench` at a fraction of a second for a million 64-bit codes.
It is stored as one .npz file, so a refresh replaces it atomically.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

INDEX_FILE = "index.npz"


class SearchError(ValueError):
    """A query that cannot be answered; the message says why."""


@dataclass
class Index:
    code: str
    bits: int
    keys: np.ndarray  # str, "dt=<date>/<image_id>"
    codes: np.ndarray  # uint8 [N, bits/8]
    labels: np.ndarray  # str ("" when nothing was detected)
    embeddings: np.ndarray  # float16 [N, dim]

    def __post_init__(self):
        import faiss

        if self.codes.shape[1] * 8 != self.bits:
            raise SearchError(f"index {self.code}: codes of {self.codes.shape[1] * 8} bits, expected {self.bits}")
        self._faiss = faiss.IndexBinaryFlat(self.bits)
        if len(self.codes):
            self._faiss.add(np.ascontiguousarray(self.codes))
        self._rows = {k: i for i, k in enumerate(self.keys)}

    def __len__(self) -> int:
        return len(self.keys)

    def row(self, key: str) -> int:
        """The row of "dt=<date>/<image_id>", or of a bare image_id that only one partition has."""
        if key in self._rows:
            return self._rows[key]
        found = [i for k, i in self._rows.items() if k.split("/", 1)[1] == key]
        if len(found) == 1:
            return found[0]
        if found:
            raise SearchError(f"image_id {key!r} is in {len(found)} partitions: name one as dt=<date>/{key}")
        raise SearchError(f"image_id {key!r} is not in the index of {self.code} ({len(self)} images)")

    def search(self, code: np.ndarray, k: int, embedding: np.ndarray | None = None,
               candidates: int = 100) -> list[dict]:
        """The k nearest images of one packed code. With `embedding`, the `candidates` nearest by
        Hamming distance are re-ranked by the cosine similarity of their float embeddings."""
        code = np.asarray(code, np.uint8).reshape(1, -1)
        if code.shape[1] * 8 != self.bits:
            raise SearchError(f"a {code.shape[1] * 8}-bit query code against the {self.bits}-bit index {self.code}")
        n = min(len(self), max(k, candidates if embedding is not None else k))
        if n == 0:
            return []
        dist, idx = self._faiss.search(code, n)
        hits = [{"key": str(self.keys[i]), "hamming": int(d), "label": str(self.labels[i]) or None}
                for d, i in zip(dist[0], idx[0]) if i >= 0]
        if embedding is not None:
            rows = idx[0][idx[0] >= 0]
            cos = self.embeddings[rows].astype(np.float32) @ np.asarray(embedding, np.float32)
            for h, c in zip(hits, cos):
                h["cosine"] = round(float(c), 4)
            hits.sort(key=lambda h: (-h["cosine"], h["hamming"]))
        return hits[:k]

    def within(self, codes: np.ndarray, radius: int) -> list[list[tuple[int, int]]]:
        """For each query code, the (row, distance) of every indexed code within `radius` (inclusive)."""
        if not len(self) or not len(codes):
            return [[] for _ in range(len(codes))]
        lims, dist, idx = self._faiss.range_search(np.ascontiguousarray(codes, np.uint8), radius + 1)
        return [[(int(idx[j]), int(dist[j])) for j in range(lims[q], lims[q + 1])] for q in range(len(codes))]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, code=np.array(self.code), bits=np.array(self.bits), keys=self.keys, codes=self.codes,
                 labels=self.labels, embeddings=self.embeddings)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "Index":
        z = np.load(io.BytesIO(data), allow_pickle=False)
        return cls(str(z["code"]), int(z["bits"]), z["keys"], z["codes"], z["labels"], z["embeddings"])


def build(code: str, bits: int, rows) -> Index:
    """An index of `rows`: (key, code bytes, label or None, embedding) tuples."""
    rows = sorted(rows, key=lambda r: r[0])
    dim = len(rows[0][3]) if rows else 0
    return Index(code, bits,
                 np.array([r[0] for r in rows], dtype=str),
                 np.frombuffer(b"".join(bytes(r[1]) for r in rows), np.uint8).reshape(len(rows), bits // 8),
                 np.array([r[2] or "" for r in rows], dtype=str),
                 np.array([r[3] for r in rows], dtype=np.float16).reshape(len(rows), dim))


def duplicates(index: Index, date: str, radius: int) -> list[dict]:
    """Near-duplicate rows of partition `date`: each of its images with every other indexed image
    of this or an earlier partition within `radius`. Images linked by such matches form a group,
    named by its earliest member (ordered by partition, then image_id): usually the original."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    prefix = f"dt={date}/"
    own = [i for i, k in enumerate(index.keys) if k.startswith(prefix)]
    pairs = []
    for i, found in zip(own, index.within(index.codes[own], radius)):
        pairs += [(i, j, d) for j, d in found if j != i and index.keys[j][3:13] <= date]
    if not pairs:
        return []
    n = len(index)
    graph = coo_matrix((np.ones(len(pairs)), ([p[0] for p in pairs], [p[1] for p in pairs])), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    first = {}
    for i in np.unique([p for pair in pairs for p in pair[:2]]):  # keys are sorted: the first seen is the earliest
        first.setdefault(component[i], str(index.keys[i]))
    return [{"image_id": index.keys[i][len(prefix):], "group_id": first[component[i]],
             "match_partition": index.keys[j][3:13], "match_image_id": index.keys[j][14:], "hamming": d}
            for i, j, d in sorted(pairs)]


def load_index(warehouse: str, bits: int | None = None, code: str | None = None) -> Index:
    """The index of `code`; else of the learned code (latest version) or, failing that, the
    projection, of `bits` bits (or of any length when there is one)."""
    from imgfeat import storage
    from imgfeat.descriptor import code_bits_of
    from imgfeat.layout import Warehouse

    root = Warehouse(warehouse).index_root()
    codes = [c for c in storage.list_names(root) if storage.exists(f"{root}/{c}/{INDEX_FILE}")]
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
    index = Index.from_bytes(storage.read_bytes(f"{root}/{code}/{INDEX_FILE}"))
    if bits is not None and index.bits != bits:
        raise SearchError(f"the index {code} holds {index.bits}-bit codes, not {bits}")
    return index


def describe_file(data: bytes, name: str, warehouse: str, index: Index, model_dir: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """A query picture's (code, embedding, crop row), computed as the pipeline would, with the index's code."""
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
    return coder.codes(embedding[None])[0], embedding, row
