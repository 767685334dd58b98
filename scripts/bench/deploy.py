"""The deploys of a phase-2 stack, alternating between two published
releases: the workers' rolling deploy (four workers, batches of two) and the
API's blue-green deploy (three servers; drain and canary waits zero).

1. Against moto as it is (every instance in service at once): wall time and
   AWS calls per deploy, next to `accunode status` as the baseline.
2. Through the AWS-like proxy (testkit's aws-faults) with instance launches
   of BOOT seconds: wall time next to its floor, two batches × BOOT for the
   workers, one launch (the whole new colour at once) for the API.

Usage: deploy.py ACCUNODE AWS_FAULTS MOTO_URL RUNS
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

accunode, aws_faults, moto, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
BOOT = 1.5
STACK = f"bd{int(time.time()) % 100000}"


def run(endpoint, *args):
    started = time.perf_counter()
    done = subprocess.run(
        [accunode, *args, "--stack", STACK], capture_output=True, text=True,
        env={**os.environ, "AWS_ENDPOINT_URL": endpoint})
    if done.returncode != 0:
        sys.exit(f"accunode {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started, done.stdout


run(moto, "provision", "--phase", "2")
with tempfile.TemporaryDirectory() as folder:
    for version in ("1.0.0", "2.0.0"):
        binary = open("/usr/bin/true", "rb").read()
        for name in ("accunode-api", "accunode-worker"):
            with open(os.path.join(folder, name), "wb") as out:
                out.write(binary + version.encode())
        run(moto, "release", "--version", version, "--from", folder)
run(moto, "deploy", "worker", "--version", "1.0.0")
run(moto, "deploy", "api", "--version", "1.0.0", "--drain", "0s")
versions = ["2.0.0", "1.0.0"]
BLUE_GREEN = ["--drain", "0s"]
CANARY = ["--drain", "0s", "--canary", "10", "--canary-wait", "0s"]

baseline = [run(moto, "status")[0] for _ in range(runs)]
rows = []
for n in range(runs):
    took, out = run(moto, "deploy", "worker", "--version", versions[n % 2], "--output", "json")
    report = json.loads(out)
    rows.append((took, report["calls"]["total"], report["calls"]["mutating"],
                 len(report["deploy"]["rolled"]["batches"])))
status = statistics.median(baseline)
deploy = statistics.median(r[0] for r in rows)
print(f"moto as it is, {runs} deploys alternating 1.0.0 and 2.0.0:")
print(f"  status (baseline)        {status:6.3f} s")
print(f"  deploy worker            {deploy:6.3f} s  ({deploy / status:.1f}x the baseline), "
      f"{statistics.median(r[1] for r in rows):.0f} AWS calls, "
      f"{statistics.median(r[2] for r in rows):.0f} changing, "
      f"{rows[0][3]} batches")


def blue_green(endpoint, flags, first):
    """`deploy api` `runs` times, alternating releases: (wall, calls, changing) each."""
    measured = []
    for n in range(runs):
        took, out = run(endpoint, "deploy", "api", "--version", versions[(n + first) % 2],
                        *flags, "--output", "json")
        report = json.loads(out)
        assert report["deploy"]["switched"]["to_colour"], report
        measured.append((took, report["calls"]["total"], report["calls"]["mutating"]))
    return measured


for label, flags in (("deploy api (blue-green)", BLUE_GREEN), ("deploy api, canary 10 %", CANARY)):
    api = blue_green(moto, flags, 0)
    wall = statistics.median(r[0] for r in api)
    print(f"  {label:<24} {wall:6.3f} s  ({wall / status:.1f}x the baseline), "
          f"{statistics.median(r[1] for r in api):.0f} AWS calls, "
          f"{statistics.median(r[2] for r in api):.0f} changing")

proxy = subprocess.Popen([aws_faults, "--upstream", moto, "--instance-launch-secs", str(BOOT)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
url = proxy.stdout.readline().strip()
run(url, "status")  # the proxy's first look: the instances there now have booted
slow = []
for n in range(runs):
    took, out = run(url, "deploy", "worker", "--version", versions[(n + runs) % 2], "--output", "json")
    report = json.loads(out)
    slow.append((took, report["calls"]["total"], len(report["deploy"]["rolled"]["batches"])))
slow_api = blue_green(url, BLUE_GREEN, runs)
proxy.stdin.close()
proxy.wait(timeout=30)
floor = slow[0][2] * BOOT
wall = statistics.median(r[0] for r in slow)
print(f"instance launches of {BOOT} s through the proxy, {runs} deploys each:")
print(f"  deploy worker            {wall:6.3f} s, floor {floor:.1f} s ({slow[0][2]} batches x {BOOT} s): "
      f"{wall / floor:.2f}x the floor, {statistics.median(r[1] for r in slow):.0f} AWS calls")
wall = statistics.median(r[0] for r in slow_api)
print(f"  deploy api (blue-green)  {wall:6.3f} s, floor {BOOT:.1f} s (one launch of the whole colour): "
      f"{wall / BOOT:.2f}x the floor, {statistics.median(r[1] for r in slow_api):.0f} AWS calls")
run(moto, "destroy", "--yes", "--delete-data")
