"""``directions``: telling a friend how to find you.

Opens with the most recognisable thing nearby ("Look for the big car park"), then the
street, then the other sides going round clockwise from that landmark, addressing the
reader ("you'll reach", "if you hit ... you've gone too far"). Keeps the facing direction,
mostly skips roof colours and shadows. 40-140 words.
"""

from __future__ import annotations

import numpy as np

from planetloc.data.synth.observation import Observation, SectorView, height_class
from planetloc.data.synth.text_styles.compose import EXTRA, Plan, StyleSpec, pick

CLOCKWISE = ("ahead", "right", "behind", "left")
# How much a kind of place helps someone find you; 0 is no landmark at all.
LANDMARK = {
    "water": 9,
    "sports_field": 8,
    "rail": 7,
    "plaza": 6,
    "parking": 5,
    "lawn": 4,
    "dense_trees": 3,
    "bare_ground": 0,
    "buildings": 0,
    "scattered_trees": 0,
}
COLOURS = {
    "terracotta": ("orange terracotta", "terracotta"),
    "silver metal": ("metal", "tin"),
    "rusty brown": ("rusty brown",),
}
# (definite, indefinite) wordings per kind.
PLACES = {
    "water": (("the water", "some water"), ("the waterfront", "open water")),
    "sports_field": (
        ("the sports field with the running track", "a sports field"),
        ("the playing field", "a playing field"),
    ),
    "parking": (
        ("the big car park", "a big car park"),
        ("the parking lot full of cars", "a parking lot"),
    ),
    "plaza": (("the paved square", "a paved square"), ("the open plaza", "an open plaza")),
    "rail": (("the railway line", "a railway line"), ("the train tracks", "train tracks")),
    "dense_trees": (
        ("the clump of thick trees", "a thick clump of trees"),
        ("the wooded patch", "a wooded patch"),
    ),
    "lawn": (("the grassy park", "a grassy park"), ("the open lawn", "an open lawn")),
    "scattered_trees": (("the few trees", "a few trees"),),
}
LANDMARK_SIDE = {
    "left": "on my left",
    "right": "on my right",
    "ahead": "just ahead of me",
    "behind": "right behind me",
}
SIDES = {
    "ahead": ("Carry on past me and you'll reach {x}.", "Further along, ahead of me, there's {x}."),
    "behind": (
        "If you hit {x}, you've gone too far, that's behind me.",
        "Back the way I came, behind me, there's {x}.",
    ),
    "left": ("On my left there's {x}.", "Off to my left you'll see {x}."),
    "right": ("On my right there's {x}.", "Off to my right you'll see {x}."),
}
EXTRAS = {
    "traffic_noise": ("It's loud with traffic here, you'll hear it.", "You'll hear horns."),
    "bus_stop": ("I'm near a bus stop with a little shelter.", "I'm by the bus stop."),
    "cyclist": ("Cyclists keep coming through here.", "Watch out for bikes."),
    "food_smell": ("There's a food stall close by, you can smell it.",),
    "power_lines": ("Power lines run overhead on wooden poles.",),
    "pedestrians": ("People are waiting at the crossing near me.",),
    "street_signs": ("There's a pole with street signs at the corner.",),
    "parked_cars": ("Cars are parked along both sides.", "Both kerbs are lined with cars."),
    "delivery_van": ("There's a delivery van with its hazards on near me.",),
    "awnings": ("The shops here have awnings out.",),
    "worn_sidewalk": ("The sidewalk is old concrete slabs.",),
    "traffic_light": ("There's a traffic light at the next junction.",),
    "birds": ("You'll hear birds in the trees.",),
    "scooters": ("A couple of scooters are parked by a lamp post next to me.",),
    "graffiti": ("There's graffiti on a low wall by the road.",),
    "warm_air": ("It's warm and still out here.",),
}
TAIL = [
    "heights",
    "facades",
    "roofs",
    "no_buildings",
    "vegetation",
    "water",
    "pool",
    "climate",
    EXTRA,
    "shade",
    "shadow",
]
KEEP = {
    "roofs": 0.45,
    "shadow": 0.25,
    "facades": 0.6,
    "climate": 0.5,
    "shade": 0.4,
    "behind": 0.8,
    "facing": 0.9,
    EXTRA: 0.5,
}
RANK = {
    "street": 10,
    "facing": 8,
    "ahead": 8,
    "left": 8,
    "right": 8,
    "water": 7,
    "behind": 6,
    "heights": 6,
    "vegetation": 5,
    "pool": 5,
    "no_buildings": 5,
    "facades": 4,
    "roofs": 3,
    "climate": 3,
    "shade": 2,
    "shadow": 2,
    EXTRA: 3,
}
SHADOW_SIDE = {
    "ahead": "ahead of me",
    "right": "to my right",
    "behind": "back behind me",
    "left": "to my left",
}


