"""Build and open a gallery index: encoded tiles in content-keyed shards, metadata, FAISS.

Layout of an index folder::

    DIR/index.json           what it is: model fingerprint, FAISS factory string and search
                             parameters, tile size, counts (written last)
    DIR/shards/NNNNN.npz     per-shard embeddings, keyed by what they were made from
    DIR/embeddings.npy       (N, D) global tile embeddings (float16 or float32)
    DIR/phys_<branch>.npy    (N, P) physical embeddings per branch, float16
    DIR/meta.parquet         row, id, lat, lon, region, continent, tile path
    DIR/faiss.index          the search structure

A shard's key digests the model fingerprint, the input size and, for each of its tiles, the
id, coordinates and a hash of the image bytes. A rebuild into the same folder re-encodes
exactly the shards whose key changed (a reordered, replaced or edited gallery, another model)
and reuses the rest. Everything is streamed: memory holds one shard, not the gallery.

Hashing the bytes means reading the whole gallery again on every rebuild (and every
``evaluate`` rebuilds its index), so a shard also stores a stat key, as make and git do: the
same digest with each tile's file named by path, size, inode and modification time instead of
its bytes. A shard whose stat key still matches is reused without reading an image; when it
differs, the content key decides. Files modified within ``RACY_SECONDS`` of the build get no
stat key (a later edit in the same time-stamp tick would go unseen), so they are always read.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from planetloc.atomic import atomic_path, write_bytes, write_text
from planetloc.data.images import decode_rgb, read_image_bytes
from planetloc.data.shards import split_member_path
from planetloc.data.table import SampleTable
from planetloc.errors import PlanetlocError
from planetloc.index.search import SearchParams, factory_string_check, make_faiss, open_faiss
from planetloc.model.inference import Encoder
from planetloc.model.physics import BRANCHES

FORMAT = "planetloc-index-v2"
RACY_SECONDS = 2.0


@dataclass
class BuildOptions:
    """How an index is built (recorded in index.json)."""

    search: SearchParams = field(default_factory=SearchParams)
    dtype: str = "float16"
    shard_size: int = 4096
    tile_size_m: float | None = None  # ground size of a tile; default: read from the samples
    require_tile_size: bool = True  # False: an index only evaluation reads may lack it

    def check(self) -> None:
        if self.dtype not in ("float16", "float32"):
            raise PlanetlocError(f"index dtype must be float16 or float32, got {self.dtype!r}")
        if self.shard_size < 1:
            raise PlanetlocError(f"--shard-size must be at least 1, got {self.shard_size}")
        if self.tile_size_m is not None and not (0 < self.tile_size_m < 1e6):
            raise PlanetlocError(
                f"--tile-size-m must be a positive size in metres, got {self.tile_size_m}"
            )
        self.search.check()


def gallery_tile_size(table: SampleTable, rows: np.ndarray) -> float:
    """The ground size of the gallery's tiles, from ``meta.tile_m`` of its samples."""
    sizes = []
    if table.meta is not None:
        for r in rows[:: max(1, len(rows) // 200)]:
            value = table.meta[r].get("tile_m") if isinstance(table.meta[r], dict) else None
            if isinstance(value, int | float) and value > 0:
                sizes.append(float(value))
    if not sizes:
        raise PlanetlocError(
            f"{table.path}: the samples do not record their tile size (meta.tile_m); "
            "pass --tile-size-m"
        )
    return float(np.median(sizes))


def _image_hash(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def shard_key(fingerprint: str, image_size: int, table: SampleTable, rows: np.ndarray) -> str:
    """What a shard's embeddings were made from: model, input size, and every tile's bytes."""
    h = hashlib.sha256(f"{fingerprint}|{image_size}|v2".encode())
    for r in rows.tolist():
        h.update(f"{table.id[r]}|{table.lat[r]!r}|{table.lon[r]!r}|".encode())
        h.update(_image_hash(read_image_bytes(table.resolve(table.sat_path[r]))))
    return h.hexdigest()


def stat_key(fingerprint: str, image_size: int, table: SampleTable, rows: np.ndarray) -> str | None:
    """A shard's key from its files' metadata alone, or None when a file cannot be trusted by
    its time stamp (missing, or modified less than ``RACY_SECONDS`` ago)."""
    h = hashlib.sha256(f"{fingerprint}|{image_size}|stat-v1".encode())
    seen: dict[Path, bytes] = {}  # a tar shard serves many tiles: stat it once
    newest = time.time_ns() - int(RACY_SECONDS * 1e9)
    for r in rows.tolist():
        h.update(f"{table.id[r]}|{table.lat[r]!r}|{table.lon[r]!r}|".encode())
        path = table.resolve(table.sat_path[r])
        member = split_member_path(path)
        file = member[0] if member is not None else Path(path)
        stamp = seen.get(file)
        if stamp is None:
            try:
                st = file.stat()
            except OSError:
                return None
            if st.st_mtime_ns > newest:
                return None
            stamp = seen[file] = f"{file}|{st.st_size}|{st.st_ino}|{st.st_mtime_ns}".encode()
        h.update(stamp)
        h.update(f"|{path}|".encode())
    return h.hexdigest()


def _tiles(table: SampleTable, rows: np.ndarray, size: int) -> Iterator[np.ndarray]:
    for r in rows.tolist():
        path = table.resolve(table.sat_path[r])
        yield decode_rgb(read_image_bytes(path), size, source=str(path))


def _stored_keys(path: Path) -> tuple[str | None, str | None]:
    """The (content key, stat key) a shard was stored with; Nones when missing or damaged."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            stat = str(npz["stat"]) if "stat" in npz.files else None
            return str(npz["key"]), stat or None
    except (OSError, ValueError, KeyError):
        return None, None  # missing or damaged: re-encode


def _save_shard(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())


def build_index(
    encoder: Encoder,
    fingerprint: str,
    table: SampleTable,
    rows: np.ndarray,
    out: str | os.PathLike[str],
    *,
    options: BuildOptions | None = None,
    checkpoint: str | None = None,
    progress: bool = True,
) -> Path:
    """Encode the gallery rows of ``table`` and build the search structure in ``out``."""
    options = options or BuildOptions()
    options.check()
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise PlanetlocError(f"{folder}: --out must be a folder, and this is a file")
    rows = np.asarray(rows, dtype=np.int64)
    if not len(rows):
        raise PlanetlocError(f"{table.path}: no gallery tiles to index")
    # A factory string FAISS cannot parse is refused before the gallery is encoded.
    factory_string_check(options.search, len(rows), encoder.model.cfg.embed_dim)
    tile_m = options.tile_size_m
    if tile_m is None:
        try:
            tile_m = gallery_tile_size(table, rows)
        except PlanetlocError:
            if options.require_tile_size:
                raise
    size = encoder.model.cfg.image_size
    shards = folder / "shards"
    n_shards = (len(rows) + options.shard_size - 1) // options.shard_size
    start_time = time.perf_counter()
    reused = by_stat = 0
    for i in tqdm(range(n_shards), desc="encoding gallery", unit="shard", disable=not progress):
        part = rows[i * options.shard_size : (i + 1) * options.shard_size]
        path = shards / f"{i:05d}.npz"
        stat = stat_key(fingerprint, size, table, part)
        stored_key, stored_stat = _stored_keys(path)
        if stat is not None and stored_stat == stat:
            reused += 1
            by_stat += 1
            continue
        key = shard_key(fingerprint, size, table, part)
        if stored_key == key:
            reused += 1
            if stat is not None:  # same content, new time stamps: remember them
                with np.load(path, allow_pickle=False) as npz:
                    arrays = {name: npz[name] for name in npz.files}
                _save_shard(path, arrays | {"stat": np.asarray(stat)})
            continue
        emb = encoder.encode_tiles(_tiles(table, part, size), total=len(part))
        arrays = {"key": np.asarray(key), "stat": np.asarray(stat or ""), "emb": emb.global_}
        arrays.update({f"phys_{b}": emb.phys[b].astype(np.float16) for b in BRANCHES})
        _save_shard(path, arrays)
    for stale in shards.glob("*.npz"):
        if int(stale.stem) >= n_shards:
            stale.unlink()
    encode_seconds = time.perf_counter() - start_time
    dim, pdim = _merge(folder, n_shards, len(rows), options.dtype)
    _write_meta(folder, table, rows)
    start_time = time.perf_counter()
    emb = np.load(folder / "embeddings.npy", mmap_mode="r")
    index, search = make_faiss(emb, options.search)
    build_seconds = time.perf_counter() - start_time
    import faiss

    with atomic_path(folder / "faiss.index") as tmp:
        faiss.write_index(index, str(tmp))
    info = {
        "format": FORMAT,
        "model_fingerprint": fingerprint,
        "checkpoint": checkpoint,
        "embed_dim": dim,
        "phys_dim": pdim,
        "count": len(rows),
        "dtype": options.dtype,
        "image_size": size,
        "tile_size_m": tile_m,
        "search": asdict(search),
        "shards": {
            "count": n_shards,
            "size": options.shard_size,
            "reused": reused,
            "reused_by_stat": by_stat,
        },
        "encode_seconds": round(encode_seconds, 2),
        "build_seconds": round(build_seconds, 2),
        "gallery": str(table.path.resolve()),
    }
    write_text(folder / "index.json", json.dumps(info, indent=1) + "\n")
    return folder


def _merge(folder: Path, n_shards: int, count: int, dtype: str) -> tuple[int, int]:
    """Copy the shards into the flat arrays, one shard in memory at a time."""
    out: dict[str, np.ndarray] = {}
    position = 0
    for i in range(n_shards):
        with np.load(folder / "shards" / f"{i:05d}.npz", allow_pickle=False) as npz:
            parts = {"embeddings": npz["emb"]} | {f"phys_{b}": npz[f"phys_{b}"] for b in BRANCHES}
        if not out:
            for name, arr in parts.items():
                kind = dtype if name == "embeddings" else "float16"
                tmp = folder / f".{name}.npy.tmp"
                out[name] = np.lib.format.open_memmap(
                    tmp, mode="w+", dtype=kind, shape=(count, arr.shape[1])
                )
        n = len(parts["embeddings"])
        for name, arr in parts.items():
            out[name][position : position + n] = arr
        position += n
    if position != count:
        raise PlanetlocError(f"{folder}: shards hold {position} tiles, expected {count}")
    dims = (out["embeddings"].shape[1], out[f"phys_{BRANCHES[0]}"].shape[1])
    for name, arr in out.items():
        arr.flush()
        del arr
        os.replace(folder / f".{name}.npy.tmp", folder / f"{name}.npy")
    return int(dims[0]), int(dims[1])


def _write_meta(folder: Path, table: SampleTable, rows: np.ndarray) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    meta = pa.table(
        {
            "id": table.id[rows].tolist(),
            "lat": table.lat[rows],
            "lon": table.lon[rows],
            "region": table.region[rows].tolist(),
            "continent": table.continent[rows].tolist(),
            "path": [str(table.resolve(p)) for p in table.sat_path[rows].tolist()],
        }
    )
    with atomic_path(folder / "meta.parquet") as tmp:
        pq.write_table(meta, tmp)


@dataclass
class StoredVectors:
    """An index folder's memory-mapped embeddings, without its tile table or FAISS index."""

    folder: Path
    info: dict[str, Any]
    embeddings: np.ndarray  # (N, D)
    phys: dict[str, np.ndarray]  # (N, P) per branch


def open_vectors(folder: str | os.PathLike[str]) -> StoredVectors:
    """Map an index folder's embeddings, checked against ``index.json``.

    Evaluation needs only these: the FAISS copy and the tile table (ids, paths) of a
    million-tile store would add about 2 GB of memory that ranking never reads.
    """
    root = Path(folder)
    meta_path = root / "index.json"
    if not meta_path.is_file():
        raise PlanetlocError(
            f"{root}: not a finished index (no index.json); build it with `planetloc index build`"
        )
    try:
        info = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise PlanetlocError(f"{meta_path}: damaged index description ({err})") from None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        got = info.get("format") if isinstance(info, dict) else None
        raise PlanetlocError(f"{meta_path}: unsupported index format {got!r} (expected {FORMAT})")
    try:
        count, dim = int(info["count"]), int(info["embed_dim"])
        emb = np.load(root / "embeddings.npy", mmap_mode="r", allow_pickle=False)
        phys = {
            b: np.load(root / f"phys_{b}.npy", mmap_mode="r", allow_pickle=False) for b in BRANCHES
        }
    except Exception as err:  # numpy and KeyError mean the same to a user
        raise PlanetlocError(f"{root}: damaged index ({type(err).__name__}: {err})") from None
    if emb.shape != (count, dim) or any(len(p) != count for p in phys.values()):
        raise PlanetlocError(f"{root}: embeddings {emb.shape} do not match index.json")
    return StoredVectors(folder=root, info=info, embeddings=emb, phys=phys)


@dataclass
class GalleryIndex:
    """An opened index. ``rows`` are positions in it; ``ids`` are the tiles' sample ids."""

    folder: Path
    info: dict[str, Any]
    embeddings: np.ndarray  # (N, D) memory-mapped
    phys: dict[str, np.ndarray]  # (N, P) memory-mapped per branch
    ids: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    region: np.ndarray
    continent: np.ndarray
    paths: np.ndarray
    faiss_index: Any
    search_params: SearchParams

    @property
    def tile_size_m(self) -> float:
        size = self.info.get("tile_size_m")
        if isinstance(size, bool) or not isinstance(size, int | float) or not 0 < size < 1e6:
            raise PlanetlocError(
                f"{self.folder}: the index does not record its tiles' size; rebuild it with "
                "`planetloc index build --tile-size-m METRES`"
            )
        return float(size)

    def __len__(self) -> int:
        return int(self.info["count"])

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> GalleryIndex:
        """Open an index folder; every file is checked and refused with one line if damaged."""
        import pyarrow.parquet as pq

        vectors = open_vectors(folder)
        root, info, count = vectors.folder, vectors.info, len(vectors.embeddings)
        try:
            meta = pq.read_table(root / "meta.parquet").to_pydict()
            params = SearchParams.from_dict(info["search"])
        except PlanetlocError:
            raise
        except Exception as err:  # pyarrow and KeyError mean the same to a user
            raise PlanetlocError(f"{root}: damaged index ({type(err).__name__}: {err})") from None
        if len(meta.get("id", ())) != count:
            raise PlanetlocError(f"{root}: meta.parquet does not list {count} tiles")
        index = open_faiss(root / "faiss.index", params, count)
        return cls(
            folder=root,
            info=info,
            embeddings=vectors.embeddings,
            phys=vectors.phys,
            ids=np.asarray(meta["id"]),
            lat=np.asarray(meta["lat"], dtype=np.float64),
            lon=np.asarray(meta["lon"], dtype=np.float64),
            region=np.asarray(meta["region"]),
            continent=np.asarray(meta["continent"]),
            paths=np.asarray(meta["path"]),
            faiss_index=index,
            search_params=params,
        )

    def check_model(self, fingerprint: str, embed_dim: int) -> None:
        """Refuse a model other than the one that encoded the gallery."""
        if embed_dim != self.info["embed_dim"]:
            raise PlanetlocError(
                f"{self.folder}: index holds {self.info['embed_dim']}-d embeddings, "
                f"the model makes {embed_dim}-d ones"
            )
        if fingerprint != self.info["model_fingerprint"]:
            raise PlanetlocError(
                f"{self.folder}: index was built by another model (fingerprint mismatch)"
            )

    def search(
        self, queries: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(rows, scores)`` per query, among ``allowed`` rows when given.

        Scores are exact float64 cosines from the stored embeddings whatever the index kind
        (approximate kinds only propose the candidates); rows are ordered by score, ties by
        row; -1 rows (and -inf scores) pad queries with fewer than k allowed tiles.
        """
        from planetloc.index.search import search

        return search(self, queries, k, allowed)

    def search_joint(
        self,
        text: np.ndarray,
        view: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        how: str,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` ``(rows, scores)`` of one joint (text, view) query, scored ``how``."""
        from planetloc.index.search import search_joint

        return search_joint(self, text, view, k, allowed, how)
