"""The markdown of ``bench/results.md``, rendered from ``results.json`` and ``course.json``."""

from __future__ import annotations

import math

from helpers.formatting import megabytes


def _num(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:,.{digits}f}"


def _met(value) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[value]


def _ratio(value, suffix: str = "×") -> str:
    return "n/a" if value is None else f"{value:.2f}{suffix}"


def _gflops(value) -> str:
    return "n/a" if value is None else f"{value / 1e9:,.1f} GFLOP/s"


def _pct(value) -> str:
    return "n/a" if value is None else f"{value:.0%}"


def header(meta: dict) -> list[str]:
    machine = (
        f"{meta['cpu']}, {meta['cores']} cores ({meta['cpu_capability']}, native bf16: "
        f"{'yes' if meta['bf16_native'] else 'no'})"
    )
    if meta.get("gpu"):
        machine += f", GPU: {meta['gpu']}"
    return [
        f"- date: {meta['date']}",
        f"- machine: {machine}; device used: {meta['device']}",
        f"- torch {meta['torch']} ({meta['threads']} threads), transformers "
        f"{meta['transformers']}, trl {meta['trl']}, peft {meta['peft']}",
        f"- model: {meta['model']}"
        + (" (quick run: it checks code paths, its figures mean nothing)" if meta["quick"] else ""),
        f"- load average (1 min) at start / end: {_num(meta['load_start'], 2)} / "
        f"{_num(meta['load_end'], 2)}; the run took {_num(meta['seconds'], 0)} s",
    ]


def goals_table(goals: dict) -> list[str]:
    rows = [
        "| metric | course | classic or reference | ratio | goal | met? |",
        "|---|---|---|---|---|---|",
    ]
    t = goals["throughput"]
    rows.append(
        f"| 1. useful tokens/s (answer tokens that carry loss) | {_num(t['course'])} | "
        f"{_num(t['classic'])} | {_ratio(t['ratio'])} | ≥ {t['goal']:g}× | {_met(t['met'])} |"
    )
    if t.get("proposed") is not None:
        rows.append(
            f"| 1. the same, with {t.get('proposed_description', 'the proposed change')} "
            "(proposed, not default) | "
            f"{_num(t['proposed'])} | {_num(t['classic'])} | {_ratio(t['proposed_ratio'])} | "
            f"≥ {t['goal']:g}× | {_met(t['proposed_met'])} |"
        )
    rows.append(
        f"| 1. examples/s (same examples, same order) | {_num(t['course_examples'], 2)} | "
        f"{_num(t['classic_examples'], 2)} | {_ratio(t['examples_ratio'])} | | |"
    )
    u = goals["utilization"]
    rows.append(
        f"| 2. utilization: training FLOP/s ÷ {u['dtype']} matmul peak sampled between the same "
        f"steps | {_gflops(u['course_flops'])} | {_gflops(u['peak_flops'])} | "
        f"{_pct(u['ratio'])} | ≥ {u['goal']:.0%} | {_met(u['met'])} |"
    )
    rows.append(
        f"| 2. the same ÷ the best matmul of the whole run (pessimistic) | "
        f"{_gflops(u['course_flops'])} | {_gflops(u['best_peak_flops'])} | "
        f"{_pct(u['ratio_of_best_peak'])} | | |"
    )
    rows.append(
        f"| 2. utilization of the classic recipe (same moments) | {_gflops(u['classic_flops'])} | "
        f"{_gflops(u['peak_flops'])} | {_pct(u['classic_ratio'])} | | |"
    )
    m = goals["memory"]
    rows.append(
        f"| 3. peak memory of a training step (live tensors) | {megabytes(m['course_bytes'])} | "
        f"{megabytes(m['classic_bytes'])} | {_ratio(m['ratio'])} | < 1× | {_met(m['met'])} |"
    )
    f = goals["footprint"]
    rows.append(
        f"| 3. model footprint, 4-bit vs fp32 | {megabytes(f['bytes_4bit'])} | "
        f"{megabytes(f['bytes_fp32'])} | "
        f"{_ratio(f['ratio'])} | ≤ {f['goal']:g}× | {_met(f['met'])} |"
    )
    q = goals["time_to_quality"]
    if q.get("skipped"):
        rows.append(f"| 4. time to ≥ 80% exact match | skipped: {q['skipped']} | | | | n/a |")
    else:
        if q["reached"]:
            reached = f"{_num(q['train_seconds'], 0)} s (step {q['step']})"
        elif q.get("stopped_by_budget"):
            reached = f"not reached: the time budget stopped it at step {q['stopped_by_budget']}"
        else:
            reached = f"not within {q['max_steps']} steps"
        if q.get("generated_accuracy") is not None:
            reached += f"; by generation then: {_pct(q['generated_accuracy'])}"
        elif q.get("generated_skipped"):
            reached += " (no time left to confirm by generation)"
        reference = f"chapter 00 trains {q['max_steps']} steps ≈ {_num(q['full_run_seconds'], 0)} s"
        rows.append(
            f"| 4. time to ≥ {q['target']:.0%} exact match (chapter 00 recipe, "
            f"{q.get('rows', 'test sentences')}) | {reached} | "
            f"{reference} | {_ratio(q['ratio'])} | reach it | {_met(q['reached'])} |"
        )
    c = goals["course"]
    if c is None:
        rows.append(
            "| 5. whole course, every notebook | not measured here: `python -m tools.bench "
            "course` | 30 min | | ≤ 30 min | n/a |"
        )
    else:
        failed = [ch["notebook"] for ch in c["chapters"] if ch["error"] is not None]
        if not c.get("complete", False):
            note = "partial run" if not failed else f"failed: {', '.join(failed)}"
            met = f"n/a ({note})"
        else:
            met = _met(c["met"])
        rows.append(
            f"| 5. whole course, {len(c['chapters'])} "
            f"notebook{'s' if len(c['chapters']) != 1 else ''} | "
            f"{_num(c['total_seconds'] / 60)} min | {c['goal_seconds'] / 60:.0f} min | "
            f"{_ratio(c['total_seconds'] / c['goal_seconds'])} | ≤ 30 min | {met} |"
        )
    return rows


