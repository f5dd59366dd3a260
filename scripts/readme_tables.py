"""Render the README's result tables from the benchmarks' results files.

Every measured number in the README sits between a pair of markers,

    <!-- results:NAME -->
    ...generated...
    <!-- /results:NAME -->

and is written here from ``benchmarks/results/*.json``, never by hand. A results file that
is absent gives a line saying so instead of a table. ``tests/test_readme.py`` checks that the
README holds exactly what this script renders.

    .venv/bin/python scripts/readme_tables.py           # rewrite the README's tables
    .venv/bin/python scripts/readme_tables.py --check   # exit 1 when they are out of date
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
MARKER = re.compile(
    r"(?P<open><!-- results:(?P<name>[\w-]+) -->\n)(?P<body>.*?)"
    r"(?P<close><!-- /results:(?P=name) -->)",
    re.S,
)


class Missing(Exception):
    """A results file the table needs is absent, or does not hold the table's part yet."""

    def __init__(self, name: str, reason: str = "is absent") -> None:
        super().__init__(name)
        self.name, self.reason = name, reason


def load(name: str) -> dict[str, Any]:
    path = RESULTS / f"{name}.json"
    if not path.is_file():
        raise Missing(name)
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_not_finite(path))


def _not_finite(path: Path) -> Callable[[str], Any]:
    def refuse(token: str) -> Any:  # a NaN or an infinity is a failed run, never a number
        raise ValueError(f"{path}: holds {token}, not a measurement")

    return refuse


