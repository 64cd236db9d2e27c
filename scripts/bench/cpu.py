#!/usr/bin/env python3
"""CPU used by the threads of some processes over a window, in cores.

    scripts/bench/cpu.py SECONDS PID [PID...]

Reads utime and stime of every thread from /proc before and after the window
and prints them per process and thread name (threads of one name summed),
user and system apart. docs/benchmarks.md uses it to split the two cores
between the hub's workers, its SQLite thread and the load generator.
"""
import collections
import os
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def snapshot(pids):
    used = collections.Counter()
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue  # the process ended (a run shorter than the window)
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    stat = f.read()
            except FileNotFoundError:
                continue  # the thread ended meanwhile
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            used[(pid, name, "user")] += int(fields[11])
            used[(pid, name, "sys")] += int(fields[12])
    return used


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    window, pids = float(sys.argv[1]), sys.argv[2:]
    before = snapshot(pids)
    time.sleep(window)
    after = snapshot(pids)
    total = 0.0
    for key in sorted(after):
        cores = (after[key] - before.get(key, 0)) / TICKS / window
        total += cores
        if cores >= 0.005:
            print(f"{key[0]:>8}  {key[1]:<18} {key[2]:<4} {cores:5.2f} cores")
    print(f"total {total:.2f} cores")


if __name__ == "__main__":
    main()
