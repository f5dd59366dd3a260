"""Text styles of SynthCORE descriptions: facts kept, voices different, rules per style."""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime

import numpy as np
import pytest

from planetloc.data.synth.describe import (
    DIFFICULTY,
    HELD_OUT_STYLE,
    MAX_WORDS,
    MIN_WORDS,
    STYLES,
    TRAIN_STYLES,
    WORD_RANGES,
    Observation,
    Observer,
    choose_heading,
    compose,
    describe,
    describe_all,
    observe,
    storeys,
    write,
)
from planetloc.data.synth.observation import EXTRAS, height_class
from planetloc.data.synth.render import Scene
from planetloc.data.synth.style import ROOF_NAMES, derive_style
from planetloc.data.synth.world import (
    BUILDING,
    GRASS,
    NO_ROOF,
    ROAD,
    TREE,
    WATER,
    RegionMap,
    build_region_map,
)
from planetloc.errors import PlanetlocError
from planetloc.geo.regions import CONTINENTS, get_region, load_catalog

REGIONS = ("Madrid", "Lagos", "Chicago", "Cairo", "Oslo", "Sydney")
GSD = 1.5
RADIUS_PX = 62  # the 90 m view and a margin

# Words a reader would accept for each fact, written independently of the phrase banks.
COLOUR_WORDS = {
    "terracotta": ("terracotta", "clay", "orange"),
    "red": ("red",),
    "dark grey": ("dark grey", "charcoal", "dk grey"),
    "light grey": ("light grey", "pale grey", "lt grey"),
    "white": ("white",),
    "blue": ("blue",),
    "green": ("green",),
    "brown": ("brown",),
    "silver metal": ("metal", "tin"),
    "rusty brown": ("rust",),
    "black": ("black",),
    "beige": ("beige",),
}
KIND_WORDS = {
    "water": ("water", "river", "lake"),
    "sports_field": ("sports", "field", "pitch"),
    "parking": ("car park", "parking", "parked cars"),
    "plaza": ("plaza", "square", "paving", "paved"),
    "rail": ("rail", "train"),
    "dense_trees": ("tree", "wood", "greenery"),
    "lawn": ("grass", "lawn", "park"),
    "bare_ground": ("bare", "dirt", "empty", "vacant"),
    "scattered_trees": ("tree",),
}
COMPASS_ABBREV = {
    "north": "n",
    "northeast": "ne",
    "east": "e",
    "southeast": "se",
    "south": "s",
    "southwest": "sw",
    "west": "w",
    "northwest": "nw",
}
EXTRA_WORDS = {
    "traffic_noise": ("traffic", "horn"),
    "bus_stop": ("bus",),
    "cyclist": ("cyclist", "bike"),
    "food_smell": ("food",),
    "power_lines": ("power lines", "wires"),
    "pedestrians": ("pedestrian", "people", "ppl"),
    "street_signs": ("sign",),
    "parked_cars": ("cars",),
    "delivery_van": ("van",),
    "awnings": ("awning",),
    "worn_sidewalk": ("sidewalk", "pavement"),
    "traffic_light": ("traffic light", "signal"),
    "birds": ("bird",),
    "scooters": ("scooter",),
    "graffiti": ("graffiti", "tagged"),
    "warm_air": ("warm",),
}
FIRST_PERSON = re.compile(r"\b(i|i'm|im|me|my)\b")


def _says(text: str, words: tuple[str, ...]) -> bool:
    """Whether ``text`` has a word starting with any of ``words`` (case-insensitive)."""
    low = text.casefold()
    return any(re.search(r"\b" + re.escape(w), low) for w in words)


def _norm(text: str) -> str:
    return text.casefold().replace("'", "")


def _scene(rng: np.random.Generator) -> Scene:
    return Scene(
        when=datetime(2023, 1 + int(rng.integers(12)), 10, 10, tzinfo=UTC),
        sun_azimuth_deg=float(rng.uniform(0, 360)),
        sun_elevation_deg=float(rng.uniform(16, 75)),
        season=str(rng.choice(["summer", "winter", "transition"])),
        image=np.zeros((1, 1, 3), np.float32),
        shadow=np.zeros((1, 1), bool),
    )


