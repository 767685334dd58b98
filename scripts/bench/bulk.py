"""One bulk-upload run of scripts/bench-bulk: generates ROWS annual rows
(BENCH_ROWS_PER_COMPANY years of each company, default 20, as the original's
sample files have 20-30 rows a company; 1 makes every row a new company;
ratios spread past the fitted ranges; 1% missing cells), uploads them as one
signed-in user,
polls GET /api/v1/jobs/{id} every 50 ms until the job ends (its latencies give
the status p99 during the run), samples the API's and worker's peak RSS, then
measures the ceiling: the job's own predictions exported, deleted and loaded
back with COPY into the same table. Prints one JSON line.

    python bulk.py BASE_URL DATABASE_URL TOKEN ROWS API_PID WORKER_PID WORKDIR
"""

import http.client
import json
import os
import random
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid

RATIOS = ["long_term_debt_to_total_capital", "total_debt_to_ebitda", "net_income_margin",
          "ebit_to_interest_expense", "return_on_assets"]


def write_rows(path, rows, per_company):
    rng = random.Random(rows)
    with open(path, "w") as out:
        out.write("company_symbol,company_name,reporting_year," + ",".join(RATIOS) + "\n")
        for n in range(rows):
            cells = [f"{rng.uniform(-5, 110):.3f}", f"{rng.uniform(-2, 12):.3f}", f"{rng.uniform(-40, 40):.3f}",
                     f"{rng.uniform(-5, 80):.3f}", f"{rng.uniform(-20, 25):.3f}"]
            if n % 100 == 7:
                cells[n % 5] = "" if n % 200 == 7 else "n/a"
            company = n // per_company
            out.write(f"B{rows}x{per_company}-{company},Bench {company},{2000 + n % per_company},"
                      + ",".join(cells) + "\n")


def upload(base, token, path):
    boundary = uuid.uuid4().hex
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"prediction_type\"\r\n\r\nannual\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.csv\"\r\n"
            "Content-Type: text/csv\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    with open(path, "rb") as f:
        body = head + f.read() + tail
    request = urllib.request.Request(base + "/api/v1/predictions/bulk-upload", data=body, method="POST")
    request.add_header("Content-Type", f"multipart/form-data; boundary={boundary}")
    request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


class KeepAlive:
    """GETs over one kept-alive connection, as a polling client would."""

    def __init__(self, base, token):
        url = urllib.parse.urlsplit(base)
        self.connection = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        self.token = token

    def get(self, path):
        self.connection.request("GET", path, headers={"Authorization": "Bearer " + self.token})
        response = self.connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"GET {path} answered {response.status}: {body[:200]!r}")
        return json.loads(body)


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def psql(database_url, sql):
    return subprocess.run(["psql", database_url, "-Atqc", sql], check=True, capture_output=True,
                          text=True).stdout.strip()


def main(base, database_url, token, rows, api_pid, worker_pid, workdir):
    per_company = int(os.environ.get("BENCH_ROWS_PER_COMPANY", "20"))
    path = os.path.join(workdir, f"bench-{rows}.csv")
    write_rows(path, rows, per_company)
    started = time.monotonic()
    accepted = upload(base, token, path)
    accepted_at = time.monotonic()
    job = accepted["job_id"]
    latencies = []
    poller = KeepAlive(base, token)
    while True:
        t = time.monotonic()
        state = poller.get(f"/api/v1/jobs/{job}")
        latencies.append((time.monotonic() - t) * 1000)
        if state["status"] not in ("queued", "processing"):
            break
        time.sleep(0.05)
    done = time.monotonic()
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    p50 = latencies[len(latencies) // 2]
    # The ceiling: the job's own rows, COPYed back into the same table.
    export = os.path.join(workdir, f"copy-{rows}.tsv")
    columns = ("company_id, reporting_year, reporting_quarter, probability, risk_level, confidence, "
               "component_probabilities, model_id, model_version, access_level, organization_id, created_by, "
               "warnings, bulk_job_id, bulk_row, " + ", ".join(RATIOS))
    psql(database_url, f"\\copy (SELECT {columns} FROM annual_predictions WHERE bulk_job_id = '{job}') TO '{export}'")
    psql(database_url, f"DELETE FROM annual_predictions WHERE bulk_job_id = '{job}'")
    psql(database_url, "VACUUM annual_predictions")
    t = time.monotonic()
    psql(database_url, f"\\copy annual_predictions ({columns}) FROM '{export}'")
    copy_seconds = time.monotonic() - t
    copied = int(psql(database_url, f"SELECT count(*) FROM annual_predictions WHERE bulk_job_id = '{job}'"))
    print(json.dumps({
        "rows": rows,
        "rows_per_company": per_company,
        "status": state["status"],
        "succeeded": state["succeeded_rows"],
        "failed": state["failed_rows"],
        "upload_seconds": round(accepted_at - started, 2),
        "accepted_to_completed_seconds": round(done - accepted_at, 2),
        "end_to_end_seconds": round(done - started, 2),
        "rows_per_second": round(rows / (done - accepted_at)),
        "status_reads": len(latencies),
        "status_p50_ms": round(p50, 1),
        "status_p99_ms": round(p99, 1),
        "api_peak_rss_mb": round(rss_mb(api_pid), 1),
        "worker_peak_rss_mb": round(rss_mb(worker_pid), 1),
        "copy_rows_per_second": round(copied / copy_seconds),
        "ratio_to_copy": round((rows / (done - accepted_at)) / (copied / copy_seconds), 2),
    }))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6]), sys.argv[7])
