"""Street panorama rendering speed on one core (panoramas/s at 512 x 128).

Target: at least 50 panoramas per second of one core. Builds one SynthCORE region at the
generator's default extent and pixel size, renders one satellite scene of it, then times
``--n`` panoramas from road points facing along their street, numpy only, one thread.
Wall-clock and process CPU time are both reported; the target is judged on CPU time, which
counts only the time the core spent on this process (on a machine whose cores are shared
with other jobs the wall-clock rate also counts their time).

    .venv/bin/python benchmarks/street_render.py [--n 200] [--region paris] [--seed 0]

Prints the rates and writes benchmarks/results/street_render.json.
"""

from __future__ import annotations

import os

# One thread for every numerical library, set before numpy loads: the rate is per core.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from planetloc.atomic import write_text  # noqa: E402
from planetloc.data.synth.describe import Observer, choose_heading  # noqa: E402
from planetloc.data.synth.generate import SynthConfig, region_seed  # noqa: E402
from planetloc.data.synth.render import render_scene  # noqa: E402
from planetloc.data.synth.street import StreetViewConfig, render_panorama  # noqa: E402
from planetloc.data.synth.style import derive_style  # noqa: E402
from planetloc.data.synth.world import ROAD, build_region_map  # noqa: E402
from planetloc.geo.regions import get_region  # noqa: E402

TARGET_PER_S = 50.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200, help="panoramas to time")
    parser.add_argument("--region", default="paris")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out", default=str(Path(__file__).parent / "results" / "street_render.json")
    )
    args = parser.parse_args()
    synth = SynthConfig(seed=args.seed)
    region = get_region(args.region)
    rng = np.random.default_rng(region_seed(args.seed, region.slug))
    style = derive_style(region, rng)
    region_map = build_region_map(style, rng, extent_m=synth.extent_m, gsd=synth.gsd)
    when = datetime(2023, 5, 15, 10, tzinfo=UTC)
    scene = render_scene(region_map, region.lat, region.lon, when, rng)
    cfg = StreetViewConfig()
    margin = int(cfg.max_range_m / synth.gsd)
    n = region_map.shape[0]
    roads = np.argwhere(region_map.cls == ROAD)
    inner = np.all((roads >= margin) & (roads < n - margin), axis=1)
    picks = roads[inner][rng.choice(int(inner.sum()), size=args.n, replace=False)]
    observers = [
        Observer(int(r), int(c), choose_heading(region_map, int(r), int(c), rng)[0])
        for r, c in picks
    ]
    render_panorama(region_map, scene, observers[0], cfg, np.random.default_rng(0))  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    for i, obs in enumerate(observers):
        render_panorama(region_map, scene, obs, cfg, np.random.default_rng(i))
    wall = time.perf_counter() - wall
    cpu = time.process_time() - cpu
    rate, cpu_rate = args.n / wall, args.n / cpu
    print(f"{args.n} panoramas of {cfg.width} x {cfg.height} px, region {region.slug}")
    print(f"wall clock: {rate:.1f} panoramas/s ({1000 / rate:.1f} ms each)")
    print(f"cpu time:   {cpu_rate:.1f} panoramas/s ({1000 / cpu_rate:.1f} ms each)")
    met = cpu_rate >= TARGET_PER_S
    print(f"target {TARGET_PER_S:.0f}/s per core (cpu time): {'met' if met else 'not met'}")
    payload = {
        "benchmark": "street_render",
        "panoramas_per_s": round(rate, 1),
        "cpu_panoramas_per_s": round(cpu_rate, 1),
        "target_per_s": TARGET_PER_S,
        "meets_target": met,
        "target_judged_on": "cpu_panoramas_per_s",
        "width": cfg.width,
        "height": cfg.height,
        "n": args.n,
        "region": region.slug,
        "max_range_m": cfg.max_range_m,
        "gsd": synth.gsd,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "threads": 1,
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
    }
    write_text(args.out, json.dumps(payload, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