@pytest.fixture(scope="module")
def records() -> list[Observation]:
    """Observations from six regions at every difficulty."""
    out = []
    for name in REGIONS:
        rng = np.random.default_rng(4)  # a seed under which these regions span all climates
        rmap = build_region_map(derive_style(get_region(name), rng), rng, extent_m=400, gsd=GSD)
        road = np.argwhere(rmap.cls == ROAD)
        n = rmap.shape[0]
        road = road[(road.min(axis=1) >= RADIUS_PX) & (road.max(axis=1) < n - RADIUS_PX)]
        for difficulty in DIFFICULTY:
            for _ in range(7):
                row, col = (int(v) for v in road[rng.integers(len(road))])
                heading, crossing = choose_heading(rmap, row, col, rng)
                out.append(
                    observe(
                        rmap,
                        _scene(rng),
                        Observer(row, col, heading),
                        intersection=crossing,
                        difficulty=difficulty,
                        rng=rng,
                    )
                )
    return out


def _handmade_map() -> RegionMap:
    """A north-south street: water to the north, red-roofed 4-storey buildings to the west,
    grass to the east and trees to the south of the centre pixel (80, 80)."""
    n = 161
    cls = np.full((n, n), GRASS, np.uint8)
    height = np.zeros((n, n), np.float32)
    roof = np.full((n, n), NO_ROOF, np.uint8)
    cls[:, 74:87] = ROAD
    cls[0:68, 56:105] = WATER
    cls[35:125, 0:70] = BUILDING
    height[35:125, 0:70] = 13.0
    roof[35:125, 0:70] = ROOF_NAMES.index("red")
    cls[95:, 40:74] = TREE
    cls[95:, 87:125] = TREE
    height[95:, 40:74] = 8.0
    return RegionMap(
        gsd=GSD,
        cls=cls,
        height=height,
        albedo=np.zeros((n, n, 3), np.float32),
        roof=roof,
        major_road=np.zeros((n, n), bool),
        roundabout=np.zeros((n, n), bool),
        street_axis_deg=0.0,
        style=derive_style(get_region("Madrid"), np.random.default_rng(0)),
    )


def _height_words(floors: int) -> tuple[str, ...]:
    """What may stand for ``floors`` storeys: the number or a word of its height class."""
    return (str(floors),) + {
        "low": ("low", "single-storey", "one"),
        "mid": ("mid-rise",),
        "tall": ("tall", "multi-storey", "high-rise"),
        "tower": ("tower", "skyscraper", "high-rise"),
    }[height_class(floors)]


def _check_clause(record: Observation, cue: str, clause: str) -> None:
    """Fail unless ``clause`` tells the record's fact for ``cue``."""
    where = f"{cue!r} in {clause!r}"
    if cue in record.sectors:
        view = record.sectors[cue]
        if view.kind == "buildings":
            assert _says(clause, (str(view.facade),)), where
            if view.roof is not None:
                assert _says(clause, COLOUR_WORDS[view.roof]), where
            assert _says(clause, _height_words(view.storeys)), where
        else:
            assert _says(clause, KIND_WORDS[view.kind]), where
    elif cue == "street":
        if record.junction == "roundabout":
            assert _says(clause, ("roundabout",)), where
        elif record.junction == "intersection":
            assert _says(clause, ("intersection", "crossroads", "junction", "cross", "corner")), (
                where
            )
        wide = ("wide", "busy", "main", "big", "major")
        assert _says(clause, wide) == record.major_street, where
    elif cue == "facing":
        assert _says(clause, (record.facing,)) or re.search(
            rf"\b{COMPASS_ABBREV[record.facing]}\b", clause.casefold()
        ), where
    elif cue == "roofs":
        for colour in record.roofs:
            assert _says(clause, COLOUR_WORDS[colour]), where
    elif cue == "heights":
        assert _says(clause, _height_words(record.storeys)), where
    elif cue == "facades":
        assert _says(clause, (str(record.facade),)), where
    elif cue == "no_buildings":
        assert _says(clause, ("building", "bldgs", "built-up")), where
    elif cue == "vegetation":
        assert _says(clause, ("tree", "wooded", "canopy", "none")), where
        if record.leafless:
            assert _says(clause, ("bare", "leafless", "no leaves")), where
    elif cue == "climate":
        words = ("dry", "dust") if record.climate == "arid" else ("humid", "lush")
        assert _says(clause, words), where
    elif cue == "water":
        assert _says(clause, ("water",)), where
    elif cue == "pool":
        assert _says(clause, ("pool",)), where
    elif cue == "shadow":
        assert _says(clause, ("shadow", "sun")), where
    elif cue == "shade":
        assert _says(clause, ("shade", "shady")), where
    else:
        assert _says(clause, EXTRA_WORDS[cue.split(":", 1)[1]]), where


