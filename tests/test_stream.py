"""The training stream: every reader gets its own share, no sample twice in an epoch, workers
started either way give the same batches."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

from planetloc.data.manifest import Manifest
from planetloc.data.shards import sample_key, write_tar
from planetloc.data.stream import StreamSpec, TrainStream, open_source, train_loader
from planetloc.model.signatures import physical_signatures


def _shards(world: Manifest, folder: Path) -> None:
    """Shards of 12 samples in manifest order: several hold no training sample at all."""
    samples = world.samples
    for start in range(0, len(samples), 12):
        members = []
        for s in samples[start : start + 12]:
            key = sample_key(s.id)
            members.append((f"{key}.json", json.dumps(s.to_dict()).encode()))
            members.append((f"{key}.sat.png", world.resolve(s.sat_path).read_bytes()))
        write_tar(folder / f"part-{start // 12:05d}.tar", members)


def _epoch_keys(source, rank: int, world_size: int, count: int) -> list[str]:
    spec = StreamSpec(seed=3, batch_size=1, rank=rank, world_size=world_size, shuffle_buffer=8)
    stream = iter(TrainStream(source, spec))
    return [next(stream)["key"] for _ in range(count)]


def test_readers_share_an_epoch_without_overlap_and_none_starves(
    small_world: Manifest, tmp_path: Path
) -> None:
    _shards(small_world, tmp_path / "shards")
    source = open_source(tmp_path)
    train = {sample_key(s.id) for s in small_world.by_split("train")}
    parts = source.parts("train")
    assert 0 < len(parts) < len(list((tmp_path / "shards").glob("*.tar")))  # splits counted
    # With 3 readers each takes its dealt shards; an epoch's draws cover train exactly once.
    per_reader = {}
    for rank in range(3):
        per_reader[rank] = _epoch_keys(source, rank, 3, 10)
        assert set(per_reader[rank]) <= train  # only training samples, never a starved reader
    drawn = [k for keys in per_reader.values() for k in keys]
    assert len(drawn) == len(set(drawn))  # no sample twice across readers


def test_spawned_and_forked_workers_give_the_same_batches(small_world: Manifest) -> None:
    spec = dict(
        seed=1,
        batch_size=8,
        workers=2,
        shuffle_buffer=32,
        image_size=32,
        signatures=partial(physical_signatures),
    )
    out = {}
    for method in ("fork", "spawn"):
        loader = iter(
            train_loader(open_source(small_world.path), StreamSpec(**spec, start_method=method))
        )
        out[method] = [next(loader) for _ in range(3)]
    for a, b in zip(out["fork"], out["spawn"], strict=True):
        assert a["keys"] == b["keys"]
        assert (a["tiles"] == b["tiles"]).all()
        assert all((a["signatures"][k] == b["signatures"][k]).all() for k in a["signatures"])


def test_a_tar_cut_at_a_block_boundary_is_not_taken_for_a_shorter_one(tmp_path: Path) -> None:
    from planetloc.data.shards import iter_shard, tar_is_complete
    from planetloc.errors import PlanetlocError

    path = tmp_path / "a.tar"
    write_tar(path, [(f"k{i}.json", b'{"split": "train"}') for i in range(8)])
    assert tar_is_complete(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: 512 * 6])  # whole blocks: tarfile alone would read 3 members
    assert not tar_is_complete(path)
    import pytest

    with pytest.raises(PlanetlocError, match="truncated or damaged shard"):
        list(iter_shard(path))
