"""Build and open a gallery index: encoded tiles in resumable shards, metadata, FAISS.

Layout of an index folder::

    DIR/index.json          what it is: model fingerprint, kind and parameters, counts (last)
    DIR/shards/NNNNN.npz    per-shard embeddings, physical embeddings and signatures
    DIR/embeddings.npy      (N, D) global tile embeddings (float16 or float32)
    DIR/phys.npz            (N, P) physical embeddings per branch, float16
    DIR/meta.parquet        id, lat, lon, region, continent, tile path
    DIR/faiss.index         the search structure
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from planetloc.atomic import atomic_path, write_bytes, write_text
from planetloc.data.images import load_tile
from planetloc.data.manifest import find_manifest, read_manifest
from planetloc.errors import PlanetlocError
from planetloc.eval.metrics import top_k
from planetloc.model.physics import BRANCHES
from planetloc.model.planet import Planet
from planetloc.train.checkpoint import load_model, read_checkpoint

FORMAT = "planetloc-index-v1"
KINDS = ("flat", "hnsw", "ivfpq")


@dataclass
class IndexParams:
    """How the search structure is built and searched (recorded in index.json)."""

    kind: str = "flat"
    dtype: str = "float16"
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 128
    nlist: int = 0  # IVF cells; 0 = about 4 * sqrt(N)
    pq_m: int = 0  # PQ sub-quantisers; 0 = dim / 4
    pq_bits: int = 8
    nprobe: int = 64
    refine: int = 8  # IVF-PQ: re-rank refine * k candidates with exact vectors (0 = off)

    def check(self) -> None:
        if self.kind not in KINDS:
            raise PlanetlocError(f"index kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.dtype not in ("float16", "float32"):
            raise PlanetlocError(f"index dtype must be float16 or float32, got {self.dtype!r}")


def model_fingerprint(payload: dict[str, Any]) -> str:
    """A digest of a checkpoint's architecture and weights: which model encoded the tiles."""
    h = hashlib.sha256(json.dumps(payload["model_config"], sort_keys=True).encode())
    for key in sorted(payload["model"]):
        h.update(key.encode())
        h.update(payload["model"][key].float().numpy().tobytes())
    return h.hexdigest()[:32]


def tune_faiss() -> None:
    """Small query batches are ~6x faster with BLAS kicking in early (see DESIGN notes)."""
    import faiss

    faiss.cvar.distance_compute_blas_threshold = 20


SMALL_BATCH = 20  # below this many queries, exact search goes through numpy (see flat_search)


