"""Phase 2 through the AWS-like proxy (testkit's aws-faults) in front of moto.

1. `provision --phase 2` from nothing with `--schedule waves` (the former
   engine) and with the graph walk, alternating, each on a fresh stack: wall
   time of the apply next to its measured critical path; first with every
   resource instant (moto as it is), then with slow resources (one AWS minute
   lasts SECONDS_PER_MINUTE s here: RDS 7.5 min, ElastiCache 6.5, ALB 2.5,
   NAT 1.5).
2. 10 % of calls throttled: `provision --phase 2` from nothing and `destroy`,
   with the calls, retries and throttles the command reports; the same without
   throttling in the same run as the baseline.

Usage: provision_faults.py ACCUNODE AWS_FAULTS MOTO_URL RUNS
"""

import json
import os
import statistics
import subprocess
import sys
import time

accunode, aws_faults, moto, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
SECONDS_PER_MINUTE = "1.0"


class Proxy:
    def __init__(self, *flags):
        self.process = subprocess.Popen(
            [aws_faults, "--upstream", moto, *flags],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().strip()

    def stop(self):
        self.process.stdin.close()
        self.process.wait(timeout=30)


def run(proxy, *args):
    started = time.perf_counter()
    done = subprocess.run(
        [accunode, *args], capture_output=True, text=True,
        env={**os.environ, "AWS_ENDPOINT_URL": proxy.url})
    if done.returncode != 0:
        sys.exit(f"accunode {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started, done.stdout


def stack(tag, n):
    return f"bp{tag}{n}{int(time.time()) % 100000}"


for seconds_per_minute in ("0", SECONDS_PER_MINUTE):
    proxy = Proxy("--seconds-per-minute", seconds_per_minute)
    rows = {"waves": [], "graph": []}
    for n in range(runs):
        for schedule in ("waves", "graph"):
            name = stack(schedule[0], n)
            _, out = run(proxy, "provision", "--phase", "2", "--stack", name,
                         "--schedule", schedule, "--output", "json")
            applied = json.loads(out)["apply"]
            rows[schedule].append((applied["wall_secs"], applied["critical_path"]["seconds"],
                                   " → ".join(applied["critical_path"]["chain"])))
            run(proxy, "destroy", "--yes", "--delete-data", "--stack", name)
    proxy.stop()
    what = "as moto is (every resource at once)" if seconds_per_minute == "0" else \
        f"slow resources ({seconds_per_minute} s per AWS minute)"
    print(f"Phase 2 from nothing, {what}, {runs} runs each:")
    print(f"{'schedule':<8} {'wall s (median)':>16} {'critical path s':>16} {'wall / path':>12}")
    for schedule, measured in rows.items():
        wall = statistics.median(m[0] for m in measured)
        path = statistics.median(m[1] for m in measured)
        print(f"{schedule:<8} {wall:>16.3f} {path:>16.3f} {wall / path:>12.2f}")
    print("graph / waves wall time:",
          f"{statistics.median(m[0] for m in rows['graph']) / statistics.median(m[0] for m in rows['waves']):.2f}")
    print("critical path of the last graph run:", rows["graph"][-1][2])
    print()

print("Phase 2 from nothing and destroy, calls as the command reports them:")
print(f"{'throttling':<11} {'command':<10} {'seconds':>8} {'calls':>6} {'retried':>8} {'throttled':>10}")
for share in ("0", "0.1"):
    proxy = Proxy("--throttle", share, "--seed", "7")
    name = stack("t", share.replace(".", ""))
    took, out = run(proxy, "provision", "--phase", "2", "--stack", name, "--output", "json")
    calls = json.loads(out)["calls"]
    print(f"{share:<11} {'provision':<10} {took:>8.1f} {calls['total']:>6} {calls['retried']:>8} {calls['throttled']:>10}")
    took, out = run(proxy, "destroy", "--yes", "--delete-data", "--stack", name)
    summary = [l for l in out.splitlines() if "destroyed in" in l][0]
    print(f"{share:<11} {'destroy':<10} {took:>8.1f}   {summary.split(': ', 1)[1]}")
    proxy.stop()
