"""benchlib.py -- what every benchmark shares: record() appends one figure to
the results file ($BENCH_RESULTS, JSON lines; tests/bench/run.sh sets it and
tests/bench/report.py turns it into REPORT.md and REPORT.json), and
proc_usage() reads a process's CPU time and memory from /proc.
A benchmark run by hand without $BENCH_RESULTS just prints.
"""
import json
import os
import time


def record(bench, key, label, value, unit, target=None, better=None, note="", peer=None):
    """One figure. `target` is a number in `unit`; `better` "higher" or
    "lower" says which side of it is met. `peer` names the key of another
    figure (same run) this one is compared with in the report."""
    path = os.environ.get("BENCH_RESULTS")
    if not path:
        return
    row = {"bench": bench, "key": key, "label": label, "value": value, "unit": unit,
           "target": target, "better": better, "note": note, "peer": peer, "at": time.time()}
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def proc_usage(pid):
    """(cpu seconds, rss kB, peak rss kB) of a process (user + system time)."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = hwm = 0
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return cpu, rss, hwm


def children_of(pid):
    """Every descendant pid of `pid` (e.g. PostgreSQL's backends)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        out += kids
        todo += kids
    return out


def pct(sorted_xs, p):
    """Percentile p (0..100) of an already sorted list."""
    if not sorted_xs:
        return float("nan")
    return sorted_xs[min(len(sorted_xs) - 1, int(p / 100.0 * len(sorted_xs)))]