def _colour(name: str, rng: np.random.Generator) -> str:
    return pick(rng, COLOURS.get(name, (name,)))


def _buildings(n: int, facade: str | None) -> str:
    return {
        "low": f"low {facade} buildings",
        "mid": f"{n}-storey {facade} buildings",
        "tall": f"tall {n}-storey {facade} buildings",
        "tower": f"{n}-storey {facade} towers",
    }[height_class(n)]


def _place(view: SectorView, definite: bool, rng: np.random.Generator) -> str:
    article = "the" if definite else "some"
    if view.kind == "buildings":
        roof = "" if view.roof is None else f" with {_colour(view.roof, rng)} roofs"
        return f"{article} {_buildings(view.storeys, view.facade)}{roof}"
    if view.kind == "bare_ground":
        return f"the empty {view.soil} lot" if definite else f"an empty lot of {view.soil} dirt"
    options = PLACES[view.kind]
    return options[int(rng.integers(len(options)))][0 if definite else 1]


def _street(r: Observation, rng: np.random.Generator) -> str:
    if r.major_street:
        road = pick(rng, ("main road", "big busy road", "wide main street"))
    else:
        road = pick(rng, ("quiet street", "narrow street", "small side street"))
    axis = r.street_axis
    if r.junction == "roundabout":
        return pick(
            rng,
            (
                f"I'm on the {road} right by the roundabout with the grass island.",
                f"I'm next to the roundabout, the one with grass in the middle, on the {road}.",
            ),
        )
    if r.junction == "intersection":
        return pick(
            rng,
            (
                f"I'm right at the crossroads, on the {road} that runs {axis}.",
                f"I'm at the corner where the {road} running {axis} meets another street.",
            ),
        )
    return pick(
        rng,
        (
            f"I'm on the {road} that runs {axis}.",
            f"I'm standing on the {road}, the one going {axis}.",
            f"I'm partway along the {road} running {axis}.",
        ),
    )


def _landmark(side: str, view: SectorView, rng: np.random.Generator) -> str:
    thing, where = _place(view, True, rng), LANDMARK_SIDE[side]
    return pick(
        rng,
        (
            f"Look for {thing}: it's {where}.",
            f"Easiest way to find me is {thing}, I'm right by it and it's {where}.",
            f"Head for {thing}. Once you're there I'm close, with it {where}.",
        ),
    )


def _heights(n: int, rng: np.random.Generator) -> str:
    cls = height_class(n)
    words = {
        "low": "low, one or two floors",
        "mid": f"about {n} floors",
        "tall": f"{n} floors, so fairly tall",
        "tower": f"huge, {n}-odd floors",
    }[cls]
    return pick(
        rng,
        (f"The buildings round here are {words}.", f"Buildings on this stretch are {words}."),
    )


def _vegetation(r: Observation, rng: np.random.Generator) -> str:
    options = {
        "dense": (f"There are lots of {r.canopy} trees around me.", "It's quite wooded here."),
        "scattered": (
            f"There are some {r.canopy} trees along the street.",
            "A few trees line the street.",
        ),
        "few": ("Only a handful of trees nearby.", "Not much in the way of trees."),
        "none": ("No trees to speak of.", "There are no trees here to look for."),
    }[r.tree_cover]
    text = pick(rng, options)
    if r.leafless:
        text += " The trees have no leaves right now and the grass is brown."
    return text