def test_style_names_and_the_held_out_style() -> None:
    assert len(STYLES) >= 5 and len(set(STYLES)) == len(STYLES)
    assert HELD_OUT_STYLE in STYLES and HELD_OUT_STYLE not in TRAIN_STYLES
    assert set(TRAIN_STYLES) | {HELD_OUT_STYLE} == set(STYLES)
    assert "caption" in TRAIN_STYLES
    assert set(WORD_RANGES) == set(STYLES)
    assert (MIN_WORDS, MAX_WORDS) == WORD_RANGES["caption"] == (60, 200)
    assert all(0 < lo < hi for lo, hi in WORD_RANGES.values())
    assert len(set(WORD_RANGES.values())) > 1  # styles define their own lengths


def test_every_style_is_first_person_within_its_range_and_told_truthfully(
    records: list[Observation],
) -> None:
    for i, record in enumerate(records):
        for style in STYLES:
            comp = compose(record, style, np.random.default_rng(i))
            lo, hi = WORD_RANGES[style]
            assert lo <= len(comp.text.split()) <= hi, (style, comp.text)
            assert FIRST_PERSON.search(comp.text.casefold()), (style, comp.text)
            assert comp.cues[0] == "street" or "street" in comp.cues
            assert set(comp.cues) <= set(record.cues) | set(record.spare)
            for cue, clause in comp.clauses:
                _check_clause(record, cue, clause)
                assert _norm(clause).rstrip(".") in _norm(comp.text), (style, clause, comp.text)


def test_texts_never_mention_what_the_record_does_not_hold(records: list[Observation]) -> None:
    checked = 0
    for i, record in enumerate(records):
        kinds = {v.kind for v in record.sectors.values()}
        texts = [write(record, s, np.random.default_rng(i)) for s in STYLES]
        for text in texts:
            if "water" not in kinds and not record.water_near:
                assert not _says(text, ("water", "river", "lake")), text
                checked += 1
            if not record.pool:
                assert not _says(text, ("pool",)), text
            if record.junction != "roundabout":
                assert not _says(text, ("roundabout",)), text
            if not record.leafless:
                assert not _says(text, ("leafless", "no leaves", "bare trees")), text
    assert checked > 50


def test_records_cover_the_facts_the_checks_are_about(records: list[Observation]) -> None:
    kinds = {v.kind for r in records for v in r.sectors.values()}
    assert {"water", "buildings", "dense_trees", "lawn"} <= kinds, kinds
    assert {r.junction for r in records} >= {"none", "intersection"}
    assert any(r.roofs for r in records) and any(r.leafless for r in records)
    assert {r.climate for r in records} >= {"arid", "tropical"}
    assert any(r.errors for r in records)
    assert not any(r.errors for r in records if r.difficulty == "easy")


