"""The training stream: every reader gets its own share, no sample twice in an epoch, workers
started either way give the same batches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from planetloc.data.informal import informal
from planetloc.data.manifest import Manifest
from planetloc.data.shards import sample_key, write_tar
from planetloc.data.stream import (
    ManifestSource,
    Source,
    StreamSpec,
    TrainStream,
    check_styles,
    open_source,
    train_loader,
)
from planetloc.errors import PlanetlocError
from planetloc.model.signature_cache import Signatures
from planetloc.model.signatures import SignatureConfig


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
        signatures=Signatures(SignatureConfig()),
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

    path = tmp_path / "a.tar"
    write_tar(path, [(f"k{i}.json", b'{"split": "train"}') for i in range(8)])
    assert tar_is_complete(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: 512 * 6])  # whole blocks: tarfile alone would read 3 members
    assert not tar_is_complete(path)
    import pytest

    with pytest.raises(PlanetlocError, match="truncated or damaged shard"):
        list(iter_shard(path))


def test_cached_signatures_equal_measured_ones_and_the_cache_is_reused(
    small_world: Manifest, tmp_path: Path
) -> None:
    import numpy as np
    import torch

    from planetloc.data.images import content_hash, load_tile
    from planetloc.model.signature_cache import build_cache

    source = open_source(small_world.path)
    cfg = SignatureConfig()
    folder = build_cache(tmp_path, source, "train", 64, cfg)
    assert build_cache(tmp_path, source, "train", 64, cfg) == folder  # nothing recomputed
    assert build_cache(tmp_path, source, "train", 32, cfg) != folder  # other settings
    train = small_world.by_split("train")[:5]
    other = small_world.by_split("test")[:2]  # not in the cache: measured on the spot
    paths = [small_world.resolve(s.sat_path) for s in train + other]
    tiles = torch.stack([torch.from_numpy(load_tile(p, 64)).permute(2, 0, 1) for p in paths])
    hashes = [content_hash(p.read_bytes()) for p in paths]
    cached = Signatures(cfg, folder)(tiles, hashes)
    measured = Signatures(cfg)(tiles, hashes)
    for name in measured:
        assert np.allclose(cached[name], measured[name], atol=1e-5), name
    # Built by two worker processes, one part file each, assembled into the same arrays.
    blocks = ManifestSource(small_world.path, block_rows=100)
    assert len(blocks.parts("train")) > 1
    again = build_cache(tmp_path / "two", blocks, "train", 64, cfg, workers=2)
    assert np.array_equal(np.load(again / "hashes.npy"), np.load(folder / "hashes.npy"))
    for name in measured:  # batches of another size: equal up to float rounding
        assert np.allclose(np.load(again / f"{name}.npy"), np.load(folder / f"{name}.npy"), 0, 1e-5)
    assert not list((tmp_path / "two").glob(".*tmp"))  # nothing left behind


def _phrasing_sets(world: Manifest) -> dict[str, tuple[str, dict[str, str]]]:
    """Per training key: its own style and its text in every style it has."""
    return {
        sample_key(s.id): (s.meta["style"], {s.meta["style"]: s.text, **s.meta["alt_texts"]})
        for s in world.by_split("train")
    }


def _texts(world: Manifest, **spec: object) -> list[tuple[str, str]]:
    stream = iter(TrainStream(open_source(world.path), StreamSpec(seed=5, batch_size=1, **spec)))
    return [(item["key"], item["text"]) for item in (next(stream) for _ in range(120))]


def test_an_excluded_style_is_never_read_and_rewrites_are_read_as_asked(
    small_world: Manifest,
) -> None:
    styles = _phrasing_sets(small_world)
    read = _texts(small_world, shuffle_buffer=8, alt_text_prob=1.0, exclude_styles=("chatty",))
    own_chatty = [key for key, _ in read if styles[key][0] == "chatty"]
    assert own_chatty  # samples written in the excluded style were drawn, and read otherwise
    for key, text in read:
        allowed = {v for style, v in styles[key][1].items() if style != "chatty"}
        assert text in allowed and text != styles[key][1]["chatty"]
    # Other phrasings are read too, not only the own texts outside the excluded style.
    own = {key: phrases[style] for key, (style, phrases) in styles.items()}
    assert any(text != own[key] for key, text in read if styles[key][0] != "chatty")
    # Rewriting half of them changes no phrasing a sample reads, only its register.
    rewritten = _texts(
        small_world,
        shuffle_buffer=8,
        alt_text_prob=1.0,
        exclude_styles=("chatty",),
        informal_prob=0.5,
    )
    assert [k for k, _ in rewritten] == [k for k, _ in read]  # the same samples, in order
    changed = [new != old for (_, new), (_, old) in zip(rewritten, read, strict=True)]
    assert 0 < sum(changed) < len(read)
    for (_, new), (_, old) in zip(rewritten, read, strict=True):
        assert new in (old, informal(old))
    # Excluding a style no sample has reads what the plain stream reads.
    plain = _texts(small_world, shuffle_buffer=8, alt_text_prob=0.5)
    assert plain == _texts(small_world, shuffle_buffer=8, alt_text_prob=0.5, exclude_styles=("x",))


def test_a_sample_left_without_a_readable_text_stops_or_is_skipped_and_counted(
    small_world: Manifest, tmp_path: Path
) -> None:
    # One training sample written in the excluded style, with no other phrasing.
    alone = next(s for s in small_world.by_split("train") if s.meta["style"] == "chatty")
    members = []
    for s in small_world.samples:
        record = s.to_dict()
        if s.id == alone.id:
            record["meta"] = {k: v for k, v in record["meta"].items() if k != "alt_texts"}
        key = sample_key(s.id)
        members.append((f"{key}.json", json.dumps(record).encode()))
        members.append((f"{key}.sat.png", small_world.resolve(s.sat_path).read_bytes()))
    write_tar(tmp_path / "shards" / "part-00000.tar", members)
    count = len(small_world.by_split("train"))
    spec = dict(seed=0, batch_size=1, shuffle_buffer=8, exclude_styles=("chatty",))
    with pytest.raises(PlanetlocError, match=sample_key(alone.id)):
        stream = iter(TrainStream(open_source(tmp_path), StreamSpec(**spec)))
        for _ in range(count):
            next(stream)
    stream = iter(TrainStream(open_source(tmp_path), StreamSpec(**spec, on_bad_sample="skip")))
    items = [next(stream) for _ in range(count - 1)]  # one epoch, less the bad sample
    assert sample_key(alone.id) not in {i["key"] for i in items}
    bad = [b for i in items for b in i["bad"]]
    assert len(bad) == 1 and "excluded style" in bad[0]


class _Parts(Source):
    """A source of parts given as lists of records (or an error to raise when read)."""

    description = "test parts"

    def __init__(self, parts: list) -> None:
        self._parts = parts

    def parts(self, split: str) -> list:
        return list(range(len(self._parts)))

    def iter_part(self, part: int):
        from planetloc.data.shards import RawSample

        if isinstance(self._parts[part], Exception):
            raise self._parts[part]
        for i, record in enumerate(self._parts[part]):
            yield RawSample(key=f"{part}-{i}", record=record, sat=b"")


def _styled(style: str, n: int, split: str = "train", alt: tuple = ()) -> list[dict]:
    meta = {"style": style, "alt_texts": {a: "..." for a in alt}}
    return [{"split": split, "meta": meta} for _ in range(n)]


def test_style_names_are_checked_against_samples_from_every_part() -> None:
    # One style per part, as data stored style by style would be: reading the first two
    # samples of the whole source would see only `caption`.
    source = _Parts([_styled("val-only", 3, "val") + _styled("caption", 5), _styled("chatty", 5)])
    check_styles(source, ("chatty", "caption"), max_samples=2)
    check_styles(_Parts([_styled("caption", 2, alt=("terse",))]), ("terse",))
    with pytest.raises(PlanetlocError) as err:
        check_styles(source, ("chaty", "chatty", "val-only"), max_samples=2)
    text = str(err.value)
    assert "2 training samples" in text and "in style 'chaty', 'val-only';" in text
    assert text.endswith("their styles: caption, chatty")
    with pytest.raises(PlanetlocError, match="none named"):
        check_styles(_Parts([[{"split": "train"}]]), ("chatty",))
    # Nothing readable: the training stream reports the damage, not this check.
    check_styles(_Parts([PlanetlocError("truncated or damaged shard")]), ("chatty",))
    check_styles(source, ())  # nothing to check
