#!/usr/bin/env python3
"""CPU used by the threads of some processes over a window, in cores, and
the time they spent waiting for one.

    scripts/bench/cpu.py SECONDS PID [PID...]

Reads utime and stime of every thread from /proc before and after the window
and prints them per process and thread name (threads of one name summed),
user and system apart. docs/benchmarks.md uses it to split the two cores
between the hub's workers, its SQLite thread and the load generator.

Then, per process and thread name, the time its threads were ready to run
but waited for a core (the run-queue delay of /proc/.../schedstat), in
seconds per second, with the average wait for each turn on a core. On a machine
whose cores are all but full this is where the latency goes: a frame that
crosses from one thread to another waits there at every hop.
"""
import collections
import os
import sys
import time

TICKS = os.sysconf("SC_CLK_TCK")


def snapshot(pids):
    used = collections.Counter()
    waited = collections.Counter()  # run-queue delay in ns, by (pid, name)
    turns = collections.Counter()  # times on a core, by (pid, name)
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except FileNotFoundError:
            continue  # the process ended (a run shorter than the window)
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    stat = f.read()
            except (FileNotFoundError, ProcessLookupError):
                continue  # the thread ended meanwhile
            name = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            used[(pid, name, "user")] += int(fields[11])
            used[(pid, name, "sys")] += int(fields[12])
            try:
                # Absent on kernels built without scheduler statistics.
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    _, delay_ns, slices = (int(x) for x in f.read().split())
            except (FileNotFoundError, ProcessLookupError):
                continue
            waited[(pid, name)] += delay_ns
            turns[(pid, name)] += slices
    return used, waited, turns


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    window, pids = float(sys.argv[1]), sys.argv[2:]
    before, waited_before, turns_before = snapshot(pids)
    time.sleep(window)
    after, waited_after, turns_after = snapshot(pids)
    total = 0.0
    for key in sorted(after):
        cores = (after[key] - before.get(key, 0)) / TICKS / window
        total += cores
        if cores >= 0.005:
            print(f"{key[0]:>8}  {key[1]:<18} {key[2]:<4} {cores:5.2f} cores")
    print(f"total {total:.2f} cores")
    if not waited_after:
        print("waiting for a core: not counted by this kernel (no /proc/.../schedstat)")
        return
    print("waiting for a core (run queue), seconds per second; average wait:")
    total_wait = 0.0
    for key in sorted(waited_after):
        wait = (waited_after[key] - waited_before.get(key, 0)) / 1e9 / window
        turns = turns_after[key] - turns_before.get(key, 0)
        total_wait += wait
        if wait >= 0.005:
            per = wait * window / turns * 1e6 if turns else 0.0
            print(f"{key[0]:>8}  {key[1]:<18} {wait:5.2f} s/s  {per:6.0f} us a wait")
    print(f"total waiting {total_wait:.2f} s/s")


if __name__ == "__main__":
    main()