def recipes_table(results: dict) -> list[str]:
    rows = [
        "| recipe | step (s) | useful tok/s | examples/s | executed tok/s | GFLOP/s | "
        "utilization (same moments / best) | peak memory |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results["recipes"].items():
        s = r["summary"]
        memory = r.get("memory") or {}
        util = r.get("utilization")
        rows.append(
            f"| {name}: {r['description']} | {_num(s['step_seconds'], 2)} | "
            f"{_num(s['useful_tokens_per_s'])} | {_num(s['examples_per_s'], 2)} | "
            f"{_num(s['executed_tokens_per_s'])} | {_num(s['flops_per_s'] / 1e9)} | "
            f"{_pct(util)} / {_pct(r.get('utilization_of_best_peak'))} | "
            f"{megabytes(memory.get('peak_bytes'))} |"
        )
    return rows


def tuning_table(tuning: list[dict]) -> list[str]:
    rows = [
        "| setting | course default | alternative | measured (alternative ÷ default, same "
        "moments) | verdict |",
        "|---|---|---|---|---|",
    ]
    for t in tuning:
        rows.append(
            f"| {t['setting']} | {t['default']} | {t['alternative']} | {t['measured']} | "
            f"{t['verdict']} |"
        )
    return rows


def course_table(course: dict) -> list[str]:
    rows = ["| notebook | seconds | result |", "|---|---|---|"]
    for c in course["chapters"]:
        rows.append(
            f"| {c['notebook']} | {_num(c['seconds'], 0)} | "
            f"{'ok' if c['error'] is None else 'failed: ' + c['error']} |"
        )
    rows.append(f"| total | {_num(course['total_seconds'], 0)} | |")
    return rows


def profile_section(profile: dict) -> list[str]:
    """Where one step's time goes (``tools/bench/step_profile.py``), with its own date."""
    meta = profile["meta"]
    names = list(profile["recipes"])
    lines = [
        "## Where a step's time goes",
        "",
        f"Profiled on {meta['date']}: {meta['cpu']}, {meta['cores']} cores "
        f"({meta['cpu_capability']}, native bf16: {'yes' if meta['bf16_native'] else 'no'}), "
        f"torch {meta['torch']} ({meta['threads']} threads); one optimizer step of each recipe "
        "after its warm-up, under `torch.profiler` (which slows every operator a little: read "
        "the shares). Groups of operators' self time, as `tools/bench/step_profile.py` defines "
        "them.",
        "",
        "| share of the step | " + " | ".join(names) + " |",
        "|---|" + "---|" * len(names),
    ]
    recipes = profile["recipes"]
    groups = list(next(iter(recipes.values()))["shares"])
    for group in groups:
        cells = [_pct(recipes[n]["shares"][group]) for n in names]
        lines.append(f"| {group} | " + " | ".join(cells) + " |")
    lines.append(
        "| step (s), profiled | "
        + " | ".join(_num(recipes[n]["wall_seconds"], 2) for n in names)
        + " |"
    )
    lines.append(
        "| collating one batch (s), outside the step | "
        + " | ".join(f"{recipes[n]['collation_seconds']:.4f}" for n in names)
        + " |"
    )
    described = "; ".join(
        f"{n}: {recipes[n]['description']}, bf16 autocast {'on' if recipes[n]['bf16'] else 'off'}"
        for n in names
    )
    return lines + ["", described + "."]


def render(results: dict, course: dict | None = None, profile: dict | None = None) -> str:
    lines = ["# Benchmark: the course's recipe vs the classic one", ""]
    lines += header(results["meta"]) + [""]
    busy = [name for name, race in results.get("races", {}).items() if race.get("busy")]
    if results.get("matmul", {}).get("busy"):
        busy.insert(0, "kernels")
    if busy:
        lines += [
            f"**The machine was busy during: {', '.join(busy)}** (the matmul probe ran below "
            "80% of its best). Other processes slow memory-bound steps more than compute-bound "
            "ones, so ratios from those sections lean towards the course recipe; rerun on a "
            "quieter machine before quoting them.",
            "",
        ]
    lines += goals_table(results["goals"]) + [""]
    lines += [
        "Every figure comes from one run, side by side on the same machine, as medians over "
        "timed steps; the machine may be shared, so read ratios rather than absolute values. "
        "Definitions (useful tokens, FLOP counting, time to quality) are in the docstrings of "
        "`tools/bench/`.",
        "",
        "## Recipes",
        "",
    ]
    lines += recipes_table(results) + [""]
    lines += ["## Defaults, and the numbers behind them", ""]
    lines += tuning_table(results["tuning"]) + [""]
    if course is not None:
        meta = course.get("meta", {})
        lines += [
            "## The whole course",
            "",
            f"Executed on {meta.get('date', '?')}, {meta.get('cpu', '?')}, "
            f"{meta.get('threads', '?')} threads, load average at start "
            f"{_num(meta.get('load_start'), 2)}.",
            "",
        ]
        lines += course_table(course) + [""]
    if profile is not None:
        lines += profile_section(profile) + [""]
    lines += ["## Sections of this run", "", "| section | seconds |", "|---|---|"]
    for name, seconds in results["sections"].items():
        lines.append(f"| {name} | {_num(seconds, 0)} |")
    probes = [
        f"{name} {race['fp32_median'] / 1e9:.0f}"
        for name, race in results.get("races", {}).items()
        if race.get("fp32_median")
    ]
    if probes:
        best = results.get("peaks", {}).get("fp32")
        lines += [
            "",
            "fp32 matmul probe, median GFLOP/s between the steps of each section (how busy the "
            "machine was): " + ", ".join(probes) + f"; best of the run {_gflops(best)}.",
        ]
    return "\n".join(lines) + "\n"
