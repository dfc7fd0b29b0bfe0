"""Run every benchmark (`make bench`, or `python -m bench`) and print the targets met and missed.

Each benchmark prints its own tables as it goes; at the end a summary lists every target with the
measured value. --only picks benchmarks by number; --quick runs fewer messages and rounds (a smoke run:
its numbers are not the ones to quote). The exit status is 0 whether targets are met or missed: a
benchmark reports, it does not gate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from bench.common import ROOT, Report, table


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), Python {platform.python_version()}, "
        f"{platform.system()} {platform.release()} {platform.machine()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the benchmarks in bench/.")
    parser.add_argument("--only", type=int, nargs="+", choices=[1, 2, 3, 4, 5], help="benchmark numbers")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer messages and rounds")
    parser.add_argument(
        "--json", type=Path, default=ROOT / "var" / "bench" / "results.json", help="where to keep the results"
    )
    args = parser.parse_args(argv)
    chosen = set(args.only or [1, 2, 3, 4, 5])
    print(f"Machine: {machine()}", flush=True)
    reports: list[Report] = []
    started = time.perf_counter()
    project_rate = None
    if 1 in chosen:
        from bench import send_throughput

        report = send_throughput.run(**({"rounds": 2, "messages": 100} if args.quick else {}))
        project_rate = report.figures.get("project_msgs_per_s_plain")
        reports.append(report)
    if 2 in chosen:
        from bench import worker_throughput

        options = {"rounds": 2, "messages": 100} if args.quick else {}
        reports.append(worker_throughput.run(project_rate=project_rate, **options))
    if 3 in chosen:
        from bench import invoice_fanout, reminder_fanout, tick_scale

        reports.append(reminder_fanout.run(**({"rounds": 1, "sizes": (200, 1000)} if args.quick else {})))
        reports.append(invoice_fanout.run(**({"rounds": 1, "sizes": (250, 500, 1000)} if args.quick else {})))
        quick_tick = {"rounds": 1, "companies": (20, 100), "reminders": (10, 100)}
        reports.append(tick_scale.run(**(quick_tick if args.quick else {})))
    if 4 in chosen:
        from bench import cold_start

        reports.append(cold_start.run(**({"runs": 2} if args.quick else {})))
    if 5 in chosen:
        from bench import latency

        reports.append(latency.run(**({"messages": 40, "rounds": 2, "singles": 3} if args.quick else {})))
    elapsed = time.perf_counter() - started
    verdicts = [v for r in reports for v in r.verdicts]
    print(
        table(
            f"Targets ({elapsed / 60:.1f} min in all{', QUICK run' if args.quick else ''})",
            ["benchmark", "target", "measured", "verdict"],
            [v.row() for v in verdicts],
            left=2,
        ),
        flush=True,
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(
        json.dumps(
            {
                "machine": machine(),
                "quick": args.quick,
                "seconds": elapsed,
                "reports": [
                    {
                        "name": r.name,
                        "tables": r.tables,
                        "figures": r.figures,
                        "verdicts": [v.row() for v in r.verdicts],
                    }
                    for r in reports
                ],
            },
            indent=2,
        )
    )
    print(f"\nResults kept in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