def test_each_style_words_water_ahead_and_red_roofs_whenever_it_tells_them() -> None:
    rmap = _handmade_map()
    told_ahead = {style: 0 for style in STYLES}
    for seed in range(30):
        rng = np.random.default_rng(seed)
        record = observe(
            rmap, _scene(rng), Observer(80, 80, 0.0), intersection=False, difficulty="easy", rng=rng
        )
        assert record.sectors["ahead"].kind == "water"
        assert record.sectors["behind"].kind == "dense_trees"
        assert record.sectors["right"].kind == "lawn"
        left = record.sectors["left"]
        assert (left.kind, left.roof, left.storeys) == ("buildings", "red", 4)
        assert record.street_axis == "north-south" and record.facing == "north"
        for style in STYLES:
            comp = compose(record, style, np.random.default_rng(seed))
            clauses = dict(comp.clauses)
            if "ahead" in clauses:
                told_ahead[style] += 1
                assert _says(clauses["ahead"], ("water", "river", "lake")), clauses["ahead"]
            if "left" in clauses:
                assert _says(clauses["left"], ("red",)), clauses["left"]
            if "roofs" in clauses:
                assert _says(clauses["roofs"], ("red",)), clauses["roofs"]
    assert all(n >= 20 for n in told_ahead.values()), told_ahead


def test_deliberate_errors_are_what_every_style_tells() -> None:
    rmap = _handmade_map()
    for seed in range(400):
        rng = np.random.default_rng(seed)
        record = observe(
            rmap, _scene(rng), Observer(80, 80, 0.0), intersection=False, difficulty="hard", rng=rng
        )
        if "sides ahead and behind swapped" in record.errors:
            break
    else:
        pytest.fail("no side swap at hard difficulty in 400 draws")
    assert record.sectors["behind"].kind == "water"
    assert record.sectors["ahead"].kind == "dense_trees"
    assert record.measured["water_ahead"] > 0.15  # the truth is kept
    for style in STYLES:
        clauses = dict(compose(record, style, np.random.default_rng(1)).clauses)
        if "behind" in clauses:
            assert _says(clauses["behind"], ("water", "river", "lake")), clauses["behind"]
        if "ahead" in clauses:
            assert not _says(clauses["ahead"], ("water", "river", "lake")), clauses["ahead"]


def test_roof_and_height_errors_are_recorded_against_the_measurements(
    records: list[Observation],
) -> None:
    for record in records:
        for error in record.errors:
            if error.startswith("roof colour"):
                true = ROOF_NAMES[int(record.measured["roof1_all"])]
                assert error == f"roof colour {true} told as {record.roofs[0]}"
            elif error.startswith("building height"):
                factor = float(error.rsplit(" ", 1)[1])
                assert record.storeys == storeys(record.measured["height_all"] * factor)
        if not any(e.startswith("building height") for e in record.errors) and record.storeys:
            assert record.storeys == storeys(record.measured["height_all"])


def test_same_seed_same_texts_other_seed_other_texts(records: list[Observation]) -> None:
    record = records[3]
    for style in STYLES:
        a = write(record, style, np.random.default_rng(11))
        assert a == write(record, style, np.random.default_rng(11))
    differ = sum(
        write(r, s, np.random.default_rng(1)) != write(r, s, np.random.default_rng(2))
        for r in records[:10]
        for s in STYLES
    )
    assert differ >= 0.8 * 10 * len(STYLES)


def test_observation_is_deterministic_per_seed() -> None:
    rmap = _handmade_map()
    scene = _scene(np.random.default_rng(0))
    args = (rmap, scene, Observer(80, 80, 0.0))
    a = observe(*args, intersection=False, difficulty="medium", rng=np.random.default_rng(5))
    b = observe(*args, intersection=False, difficulty="medium", rng=np.random.default_rng(5))
    assert a == b


