"""HTTP service latency: batched locate requests against one-at-a-time serving.

A real uvicorn server runs in a subprocess over a small index (a SynthCORE world, a PLANET
model on the pretrained all-MiniLM-L6-v2 text tower trained for a few steps). At 1, 10 and
100 concurrent clients (httpx, async) it measures POST /locate p50/p95 latency and
throughput, and GET /health latency while that load runs. The baseline, measured in the same
run, is the same server with batching disabled: queries answered one per model call.

    .venv/bin/python benchmarks/serve.py [--work runs/bench-serve] [--backbone minilm-cnn]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

from planetloc.atomic import write_text
from planetloc.data.manifest import read_manifest
from planetloc.data.synth.generate import SynthConfig, generate_world

LEVELS = (1, 10, 100)
WORLD = SynthConfig(regions=8, per_region=50, distractors=10, seed=7)


def build_index(work: Path, backbone: str) -> tuple[Path, list[str]]:
    """A world, a briefly trained model and its index under ``work`` (reused when present)."""
    from planetloc.train.config import load_config
    from planetloc.train.trainer import train
    from planetloc.workflows.indexing import build_gallery_index

    manifest = work / "world" / "manifest.jsonl"
    if not manifest.is_file():
        generate_world(WORLD, work / "world", workers=2)
    world = read_manifest(manifest)
    texts = [s.text for s in world.by_split("test")]
    run = work / f"model-{backbone}"
    if not (run / "checkpoint.safetensors").is_file():
        overrides = {
            "data": str(manifest),
            "out": str(run),
            "model.backbone": backbone,
            "batch_size": 16,
            "steps": 3,
            "eval_every": 0,
            "workers": 0,
            "select_alpha": False,
        }
        train(load_config(method="planet", overrides=overrides), progress=False)
    index = work / f"index-{backbone}"
    if not (index / "index.json").is_file():
        build_gallery_index(
            checkpoint=str(run / "checkpoint.safetensors"),
            gallery=str(manifest),
            out=index,
            splits=("test", "gallery"),
            tile_size_m=192.0,
            progress=False,
        )
    return index, texts


def child(index: str, port: int, batching: bool) -> None:
    """The server process."""
    import uvicorn

    from planetloc.index.locate import Locator
    from planetloc.serve.app import create_app

    app = create_app(Locator.open(index), batching=batching, max_pending=1024)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(index: Path, batching: bool) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, __file__, "--child", str(index), "--port", str(port)]
    if not batching:
        cmd.append("--no-batching")
    proc = subprocess.Popen(cmd, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
        if proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("the server did not start")


def ms(values: list[float], q: float) -> float:
    return round(1000 * float(np.percentile(values, q)), 1)


async def load(url: str, texts: list[str], clients: int, requests: int) -> dict[str, float]:
    """``requests`` locates from ``clients`` concurrent clients; /health probed meanwhile."""
    limits = httpx.Limits(max_connections=clients + 5, max_keepalive_connections=clients + 5)
    async with httpx.AsyncClient(base_url=url, timeout=300, limits=limits) as http:
        for text in texts[:5]:  # warm-up
            (await http.post("/locate", json={"text": text})).raise_for_status()
        latencies: list[float] = []
        health: list[float] = []
        counter = iter(range(requests))
        done = asyncio.Event()

        async def client() -> None:
            for i in counter:
                started = time.perf_counter()
                r = await http.post("/locate", json={"text": texts[i % len(texts)], "k": 5})
                r.raise_for_status()
                latencies.append(time.perf_counter() - started)

        async def probe() -> None:
            while not done.is_set():
                started = time.perf_counter()
                (await http.get("/health")).raise_for_status()
                health.append(time.perf_counter() - started)
                await asyncio.sleep(0.05)

        prober = asyncio.ensure_future(probe())
        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - started
        done.set()
        await prober
    return {
        "p50_ms": ms(latencies, 50),
        "p95_ms": ms(latencies, 95),
        "throughput_rps": round(requests / wall, 1),
        "health_p95_ms": ms(health, 95),
        "requests": requests,
    }


def measure(index: Path, texts: list[str], batching: bool) -> dict[str, dict[str, float]]:
    proc, url = start_server(index, batching)
    try:
        return {str(c): asyncio.run(load(url, texts, c, max(40, 3 * c))) for c in LEVELS}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/bench-serve")
    parser.add_argument("--backbone", default="minilm-cnn")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "serve.json"))
    parser.add_argument("--child", metavar="INDEX", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--no-batching", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.port, not args.no_batching)
        return 0
    index, texts = build_index(Path(args.work), args.backbone)
    batched = measure(index, texts, batching=True)
    baseline = measure(index, texts, batching=False)
    print(f"{'clients':>8} {'mode':>9} {'p50 ms':>9} {'p95 ms':>9} {'req/s':>7} {'health p95':>11}")
    for level in map(str, LEVELS):
        for mode, rows in (("batched", batched), ("one-by-one", baseline)):
            r = rows[level]
            print(
                f"{level:>8} {mode:>9} {r['p50_ms']:>9} {r['p95_ms']:>9} "
                f"{r['throughput_rps']:>7} {r['health_p95_ms']:>11}"
            )
    payload = {
        "benchmark": "serve",
        "config": {"backbone": args.backbone, "world": vars(WORLD), "levels": list(LEVELS)},
        "concurrency": batched,
        "baseline": baseline,
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "note": "client and server share the machine's cores with other jobs",
        },
    }
    write_text(args.out, json.dumps(payload, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
