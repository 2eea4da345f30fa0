"""Compare two revisions or experiments for review: params, metrics, verdicts and figures, as Markdown.

    python -m stages.tools.compare --base main                  # main against the workspace
    python -m stages.tools.compare --base main --head my-branch # two revs
    python -m stages.tools.compare --base exp-1a2b3 --head exp-4c5d6   # two experiments

Prints the Markdown and writes it, with one PNG per changed figure (base on the
left, head on the right), to --out (default: compare/). Everything is read
through DVC (`dvc params diff`, `dvc metrics diff`, `dvc plots diff`), so any
rev or experiment name DVC understands works, in any clone.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.lib.errors import CommandError
from stages.lib.forecast.scoring import SCORES
from stages.lib.infra import cli
from stages.lib.infra.io import atomic_dir
from stages.lib.memory.tasks import IDEAL_CHANGE_PCT

WORKSPACE = "workspace"
DEFAULT_IDEAL_CHANGE_PCT = IDEAL_CHANGE_PCT  # unless the compared params say otherwise

# Which way is better, by the last part of a metric's name. Anything not listed
# (seq, epochs_run, n_train, receptive_field, ...) is reported without a mark.
LOWER_IS_BETTER = {*SCORES, "mse", "val_mse", "test_mse", "val_loss", "best_val_loss",
                   "blind_first_mse", "blind_last_mse", "final_loss", "receptive_field_shortfall",
                   "mse_all", "mse_test", "mse_test_one_step_inversion"}
CLOSER_TO_IDEAL = {"change_first_pct", "change_last_pct"}
VERDICTS = {"remembers_first"}
# Flags where `false` is the good news: a forecast that tracks the series one step late.
WARNINGS = {"persistent", "lags_one_step", "near_zero_change"}
# Relative changes below this are marked "≈" rather than better or worse: a
# retrained network moves in the fifth digit without anything having happened.
DEFAULT_RTOL = 1e-3


@dataclass(frozen=True)
class MetricRow:
    file: str
    key: str
    old: Any
    new: Any
    mark: str  # "better", "worse", "close" (within rtol), "changed" (no known direction), "same"

    @property
    def delta(self) -> float | None:
        if _is_number(self.old) and _is_number(self.new):
            return float(self.new) - float(self.old)
        return None

    @property
    def relative_pct(self) -> float | None:
        delta = self.delta
        if delta is None or float(self.old) == 0:
            return None
        return 100.0 * delta / abs(float(self.old))


# ------------------------------------------------------------ pure parts

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def judge(key: str, old: Any, new: Any, ideal: float = DEFAULT_IDEAL_CHANGE_PCT, rtol: float = DEFAULT_RTOL) -> str:
    """better / worse / close / changed / same for one metric, by its known direction."""
    if old == new:
        return "same"
    name = key.rsplit(".", 1)[-1]
    if name in VERDICTS and isinstance(new, bool):
        return "better" if new else "worse"
    if name in WARNINGS and isinstance(new, bool):
        return "worse" if new else "better"
    if not (_is_number(old) and _is_number(new)):
        return "changed"
    known = name in LOWER_IS_BETTER or name in CLOSER_TO_IDEAL
    if known and abs(new - old) <= rtol * max(abs(old), abs(new)):
        return "close"
    if name in LOWER_IS_BETTER:
        return "better" if new < old else "worse"
    if name in CLOSER_TO_IDEAL:
        before, after = abs(old - ideal), abs(new - ideal)
        return "same" if before == after else ("better" if after < before else "worse")
    return "changed"


def metric_rows(metrics_diff: dict, ideal: float = DEFAULT_IDEAL_CHANGE_PCT, rtol: float = DEFAULT_RTOL) -> list[MetricRow]:
    """Rows from `dvc metrics diff --json --all`, in file and key order."""
    rows = []
    for file in sorted(metrics_diff):
        for key in sorted(metrics_diff[file]):
            entry = metrics_diff[file][key]
            old, new = entry.get("old"), entry.get("new")
            rows.append(MetricRow(file, key, old, new, judge(key, old, new, ideal, rtol)))
    return rows


def verdict_changes(rows: list[MetricRow]) -> list[str]:
    """'lstm: remembers_first true -> false at seq=69' for each verdict that flipped."""
    seq = {row.file: row.new for row in rows if row.key == "seq"}
    lines = []
    for row in rows:
        model, _, name = row.key.rpartition(".")
        if name in VERDICTS and row.old != row.new:
            where = f" at seq={seq[row.file]}" if row.file in seq else ""
            lines.append(f"{model or row.file}: {name} {_word(row.old)} -> {_word(row.new)}{where}")
    return lines


def _word(value: Any) -> str:
    if value is None:
        return "absent"
    return str(value).lower() if isinstance(value, bool) else str(value)


def _fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


MARKS = {"better": "✅ better", "worse": "❌ **regression**", "close": "≈ within tolerance", "changed": "changed", "same": ""}


def render(base: str, head: str, params: dict, rows: list[MetricRow], figures: list[tuple[str, str]],
           changed_plots: list[str]) -> str:
    """The review comment. ``figures`` are (title, png file name) pairs."""
    changed = [r for r in rows if r.mark != "same"]
    param_rows = [(f"{file}:{key}" if file != "params.yaml" else key, v.get("old"), v.get("new"))
                  for file, keys in sorted(params.items()) for key, v in sorted(keys.items())
                  if v.get("old") != v.get("new")]
    if not (changed or param_rows or figures or changed_plots):
        return f"No changes between `{base}` and `{head}`: params, metrics and plots are identical.\n"
    worse = [r for r in changed if r.mark == "worse"]
    lines = [f"## `{base}` → `{head}`", ""]
    lines += [f"**{len(param_rows)} param(s) changed, {len(changed)} metric(s) changed "
              f"({len(worse)} regression(s)), {len(figures)} figure(s) changed.**", ""]
    if worse:
        lines += ["Regressions: " + ", ".join(f"`{r.key}`" for r in worse), ""]
    verdicts = verdict_changes(rows)
    if verdicts:
        lines += ["### Verdicts", "", *[f"- {v}" for v in verdicts], ""]
    if param_rows:
        lines += ["### Params", "", f"| param | `{base}` | `{head}` |", "|---|---|---|",
                  *[f"| {k} | {_fmt(o)} | {_fmt(n)} |" for k, o, n in param_rows], ""]
    if changed:
        lines += ["### Metrics that changed", "", *_metric_table(base, head, changed), ""]
    same = [r for r in rows if r.mark == "same"]
    if same:
        lines += [f"<details><summary>{len(same)} unchanged metric(s)</summary>", "",
                  *_metric_table(base, head, same, short=True), "", "</details>", ""]
    if figures or changed_plots:
        lines += ["### Plots", ""]
        if changed_plots:
            lines += [f"Plot data changed: {', '.join(f'`{p}`' for p in changed_plots)} "
                      f"(`dvc plots diff {base}` renders them).", ""]
        for title, png in figures:
            lines += [f"**{title}** (left `{base}`, right `{head}`)", "", f"![{title}]({png})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _metric_table(base: str, head: str, rows: list[MetricRow], short: bool = False) -> list[str]:
    if short:
        return ["| file | metric | value |", "|---|---|---:|", *[f"| {r.file} | {r.key} | {_fmt(r.new)} |" for r in rows]]
    out = [f"| file | metric | `{base}` | `{head}` | Δ | Δ% | |", "|---|---|---:|---:|---:|---:|---|"]
    for r in rows:
        delta = "—" if r.delta is None else f"{r.delta:+.4g}"
        rel = "—" if r.relative_pct is None else f"{r.relative_pct:+.1f}%"
        out.append(f"| {r.file} | {r.key} | {_fmt(r.old)} | {_fmt(r.new)} | {delta} | {rel} | {MARKS[r.mark]} |")
    return out


def changed_data_plots(plots: dict, base: str, head: str) -> list[str]:
    """Data plots (vega) whose points differ between the two revisions."""
    changed = []
    for name, entries in sorted(plots.items()):
        for entry in entries:
            if entry.get("type") != "vega":
                continue
            by_rev: dict[str, list] = {base: [], head: []}
            for point in entry["content"].get("data", {}).get("values", []):
                rest = {k: v for k, v in point.items() if k != "rev"}
                by_rev.setdefault(point.get("rev"), []).append(rest)
            if by_rev[base] != by_rev[head]:
                changed.append(name)
    return changed


def image_pairs(plots: dict, base: str, head: str) -> dict[str, dict[str, Path]]:
    """Image plots: name -> {rev: png path} as written by `dvc plots diff -o`."""
    pairs: dict[str, dict[str, Path]] = {}
    for name, entries in plots.items():
        for entry in entries:
            if entry.get("type") == "image":
                for rev in entry.get("revisions", []):
                    if rev in (base, head):
                        pairs.setdefault(name, {})[rev] = Path(entry["url"])
    return pairs


# ------------------------------------------------------------ DVC and images

def dvc_json(*args: str) -> dict:
    return cli.dvc_json(*args) or {}


def side_by_side(base_png: Path | None, head_png: Path | None, out: Path, base: str, head: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.image as mpimg
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(16, 5.5))
    for ax, png, label in zip(axes, (base_png, head_png), (base, head)):
        ax.axis("off")
        ax.set_title(label)
        if png is not None and png.exists():
            ax.imshow(mpimg.imread(png))
        else:
            ax.text(0.5, 0.5, "absent", ha="center", va="center")
    fig.tight_layout()
    fig.savefig(out, dpi=80, metadata={"Software": None})
    plt.close(fig)


def compare(base: str, head: str | None, out: Path, rtol: float = DEFAULT_RTOL) -> str:
    revs = [base] + ([head] if head else [])
    head_label = head or WORKSPACE
    params = dvc_json("params", "diff", *revs)
    all_params = dvc_json("params", "diff", "--all", *revs)
    ideal = all_params.get("params.yaml", {}).get("evaluate_memory.ideal_change_pct", {}).get("new")
    rows = metric_rows(dvc_json("metrics", "diff", "--all", *revs),
                       ideal if _is_number(ideal) else DEFAULT_IDEAL_CHANGE_PCT, rtol)
    with tempfile.TemporaryDirectory() as tmp, atomic_dir(out) as folder:
        plots = dvc_json("plots", "diff", "-o", tmp, *revs).get("data", {})
        figures = []
        for name, pngs in sorted(image_pairs(plots, base, head_label).items()):
            a, b = pngs.get(base), pngs.get(head_label)
            if a is not None and b is not None and a.read_bytes() == b.read_bytes():
                continue
            file = Path(name).stem + ".png"
            side_by_side(a, b, folder / file, base, head_label)
            figures.append((Path(name).stem, file))
        markdown = render(base, head_label, params, rows, figures, changed_data_plots(plots, base, head_label))
        (folder / "compare.md").write_text(markdown)
    return markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="rev or experiment name to compare against (e.g. main)")
    parser.add_argument("--head", help="rev or experiment name (default: the workspace)")
    parser.add_argument("--out", type=Path, default=Path("compare"), help="folder for compare.md and the PNGs")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                        help=f"relative change below which a metric counts as unchanged in quality (default {DEFAULT_RTOL})")
    args = parser.parse_args(argv)
    sys.stdout.write(compare(args.base, args.head, args.out, args.rtol))


if __name__ == "__main__":
    cli.run(main)
