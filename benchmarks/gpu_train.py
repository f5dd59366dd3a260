"""The streaming trainer with a real-size backbone on a GPU: samples/s, GPU utilisation, and
how fast the data pipeline alone runs beside the training steps.

A sharded SynthCORE world is generated on the spot (JPEG tiles in WebDataset tars), then:

1. the data pipeline alone (read, shuffle, decode, physical signatures in DataLoader
   workers) is timed for a number of batches;
2. ``clip-vit-b32`` (the OpenAI ViT-B/32 architecture, random weights, text and image towers
   trained, bf16 autocast) trains from the shards while GPU utilisation is sampled.

    python benchmarks/gpu_train.py --work /tmp/gpu --out benchmarks/results/gpu_train.json \
        --tokenizer TOKENIZER_FOLDER [--steps 300] [--batch 256] [--workers 12]

``--smoke`` runs a tiny version on the CPU (to check the script before spending GPU time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import time
from pathlib import Path

import torch

from planetloc.data.stream import StreamSpec, open_source, train_loader
from planetloc.data.synth.config import preset_config
from planetloc.data.synth.generate import generate_world
from planetloc.model.signature_cache import Signatures
from planetloc.model.signatures import SignatureConfig
from planetloc.train.config import load_config
from planetloc.train.trainer import train


class GpuSampler:
    """Samples GPU utilisation and memory in a thread (NVML), every ``period`` seconds."""

    def __init__(self, period: float = 0.5) -> None:
        self.period, self.util, self.memory = period, [], []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuSampler:
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        except Exception:  # no NVML (CPU smoke run): nothing to sample
            return self

        def run() -> None:
            while not self._stop.is_set():
                rates = pynvml.nvmlDeviceGetUtilizationRates(handle)
                info = pynvml.nvmlDeviceGetMemoryInfo(handle)
                self.util.append(rates.gpu)
                self.memory.append(info.used / 2**30)
                self._stop.wait(self.period)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def pipeline_rate(data: Path, batch: int, workers: int, batches: int, size: int) -> float:
    """Samples/s of the data pipeline alone (decode + signatures in the workers)."""
    spec = StreamSpec(
        seed=0,
        batch_size=batch,
        workers=workers,
        shuffle_buffer=2048,
        image_size=size,
        signatures=Signatures(SignatureConfig()),
    )
    loader = iter(train_loader(open_source(data), spec))
    next(loader)  # workers started and buffers filled
    start = time.perf_counter()
    for _ in range(batches):
        next(loader)
    return batch * batches / (time.perf_counter() - start)


def _tokenizer_facts(folder: str) -> dict:
    """What the text tower read with: the folder's name and its vocabulary size."""
    from planetloc.model.towers import load_tokenizer

    return {"folder": Path(folder).name, "vocabulary": len(load_tokenizer(folder))}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--tokenizer", required=True, help="a tokenizer folder (offline)")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    parser.add_argument("--regions", type=int, default=24)
    parser.add_argument("--per-region", type=int, default=250)
    parser.add_argument("--smoke", action="store_true", help="tiny CPU run")
    parser.add_argument("--label", default="", help="what code ran (e.g. a commit), recorded")
    args = parser.parse_args()
    work = Path(args.work)
    smoke = args.smoke
    world_cfg = preset_config(
        "default",
        regions=4 if smoke else args.regions,
        per_region=40 if smoke else args.per_region,
        distractors=0,
        size=64 if smoke else 224,
        shards=True,
        shard_size=64 if smoke else 500,
        image_format="jpg",
        street_views=False,
        alt_texts=False,
        unseen_fraction=0.0,  # every shard holds training samples for every reader
    )
    started = time.perf_counter()
    manifest = generate_world(world_cfg, work / "world", workers=os.cpu_count() or 1)
    synth_s = time.perf_counter() - started
    print(f"world generated in {synth_s:.1f} s", flush=True)
    data = work / "world"
    size = 64 if smoke else 224
    pipe = pipeline_rate(data, 16 if smoke else args.batch, args.workers, 3 if smoke else 20, size)
    print(f"data pipeline alone: {pipe:.0f} samples/s", flush=True)
    overrides = {
        "data": str(data),
        "out": str(work / "run"),
        "steps": 2 if smoke else args.steps,
        "batch_size": 8 if smoke else args.batch,
        "workers": args.workers,
        "eval_every": 0,
        "select_alpha": False,
        "log_every": 1 if smoke else 10,
        "save_every": 10_000,
        "warmup_steps": 2 if smoke else 30,
        "lr": 3e-4,
        "backbone_lr": 3e-4,
        "amp": "off" if smoke else "bf16",
        "text_cache": "off",
        "model.backbone": "clip-vit-b32",
        "model.init": "random",
        "model.tokenizer": args.tokenizer,
        "model.text_trainable_layers": -1,
        "model.image_trainable_layers": -1,
        "model.image_size": size,
        "model.max_tokens": 77 if smoke else 248,
    }
    cfg = load_config(
        method="planet", overrides={k: v for k, v in overrides.items() if v is not None}
    )
    with GpuSampler() as gpu:
        started = time.perf_counter()
        summary = train(cfg, progress=False)
        train_s = time.perf_counter() - started
    print(f"trained in {train_s:.1f} s", flush=True)
    rows = [r for r in summary["history"] if "samples_per_s" in r]
    steady = rows[len(rows) // 4 :] or rows  # past the warm-up
    rate = statistics.median(r["samples_per_s"] for r in steady)
    waits = [r["data_wait_s"] / max(1, cfg.log_every) for r in steady]
    step_rate = rate / cfg.batch_size
    result = {
        "benchmark": "gpu_train",
        "label": args.label,
        "backbone": cfg.model.backbone,
        "init": cfg.model.init,
        "parameters_M": round(summary.get("parameters", 0) / 1e6, 1),
        "amp": cfg.amp,
        "tokenizer": _tokenizer_facts(args.tokenizer),
        "batch": cfg.batch_size,
        "steps": cfg.steps,
        "workers": cfg.workers,
        "image_size": size,
        "world": {
            "samples": json.loads((data / "world.json").read_text())["samples"],
            "seconds": round(synth_s, 1),
        },
        "train_seconds": round(train_s, 1),
        "samples_per_s": round(rate, 1),
        "steps_per_s": round(step_rate, 3),
        "data_wait_s_per_step": round(statistics.median(waits), 4) if waits else None,
        "pipeline_samples_per_s": round(pipe, 1),
        "pipeline_over_training": round(pipe / rate, 2),
        "gpu_util_mean": round(statistics.mean(gpu.util), 1) if gpu.util else None,
        "gpu_util_median": statistics.median(gpu.util) if gpu.util else None,
        "gpu_memory_gib_max": round(max(gpu.memory), 1) if gpu.memory else None,
        # NVML's figure includes what PyTorch's caching allocator holds; this is what tensors
        # needed at most.
        "gpu_allocated_gib_max": (
            round(torch.cuda.max_memory_allocated() / 2**30, 1)
            if torch.cuda.is_available()
            else None
        ),
        "machine": {
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "torch": torch.__version__,
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "manifest": str(manifest),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
