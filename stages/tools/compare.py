"""Compare two revisions or experiments for review: params, metrics, verdicts and figures, as Markdown.

    python -m stages.tools.compare --base main                  # main against the workspace
    python -m stages.tools.compare --base main --head my-branch # two revs
    python -m stages.tools.compare --base exp-1a2b3 --head exp-4c5d6   # two experiments

Prints the review comment and writes it, with compare-full.md (every metric)
and one PNG per changed figure (base on the left, head on the right), to --out
(default: compare/). The comment opens with one headline table per experiment
kind (KINDS) and stays under COMMENT_BUDGET whatever changed: what does not fit
is cut at a row boundary, counted in a closing line, and left to
compare-full.md. Everything is read through DVC (`dvc params diff`,
`dvc metrics diff`, `dvc plots diff`), so any rev or experiment name DVC
understands works, in any clone.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import tempfile
from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

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
                   "mse_all", "mse_test", "mse_test_one_step_inversion", "mean_rank",
                   "smape_mean", "smape_best", "mase_mean", "mase_best"}  # an ensemble's members alone (`members`)
HIGHER_IS_BETTER = re.compile(r"wins_\w+")  # a panel's share of series on which a forecaster beats a baseline
LOWER_IS_BETTER_PATTERN = re.compile(r"msis_\d+")  # the M4 interval score at a level
CLOSER_TO_IDEAL = {"change_first_pct", "change_last_pct"}
COVERAGE = re.compile(r"coverage_(\d+)")  # closer to its level (coverage_80: 0.8) is better
VERDICTS = {"remembers_first"}
# Flags where `false` is the good news: a forecast that tracks the series one step late.
WARNINGS = {"persistent", "lags_one_step", "near_zero_change"}
# Relative changes below this are marked "≈" rather than better or worse: a
# retrained network moves in the fifth digit without anything having happened.
DEFAULT_RTOL = 1e-3

# Δ% only where the base can carry it: |base| at least PCT_MIN_RATIO times the
# larger of |base| and |head|, and at least PCT_FLOOR. Past a thousandfold move a
# percentage says nothing the two values do not (a change_first_pct of -3e-5, a
# model ignoring x[0], going to 21.8 read "+68,529,333.6%"); PCT_FLOOR sits two
# orders below the smallest loss the project trains for (target_val_loss 2e-4),
# so only a base that is zero up to rounding loses its Δ%.
PCT_MIN_RATIO = 1e-3
PCT_FLOOR = 1e-6
# A memory probe's % change that stays within this many points of 0 on both sides is a model ignoring that
# input, before and after: "≈", with no Δ%. A model using it moves by about +25 (the ideal); 0.0006 going to
# -0.0014 is the probe's noise, and read "-349.4% ❌" before this floor.
PROBE_NOISE_PCT = 1.0

# GitHub refuses a comment body over 65,536 characters. The budget leaves room
# for what CML adds (its watermark, each image link rewritten to an upload URL)
# and is counted in UTF-8 bytes, never fewer than characters, so it holds
# whichever of the two GitHub counts.
COMMENT_BUDGET = 60_000
NOTE_RESERVE = 500  # kept free for the closing line that counts what was left out
COMMENT_FILE = "compare.md"
FULL_FILE = "compare-full.md"
ARTIFACT = "compare"  # the artifact name .github/workflows/review.yml uploads --out under
MAX_NAMES = 20  # names listed in one line (not run, regressions) before "and N more"
MAX_COLUMNS = 6  # value columns per headline table; more files split it into several tables
SPREAD = ("_min", "_max")  # the seed spread of a measure, written beside its median


@dataclass(frozen=True)
class MetricRow:
    file: str
    key: str
    old: Any
    new: Any
    mark: str  # "better", "worse", "close" (within rtol), "changed" (no known direction), "same"
    old_range: tuple[float, float] | None = None  # the seed spread [min, max], folded in by fold_spread
    new_range: tuple[float, float] | None = None

    @property
    def delta(self) -> float | None:
        if _is_number(self.old) and _is_number(self.new):
            return float(self.new) - float(self.old)
        return None

    @property
    def relative_pct(self) -> float | None:
        return None if near_zero_probe(self.key, self.old, self.new) else relative_pct(self.old, self.new)


@dataclass(frozen=True)
class Kind:
    """One experiment's headline table: a row per model or forecaster, a column per (file, measure).

    A new experiment kind is one more entry in KINDS: its metrics files, what a row is,
    and which measures and per-file facts a reviewer reads first.
    """

    name: str
    files: str  # pattern of its metrics files; with a `*`, each file has columns, labelled by what `*` matched
    entity: str  # what a row is: the first part of the metric's key
    measures: tuple[tuple[str, str], ...]  # (column title, key under the entity)
    facts: tuple[tuple[str, str], ...] = ()  # (row title, top-level key): one value per file, above the entities


KINDS = (
    Kind("memory", "reports/metrics/memory.json", "model",
         (("remembers x[0]", "remembers_first"), ("x[0] change %", "change_first_pct"),
          ("blind x[0] MSE", "blind_first_mse"), ("val MSE", "val_mse"))),
    Kind("forecast", "reports/metrics/forecast-*.json", "forecaster", (("pooled MASE", "all.mase"),),
         facts=(("best", "best"),)),
    Kind("article", "reports/metrics/article.json", "forecaster",
         (("test MSE", "mse_test"), ("MSE, all points", "mse_all"))),
    Kind("panel", "reports/metrics/panel-*.json", "forecaster", (("mean sMAPE", "smape"), ("mean rank", "mean_rank")),
         facts=(("series", "series"), ("critical difference (mean rank)", "significance.cd"))),
)


@dataclass(frozen=True)
class Block:
    """Lines that stand or fall together (a heading, a table's header), then rows the budget may cut from the end."""

    head: tuple[str, ...]
    rows: tuple[str, ...] = ()
    tail: tuple[str, ...] = ("",)  # closes the block whenever its head is in ("</details>", a blank line)
    what: str = "section(s)"  # what one row is, in the line that counts what was left out


# ------------------------------------------------------------ pure parts: judging

def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def judge(key: str, old: Any, new: Any, ideal: float = DEFAULT_IDEAL_CHANGE_PCT, rtol: float = DEFAULT_RTOL,
          points: int | None = None, cd: float | None = None) -> str:
    """better / worse / close / changed / same for one metric, by its known direction.

    Three kinds of noise are "close": a relative change within ``rtol`` of any
    number (a rerun on another CPU moves the 4th to 6th digit), a coverage
    that moved by at most one of its ``points`` (one forecast on either side of
    an interval's edge), and a panel's mean rank that moved by no more than the
    panel's Nemenyi critical difference ``cd`` (not a significant move at 5%).
    A coverage is better the closer it is to its level.
    """
    if old == new:
        return "same"
    name = key.rsplit(".", 1)[-1]
    if name == "mean_rank" and cd is not None and _is_number(old) and _is_number(new):
        return "close" if abs(new - old) <= cd else ("better" if new < old else "worse")
    coverage = COVERAGE.fullmatch(name)
    if coverage and _is_number(old) and _is_number(new):
        if points and abs(new - old) <= 1 / points + 1e-9:
            return "close"
        nominal = int(coverage.group(1)) / 100
        before, after = abs(old - nominal), abs(new - nominal)
        return "same" if before == after else ("better" if after < before else "worse")
    if name in VERDICTS and isinstance(new, bool):
        return "better" if new else "worse"
    if name in WARNINGS and isinstance(new, bool):
        return "worse" if new else "better"
    if not (_is_number(old) and _is_number(new)):
        return "changed"
    if abs(new - old) <= rtol * max(abs(old), abs(new)):
        return "close"
    if name in LOWER_IS_BETTER or LOWER_IS_BETTER_PATTERN.fullmatch(name):
        return "better" if new < old else "worse"
    if HIGHER_IS_BETTER.fullmatch(name):
        return "better" if new > old else "worse"
    if near_zero_probe(key, old, new):
        return "close"
    if name in CLOSER_TO_IDEAL:
        before, after = abs(old - ideal), abs(new - ideal)
        return "same" if before == after else ("better" if after < before else "worse")
    return "changed"


def near_zero_probe(key: str, old: Any, new: Any) -> bool:
    """A probe's % change within PROBE_NOISE_PCT of 0 in both runs: noise around "ignores this input"."""
    return (key.rsplit(".", 1)[-1] in CLOSER_TO_IDEAL and _is_number(old) and _is_number(new)
            and abs(old) < PROBE_NOISE_PCT and abs(new) < PROBE_NOISE_PCT)


def relative_pct(old: Any, new: Any) -> float | None:
    """Δ% of new against old; None where old is too close to zero to carry one (PCT_MIN_RATIO, PCT_FLOOR)."""
    if not (_is_number(old) and _is_number(new)):
        return None
    base = abs(float(old))
    if base < PCT_FLOOR or base < PCT_MIN_RATIO * max(base, abs(float(new))):
        return None
    return 100.0 * (float(new) - float(old)) / base


def metric_rows(metrics_diff: dict, ideal: float = DEFAULT_IDEAL_CHANGE_PCT, rtol: float = DEFAULT_RTOL) -> list[MetricRow]:
    """Rows from `dvc metrics diff --json --all`, in file and key order."""
    rows = []
    for file in sorted(metrics_diff):
        entries = metrics_diff[file]
        for key in sorted(entries):
            entry = entries[key]
            old, new = entry.get("old"), entry.get("new")
            # A score group's `n` (points scored) sits beside its coverages: one point is its noise floor.
            sibling = entries.get(key.rsplit(".", 1)[0] + ".n", {}) if "." in key else {}
            points = min((v for v in (sibling.get("old"), sibling.get("new")) if _is_number(v)), default=None)
            # A panel's critical difference of mean ranks: the larger of the two sides' (the fewer series).
            cds = entries.get("significance.cd", {})
            cd = max((v for v in (cds.get("old"), cds.get("new")) if _is_number(v)), default=None)
            rows.append(MetricRow(file, key, old, new, judge(key, old, new, ideal, rtol, points, cd)))
    return rows


def fold_spread(rows: list[MetricRow]) -> list[MetricRow]:
    """One row per measure: `key_min` and `key_max` fold into `key`'s row as its seed spread.

    The median keeps its mark; a row whose median held but whose spread moved is
    "changed", so a moved spread still shows.
    """
    by_key = {(r.file, r.key): r for r in rows}

    def has_spread(file: str, key: str) -> bool:
        return (file, key) in by_key and all((file, key + s) in by_key for s in SPREAD)

    def spread(r: MetricRow, side: str) -> tuple[float, float] | None:
        lo, hi = (getattr(by_key[(r.file, r.key + s)], side) for s in SPREAD)
        return (lo, hi) if _is_number(lo) and _is_number(hi) else None

    folded = []
    for r in rows:
        if r.key.endswith(SPREAD) and has_spread(r.file, r.key[:-len(SPREAD[0])]):
            continue  # in its median's row
        if has_spread(r.file, r.key):
            old, new = spread(r, "old"), spread(r, "new")
            r = replace(r, mark="changed" if r.mark == "same" and old != new else r.mark, old_range=old, new_range=new)
        folded.append(r)
    return folded


def presence(rows: list[MetricRow]) -> dict[tuple[str, str], tuple[bool, bool]]:
    """(file, "") and (file, first part of a key) -> whether any of its metrics has a value in base, in head."""
    seen: dict[tuple[str, str], tuple[bool, bool]] = {}
    for r in rows:
        for where in {(r.file, ""), (r.file, r.key.split(".", 1)[0] if "." in r.key else "")}:
            old, new = seen.get(where, (False, False))
            seen[where] = (old or r.old is not None, new or r.new is not None)
    return seen


def entities(kind: Kind, rows: list[MetricRow]) -> list[str]:
    """The kind's models or forecasters: the first parts of keys that end in one of its measures."""
    found = set()
    for r in rows:
        if fnmatchcase(r.file, kind.files):
            found |= {r.key[:-len(key) - 1] for _, key in kind.measures if r.key.endswith("." + key)}
    return sorted(found)


def not_run(rows: list[MetricRow]) -> dict[tuple[str, str], str]:
    """What one side did not run -> that side ("old" or "new").

    (file, "") for a whole metrics file (a dataset added or removed), (file,
    entity) for a model or forecaster of a known kind. Their metrics collapse
    into one line each; an unknown key that merely lost its value (a task with
    no probes) stays a row.
    """
    seen = presence(rows)
    gone = {where: ("new" if old else "old") for where, (old, new) in seen.items()
            if where[1] == "" and old != new}
    known = {kind: set(entities(kind, rows)) for kind in KINDS}
    for (file, entity), (old, new) in seen.items():
        if old != new and entity and (file, "") not in gone \
                and any(entity in names and fnmatchcase(file, kind.files) for kind, names in known.items()):
            gone[(file, entity)] = "new" if old else "old"
    return gone


def _collapsed(row: MetricRow, gone: dict[tuple[str, str], str]) -> str | None:
    """The side whose missing model, forecaster or file this row belongs to, if any."""
    return gone.get((row.file, "")) or gone.get((row.file, row.key.split(".", 1)[0]))


def verdict_changes(rows: list[MetricRow]) -> list[str]:
    """'lstm: remembers_first true -> false at seq=69' for each verdict that flipped in a model run on both sides."""
    gone = not_run(rows)
    seq = {row.file: row.new for row in rows if row.key == "seq"}
    lines = []
    for row in rows:
        model, _, name = row.key.rpartition(".")
        if name in VERDICTS and row.old != row.new and not _collapsed(row, gone):
            where = f" at seq={seq[row.file]}" if row.file in seq else ""
            lines.append(f"{model or row.file}: {name} {_word(row.old)} -> {_word(row.new)}{where}")
    return lines


def _word(value: Any) -> str:
    if value is None:
        return "n/a"  # the model ran, the verdict has no probe to rest on (a task without x[0])
    return str(value).lower() if isinstance(value, bool) else str(value)


# ------------------------------------------------------------ pure parts: Markdown

MARKS = {"better": "✅ better", "worse": "❌ **regression**", "close": "≈ within tolerance", "changed": "changed", "same": ""}
SHORT_MARKS = {"better": " ✅", "worse": " ❌", "close": " ≈", "changed": "", "same": ""}
LEGEND = ("✅ better, ❌ regression, ≈ within tolerance (`--rtol`: a retrained network's noise; a panel's mean rank: "
          "within its Nemenyi critical difference, not a significant move at 5%); "
          "over seeds, median [min, max]; Δ% only where the base is far enough from zero.")


def _num(value: Any, digits: int = 6) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def show(value: Any, spread: tuple[float, float] | None = None, digits: int = 6) -> str:
    """A value, with its seed spread as "median [min, max]" where the seeds disagree."""
    if spread is None or spread[0] == spread[1]:
        return _num(value, digits)
    return f"{_num(value, digits)} [{_num(spread[0], digits)}, {_num(spread[1], digits)}]"


def _pct(row: MetricRow) -> str:
    pct = row.relative_pct
    return "—" if pct is None else f"{pct:+,.1f}%"


def cell(text: Any) -> str:
    """Text that stays in one GFM table cell: `|` would end the cell, and a `\\` before it would undo the escape."""
    return " ".join(str(text).replace("\\", "\\\\").replace("|", "\\|").split())


def table(header: list[str], rows: list[list[str]]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """A GFM table as (header and delimiter, rows), every cell escaped and every row as wide as the header."""
    if any(len(row) != len(header) for row in rows):
        raise ValueError(f"table row width differs from its header's {len(header)} cells")

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(cell(c) for c in cells) + " |"

    return (line(header), "|" + "---|" * len(header)), tuple(line(row) for row in rows)


def _names(names: list[str], limit: int = MAX_NAMES) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit:,} more" if len(names) > limit else "")


def headline_cell(row: MetricRow | None, ran: tuple[bool, bool]) -> str:
    """`old → new (Δ%) mark`, or the one value where nothing moved; "not run" for a side that did not run it."""
    sides = []
    for side, was_run in zip(("old", "new"), ran):
        value = getattr(row, side) if row is not None else None
        sides.append("not run" if not was_run else
                     "—" if value is None else show(value, getattr(row, f"{side}_range"), digits=4))
    if row is None or row.mark == "same":
        return sides[1] if sides[0] == sides[1] else f"{sides[0]} → {sides[1]}"
    pct = "" if row.relative_pct in (None, 0) else f" ({_pct(row)})"  # 0: only the spread moved
    return f"{sides[0]} → {sides[1]}{pct}{SHORT_MARKS[row.mark]}"


def _file_label(kind: Kind, file: str) -> str:
    """What names a file's columns: the part its pattern's `*` matched (a dataset), else the kind."""
    if "*" not in kind.files:
        return kind.name
    match = re.fullmatch(re.escape(kind.files).replace(r"\*", "(.*)"), file)
    return match.group(1) if match else file


def _in_headline(row: MetricRow) -> bool:
    """Whether a headline table shows this metric."""
    for kind in KINDS:
        if fnmatchcase(row.file, kind.files):
            facts = {key for _, key in kind.facts}
            return row.key in facts or any(row.key.endswith("." + key) for _, key in kind.measures)
    return False


def _not_run_lines(kind: Kind, files: list[str], names: list[str], gone: dict, seen: dict,
                   revs: tuple[str, str]) -> list[str]:
    """For each side, one line for the models or forecasters it did not run at all, one for its missing files."""
    lines = []
    for side, index, rev in (("new", 1, revs[1]), ("old", 0, revs[0])):
        lost = [name for name in names if any(gone.get((f, name)) == side for f in files)
                and not any(seen.get((f, name), (False, False))[index] for f in files)]
        lost_files = [_file_label(kind, f) for f in files if gone.get((f, "")) == side]
        if lost:
            lines.append(f"{kind.entity.capitalize()}s not run in `{rev}`: {_names(lost)}")
        if lost_files:
            lines.append(f"{'Datasets' if '*' in kind.files else 'Files'} not run in `{rev}`: {_names(lost_files)}")
    return lines


def kind_blocks(kind: Kind, rows: list[MetricRow], gone: dict, base: str, head: str) -> list[Block]:
    """The kind's headline table (split past MAX_COLUMNS columns), or none where nothing of it moved."""
    mine = [r for r in rows if fnmatchcase(r.file, kind.files)]
    if all(r.mark == "same" for r in mine):
        return []
    files = sorted({r.file for r in mine})
    shown = [f for f in files if gone.get((f, "")) != "new"]
    names, seen = entities(kind, mine), presence(mine)
    by_key = {(r.file, r.key): r for r in mine}
    columns = [(f, title, key) for f in shown for title, key in kind.measures]
    several = "*" in kind.files  # one column per file, each labelled by what its `*` matched

    def title(f: str, measure: str) -> str:
        if not several:
            return measure
        return _file_label(kind, f) if len(kind.measures) == 1 else f"{_file_label(kind, f)} {measure}"

    def ran(f: str, name: str) -> tuple[bool, bool]:
        return seen.get((f, name), (False, False))

    heading = f"#### {kind.name}" + (f": {kind.measures[0][0]}" if several and len(kind.measures) == 1 else "") \
        + f" (`{kind.files}`)"
    notes = _not_run_lines(kind, files, names, gone, seen, (base, head))
    intro = (heading, "", *[line for note in notes for line in (note, "")])
    tables = []
    for start in range(0, len(columns), MAX_COLUMNS):
        chunk = columns[start:start + MAX_COLUMNS]
        # A fact is one value per file: in the file's first column, the file's other columns left blank.
        body = [[fact, *[headline_cell(by_key.get((f, key)), seen.get((f, ""), (False, False)))
                         if i == 0 or chunk[i - 1][0] != f else "" for i, (f, _, _) in enumerate(chunk)]]
                for fact, key in kind.facts if any((f, key) in by_key for f, _, _ in chunk)]
        body += [[name, *[headline_cell(by_key.get((f, f"{name}.{key}")), ran(f, name)) for f, _, key in chunk]]
                 for name in names if any(ran(f, name)[1] for f in shown)]
        if body:
            header, lines = table([kind.entity, *[title(f, t) for f, t, _ in chunk]], body)
            tables.append(Block(header, lines, what="headline row(s)"))
    if not tables:
        return [Block(intro, what="headline row(s)")]
    return [replace(tables[0], head=(*intro, *tables[0].head)), *tables[1:]]


def headline_blocks(rows: list[MetricRow], gone: dict, base: str, head: str) -> list[Block]:
    """Verdict flips in words, regressions, files one side lacks, then one table per experiment kind."""
    kinds = [block for kind in KINDS for block in kind_blocks(kind, rows, gone, base, head)]
    verdicts = verdict_changes(rows)
    worse = [f"`{Path(r.file).stem}: {r.key}`" for r in rows if r.mark == "worse" and not _collapsed(r, gone)]
    files = [(file, side) for (file, entity), side in gone.items()
             if not entity and not any(fnmatchcase(file, kind.files) for kind in KINDS)]
    lines = [f"Not run in `{head if side == 'new' else base}`: `{file}`" for file, side in sorted(files)]
    if not (kinds or verdicts or worse or lines):
        return []
    blocks = [Block(("### Headline", "", LEGEND))]
    if verdicts:
        blocks.append(Block((), tuple(f"- {v}" for v in verdicts), what="verdict line(s)"))
    if worse:
        blocks.append(Block((f"Regressions: {_names(worse)}",)))
    if lines:
        blocks.append(Block((), tuple(lines), what="file line(s)"))
    return [*blocks, *kinds]


def param_rows(params: dict) -> list[tuple[str, Any, Any]]:
    """(name, old, new) for each param that changed; params.yaml's without their file's name."""
    return [(f"{file}:{key}" if file != "params.yaml" else key, v.get("old"), v.get("new"))
            for file, keys in sorted(params.items()) for key, v in sorted(keys.items())
            if v.get("old") != v.get("new")]


def params_blocks(base: str, head: str, changed: list[tuple[str, Any, Any]]) -> list[Block]:
    if not changed:
        return []
    header, lines = table(["param", f"`{base}`", f"`{head}`"], [[k, _num(o), _num(n)] for k, o, n in changed])
    return [Block(("### Params", "", *header), lines, what="param row(s)")]


def plots_blocks(base: str, head: str, figures: list[tuple[str, str]], changed_plots: list[str]) -> list[Block]:
    if not (figures or changed_plots):
        return []
    intro: tuple[str, ...] = ("### Plots", "")
    if changed_plots:
        intro += (f"Plot data changed: {_names([f'`{p}`' for p in changed_plots])} "
                  f"(`dvc plots diff {base}` renders them).", "")
    figure_lines = tuple(f"**{title}** (left `{base}`, right `{head}`)\n\n![{title}]({png})\n"
                         for title, png in figures)
    return [Block(intro, figure_lines, tail=(), what="figure(s)")]


def metrics_block(heading: tuple[str, ...], rows: list[MetricRow], base: str, head: str, gone: dict,
                  fold: str | None = None) -> list[Block]:
    """Every row with old, new, Δ, Δ% and its mark; inside a <details> block titled `fold` where given."""
    if not rows:
        return []
    body = []
    for r in rows:
        side = _collapsed(r, gone)
        mark = f"not run in `{head if side == 'new' else base}`" if side else MARKS[r.mark]
        delta = "—" if r.delta is None else f"{r.delta:+.4g}"
        body.append([r.file, r.key, show(r.old, r.old_range), show(r.new, r.new_range), delta, _pct(r), mark])
    header, lines = table(["file", "metric", f"`{base}`", f"`{head}`", "Δ", "Δ%", ""], body)
    if fold is None:
        return [Block((*heading, *header), lines, what="metric row(s)")]
    return [Block((*heading, f"<details><summary>{fold}</summary>", "", *header), lines,
                  tail=("", "</details>", ""), what="metric row(s)")]


def unchanged_block(rows: list[MetricRow]) -> list[Block]:
    if not rows:
        return []
    header, lines = table(["file", "metric", "value"], [[r.file, r.key, show(r.new, r.new_range)] for r in rows])
    return [Block((f"<details><summary>{len(rows):,} unchanged metric(s)</summary>", "", *header), lines,
                  tail=("", "</details>", ""), what="unchanged metric row(s)")]


def _size(lines: tuple[str, ...] | list[str]) -> int:
    return sum(len(line.encode()) + 1 for line in lines)  # UTF-8 bytes, each line with its newline


def _fitting(block: Block, room: float) -> int | None:
    """How many of the block's rows fit in `room` with its head and tail; None where not even its first does."""
    room -= _size(block.head) + _size(block.tail)
    if room < 0:
        return None
    taken = 0
    for row in block.rows:
        room -= _size((row,))
        if room < 0:
            break
        taken += 1
    return None if block.rows and taken == 0 else taken


def fit(blocks: list[Block], budget: float) -> tuple[list[str], dict[str, int]]:
    """The blocks in order while they fit in `budget` bytes, and what was left out, counted by what its rows are.

    A block goes in whole or cut after a row, so a table stays a table; from the
    first cut on, everything is left out, so the comment is the review's opening.
    """
    lines: list[str] = []
    left: dict[str, int] = {}
    room = budget
    for block in blocks:
        taken = None if left else _fitting(block, room)
        if taken is None:
            left[block.what] = left.get(block.what, 0) + max(len(block.rows), 1)
            continue
        kept = [*block.head, *block.rows[:taken], *block.tail]
        lines += kept
        room -= _size(kept)
        if taken < len(block.rows):
            left[block.what] = left.get(block.what, 0) + len(block.rows) - taken
    return lines, left


def _where_full(details_url: str | None) -> str:
    if details_url:
        return (f"Every metric, with Δ and Δ%, is in `{FULL_FILE}`, in the `{ARTIFACT}` artifact of "
                f"[this workflow run]({details_url}).")
    return (f"Every metric, with Δ and Δ%, is in `{FULL_FILE}` beside this file "
            f"(on GitHub: the `{ARTIFACT}` artifact of the review workflow's run).")


def review(base: str, head: str, params: dict, rows: list[MetricRow], figures: list[tuple[str, str]],
           changed_plots: list[str], details_url: str | None = None, full: bool = False) -> list[Block] | str:
    """The review as blocks, most important first; or the one line that says nothing changed.

    The comment (full=False) lists, after the headline, only the metrics no
    headline table shows, one row per measure, and leaves out the metrics of
    models and files one side did not run. The full file has every row.
    """
    rows = fold_spread(rows)
    changed_params = param_rows(params)
    changed = [r for r in rows if r.mark != "same"]
    if not (changed or changed_params or figures or changed_plots):
        return f"No changes between `{base}` and `{head}`: params, metrics and plots are identical.\n"
    gone = not_run(rows)
    ran_both = [r for r in changed if not _collapsed(r, gone)]
    worse = [r for r in ran_both if r.mark == "worse"]
    summary = (f"**{len(changed_params):,} param(s) changed, {len(ran_both):,} metric(s) changed "
               f"({len(worse):,} regression(s)), {len(figures):,} figure(s) changed.**")
    where = (f"The detail behind the review comment (`{COMMENT_FILE}`): every metric, changed or not." if full
             else _where_full(details_url))
    blocks = [Block((f"## `{base}` → `{head}`", "", summary, where)), *headline_blocks(rows, gone, base, head),
              *params_blocks(base, head, changed_params), *plots_blocks(base, head, figures, changed_plots)]
    if full:
        same = [r for r in rows if r.mark == "same"]
        return [*blocks, *metrics_block(("### Metrics that changed", ""), changed, base, head, gone),
                *unchanged_block(same)]
    other = [r for r in ran_both if not _in_headline(r)]
    return [*blocks, *metrics_block(("### Other metrics that changed", ""), other, base, head, gone,
                                    fold=f"{len(other):,} metric(s) that no headline table shows")]


def left_out_note(left: dict[str, int]) -> str:
    counts = ", ".join(f"{n:,} {what}" for what, n in left.items())
    return (f"**Left out to stay under GitHub's comment limit ({COMMENT_BUDGET:,} characters):** {counts}. "
            f"`{FULL_FILE}` has them all.")


def render(base: str, head: str, params: dict, rows: list[MetricRow], figures: list[tuple[str, str]],
           changed_plots: list[str], details_url: str | None = None, budget: int = COMMENT_BUDGET) -> str:
    """The review comment, at most `budget` UTF-8 bytes. ``figures`` are (title, png file name) pairs."""
    blocks = review(base, head, params, rows, figures, changed_plots, details_url)
    if isinstance(blocks, str):
        return blocks
    lines, left = fit(blocks, budget - NOTE_RESERVE)
    if left:
        lines.append(left_out_note(left))
    return "\n".join(lines).rstrip() + "\n"


def render_full(base: str, head: str, params: dict, rows: list[MetricRow], figures: list[tuple[str, str]],
                changed_plots: list[str]) -> str:
    """Every row the comment may leave out, with no budget: the file beside the comment."""
    blocks = review(base, head, params, rows, figures, changed_plots, full=True)
    if isinstance(blocks, str):
        return blocks
    return "\n".join(fit(blocks, math.inf)[0]).rstrip() + "\n"


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


def compare(base: str, head: str | None, out: Path, rtol: float = DEFAULT_RTOL, details_url: str | None = None) -> str:
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
        moved = changed_data_plots(plots, base, head_label)
        markdown = render(base, head_label, params, rows, figures, moved, details_url=details_url)
        (folder / COMMENT_FILE).write_text(markdown)
        (folder / FULL_FILE).write_text(render_full(base, head_label, params, rows, figures, moved))
    return markdown


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="rev or experiment name to compare against (e.g. main)")
    parser.add_argument("--head", help="rev or experiment name (default: the workspace)")
    parser.add_argument("--out", type=Path, default=Path("compare"),
                        help=f"folder for {COMMENT_FILE}, {FULL_FILE} and the PNGs")
    parser.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                        help=f"relative change below which a metric counts as unchanged in quality (default {DEFAULT_RTOL})")
    parser.add_argument("--details-url", help=f"page where readers of the comment find {FULL_FILE} "
                                              "(in CI: the workflow run, whose artifacts hold it)")
    args = parser.parse_args(argv)
    sys.stdout.write(compare(args.base, args.head, args.out, args.rtol, args.details_url))


if __name__ == "__main__":
    cli.run(main)