def num(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def interval(entry: dict[str, float], digits: int = 1) -> str:
    """A bootstrap mean and its 95% interval."""
    return f"{entry['mean']:.{digits}f} [{entry['low']:.{digits}f}, {entry['high']:.{digits}f}]"


def table(header: list[str], rows: list[list[str]], align: str | None = None) -> str:
    align = align or "l" + "r" * (len(header) - 1)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def source(*names: str) -> str:
    files = ", ".join(f"`benchmarks/results/{n}.json`" for n in names)
    return f"\n*From {files}.*\n"


# --- one function per marker --------------------------------------------------------------


def machine() -> str:
    for name in ("demo", "synthcore", "train_scale", "index", "eval_memory"):
        try:
            data = load(name)
        except Missing:
            continue
        m = data.get("machine", {})
        cpu = m.get("processor") or m.get("cpu") or "unknown processor"
        cpus = m.get("cpus") or m.get("cpu_count")
        extra = ", native bf16" if m.get("native_bf16") else ""
        memory = f", {m['memory_gb']} GB memory" if m.get("memory_gb") else ""
        return (
            f"Machine of these measurements: {cpus} cores of {cpu}{extra}{memory}, "
            f"{m.get('platform', '')}, no GPU (as recorded in `benchmarks/results/{name}.json`; "
            "each results file records its own machine).\n"
        )
    raise Missing("demo")


def demo() -> str:
    d = load("demo")
    rows = [
        [
            "environment (`make .venv/.installed`: uv installs the pinned wheels)",
            num(d["environment_s"]),
        ],
        *(
            [["environment installed by pip alone (baseline)", num(d["environment_pip_s"])]]
            if "environment_pip_s" in d
            else []
        ),
        [f"demo ({d['arithmetic']})", num(d["demo_s"])],
        ["**total**", f"**{num(d['total_s'])}**"],
    ]
    if "fp32" in d:
        rows.append(
            ["demo again in float32 (`planetloc demo --amp off`)", num(d["fp32"]["demo_s"])]
        )
    out = table(["`make demo` from a fresh clone", "seconds"], rows)
    out += (
        f"\nTarget: under {num(d['target_s'], 0)} s in all: "
        f"{'met' if d['meets_target'] else 'not met'} (commit `{d['commit'][:10]}`).\n"
    )
    methods = d.get("results", {})
    if methods:
        rows = []
        runs = [("", methods)] + ([(" (float32)", d["fp32"]["results"])] if "fp32" in d else [])
        for suffix, entry in runs:
            for method, protocols in entry.items():
                full, near = protocols.get("full", {}), protocols.get("m100", {})
                rows.append(
                    [
                        f"{method}{suffix}",
                        num(full.get("queries")),
                        num(full.get("gallery")),
                        num(full.get("R@1"), 2),
                        num(full.get("R@10"), 2),
                        num(near.get("R@1"), 2),
                    ]
                )
        out += "\nWhat the demo's two models reach on its world set:\n\n"
        out += table(["model", "queries", "tiles", "R@1", "R@10", "m100 R@1"], rows)
    return out + source("demo")


SYNTH_LABELS = {
    "global": "global embedding",
    "reranked": "re-ranked (alpha from val)",
}


def _recipe(name: str, backbone: str) -> str:
    return f"`{name}` ({backbone})"


def synthcore() -> str:
    d = load("synthcore")
    s = d.get("summary")
    if not s:
        raise Missing("synthcore", "holds no summary yet (its run is unfinished)")
    refs = d["references"]
    backbone = d["backbone"]
    recipes = [k for k in s if "global" in s[k]]  # the others are paired differences
    rows = []
    for name in recipes:
        for label, text in SYNTH_LABELS.items():
            e = s[name][label]
            rows.append(
                [
                    f"{_recipe(name, backbone)}, {text}",
                    interval(e["R@1"]),
                    interval(e["R@5"]),
                    interval(e["R@10"]),
                    interval(e["m100 R@1"]),
                ]
            )
    seeds = len(d["seeds"])
    rows.append(
        [f"untrained model ({backbone})"]
        + [interval(refs["zero_shot"][k], 2) for k in ("R@1", "R@5", "R@10")]
        + ["-"]
    )
    rows.append(
        ["text-to-signature baseline (TF-IDF + ridge onto signatures)"]
        + [num(refs["text_to_signature"][k], 1) for k in ("R@1", "R@5", "R@10")]
        + ["-"]
    )
    rows.append(["chance"] + [num(refs["chance"][k], 2) for k in ("R@1", "R@5", "R@10")] + ["-"])
    left_out = d.get("left_out") or []
    out = (
        f"World-level test set ({num(refs['queries'])} queries, {num(refs['gallery'])} tiles), "
        f"{d['steps']} steps, {seeds} seeds; mean over seeds with a 95% bootstrap interval "
        "(seeds, then queries within each)"
        + (f"; left out of this run: {', '.join(f'`{n}`' for n in left_out)}" if left_out else "")
        + ":\n\n"
    )
    out += table(["recipe, scoring", "R@1", "R@5", "R@10", "m100 R@1"], rows)
    rows = []
    for name in recipes:
        for label, text in SYNTH_LABELS.items():
            dense = s[name][f"dense-{label}"]
            rows.append(
                [
                    f"{_recipe(name, backbone)}, {text}",
                    interval(dense["R@1"]),
                    interval(dense["m100 R@1"]),
                    interval(s[name][f"style-{label}"]["R@10"]),
                    interval(s[name]["kept"][label], 2),
                ]
            )
    out += (
        "\nThe same models on the dense world (m = 100 is a neighbourhood there, not a region) "
        f"and on the description style held out of training (`{d['held_out_style']}`), "
        "with the share of the seen style's R@10 it keeps (target: at least 0.67; interval: "
        "paired bootstrap over seeds and the same queries in both styles):\n\n"
    )
    out += table(
        ["recipe, scoring", "dense R@1", "dense m100 R@1", "held-out style R@10", "kept"], rows
    )
    rows = []
    for key in s:
        if key.startswith("L_phy"):
            rows.append([key] + [interval(s[key][f"R@{k}"]) for k in (1, 5, 10)])
    out += (
        "\nDoes L_phy help? Paired differences in points (same queries, same seeds), "
        "95% bootstrap interval; an interval holding 0 is no evidence either way:\n\n"
    )
    out += table(["difference", "R@1", "R@5", "R@10"], rows)
    rows = [
        [key.removeprefix("phrasing: ")] + [interval(s[key][f"R@{k}"]) for k in (1, 5, 10)]
        for key in s
        if key.startswith("phrasing: ")
    ]
    if rows:
        out += (
            "\nThe phrasing experiment: more token dropout, every other training setting equal "
            "(each run's re-ranking alpha is still its own val choice). Paired differences in "
            "points, 95% bootstrap interval:\n\n"
        )
        out += table(["difference", "R@1", "R@5", "R@10"], rows)
    return out + source("synthcore")


def synthcore_selection() -> str:
    d = load("synthcore")
    sel = d.get("selection")
    if not sel:
        raise Missing("synthcore", "holds no selection yet (its run is unfinished)")
    rows = [[f"lambda {k}", num(v, 2)] for k, v in sel["sweep"].items()]
    rows.append(["lambda 0 (`itc-long`)", num(sel["itc-long (lambda 0)"], 2)])
    out = (
        f"Chosen on {sel['split']} ({sel['criterion']}; seeds {sel['seeds']}): "
        f"**lambda = {sel['lambda']}**.\n\n"
    )
    out += table(["setting", "val score"], rows)
    alphas = {name: row["alpha"] for name, row in d.get("summary", {}).items() if "alpha" in row}
    if alphas:
        out += "\nRe-ranking weight alpha chosen on val by each run (one per seed):\n\n"
        out += table(
            ["recipe", "alpha per seed"],
            [[f"`{n}`", ", ".join(num(a, 2) for a in v)] for n, v in alphas.items()],
        )
    return out + source("synthcore")


def _seed_metric(d: dict[str, Any], key: str, seed: str, metric: str) -> float:
    """One seed's full-gallery ``metric`` of the "variant / query" row ``key``."""
    name, label = key.split(" / ")
    return d["runs"][name][seed]["queries"][label]["full"][metric]


def crossview(name: str = "crossview") -> str:
    """The cross-view table of one results file of ``benchmarks/crossview.py``."""
    d = load(name)
    s = d.get("summary") or {}
    if not s:
        raise Missing(name, "holds no finished run yet")
    rows = []
    for key, protocols in s.items():
        full, near = protocols["full"], protocols["m100"]

        def ms(e: dict[str, float], digits: int = 1) -> str:
            return f"{e['mean']:.{digits}f} ± {e['std']:.{digits}f}"

        rows.append(
            [
                key,
                str(full["R@1"]["n"]),
                ms(full["R@1"]),
                ms(full["R@10"]),
                ms(near["R@1"]),
                ms(full["median_error_km"], 2),
            ]
        )
    amp = sorted({r["amp"] for runs in d["runs"].values() for r in runs.values()})
    seeds = sorted({int(s) for runs in d["runs"].values() for s in runs})
    out = (
        f"Default world, {d['steps']} steps per run, arithmetic {', '.join(amp)}, variants "
        f"{', '.join(f'`{v}`' for v in d['runs'])}, seeds {seeds}; mean ± std over seeds "
        "(a std of 0.0 from one seed says nothing about seed noise):\n\n"
    )
    out += table(["variant / query", "seeds", "R@1", "R@10", "m100 R@1", "median error km"], rows)
    # Single-modality models are those queried by "text" or "image" (a joint model's
    # one-modality queries are labelled "text alone" and "image alone").
    singles = [k for k in s if k.split(" / ")[1] in ("text", "image")]
    lines = []
    joint_keys = [k for k in s if k.endswith("/ projection") or k.startswith("late-fusion /")]
    for key in joint_keys:
        parts = []
        for metric in ("R@1", "R@10"):
            best = max(singles, key=lambda k, m=metric: s[k]["full"][m]["mean"])
            diff = s[key]["full"][metric]["mean"] - s[best]["full"][metric]["mean"]
            # The target: a gain larger than the seed std of either side.
            std = max(s[key]["full"][metric]["std"], s[best]["full"][metric]["std"])
            verdict = "beyond" if diff > std else "not beyond"
            # The same seed of both sides, paired (each seed is one data order and init).
            paired = ", ".join(
                f"{_seed_metric(d, key, seed, metric) - _seed_metric(d, best, seed, metric):+.1f}"
                for seed in sorted(d["runs"][key.split(" / ")[0]], key=int)
            )
            parts.append(
                f"{metric} {diff:+.1f} points (against `{best}`; {verdict} the seed std {std:.1f}; "
                f"per seed {paired})"
            )
        lines.append(f"`{key}` minus the better single-modality model: " + ", ".join(parts))
    if singles and lines:
        out += "\n" + ";\n".join(lines) + ".\n"
    sel = d.get("selection") or {}
    if sel.get("sweep"):
        sweep = ", ".join(
            f"w = {e['weight']:g}, {e.get('negatives', 'neighbours')} negatives "
            f"(`{e['variant']}`) {e['val_score']:.1f}"
            for e in sel["sweep"]
        )
        out += (
            f"\nStreet-loss weight and negatives chosen on {sel['split']} ({sel['criterion']}): "
            f"{sweep}; chosen `{sel['chosen']}`.\n"
        )
    fusion = d.get("late_fusion") or {}
    if fusion:
        images = ", ".join(f"`{e['variant']}` {e['val_score']:.1f}" for e in fusion["image_sweep"])
        weights = ", ".join(
            f"w = {e['weight']:g} {e['val_score']:.1f}" for e in fusion["weight_sweep"]
        )
        out += (
            f"\nLate fusion (`{fusion['text_variant']}` model + an image model of the same seed, "
            f"s_text + w * s_image), chosen on {fusion['split']} ({fusion['criterion']}): image "
            f"model {images}, chosen `{fusion['image_variant']}`; then {weights}, chosen "
            f"w = {fusion['weight']:g}.\n"
        )
    render = d.get("render") or {}
    if render:
        load_avg = render.get("machine", {}).get("load_average_1min")
        out += (
            f"\nStreet panoramas rendered in this run ({render['width']} x {render['height']}, one "
            f"thread): {render['cpu_panoramas_per_s']:.1f} per second of CPU time, target "
            f"{render['target_per_s']:g}: {'met' if render['meets_target'] else 'not met'}"
            + (
                f" (1-minute load average {load_avg:.2f} when measured)"
                if load_avg is not None
                else ""
            )
            + ".\n"
        )
    return out + source(name)


def train_scale() -> str:
    d = load("train_scale")
    rows = []
    for size, entry in d["sizes"].items():
        if "skipped" in entry:
            rows.append([size, "skipped: " + entry["skipped"], *["-"] * 5])
            continue
        for variant in ("new", "new_cached", "new_cached_warm", "new_shards", "old"):
            run = entry.get(variant)
            if not run:
                continue
            note = f"killed at {run['killed_at_gb']} GB" if "killed_at_gb" in run else ""
            note = note or run.get("error", "")[:60]
            rows.append(
                [
                    size,
                    f"`{variant}`",
                    num(run["wall_s"]),
                    num(run.get("samples_per_s")),
                    num(run["peak_rss_gb"], 2),
                    num(run["peak_pss_gb"], 2),
                    note,
                ]
            )
    out = table(
        ["world", "trainer", "wall s", "samples/s", "peak RSS GB", "peak PSS GB", "note"],
        rows,
        "llrrrrl",
    )
    summary = d.get("summary", {})
    if summary:
        out += "\n" + table(
            ["ratio (larger world over smaller)", "value"],
            [
                [k.replace("_", " "), num(v, 3) if not isinstance(v, bool) else num(v)]
                for k, v in summary.items()
            ],
        )
    pipe = d.get("pipeline", {})
    rates = [(k, v) for k, v in pipe.items() if isinstance(v, dict)]
    if rates:
        out += (
            f"\nData pipeline alone on the {pipe['world']} world (decode, signatures, "
            f"augmentation); the model consumes {num(pipe['model_samples_per_s'])} samples/s "
            f"({pipe['model_rate_from']}):\n\n"
        )
        out += table(
            ["stream", "samples/s per worker", "per worker / model"],
            [
                [
                    k.replace("_", " "),
                    num(v.get("samples_per_s_per_worker")),
                    num(v.get("per_worker_vs_model"), 2),
                ]
                for k, v in rates
            ],
        )
    return out + source("train_scale")


def eval_scale(name: str = "eval_scale") -> str:
    d = load(name)
    w = d["world"]
    changed = ", ".join(f"{k} {v}" for k, v in w["overrides"].items())
    splits = ", ".join(f"{num(n)} {k}" for k, n in w["splits"].items())
    gen = w.get("generation")
    if gen:  # the whole world's generation, summed over the runs that resumed it
        made = (
            f"generated in {num(gen['seconds'])} s"
            + (f" over {gen['runs']} resumed runs" if gen["runs"] > 1 else "")
            + f" ({num(gen['samples_per_s_per_core'])} samples/s per core), "
            f"{num(w['bytes_per_sample'])} bytes per sample"
        )
    else:
        made = f"{num(w['seconds_this_run'])} s of generation in this run"
    head = (
        f"World: the `{w['preset']}` preset"
        + (f" with {changed} (`per_region` and `distractors` count per region)" if changed else "")
        + f", {num(w['samples'])} samples ({splits}), {num(w['disk_gb'], 2)} GB on disk, "
        f"{made}.\n\n"
    )
    rows = [
        [
            name,
            num(p.get("seconds")),
            num(p.get("peak_rss_gb"), 2),
            num(p.get("extra_over_embeddings_gb"), 2),
        ]
        for name, p in d["phases"].items()
    ]
    out = table(["phase", "seconds", "peak RSS GB", "extra over embeddings GB"], rows)
    s = d.get("summary", {})
    if s:
        out += (
            f"\n{num(s['queries_world'])} world queries against {num(s['gallery_world'])} tiles: "
            f"{num(s['end_to_end_s'])} s end to end, {num(s['extra_over_embeddings_gb'], 2)} GB "
            f"beyond the embeddings (target {num(s['target_extra_gb'], 0)} GB: "
            f"{'met' if s['meets_target'] else 'not met'}); a full score matrix would be "
            f"{num(s['full_matrix_gb_world'], 1)} GB.\n"
        )
    p = d["phases"].get("index") or {}
    if p:
        runs = p.get("runs", 1)
        over = (
            f"; over {runs} runs, a stopped encoding resumed: time summed, memory the largest"
            if runs > 1
            else ""
        )
        if p.get("tiles_per_s") is not None:
            rate = f"at {num(p['tiles_per_s'])} tiles/s"
        elif runs == 0:
            rate = "in a store finished before encoding runs were recorded (no rate)"
        else:
            rate = "(no rate: the recorded runs do not add up to the whole gallery)"
        out += (
            f"Gallery encoding: {num(p['tiles'])} tiles {rate} (CPU, model and "
            f"signatures{over}), FAISS build {num(p['faiss_build_s'])} s.\n"
        )
    return head + out + source(name)


def eval_memory() -> str:
    d = load("eval_memory")
    r, c = d["results"], d["config"]
    m = f"m{c['m']}"
    out = table(
        ["protocol", "seconds", "peak memory beyond the inputs, GB", "R@1"],
        [
            [
                "full gallery",
                num(r["full_seconds"]),
                num(r["full_peak_extra_gb"], 2),
                num(r["full_R@1"], 2),
            ],
            [
                f"{m} (k-d tree candidates, then ranking)",
                num(r[f"{m}_seconds"]),
                num(r[f"{m}_peak_extra_gb"], 2),
                num(r[f"{m}_R@1"], 2),
            ],
        ],
    )
    out += (
        f"\n{num(c['queries'])} queries x {num(c['gallery'])} tiles of {c['dim']} dimensions "
        f"(inputs {num(r['inputs_gb'], 2)} GB); the full score matrix would take "
        f"{num(r['full_matrix_gb'], 1)} GB. Target: under {num(r['target_gb'], 0)} GB beyond "
        f"the inputs: {'met' if r['meets_4gb_target'] else 'not met'}.\n"
    )
    return out + source("eval_memory")


def index() -> str:
    d = load("index")
    r = d["results"]
    rows = [
        [
            "numpy brute force (baseline)",
            "-",
            num(r["numpy"]["1_query"]["p50_ms"], 2),
            num(r["numpy"]["100_queries"]["p50_ms"], 1),
            num(r["numpy"]["recall@10"], 3),
        ]
    ]
    for kind, row in r.items():
        if kind == "numpy" or not isinstance(row, dict) or "settings" not in row:
            continue
        for setting, e in row["settings"].items():
            label = kind if setting in ("None", "null", "") else f"{kind}, {setting}"
            rows.append(
                [
                    f"{label} (`{row['params'].get('factory', kind)}`)",
                    num(row["build_s"]),
                    num(e["1_query"]["p50_ms"], 2),
                    num(e["100_queries"]["p50_ms"], 1),
                    num(e["recall@10"], 3),
                ]
            )
    c = d["config"]
    out = (
        f"{num(c['size'])} x {c['dim']} gallery, k = 10, p50 latency in ms, recall@10 against "
        "exact search:\n\n"
    )
    out += table(["search", "build s", "1 query", "100 queries", "recall@10"], rows)
    summary = d.get("summary") or {}
    if "meets_exact_target" in summary:

        def verdict(met: bool) -> str:
            return "met" if met else "not met"

        out += (
            f"\nTargets: exact (flat) search at least 1.3x faster than numpy: "
            f"{verdict(summary['meets_exact_target'])} (x{summary['flat_vs_numpy_1_query']} "
            f"for one query, x{summary['flat_vs_numpy_100_queries']} for 100); an approximate "
            "kind at least 10x faster than exact with recall@10 >= 0.95: "
            f"{verdict(summary['meets_approximate_target'])}"
        )
        fastest = [
            f"{key.split('_')[0]} at {e['setting']}: recall@10 {e['recall@10']}, "
            f"x{e['speedup_vs_flat_1_query']} / x{e['speedup_vs_flat_100_queries']}"
            for key, e in summary.items()
            if key.endswith("_with_recall_0.95") and isinstance(e, dict)
        ]
        out += (" (" + "; ".join(fastest) + ")") if fastest else ""
        out += ".\n"
    locate = [(k, v) for k, v in r.items() if k.startswith("locate_")]
    for key, v in locate:
        out += (
            f"\nEnd-to-end `locate` over a {key.split('_')[1]} flat gallery (text encoding "
            f"included): {num(v['p50_ms'])} ms p50, {num(v['p95_ms'])} ms p95.\n"
        )
    return out + source("index")


def index_rebuild() -> str:
    d = load("index_rebuild")
    rows = [
        [
            f"{name}{' (baseline)' if name == 'content hashes' else ''}",
            num(row["min_s"], 2),
            num(row["median_s"], 2),
            num(row["shards_reused"]),
        ]
        for name, row in d["rebuild"].items()
    ]
    out = table(["rebuild of an unchanged gallery", "min s", "median s", "shards reused"], rows)
    out += (
        f"\n{num(d['tiles'])} tiles in {num(d['shards'])} shards (the dense world's gallery, "
        f"page cache warm; the first build took {num(d['first_build_s'])} s); both rebuilds also "
        f"load the model and assemble the index. Median speedup x{d['speedup_median']}.\n"
    )
    return out + source("index_rebuild")


def synth() -> str:
    d = load("synth")
    r = d["results"]
    rows = [
        ["generator, 1 worker", num(r["generator_1_workers_samples_per_s"])],
        ["generator, 2 workers", num(r["generator_2_workers_samples_per_s"])],
        ["PNG encode and atomic write alone (baseline)", num(r["png_write_floor_samples_per_s"])],
    ]
    if "xl_estimate_samples_per_s_per_core" in r:
        rows.append(["XL-style regions, per core", num(r["xl_estimate_samples_per_s_per_core"])])
    out = table(["SynthCORE generation", "samples/s"], rows)
    out += (
        f"\nTarget: {num(r['target_samples_per_s_per_core'], 0)} samples/s per core: "
        f"{'met' if r['meets_target'] else 'not met'}. Bytes per sample in shards: "
        f"{num(r['shard_bytes_per_sample_png'])} (PNG), {num(r['shard_bytes_per_sample_jpg'])} "
        f"(JPEG quality {r['shard_jpeg_quality']}).\n"
    )
    if "xl_estimate_hours_on_2_cores" in r:
        out += (
            f"The `xl` preset ({num(r['xl_estimate_samples'])} samples with its gallery) is "
            f"estimated from timed regions at {num(r['xl_estimate_core_hours'])} core-hours.\n"
        )
    return out + source("synth")


def street_render() -> str:
    d = load("street_render")
    out = table(
        ["street panoramas", "per second"],
        [
            [f"{d['width']} x {d['height']}, end to end (1 thread)", num(d["panoramas_per_s"])],
            ["render alone, CPU time", num(d["cpu_panoramas_per_s"])],
        ],
    )
    out += (
        f"\nTarget: {num(d['target_per_s'], 0)} per second ({d['target_judged_on']}): "
        f"{'met' if d['meets_target'] else 'not met'}.\n"
    )
    return out + source("street_render")


def build() -> str:
    d = load("build")
    rows = [
        [str(r["concurrency"]), num(r["samples"]), num(r["seconds"], 2), num(r["samples_per_s"], 2)]
        for r in d["results"]
    ]
    cap = d["capacity"]
    rows.append(
        [
            f"{cap['concurrency']}, LVLM answering at once",
            num(cap["samples"]),
            num(cap["seconds"], 2),
            num(cap["samples_per_s"], 2),
        ]
    )
    lat = d["latency_s"]
    out = (
        f"{num(d['per_region'])} points in each of {len(d['regions'])} regions against the "
        f"loopback providers in other processes (added latency: tiles {lat['tiles']} s, images "
        f"{lat['images']} s, photos {lat['photo']} s, LVLM {lat['lvlm']} s):\n\n"
    )
    out += table(["concurrency", "samples", "seconds", "samples/s"], rows)
    ex = d.get("extrapolation")
    if ex:
        out += (
            f"\nOne million samples with an LVLM sustaining {num(ex['lvlm_rps_assumed'], 0)} "
            f"descriptions/s: about {num(ex['hours_for_1M'])} h, bound by {ex['bound_by']}.\n"
        )
    return out + source("build")


def serve() -> str:
    d = load("serve")
    rows = []
    for level in d["config"]["levels"]:
        b, c = d["baseline"][str(level)], d["concurrency"][str(level)]
        rows.append(
            [
                str(level),
                num(c["p50_ms"]),
                num(c["p95_ms"]),
                num(c["throughput_rps"]),
                num(c["health_p95_ms"]),
                num(b["p50_ms"]),
                num(b["throughput_rps"]),
            ]
        )
    out = table(
        [
            "clients",
            "`/locate` p50 ms",
            "p95 ms",
            "queries/s",
            "`/health` p95 ms",
            "one-at-a-time p50 ms",
            "one-at-a-time queries/s",
        ],
        rows,
    )
    note = d.get("machine", {}).get("note")
    if note:
        out += f"\nNote recorded with the run: {note}.\n"
    return out + source("serve")


def train_throughput() -> str:
    d = load("train_throughput")
    r = d["results"]
    c = d["config"]
    out = table(
        [f"training, {c['method']} on {c['backbone']}, batch {c['batch_size']}", d["unit"]],
        [
            ["one process, 2 threads", num(r["one_process_2_threads"])],
            ["2-process DDP (gloo), 1 thread each", num(r["ddp_2_processes_1_thread_each"])],
        ],
    )
    return out + source("train_throughput")


def tile_tower() -> str:
    d = load("tile_tower")
    c = d["config"]
    names = {
        "forward": "encoding: forward, float32, no gradient",
        "forward_backward": "training: forward + backward, float32",
        "forward_backward_bf16": "training: forward + backward, bf16 autocast",
    }
    rows = [
        [
            names[case],
            num(r["batch"]),
            num(r["nchw_tiles_per_s"]),
            num(r["channels_last_tiles_per_s"]),
            f"{r['time_saved'] * 100:.1f}%",
        ]
        for case, r in d["results"].items()
    ]
    out = table(
        [
            f"`TileCNN` at {c['size']} px, {c['threads']} threads, tiles/s",
            "batch",
            "NCHW",
            "channels-last",
            "time saved",
        ],
        rows,
        "lrrrr",
    )
    m = d["machine"]
    out += (
        f"\nMedian of {c['repeats']} runs of each, layouts alternating, on {m['cpu_count']} cores "
        f"of {m['cpu']} (other processes used {d['others_cpu_share'] * 100:.0f}% of the cores' "
        f"time meanwhile); bf16 rows only where the CPU does bf16 natively "
        f"({'it does' if c['native_bf16'] else 'this one does not'}). The two layouts' "
        f"encodings differ by at most {d['max_abs_difference']:.1e} (outputs up to "
        f"{d['output_max_abs']:.1f}).\n"
    )
    return out + source("tile_tower")


def style_ceiling() -> str:
    d = load("style_ceiling")
    if "summary" not in d:
        raise Missing("style_ceiling", "holds no summary yet (the run did not finish)")
    summary = d["summary"]
    styles = list(summary["held-out"]["global"]["R@10"])
    held = d["held_out_style"]
    setting_names = {"held-out": f"`{held}` held out", "all-styles": f"`{held}` trained too"}
    rows = [
        [f"{text}, {SYNTH_LABELS[scoring]}"]
        + [interval(summary[setting][scoring]["R@10"][style]) for style in styles]
        + [interval(summary[setting][scoring]["kept"], 2)]
        for setting, text in setting_names.items()
        for scoring in ("global", "reranked")
    ]
    header = (
        [f"`{d['recipe']}` ({d['backbone']}), R@10"]
        + [f"`{style}`" for style in styles]
        + [f"`{held}` keeps"]
    )
    diffs = summary["trained - held out"]
    what = list(diffs["global"])
    out = table(header, rows)
    out += (
        f"\n{len(d['seeds'])} seeds x {d['steps']} steps; every test query read in each style. "
        f"`{held}` keeps: its R@10 over the mean R@10 of the other styles on the same queries, "
        "paired 95% interval (`synthcore`'s share divides by each query's own text instead).\n"
        f"\nWhat training on `{held}` changes, in points (same seeds and queries, paired 95% "
        "interval):\n\n"
    )
    out += table(
        ["trained too - held out"] + [f"{w}" for w in what],
        [
            [SYNTH_LABELS[scoring]] + [interval(diffs[scoring][w]) for w in what]
            for scoring in ("global", "reranked")
        ],
    )
    return out + source("style_ceiling")


def style_robustness() -> str:
    d = load("style_robustness")
    if "summary" not in d:
        raise Missing("style_robustness", "holds no summary yet (the run did not finish)")
    summary = d["summary"]
    held, val_style = d["held_out_style"], d["val_style"]
    unseen = [val_style, held]
    chosen = summary["selection"]["arm"]
    rows = [
        [f"{arm}{' (arm chosen on val)' if arm == chosen else ''}, {SYNTH_LABELS[scoring]}"]
        + [interval(summary["test"][arm][scoring]["trained styles R@10"])]
        + [interval(summary["test"][arm][scoring]["R@10"][u]) for u in unseen]
        + [interval(summary["test"][arm][scoring]["kept"][u], 2) for u in unseen]
        for arm in d["arms"]
        for scoring in ("global", "reranked")
    ]
    header = (
        [f"`{d['recipe']}` ({d['backbone']}), test R@10", "trained styles (mean)"]
        + [f"`{u}`" for u in unseen]
        + [f"`{u}` keeps" for u in unseen]
    )
    sweep = summary["selection"]["sweep"]
    out = table(header, rows)
    out += (
        f"\n{len(d['seeds'])} seeds x {d['steps']} steps; trained styles: "
        + ", ".join(f"`{t}`" for t in d["trained_styles"])
        + f". Arm chosen on val ({summary['selection']['criterion']}; val queries against "
        f"the val tiles only): **{chosen}** ("
        + ", ".join(f"{arm} {num(v, 1)}" for arm, v in sweep.items())
        + "). Keeps: R@10 over the trained styles' mean R@10 on the same queries, paired "
        f"95% interval. The informal rewrite's operations were chosen knowing how `{held}` "
        "writes.\n\ninformal - base on test, in points (same seeds and queries, paired "
        "95% interval):\n\n"
    )
    diffs = summary["informal - base (test)"]
    what = list(diffs["global"])
    out += table(
        ["informal - base"] + [f"`{w}`" if w in unseen else w for w in what],
        [
            [SYNTH_LABELS[scoring]] + [interval(diffs[scoring][w]) for w in what]
            for scoring in ("global", "reranked")
        ],
    )
    return out + source("style_robustness")


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def gpu_train() -> str:
    """The GPU training run, with the earlier commit measured in the same call where present."""
    runs = [load("gpu_train")]
    with contextlib.suppress(Missing):  # the earlier commit's run is optional
        runs.insert(0, load("gpu_train_before"))
    rows = [
        [
            r.get("label") or "-",
            num(r["samples_per_s"]),
            num(r["steps_per_s"], 2),
            f"{num(r['gpu_util_mean'])} / {num(_float(r['gpu_util_median']))}",
            num(r["data_wait_s_per_step"], 3),
            num(r["pipeline_samples_per_s"]),
            num(r["pipeline_over_training"], 2),
            f"{num(r['gpu_allocated_gib_max'])} / {num(r['gpu_memory_gib_max'])}",
        ]
        for r in runs
    ]
    r = runs[-1]
    same = ("backbone", "init", "amp", "batch", "steps", "image_size", "workers", "tokenizer")
    for other in runs[:-1]:
        differ = [k for k in same if other.get(k) != r.get(k)]
        differ += ["gpu"] if other["machine"].get("gpu") != r["machine"].get("gpu") else []
        if differ:  # the sentence below describes both rows only when they share it
            raise ValueError(f"gpu_train runs differ in {', '.join(differ)}")
    out = (
        f"`{r['backbone']}` ({r['parameters_M']}M parameters, {r['init']} weights, both towers "
        f"trained), {r['amp']} autocast, batch {r['batch']}, {r['steps']} steps, "
        f"{r['image_size']} px JPEG shards of {num(r['world']['samples'])} samples, "
        f"{r['workers']} DataLoader workers, text read with the "
        f"{num(r['tokenizer']['vocabulary'])}-token `{r['tokenizer']['folder']}` tokenizer; "
        f"{r['machine']['gpu']}, {r['machine']['cpus']} CPU cores, torch "
        f"{r['machine']['torch']}:\n\n"
    )
    out += table(
        [
            "code",
            "samples/s",
            "steps/s",
            "GPU busy % (mean / median)",
            "data wait s/step",
            "pipeline alone samples/s",
            "pipeline / training",
            "GPU GiB (tensors / NVML)",
        ],
        rows,
        "lrrrrrrr",
    )
    return out + source(*(["gpu_train_before"] if len(runs) > 1 else []), "gpu_train")


# Results files that a benchmark writes under another name than its own (``--out``).
RERUN = {
    "crossview_long": "benchmarks/crossview.py --steps 500 --seeds 3 --variants text image "
    "joint-w0.25-inbatch --out benchmarks/results/crossview_long.json",
    "eval_scale_xl": "benchmarks/eval_scale.py --out benchmarks/results/eval_scale_xl.json",
}

RENDERERS: dict[str, Callable[[], str]] = {
    "machine": machine,
    "demo": demo,
    "synthcore": synthcore,
    "synthcore-selection": synthcore_selection,
    "crossview": crossview,
    "crossview_long": lambda: crossview("crossview_long"),
    "train_scale": train_scale,
    "gpu_train": gpu_train,
    "eval_scale": eval_scale,
    "eval_scale_xl": lambda: eval_scale("eval_scale_xl"),
    "eval_memory": eval_memory,
    "index": index,
    "index_rebuild": index_rebuild,
    "synth": synth,
    "street_render": street_render,
    "build": build,
    "serve": serve,
    "train_throughput": train_throughput,
    "tile_tower": tile_tower,
    "style_ceiling": style_ceiling,
    "style_robustness": style_robustness,
}


def render(name: str) -> str:
    """The markdown of one marker's block."""
    if name not in RENDERERS:
        raise KeyError(f"README marker results:{name} has no renderer in {__file__}")
    try:
        return RENDERERS[name]()
    except Missing as missing:
        command = RERUN.get(missing.name, f"benchmarks/{missing.name}.py")
        return (
            f"*Not measured in this version: `benchmarks/results/{missing.name}.json` "
            f"{missing.reason} (run `{command}`).*\n"
        )


def update(text: str) -> str:
    """``text`` with every marker block rendered afresh."""
    return MARKER.sub(lambda m: m["open"] + render(m["name"]) + m["close"], text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the README is stale")
    args = parser.parse_args()
    text = README.read_text(encoding="utf-8")
    fresh = update(text)
    if args.check:
        if fresh != text:
            print("README tables differ from benchmarks/results; run scripts/readme_tables.py")
            return 1
        return 0
    README.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
