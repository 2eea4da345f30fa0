"""Training settings of the N-BEATS members chosen on validation windows only: the measurement behind the
settings in params.yaml that this command names (docs/panels.md, "How the training settings were chosen").

Each variant changes one or more settings of a ``panel_models:`` entry (the level the forecast starts from,
gradient clipping, the learning-rate schedule, how often validation is looked at, the network's size, the
training length) and trains its first member's validation fit, on every M3 series
of a panel with the test horizon removed: the network learns from what precedes each history's last horizon and
is scored on that horizon (the protocol's own validation, global_direct.fit_member with ``refit: false``). The
test points never reach it, so a setting chosen from this table is not chosen on the test set. Each (variant,
panel, seed) is cached as JSON as soon as it is done: a run cut short loses only the fit in progress.

    python benchmarks/nbeats_validation.py                              # every variant, monthly and yearly, 2 seeds
    python benchmarks/nbeats_validation.py --sample 4 --quick --cache <dir>   # the CI test's tiny run
    python benchmarks/nbeats_validation.py --panels m3_monthly --variants "10-batch epochs" \
        "paper's monthly length, 10000 batches" --figure docs/figures/nbeats_g-validation-curves.png   # its curves
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.m3_deep import panel_series  # noqa: E402
from stages.lib.config import load_params  # noqa: E402
from stages.lib.panel.scores import holdout  # noqa: E402

# name: (the entry's settings, its fit's settings), over params.yaml's entry. Every variant pins what it is
# compared on, so that a name means the same settings whatever params.yaml says today: the settings the
# members were first trained with (50 batches between two looks at validation, at most 20 looks, 4 of patience,
# the look-back's mean as the start, no clipping, a constant learning rate) and what each variant changes.
BEFORE = ({"start": "mean", "batches_per_epoch": 50},
          {"max_epochs": 20, "patience": 4, "clipnorm": None, "lr_decay_every": None})


def changed(entry: dict | None = None, fit: dict | None = None) -> tuple[dict, dict]:
    return {**BEFORE[0], **(entry or {})}, {**BEFORE[1], **(fit or {})}


VARIANTS = {
    "mean start (before)": changed(),
    "last start": changed({"start": "last"}),
    "last start, clipnorm 1": changed({"start": "last"}, {"clipnorm": 1.0}),
    "last start, clipnorm 1, lr halved every 10 of 30 epochs": changed(
        {"start": "last"}, {"clipnorm": 1.0, "max_epochs": 30, "patience": None, "lr_decay_every": 10,
                            "lr_decay_factor": 0.5}),
    # Validation every 10 batches instead of 50, the same 1000 at most and the same 200 without improvement:
    # yearly and quarterly members stopped after 1 to 3 looks of 50 (the paper trains them 20 to 250 batches).
    "10-batch epochs": changed({"batches_per_epoch": 10}, {"max_epochs": 100, "patience": 20}),
    # The paper's N-BEATS-G size (Oreshkin et al. 2020, Table 18), about 20 times the compute of each batch.
    "paper's size, 30 stacks of 512 units": changed({"arch": {"stacks": 30, "units": 512}}),
    # The paper's training length on M3 monthly (ElementAI/N-BEATS, experiments/m3/generic.gin: 10000
    # iterations, no early stopping), at our size: validation looked at every 100 batches only to draw the curve
    # (`val_curve` in the cache); the question is whether the loss still falls after the 220 to 400 batches that
    # the 10-batch looks stopped at.
    "paper's monthly length, 10000 batches": changed({"batches_per_epoch": 100}, {"max_epochs": 100, "patience": None}),
    # The hidden layers multiplying in bfloat16 (arch.hidden_dtype; heads, residuals and the forecast sum stay
    # float32): faster where the CPU has AMX or AVX512-BF16 (benchmarks/panel_xla.py), if it costs no accuracy.
    # The first for N-BEATS-G as params.yaml trains it (10-batch looks), the second for N-BEATS-I (as before).
    "10-batch epochs, bfloat16 hidden layers": changed(
        {"batches_per_epoch": 10, "arch": {"hidden_dtype": "mixed_bfloat16"}}, {"max_epochs": 100, "patience": 20}),
    "bfloat16 hidden layers": changed({"arch": {"hidden_dtype": "mixed_bfloat16"}}),
}


REPORT_HEAD = """# N-BEATS training settings, compared on validation windows only

