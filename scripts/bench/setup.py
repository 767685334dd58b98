"""Creates the benchmark's users and data through the API: USERS verified users
(verified with one SQL update, as an operator would), each with PER_USER
annual predictions; writes their access tokens (one per line) and credentials
("email password" per line) for wrk.

    python setup.py BASE_URL DATABASE_URL USERS PER_USER TOKENS_FILE CREDENTIALS_FILE
"""

import json
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor

PASSWORD = "bench-password-1"


def call(base, method, path, body=None, token=None):
    request = urllib.request.Request(base + path, method=method,
                                     data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read() or b"null")


def main(base, database_url, users, per_user, tokens_file, credentials_file):
    emails = [f"bench-{n:04d}@example.com" for n in range(users)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda e: call(base, "POST", "/api/v1/auth/register", {"email": e, "password": PASSWORD}), emails))
    subprocess.run(["psql", database_url, "-qc", "UPDATE users SET email_verified_at = now()"], check=True)
    with ThreadPoolExecutor(8) as pool:
        tokens = list(pool.map(
            lambda e: call(base, "POST", "/api/v1/auth/login", {"email": e, "password": PASSWORD})["access_token"], emails))

    def seed(token_index):
        token = tokens[token_index]
        for n in range(per_user):
            call(base, "POST", "/api/v1/predictions/annual", {
                "company_symbol": f"S{token_index:04d}{n:03d}", "company_name": f"Seed {n}",
                "sector": ["Technology", "Energy", "Industrials"][n % 3], "market_cap": 1e9 + n,
                "reporting_year": "2023", "long_term_debt_to_total_capital": float(n % 100),
                "total_debt_to_ebitda": 2.0, "net_income_margin": 5.0,
                "ebit_to_interest_expense": 4.0, "return_on_assets": 3.0}, token)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(seed, range(users)))
    with open(tokens_file, "w") as out:
        out.write("\n".join(tokens) + "\n")
    with open(credentials_file, "w") as out:
        out.write("\n".join(f"{e} {PASSWORD}" for e in emails) + "\n")


if __name__ == "__main__":
    base, database_url, users, per_user, tokens_file, credentials_file = sys.argv[1:]
    main(base, database_url, int(users), int(per_user), tokens_file, credentials_file)