def phrase(r: Observation, plan: Plan, cue: str, rng: np.random.Generator) -> str:
    """One sentence of directions for ``cue``."""
    if cue == "street":
        return _street(r, rng)
    if cue == "facing":
        return pick(
            rng,
            (
                f"I'm looking {r.facing} along the street.",
                f"I'm facing {r.facing}.",
                f"From where I stand I'm facing {r.facing}.",
            ),
        )
    if cue in r.sectors:
        if cue == plan.notes["landmark"]:
            return _landmark(cue, r.sectors[cue], rng)
        return pick(rng, SIDES[cue]).format(x=_place(r.sectors[cue], False, rng))
    if cue == "heights":
        return _heights(r.storeys, rng)
    if cue == "facades":
        return pick(rng, (f"Most fronts are {r.facade}.", f"You'll see a lot of {r.facade}."))
    if cue == "roofs":
        colours = " and ".join(_colour(c, rng) for c in r.roofs)
        return pick(
            rng,
            (
                f"If you check a map, the roofs are mostly {colours}.",
                f"From above you'd see mostly {colours} roofs.",
            ),
        )
    if cue == "no_buildings":
        return pick(
            rng,
            (
                "There aren't really any buildings to go by here.",
                "Hardly any buildings around, so look for the street itself.",
            ),
        )
    if cue == "vegetation":
        return _vegetation(r, rng)
    if cue == "climate":
        if r.climate == "arid":
            return f"It's dry and dusty, {r.soil} ground everywhere."
        return "Everything is lush and green, and it's humid."
    if cue == "water":
        return pick(
            rng,
            (
                "There's water nearby, so you're close once you see it.",
                "You should be able to see water from here.",
            ),
        )
    if cue == "pool":
        return pick(
            rng,
            (
                "Someone has a swimming pool in their yard nearby.",
                "You might spot a swimming pool in one of the yards.",
            ),
        )
    if cue == "shadow":
        side = SHADOW_SIDE[r.shadow_side]
        if r.shadow_length == "long":
            return f"With the sun where it is, shadows point {side}, roughly {r.shadow_toward}."
        if r.shadow_length == "short":
            return "The sun's high, so the shadows won't help you."
        return f"Shadows fall {side}."
    if cue == "shade":
        return "The trees shade the sidewalk here."
    return pick(rng, EXTRAS[cue.split(":", 1)[1]])


def plan(r: Observation, told: tuple[str, ...], rng: np.random.Generator) -> Plan:
    """The best landmark first, then the street, then the other sides clockwise from it."""
    told_sides = [s for s in r.sectors if s in told]
    ranked = sorted(told_sides, key=lambda s: (-LANDMARK[r.sectors[s].kind], CLOCKWISE.index(s)))
    landmark = ranked[0] if ranked and LANDMARK[r.sectors[ranked[0]].kind] > 0 else None
    start = CLOCKWISE.index(landmark) if landmark else 0
    sides = [CLOCKWISE[(start + k) % 4] for k in range(4)]
    head = [landmark, "street", "facing"] if landmark else ["street", "facing"]
    order = head + [s for s in sides if s != landmark] + TAIL
    return Plan(order=order, notes={"landmark": landmark})


def join(r: Observation, plan: Plan, parts: list[tuple[str, str]], rng: np.random.Generator) -> str:
    """Sentences in order, now and then two run together as one speaker would."""
    sentences: list[str] = []
    merged = False  # never more than two sentences in one
    for _, text in parts:
        if sentences and not merged and sentences[-1].endswith(".") and rng.random() < 0.35:
            spoken = text if text.startswith(("I ", "I'm")) else text[0].lower() + text[1:]
            sentences[-1] = sentences[-1][:-1] + pick(rng, (", and ", " and ")) + spoken
            merged = True
        else:
            sentences.append(text)
            merged = False
    return " ".join(sentences)


SPEC = StyleSpec(
    name="directions",
    min_words=40,
    max_words=140,
    keep=KEEP,
    rank=RANK,
    plan=plan,
    phrase=phrase,
    join=join,
)
