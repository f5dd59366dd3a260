"""The CNN tile tower on a CPU: channels-last against the default (NCHW) memory layout.

``TileCNN`` (the default ``minilm-cnn`` backbone's image tower, and the street tower's)
encodes on a CPU with its convolutions reading channels-last tensors
(``TileCNN.cpu_channels_last``), and trains in NCHW. This times, in both layouts:

- encoding: the tower's ``forward`` without gradient at the Encoder's batch of 128, with the
  switch on and off (the code that ships);
- training: forward and backward at the training batch of 64, in float32 and, where the CPU
  does bf16 natively, under bf16 autocast (as ``make demo`` trains there), with the input
  given in either layout (the switch does not apply with gradients; training keeps NCHW so
  that its arithmetic, and the resumption of earlier runs, stay exact).

Each case runs ``--repeats`` times, the layouts alternating so that both see the same
machine. Baseline in the same run: NCHW. Also reported: the largest difference between the
two layouts' encodings, and the share of the cores other processes used during the run.

Target: channels-last saves at least 10% of the encoding forward's time (the reason the
tower encodes that way).

    .venv/bin/python benchmarks/tile_tower.py [--batch 128] [--train-batch 64] [--repeats 7]

Prints a table and writes benchmarks/results/tile_tower.json. Run it alone: timings of two
jobs sharing the cores mean little.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import torch

from memwatch import machine
from planetloc.atomic import write_text
from planetloc.devices import cpu_has_native_bf16
from planetloc.model.towers import TileCNN

TARGET_FORWARD_GAIN = 0.10
LAYOUTS = {"nchw": False, "channels_last": True}


def busy_seconds() -> float:
    """CPU time all processes have used, summed over the cores."""
    t = psutil.cpu_times()
    return t.user + t.nice + t.system + getattr(t, "irq", 0) + getattr(t, "softirq", 0)


def own_seconds() -> float:
    t = psutil.Process().cpu_times()
    return t.user + t.system


def timed(run: Callable[[], object]) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128, help="the Encoder's tile batch")
    parser.add_argument("--train-batch", type=int, default=64, help="training's default batch")
    parser.add_argument("--size", type=int, default=128, help="tile pixels (the default model's)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "tile_tower.json"))
    args = parser.parse_args()
    busy_before, own_before, wall_before = busy_seconds(), own_seconds(), time.perf_counter()
    torch.manual_seed(0)
    tower = TileCNN(image_size=args.size)
    tiles = torch.rand(args.batch, 3, args.size, args.size)
    train_tiles = tiles[: args.train_batch].clone()

    def forward(layout: str) -> torch.Tensor:
        tower.cpu_channels_last = LAYOUTS[layout]
        with torch.inference_mode():
            return tower(tiles)

    train_inputs = {
        "nchw": train_tiles.contiguous(),
        "channels_last": train_tiles.contiguous(memory_format=torch.channels_last),
    }

    def train_step(layout: str, bf16: bool) -> None:
        tower.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            out = tower(train_inputs[layout])
        out.float().mean().backward()

    cases: dict[str, Callable[[str], object]] = {
        "forward": forward,
        "forward_backward": lambda layout: train_step(layout, bf16=False),
    }
    if cpu_has_native_bf16():
        cases["forward_backward_bf16"] = lambda layout: train_step(layout, bf16=True)
    outputs = {layout: forward(layout) for layout in LAYOUTS}
    for case in cases.values():  # warm both layouts up
        for layout in LAYOUTS:
            case(layout)
    seconds = {name: {layout: [] for layout in LAYOUTS} for name in cases}
    for _ in range(args.repeats):
        for name, case in cases.items():
            for layout in LAYOUTS:
                seconds[name][layout].append(timed(lambda case=case, layout=layout: case(layout)))
    results: dict[str, dict[str, float]] = {}
    for name, by_layout in seconds.items():
        batch = args.batch if name == "forward" else args.train_batch
        row: dict[str, float] = {"batch": batch}
        for layout, times in by_layout.items():
            row[f"{layout}_min_s"] = round(min(times), 4)
            row[f"{layout}_median_s"] = round(statistics.median(times), 4)
            row[f"{layout}_tiles_per_s"] = round(batch / statistics.median(times), 1)
        row["time_saved"] = round(1 - row["channels_last_median_s"] / row["nchw_median_s"], 3)
        results[name] = row
    difference = (outputs["nchw"] - outputs["channels_last"]).abs().max().item()
    payload = {
        "benchmark": "tile_tower",
        "config": {
            "size": args.size,
            "repeats": args.repeats,
            "conv_channels": [
                m.out_channels for m in tower.features if isinstance(m, torch.nn.Conv2d)
            ],
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "native_bf16": cpu_has_native_bf16(),
        },
        "results": results,
        "max_abs_difference": difference,
        "output_max_abs": outputs["nchw"].abs().max().item(),
        "target_forward_time_saved": TARGET_FORWARD_GAIN,
        "meets_target": results["forward"]["time_saved"] >= TARGET_FORWARD_GAIN,
        # CPU time other processes took while this ran, as a share of all cores' time.
        "others_cpu_share": round(
            max(0.0, (busy_seconds() - busy_before) - (own_seconds() - own_before))
            / ((time.perf_counter() - wall_before) * (os.cpu_count() or 1)),
            3,
        ),
        "machine": machine(),
    }
    write_text(args.out, json.dumps(payload, indent=1) + "\n")
    print(f"{'case':22s} {'batch':>5s} {'NCHW s':>8s} {'channels-last s':>16s} {'saved':>6s}")
    for name, row in results.items():
        print(
            f"{name:22s} {row['batch']:>5} {row['nchw_median_s']:>8} "
            f"{row['channels_last_median_s']:>16} {row['time_saved']:>6}"
        )
    print(f"largest output difference: {difference:.2e}")
    return 0 if payload["meets_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
