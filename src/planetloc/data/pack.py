"""Pack a manifest's samples into WebDataset shards that a manifest points into.

Training streams shards fastest; evaluation, indexing and the service read images by path,
which for a packed dataset are ``shards/part-NNNNNN.tar#<member>`` paths.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from planetloc.data.images import read_image_bytes
from planetloc.data.manifest import write_manifest
from planetloc.data.shards import MEMBER_SEP, sample_key, write_tar
from planetloc.data.table import SampleTable
from planetloc.errors import PlanetlocError


def write_dataset_shards(
    table: SampleTable, out: str | os.PathLike[str], *, shard_size: int = 1000
) -> list[Path]:
    """Pack a manifest's samples into ``out/shards/part-NNNNNN.tar`` and write
    ``out/manifest.parquet`` whose image paths point into the shards (``tar#member``).

    ``table`` is a :class:`~planetloc.data.table.SampleTable` (rows kept in its order).
    """
    if shard_size < 1:
        raise PlanetlocError(f"shard size must be at least 1, got {shard_size}")
    root = Path(out)
    paths: list[Path] = []
    samples = []
    for start in range(0, len(table), shard_size):
        name = f"part-{start // shard_size:06d}.tar"
        members: list[tuple[str, bytes]] = []
        for row in range(start, min(len(table), start + shard_size)):
            sample = table.sample(row)
            key = sample_key(sample.id)
            sat = table.resolve(sample.sat_path)
            ext = Path(str(sat)).suffix.lstrip(".").lower() or "png"
            members.append((f"{key}.sat.{ext}", read_image_bytes(sat)))
            sample.sat_path = f"shards/{name}{MEMBER_SEP}{key}.sat.{ext}"
            if sample.street_path:
                street = table.resolve(sample.street_path)
                sext = Path(str(street)).suffix.lstrip(".").lower() or "jpg"
                members.append((f"{key}.street.{sext}", read_image_bytes(street)))
                sample.street_path = f"shards/{name}{MEMBER_SEP}{key}.street.{sext}"
            record = json.dumps(sample.to_dict(), sort_keys=True, ensure_ascii=False)
            members.append((f"{key}.json", record.encode("utf-8")))
            samples.append(sample)
        write_tar(root / "shards" / name, members)
        paths.append(root / "shards" / name)
    write_manifest(samples, root / "manifest.parquet")
    return paths