def _tokens(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9']+", text.casefold()))


def _jaccard(a: str, b: str) -> float:
    ta, tb = _tokens(a), _tokens(b)
    return len(ta & tb) / len(ta | tb)


def _sentence_lengths(text: str) -> list[int]:
    return [len(s.split()) for s in re.split(r"(?<=[.!?;])\s+", text) if s.strip()]


def _ks(a: list[int], b: list[int]) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.union1d(a, b)
    cdf_a = np.searchsorted(np.sort(a), grid, side="right") / len(a)
    cdf_b = np.searchsorted(np.sort(b), grid, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def test_styles_differ_in_words_sentence_lengths_order_and_drops(
    records: list[Observation],
) -> None:
    comps = {
        (i, s, k): compose(r, s, np.random.default_rng(1000 * k + i))
        for i, r in enumerate(records)
        for s in STYLES
        for k in (0, 1)
    }
    n = len(records)
    same = {
        s: np.mean([_jaccard(comps[i, s, 0].text, comps[i, s, 1].text) for i in range(n)])
        for s in STYLES
    }
    sides = ("ahead", "right", "behind", "left")
    for s, t in itertools.combinations(STYLES, 2):
        cross = np.mean([_jaccard(comps[i, s, 0].text, comps[i, t, 0].text) for i in range(n)])
        assert cross < 0.8 * min(same[s], same[t]), (s, t, cross, same)
        ks = _ks(
            [x for i in range(n) for x in _sentence_lengths(comps[i, s, 0].text)],
            [x for i in range(n) for x in _sentence_lengths(comps[i, t, 0].text)],
        )
        assert ks > 0.25, (s, t, ks)
        agree = total = 0
        for i in range(n):
            a = [c for c in comps[i, s, 0].cues if c in sides]
            b = [c for c in comps[i, t, 0].cues if c in sides]
            if len(set(a) & set(b)) >= 3:
                total += 1
                agree += [c for c in a if c in b] == [c for c in b if c in a]
        assert total >= 20 and agree < 0.5 * total, (s, t, agree, total)
        # Habits of leaving cues out: some cue is told at clearly different rates.
        rates = []
        for cue in ("facing", "behind", "roofs", "facades", "shadow", "climate", "shade"):
            mentioned = [i for i, r in enumerate(records) if cue in r.cues]
            rate_s = np.mean([cue in comps[i, s, 0].cues for i in mentioned])
            rate_t = np.mean([cue in comps[i, t, 0].cues for i in mentioned])
            rates.append(abs(rate_s - rate_t))
        assert max(rates) > 0.2, (s, t, rates)


def test_style_rules(records: list[Observation]) -> None:
    texts = {
        s: [write(r, s, np.random.default_rng(i)) for i, r in enumerate(records)] for s in STYLES
    }
    for text in texts["caption"]:
        sentences = re.split(r"(?<=\.)\s+", text)
        assert all(x[0].isupper() and x.endswith(".") for x in sentences), text
        assert " I " in f" {sentences[0]} " or "I'm" in sentences[0], text
    for text in texts["terse"]:
        assert max(_sentence_lengths(text)) <= 12 and not _says(text, ("the ",)), text
    for text in texts["texting"]:
        assert text == text.lower() and "'" not in text, text
    contraction = re.compile(r"\b\w+'(s|m|re|ve|d|ll)\b")
    vague = ("like", "kinda", "bunch", "loads", "pretty", "honestly", "maybe", "tons", "super")
    assert all(contraction.search(t.casefold()) for t in texts["chatty"])
    assert np.mean([_says(t, vague) or "ish" in t for t in texts["chatty"]]) > 0.8
    assert np.mean([_says(t, ("you",)) for t in texts["directions"]]) > 0.6
    label = re.compile(r"(?:^|[.;] )[A-Z][A-Za-z. ]{1,20}(?:: | - )")
    assert all(len(label.findall(t)) >= 3 for t in texts["inventory"])


def test_no_text_names_a_place(records: list[Observation]) -> None:
    names = {r.name for r in load_catalog()} | {r.country for r in load_catalog()}
    names |= set(CONTINENTS)
    pattern = re.compile(r"\b(" + "|".join(re.escape(n.casefold()) for n in sorted(names)) + r")\b")
    for i, record in enumerate(records):
        for text in describe_all(record, STYLES, np.random.default_rng(i)).values():
            assert not pattern.search(text.casefold()), text


def test_describe_all_gives_each_style_its_own_stable_text(records: list[Observation]) -> None:
    record = records[5]
    every = describe_all(record, STYLES, np.random.default_rng(9))
    assert list(every) == list(STYLES)
    some = describe_all(record, [HELD_OUT_STYLE, "caption"], np.random.default_rng(9))
    assert some == {HELD_OUT_STYLE: every[HELD_OUT_STYLE], "caption": every["caption"]}
    assert len(set(every.values())) == len(STYLES)
    assert describe_all(record, [], np.random.default_rng(9)) == {}


def test_describe_keeps_its_caption_contract() -> None:
    rmap = _handmade_map()
    scene = _scene(np.random.default_rng(0))
    args = (rmap, scene, Observer(80, 80, 0.0))
    text, measured = describe(
        *args, intersection=True, difficulty="medium", rng=np.random.default_rng(4)
    )
    rng = np.random.default_rng(4)
    record = observe(*args, intersection=True, difficulty="medium", rng=rng)
    assert text == write(record, "caption", rng)
    assert MIN_WORDS <= len(text.split()) <= MAX_WORDS
    assert re.match(r"(I am|I'm|Right now I am|I find myself|I stand)\b", text), text
    assert measured == record.measured
    assert {"water_ahead", "building_left", "tree_behind", "roof1_all", "height_all"} <= set(
        measured
    )
    terse, _ = describe(
        *args, intersection=True, difficulty="medium", rng=np.random.default_rng(4), style="terse"
    )
    assert WORD_RANGES["terse"][0] <= len(terse.split()) <= WORD_RANGES["terse"][1]
    assert terse != text


def test_bad_inputs_name_the_bad_value() -> None:
    rmap = _handmade_map()
    scene = _scene(np.random.default_rng(0))
    rng = np.random.default_rng(0)
    with pytest.raises(PlanetlocError, match="'brutal'"):
        observe(
            rmap, scene, Observer(80, 80, 0.0), intersection=False, difficulty="brutal", rng=rng
        )
    with pytest.raises(PlanetlocError, match="row 10, col 80"):
        observe(rmap, scene, Observer(10, 80, 0.0), intersection=False, difficulty="easy", rng=rng)
    with pytest.raises(PlanetlocError, match="heading"):
        observe(
            rmap,
            scene,
            Observer(80, 80, float("nan")),
            intersection=False,
            difficulty="easy",
            rng=rng,
        )
    record = observe(
        rmap, scene, Observer(80, 80, 0.0), intersection=False, difficulty="easy", rng=rng
    )
    with pytest.raises(PlanetlocError, match="'poetic'"):
        write(record, "poetic", rng)
    with pytest.raises(PlanetlocError, match="'poetic'"):
        describe_all(record, ["caption", "poetic"], rng)


def test_unseen_details_fit_the_place() -> None:
    rmap = _handmade_map()
    rng = np.random.default_rng(0)
    winter = Scene(
        when=datetime(2023, 1, 10, 10, tzinfo=UTC),
        sun_azimuth_deg=160.0,
        sun_elevation_deg=25.0,
        season="winter",
        image=np.zeros((1, 1, 3), np.float32),
        shadow=np.zeros((1, 1), bool),
    )
    record = observe(
        rmap, winter, Observer(80, 80, 0.0), intersection=False, difficulty="easy", rng=rng
    )
    assert record.climate in ("temperate", "cold") and record.leafless
    assert "warm_air" not in record.extras
    assert set(record.extras) <= set(EXTRAS) and len(record.extras) == len(EXTRAS) - 1
    # Shadows point away from a southern sun: north, i.e. ahead of a north-facing viewer.
    assert (record.shadow_side, record.shadow_toward, record.shadow_length) == (
        "ahead",
        "north",
        "long",
    )
