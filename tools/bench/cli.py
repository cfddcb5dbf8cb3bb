"""Command line of the benchmark.

    python -m tools.bench [--quick] [--model NAME] [--out DIR] [--budget S] [--compile]
                            [--variants NAME ...]
    python -m tools.bench course [--out DIR] [--timeout S] [--only 00 03]
    python -m tools.bench profile [--out DIR] [--model NAME]
    python -m tools.bench report [--out DIR]

The first runs the benchmark (about 12 minutes on a 2-core CPU) and writes
``results.json`` and ``results.md``; ``course`` executes every chapter notebook and writes
``course.json`` (tens of minutes); ``profile`` profiles one training step of the course's
recipe and of chapter 00's and writes ``profile.json`` (a few minutes); ``report`` renders
``results.md`` again from the JSON files (after ``course``, for example).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from helpers import repo

COMMANDS = ("run", "course", "profile", "report")


def parser() -> argparse.ArgumentParser:
    from .run import DEFAULT_OUT

    p = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__.split("\n")[0])
    p.add_argument("command", nargs="?", default="run", choices=COMMANDS)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder for the results")
    p.add_argument("--model", default=None, help="model name (default: smollm2-135m-instruct)")
    p.add_argument("--quick", action="store_true", help="few steps: checks the code paths")
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds for the whole run; optional sections that would not fit are skipped "
        "(default: 780 for a full run, no limit with --quick; 0: no limit)",
    )
    p.add_argument("--compile", action="store_true", help="also measure torch.compile")
    p.add_argument(
        "--variants",
        nargs="*",
        default=None,
        help="run only these tuning variants (trl_head, random_order, packing, padding_free, "
        "checkpointing, eager, batch_4, batch_16, qlora_4, autocast, compile)",
    )
    p.add_argument("--timeout", type=int, default=1800, help="course: seconds per cell")
    p.add_argument("--only", nargs="*", default=None, help="course: notebooks starting with")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    repo.require_checkout("python -m tools.bench")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from . import run as bench_run

    out = Path(args.out)
    if args.command == "run":
        from helpers.models import DEFAULT_MODEL

        results = bench_run.run(
            args.model or DEFAULT_MODEL,
            quick=args.quick,
            out_dir=out,
            budget=args.budget,
            with_compile=args.compile,
            only_variants=args.variants,
        )
        print((out / "results.md").read_text())
        print(
            f"wrote {out / 'results.json'} and {out / 'results.md'} "
            f"in {results['meta']['seconds']:.0f} s"
        )
        return 0
    if args.command == "profile":
        from helpers.models import DEFAULT_MODEL

        from . import step_profile

        result = step_profile.run(args.model or DEFAULT_MODEL, out)
        print(f"wrote {out / 'profile.json'} in {result['meta']['seconds']:.0f} s")
    if args.command == "course":
        from helpers.models import DEFAULT_MODEL

        from . import course

        meta = bench_run.machine_meta(DEFAULT_MODEL, False, bench_run.hardware.device_name())
        result = {"meta": meta, **course.time_course(timeout=args.timeout, only=args.only)}
        meta["load_end"] = bench_run.load_average()
        path = course.write(result, out)
        print(f"wrote {path}: {result['total_seconds'] / 60:.1f} min in all")
    results_path = out / "results.json"
    if results_path.exists():
        bench_run.rewrite(out)
        print(f"rendered {out / 'results.md'}")
    elif args.command == "report":
        print(f"no {results_path}: run `python -m tools.bench` first")
        return 1
    return 0
