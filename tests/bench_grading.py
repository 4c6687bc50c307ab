"""Benchmark of `make grade` (not a test): grade N copies of an assignment's solution.

    python tests/bench_grading.py            # 30 copies of assignment 07, one job per core
    python tests/bench_grading.py --copies 10 --assignment 03 --jobs 1

Prints the wall time per submission, the total, and the CPU time the runners used.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils import grading


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--assignment", default="07")
    p.add_argument("--copies", type=int, default=30)
    p.add_argument("--jobs", type=int, default=0)
    p.add_argument("--no-sandbox", action="store_true")
    a = p.parse_args()
    solution = grading.solution_path(a.assignment)
    opts = grading.Options(jobs=a.jobs, quiet=True, sandbox=not a.no_sandbox)
    with tempfile.TemporaryDirectory() as tmp:
        subs = Path(tmp) / "submissions"
        subs.mkdir()
        for i in range(a.copies):
            shutil.copy(solution, subs / f"student{i:03d}.ipynb")
        start = time.monotonic()
        results = grading.grade(a.assignment, subs, Path(tmp) / "out", opts)
        total = time.monotonic() - start
    statuses = {r.status for r in results}
    full = sum(r.total == grading.load_spec(a.assignment).max_total for r in results)
    per = [r.seconds for r in results]
    jobs = a.jobs or len(grading.os.sched_getaffinity(0))
    print(f"assignment {a.assignment}: {len(results)} copies of the solution, {jobs} parallel jobs")
    print(f"  statuses {sorted(statuses)}, full points {full}/{len(results)}")
    print(
        f"  wall time per submission: mean {sum(per) / len(per):.1f} s, min {min(per):.1f} s, max {max(per):.1f} s"
    )
    print(
        f"  total wall time {total:.1f} s = {total / len(results):.2f} s per submission (throughput)"
    )
    cpu = [r.cpu for r in results]
    print(f"  CPU time per submission (the runner's user + sys): mean {sum(cpu) / len(cpu):.1f} s")
    print(f"  peak memory (max RSS) per submission: {max(r.max_rss_mb for r in results):.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