Written by `python benchmarks/nbeats_validation.py [--model M] --report docs/nbeats_validation.md` from its cache.
Each row is the first member of the model (look-back 2 horizons, sMAPE loss) trained on every series of the panel by the
protocol's validation fit: the network learns from what precedes the last horizon of each history (the test
horizon removed) and is scored on that horizon. The columns are that validation sMAPE, per seed ({seeds}) and
their mean, and the epochs validation chose. The test points never reach any of it. A difference of about 0.1 is
within what another seed moves (compare the seeds' columns). What was concluded from it, and what params.yaml
uses, is in panels.md ("How the training settings were chosen").

"""


def variant_spec(spec, changes: tuple[dict, dict]):
    entry, fit = changes
    if "arch" in entry:  # the architecture's changes, on top of the entry's
        entry = {**entry, "arch": {**spec.arch, **entry["arch"]}}
    return spec.model_copy(update={**entry, "fit": spec.fit.model_copy(update=fit)})


def validate(spec, histories: list[np.ndarray], horizon: int, season: int, seed: int) -> dict:
    """The first member's validation fit with ``seed``: its best validation loss, the epoch it came at, CPU s."""
    from stages.lib.forecast.global_direct import fit_entry_member

    config = dataclasses.replace(spec.members(horizon, season, 1)[0], seed=seed)
    started = time.perf_counter()
    member = fit_entry_member(spec, config, histories, horizon=horizon, season_length=season, refit=False)
    curve = member.histories[0]["val_loss"].round(4).tolist() if member.histories else []
    return {"member": config.label, "best_val_loss": member.best_val_loss, "epochs": member.epochs,
            "cpu_s": member.cpu_s, "wall_s": time.perf_counter() - started, "val_curve": curve}


def table(cache: Path, model: str, panels: list[str], seeds: list[int]) -> list[str]:
    """Markdown: per variant and panel, the validation loss of each seed and their mean, and the epochs."""
    head = "| variant | panel | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | epochs | CPU min |"
    lines = [head, "|---|---|" + "---:|" * (len(seeds) + 3)]
    for name in VARIANTS:
        for panel in panels:
            rows = [json.loads(p.read_text()) for s in seeds if (p := cache_file(cache, model, name, panel, s)).exists()]
            if len(rows) < len(seeds):
                continue
            losses = [r["best_val_loss"] for r in rows]
            lines.append(f"| {name} | {panel.removeprefix('m3_')} | " + " | ".join(f"{v:.3f}" for v in losses)
                         + f" | {np.mean(losses):.3f} | {'/'.join(str(r['epochs']) for r in rows)} | "
                         f"{sum(r['cpu_s'] for r in rows) / 60:.1f} |")
    return lines


def curve_figure(cache: Path, model: str, panel: str, seeds: list[int], path: Path) -> list[str]:
    """Validation sMAPE against the batches trained, one line per (variant, seed) whose cache holds its curve
    (fits cached since the curve was recorded). Returns the variants drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = []
    for name in VARIANTS:
        colour = f"C{len(set(drawn))}"  # one colour per variant drawn, in the table's order
        for seed, style in zip(seeds, ("-", "--", ":", "-.")):
            file = cache_file(cache, model, name, panel, seed)
            curve = json.loads(file.read_text()).get("val_curve") if file.exists() else None
            if not curve:
                continue
            batches = VARIANTS[name][0]["batches_per_epoch"] * np.arange(1, len(curve) + 1)
            ax.plot(batches, curve, style, color=colour, label=f"{name}, seed {seed}")
            drawn.append(name)
    ax.set(xscale="log", xlabel="batches trained (log scale)", ylabel="validation sMAPE (%)")
    ax.set_title(f"{model} on {panel}: validation sMAPE while training (test points removed)", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return sorted(set(drawn))


def cache_file(cache: Path, model: str, variant: str, panel: str, seed: int) -> Path:
    slug = "".join(c if c.isalnum() else "-" for c in variant).strip("-")
    return cache / model / slug / f"{panel}-seed{seed}.json"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="nbeats_g", help="a panel_models: entry with output: direct")
    parser.add_argument("--panels", nargs="+", default=["m3_monthly", "m3_yearly"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--sample", type=int, default=None, help="series per panel (default: all)")
    parser.add_argument("--cache", type=Path, default=ROOT / "benchmarks" / "results" / "nbeats_validation")
    parser.add_argument("--report", type=Path, default=None, help="also write the table here (Markdown)")
    parser.add_argument("--figure", type=Path, default=None,
                        help="also draw the validation curves of the first panel's fits here (PNG)")
    parser.add_argument("--quick", action="store_true", help="2 epochs of 2 batches: the CI test's settings")
    args = parser.parse_args(argv)
    params = load_params()
    spec = params.panel_model(args.model)
    if spec.output != "direct":
        raise SystemExit(f"--model: {args.model} is not an output: direct entry")
    if args.quick:
        spec = spec.model_copy(update={"batches_per_epoch": 2, "fit": spec.fit.model_copy(update={"max_epochs": 2})})
    for panel in args.panels:
        panel_spec = params.panel(panel)
        H, m = panel_spec.horizon, panel_spec.season_length
        histories = [holdout(y, H)[0] for _, y in panel_series(params, panel, args.sample)]
        for name in args.variants:
            changes = VARIANTS[name]
            if args.quick:
                changes = ({**changes[0], "batches_per_epoch": 2}, {**changes[1], "max_epochs": 2})
            for seed in args.seeds:
                path = cache_file(args.cache, args.model, name, panel, seed)
                if path.exists():
                    continue
                result = validate(variant_spec(spec, changes), histories, H, m, seed)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"variant": name, "panel": panel, "seed": seed, **result}, indent=1))
                print(f"{name} on {panel}, seed {seed}: validation {result['best_val_loss']:.3f} at epoch "
                      f"{result['epochs']}, {result['cpu_s'] / 60:.1f} CPU min", flush=True)
    print("\n".join(table(args.cache, args.model, args.panels, args.seeds)))
    if args.report is not None:
        # Every model validated into this cache, each under its own heading: the report is the cache's.
        parts = [f"## {model}\n\n" + "\n".join(table(args.cache, model, args.panels, args.seeds)) + "\n"
                 for model in sorted(p.name for p in args.cache.iterdir() if p.is_dir())]
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(REPORT_HEAD.format(seeds=", ".join(map(str, args.seeds))) + "\n".join(parts))
        print(f"wrote {args.report}")
    if args.figure is not None:
        drawn = curve_figure(args.cache, args.model, args.panels[0], args.seeds, args.figure)
        print(f"wrote {args.figure} ({', '.join(drawn) or 'no cached fit has a curve'})")


if __name__ == "__main__":
    from stages.lib.infra import cli

    cli.run(main)
