#!/usr/bin/env python3
"""bench/jobqueue/features_ab_report.py: the report of features-ab.sh.

    features_ab_report.py RESULTS.jsonl [MORE.jsonl …]

Reads the raw results of one or more features-ab.sh runs (each line
`label tag json`: label base or new) and prints, per measure, the median of
the per-pair ratios new/base. A pair is the base and new run of one tag in
one file, so several files pool their pairs (copy bench/out/features-ab.jsonl
aside after each run). CPU time per job is shown in total and per side
(worker process, PostgreSQL processes), inverted so that < 1 means new
costs more.
"""
import json
import statistics
import sys


def load(paths):
    runs = {}  # (file, tag, concurrencies) -> {label: result}: one pair
    for n, path in enumerate(paths):
        for line in open(path):
            label, tag, js = line.split(" ", 2)
            r = json.loads(js)
            key = (n, tag, tuple(sorted(r["process_by_concurrency"])))
            runs.setdefault(key, {})[label] = r
    return [p for p in runs.values() if "base" in p and "new" in p]


def main(paths):
    pairs = load(paths)
    print(f"{len(paths)} file(s), {len(pairs)} pairs")
    print(f"{'measure':<30}{'base (median)':>15}{'new (median)':>15}  {'pairs':>5}  {'new/base median':>15}")

    def line(name, get, lower_is_better=False):
        got = [(get(p["base"]), get(p["new"])) for p in pairs]
        got = [(b, n) for b, n in got if b and n and b == b and n == n]
        if not got:
            return
        ratios = [n / b for b, n in got]
        if lower_is_better:
            ratios = [1 / x for x in ratios]
        base = statistics.median(b for b, _ in got)
        new = statistics.median(n for _, n in got)
        each = " ".join(f"{x:.2f}" for x in ratios) if len(ratios) <= 15 else ""
        print(f"{name:<30}{base:>15.1f}{new:>15.1f}  {len(ratios):>5}  {statistics.median(ratios):>15.3f}  {each}")

    def processing(r):  # the processing-only runs
        return r["enqueue_http_jobs_per_s"] is None

    cs = sorted({c for p in pairs for c in p["new"]["process_by_concurrency"]}, key=int)
    for c in cs:
        line(f"process c{c} (jobs/s)", lambda r, c=c: r["process_by_concurrency"].get(c) if processing(r) else None)
    for side, fields in (("", ("worker_us_per_job", "postgres_us_per_job")),
                         (" worker", ("worker_us_per_job",)),
                         (" postgres", ("postgres_us_per_job",))):
        for c in cs:
            def cpu(r, c=c, fields=fields):
                u = r.get("process_cpu_by_concurrency", {}).get(c)
                return sum(u[f] for f in fields) if u and processing(r) else None
            line(f"CPU{side}/job c{c} (µs, inv.)", cpu, lower_is_better=True)
    line("enqueue library (jobs/s)", lambda r: None if processing(r) else r["enqueue_jobs_per_s"])
    line("enqueue HTTP (jobs/s)", lambda r: r["enqueue_http_jobs_per_s"])
    line("latency p99 (ms, inverted)", lambda r: None if processing(r) else r["latency_p99_ms"], lower_is_better=True)
    print("target: every processing median ratio >= 0.95 (new at most 5 % slower). Processing pairs ran back to back")
    print("at one concurrency; CPU/job is the CPU time of the worker process plus every PostgreSQL process, per job.")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