def flat_search(index: Any, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-``k`` on a FAISS flat index, choosing the faster engine for the batch size.

    FAISS parallelises exact search across queries, so a lone query runs on one core; a BLAS
    matrix-vector product over the same stored vectors (a zero-copy view) uses them all and
    is about twice as fast. Batches of ``SMALL_BATCH`` or more go to FAISS.
    """
    import faiss

    if len(queries) >= SMALL_BATCH:
        return index.search(queries, k)
    xb = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
    scores = queries @ xb.T
    top = top_k(scores, k)
    return np.take_along_axis(scores, top, axis=1).astype(np.float32), top.astype(np.int64)


def make_faiss(vectors: np.ndarray, params: IndexParams) -> Any:
    import faiss

    n, dim = vectors.shape
    if params.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif params.kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, params.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.ef_construction
    else:
        nlist = params.nlist or max(1, int(2 * np.sqrt(n)))
        pq_m = params.pq_m or max(1, dim // 4)
        if dim % pq_m:
            raise PlanetlocError(f"pq_m={pq_m} must divide the embedding size {dim}")
        if n < 39 * nlist:
            nlist = max(1, n // 39)  # faiss wants ~39 training points per cell
        # Each PQ codebook needs 2**bits training points: small galleries get smaller codes.
        params.pq_bits = min(params.pq_bits, max(1, int(np.log2(n))))
        params.nlist, params.pq_m = nlist, pq_m
        quantizer = faiss.IndexFlatIP(dim)
        ivf = faiss.IndexIVFPQ(
            quantizer, dim, nlist, pq_m, params.pq_bits, faiss.METRIC_INNER_PRODUCT
        )
        # k-means needs tens of points per cell, not the whole gallery.
        train_n = min(n, max(64 * nlist, 2**params.pq_bits * 40))
        sample = vectors[np.sort(np.random.default_rng(0).permutation(n)[:train_n])]
        ivf.train(np.ascontiguousarray(sample, dtype=np.float32))
        ivf.nprobe = params.nprobe
        index = ivf
        if params.refine:
            index = faiss.IndexRefineFlat(ivf)
            index.k_factor = float(params.refine)
    for start in range(0, n, 100_000):
        index.add(np.ascontiguousarray(vectors[start : start + 100_000], dtype=np.float32))
    return index


@torch.no_grad()
def _encode_shard(
    model: Planet, paths: list[str], size: int, batch_size: int, device: str
) -> dict[str, np.ndarray]:
    out: dict[str, list[np.ndarray]] = {"emb": []}
    for start in range(0, len(paths), batch_size):
        arrays = [load_tile(p, size) for p in paths[start : start + batch_size]]
        tiles = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous().to(device)
        out["emb"].append(model.encode_image(tiles).float().cpu().numpy())
        sigs = model.tile_signatures(tiles)
        phys = model.encode_signatures(sigs)
        for k in BRANCHES:
            out.setdefault(f"phys_{k}", []).append(phys[k].float().cpu().numpy().astype(np.float16))
            out.setdefault(f"sig_{k}", []).append(sigs[k].float().cpu().numpy().astype(np.float16))
    return {k: np.concatenate(v) for k, v in out.items()}


def build_index(
    checkpoint: str | os.PathLike[str],
    gallery: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    params: IndexParams | None = None,
    splits: tuple[str, ...] | None = None,
    shard_size: int = 4096,
    batch_size: int = 128,
    device: str = "cpu",
    progress: bool = True,
) -> Path:
    """Encode every gallery tile and build the search structure; resumes finished shards."""
    params = params or IndexParams()
    params.check()
    folder = Path(out)
    payload = read_checkpoint(checkpoint)
    fingerprint = model_fingerprint(payload)
    manifest = read_manifest(find_manifest(gallery), check_images=False)
    samples = [s for s in manifest.samples if splits is None or s.split in splits]
    if not samples:
        raise PlanetlocError(f"{manifest.path}: no gallery tiles (splits {splits})")
    stamp = folder / "build.json"
    job = {
        "checkpoint_fingerprint": fingerprint,
        "gallery": str(manifest.path.resolve()),
        "count": len(samples),
        "shard_size": shard_size,
        "dtype": params.dtype,
        "splits": list(splits) if splits else None,
    }
    if stamp.exists() and json.loads(stamp.read_text()) != job:
        raise PlanetlocError(
            f"{folder} holds an index of another model or gallery; use a new --out"
        )
    write_text(stamp, json.dumps(job, indent=1) + "\n")
    model = load_model(checkpoint, payload).to(device).eval()
    paths = [str(manifest.resolve(s.sat_path)) for s in samples]
    shards = folder / "shards"
    n_shards = (len(samples) + shard_size - 1) // shard_size
    start_time = time.perf_counter()
    for i in tqdm(range(n_shards), desc="encoding gallery", unit="shard", disable=not progress):
        path = shards / f"{i:05d}.npz"
        if path.exists():
            continue  # finished by an earlier run: shards are written atomically
        chunk = paths[i * shard_size : (i + 1) * shard_size]
        arrays = _encode_shard(model, chunk, model.cfg.image_size, batch_size, device)
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        write_bytes(path, buf.getvalue())
    encode_seconds = time.perf_counter() - start_time
    parts = [np.load(shards / f"{i:05d}.npz") for i in range(n_shards)]
    emb = np.concatenate([p["emb"] for p in parts]).astype(params.dtype)
    # Through a file handle: np.save would append ".npy" to the temporary name.
    with atomic_path(folder / "embeddings.npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, emb)
    phys = {
        f"{k}_{b}": np.concatenate([p[f"{k}_{b}"] for p in parts])
        for k in ("phys", "sig")
        for b in BRANCHES
    }
    with atomic_path(folder / "phys.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **phys)
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": [s.id for s in samples],
            "lat": [s.lat for s in samples],
            "lon": [s.lon for s in samples],
            "region": [s.region for s in samples],
            "continent": [s.continent for s in samples],
            "path": paths,
        }
    )
    with atomic_path(folder / "meta.parquet") as tmp:
        pq.write_table(table, tmp)
    import faiss

    start_time = time.perf_counter()
    index = make_faiss(emb, params)
    build_seconds = time.perf_counter() - start_time
    with atomic_path(folder / "faiss.index") as tmp:
        faiss.write_index(index, str(tmp))
    info = {
        "format": FORMAT,
        "model_fingerprint": fingerprint,
        "checkpoint": str(Path(checkpoint).resolve()),
        "embed_dim": int(emb.shape[1]),
        "phys_dim": int(phys[f"phys_{BRANCHES[0]}"].shape[1]),
        "count": int(emb.shape[0]),
        "params": asdict(params),
        "encode_seconds": round(encode_seconds, 2),
        "build_seconds": round(build_seconds, 2),
        "gallery": str(manifest.path.resolve()),
    }
    write_text(folder / "index.json", json.dumps(info, indent=1) + "\n")
    return folder


@dataclass
class GalleryIndex:
    """An opened index: embeddings, physics, metadata and the FAISS structure."""

    folder: Path
    info: dict[str, Any]
    embeddings: np.ndarray
    phys: dict[str, np.ndarray]
    ids: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    region: np.ndarray
    continent: np.ndarray
    paths: np.ndarray
    faiss_index: Any

    @classmethod
    def open(cls, folder: str | os.PathLike[str]) -> GalleryIndex:
        import faiss
        import pyarrow.parquet as pq

        root = Path(folder)
        meta_path = root / "index.json"
        if not meta_path.is_file():
            raise PlanetlocError(
                f"{root}: not a finished index (no index.json); "
                "build it with `planetloc index build`"
            )
        info = json.loads(meta_path.read_text(encoding="utf-8"))
        if info.get("format") != FORMAT:
            raise PlanetlocError(f"{meta_path}: unsupported index format {info.get('format')!r}")
        emb = np.load(root / "embeddings.npy", mmap_mode="r")
        if emb.shape != (info["count"], info["embed_dim"]):
            raise PlanetlocError(f"{root}: embeddings {emb.shape} do not match index.json")
        with np.load(root / "phys.npz") as npz:
            phys = {b: npz[f"phys_{b}"] for b in BRANCHES}
        meta = pq.read_table(root / "meta.parquet").to_pydict()
        tune_faiss()
        index = faiss.read_index(str(root / "faiss.index"))
        params = info["params"]
        if params["kind"] == "hnsw":
            index.hnsw.efSearch = params["ef_search"]
        elif params["kind"] == "ivfpq":
            faiss.extract_index_ivf(index).nprobe = params["nprobe"]
        return cls(
            folder=root,
            info=info,
            embeddings=emb,
            phys=phys,
            ids=np.asarray(meta["id"]),
            lat=np.asarray(meta["lat"], dtype=np.float64),
            lon=np.asarray(meta["lon"], dtype=np.float64),
            region=np.asarray(meta["region"]),
            continent=np.asarray(meta["continent"]),
            paths=np.asarray(meta["path"]),
            faiss_index=index,
        )

    def check_model(self, payload: dict[str, Any]) -> None:
        """Refuse a model other than the one that encoded the gallery."""
        dim = int(payload["model_config"]["embed_dim"])
        if dim != self.info["embed_dim"]:
            raise PlanetlocError(
                f"{self.folder}: index holds {self.info['embed_dim']}-d embeddings, "
                f"the model makes {dim}-d ones"
            )
        if model_fingerprint(payload) != self.info["model_fingerprint"]:
            raise PlanetlocError(
                f"{self.folder}: index was built by another model (fingerprint mismatch)"
            )

    def search(
        self,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None = None,
        exact_limit: int = 200_000,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` (scores, ids) per query, among ``allowed`` ids when given (-1 pads)."""
        import faiss

        q = np.ascontiguousarray(queries, dtype=np.float32)
        if allowed is None:
            if self.info["params"]["kind"] == "flat":
                return flat_search(self.faiss_index, q, k)
            return self.faiss_index.search(q, k)
        if len(allowed) == 0:
            return np.full((len(q), k), -np.inf, dtype=np.float32), np.full(
                (len(q), k), -1, dtype=np.int64
            )
        if len(allowed) <= exact_limit:
            # A small allowed set is scored exactly: faster than a filtered graph walk, and exact.
            sub = np.asarray(self.embeddings[allowed], dtype=np.float32)
            scores = q @ sub.T
            top = top_k(scores, k)
            kk = top.shape[1]
            d = np.take_along_axis(scores, top, axis=1)
            pad = k - kk
            ids = allowed[top]
            if pad:
                d = np.pad(d, ((0, 0), (0, pad)), constant_values=-np.inf)
                ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            return d.astype(np.float32), ids.astype(np.int64)
        selector = faiss.IDSelectorBatch(np.ascontiguousarray(allowed, dtype=np.int64))
        kind = self.info["params"]["kind"]
        if kind == "hnsw":
            sp = faiss.SearchParametersHNSW(
                sel=selector, efSearch=max(self.info["params"]["ef_search"], 4 * k)
            )
        elif kind == "ivfpq":
            sp = faiss.SearchParametersIVF(sel=selector, nprobe=self.info["params"]["nprobe"])
            if self.info["params"].get("refine"):
                sp = faiss.IndexRefineSearchParameters(
                    k_factor=float(self.info["params"]["refine"]), base_index_params=sp
                )
                sp.sel = selector
        else:
            sp = faiss.SearchParameters(sel=selector)
        return self.faiss_index.search(q, k, params=sp)
