"""The large tenant of `scripts/bench-api --large-tenant`: seeds one bench user's
personal scope with ROWS companies and ROWS annual predictions (one a company)
with PostgreSQL COPY ... FROM STDIN fed through psql, then VACUUM ANALYZE; and
builds the list cursor of a page deep in a user's predictions.

    python large_tenant.py seed DATABASE_URL EMAIL ROWS
    python large_tenant.py cursor DATABASE_URL EMAIL

`seed` expects a database where the user exists (registered by setup.py) and
holds none of the seeded symbols (a fresh bench database). The rows satisfy
every CHECK of the migrations; they come in groups of 5,000 sharing one
created_at (as a bulk upload's chunks commit them), the groups spread over the
past year, oldest first; the predictions count as the user's single
predictions in prediction_usage (bulk_job_id NULL, as the schema counts them).
The data are the same on every run (fixed random seed) but for created_at,
which follows the clock.

`cursor` prints the cursor whose page holds the user's last 20 predictions in
newest-first order (created_at DESC, id DESC): the cursor of the row at offset
count - 21 (or 0 if the user has 21 rows or fewer).
"""

import base64
import datetime
import json
import random
import re
import subprocess
import sys
import time

GROUP_ROWS = 5_000
# GICS sectors, with rough shares of a listed universe.
SECTORS = [
    ("Information Technology", 14), ("Financials", 14), ("Industrials", 13), ("Health Care", 12),
    ("Consumer Discretionary", 11), ("Communication Services", 7), ("Consumer Staples", 7),
    ("Materials", 7), ("Energy", 6), ("Real Estate", 5), ("Utilities", 4),
]
# Risk level, its share, and its probability band (the models' thresholds:
# > 15 % CRITICAL, >= 5 % HIGH, >= 2 % MEDIUM).
RISKS = [("LOW", 55, 0.002, 0.0199), ("MEDIUM", 25, 0.02, 0.0499),
         ("HIGH", 14, 0.05, 0.15), ("CRITICAL", 6, 0.1501, 0.65)]
# The annual ensemble: the only bundle whose scores reach every risk level.
MODEL_ID, MODEL_VERSION = "accunode-ensemble-annual", "1.0.0"
NAME_FIRST = ("Acme Allied Apex Arbor Atlas Aurora Beacon Blue Boreal Bright Cardinal Cascade Cedar "
              "Central Civic Coastal Crescent Crown Delta Eagle Eastern Echo Emerald Empire Evergreen "
              "Falcon First Frontier Galaxy Global Golden Granite Harbor Highland Horizon Summit "
              "Iron Jade Keystone Liberty Lone Lumen Meridian Metro Midland Monarch Northern Nova "
              "Oak Pacific Pinnacle Pioneer Polar Prairie Quantum Redwood Ridge River Royal Sage "
              "Silver Southern Sterling Stone Sun Titan Tri Union United Vanguard Vertex Western "
              "Willow Zenith").split()
NAME_SECOND = ("Analytics Bancorp Biotech Brands Capital Chemicals Communications Dynamics Electric "
               "Energy Engineering Financial Foods Gas Health Industries Infrastructure Insurance "
               "Logistics Machinery Materials Media Medical Metals Mining Motors Networks Oil "
               "Pharmaceuticals Power Properties Realty Resources Retail Semiconductor Software "
               "Steel Systems Technologies Telecom Therapeutics Transport Utilities Water").split()
NAME_SUFFIX = ["Inc.", "Corp.", "Holdings", "Group", "Ltd.", "PLC", "Co.", "S.A.", "AG", "N.V."]
SYMBOL_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
SYMBOL_LENGTH = 6
SYMBOL_SPACE = len(SYMBOL_ALPHABET) ** SYMBOL_LENGTH
# Odd and not a multiple of 13: multiplying by it permutes [0, 26^6), so
# symbols are unique and their order is not the rows' order.
SYMBOL_STEP = 198_491_317

COMPANY_COLUMNS = ("id, symbol, name, market_cap, sector, access_level, created_by, "
                   "created_at, updated_at")
PREDICTION_COLUMNS = ("id, company_id, reporting_year, reporting_quarter, "
                      "long_term_debt_to_total_capital, total_debt_to_ebitda, net_income_margin, "
                      "ebit_to_interest_expense, return_on_assets, probability, risk_level, confidence, "
                      "component_probabilities, model_id, model_version, access_level, created_by, "
                      "warnings, company_sector, created_at, updated_at")


def log(message):
    print(f"==> {message}", file=sys.stderr, flush=True)


def literal(text):
    return "'" + text.replace("'", "''") + "'"


def psql(database_url, sql):
    """Runs SQL through psql and returns its unaligned, tuples-only output."""
    result = subprocess.run(["psql", database_url, "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-c", sql],
                            check=True, stdout=subprocess.PIPE, text=True)
    return result.stdout.strip()


def user_id(database_url, email):
    found = psql(database_url, f"SELECT id FROM users WHERE email = {literal(email)}")
    if not re.fullmatch(r"[0-9a-f-]{36}", found):
        sys.exit(f"error: no user with email {email!r} (got {found!r})")
    return found


def copy(database_url, table, columns, lines):
    """COPY table (columns) FROM STDIN, fed with the text-format lines."""
    process = subprocess.Popen(["psql", database_url, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c",
                                f"COPY {table} ({columns}) FROM STDIN"], stdin=subprocess.PIPE)
    batch = []
    try:
        for line in lines:
            batch.append(line)
            if len(batch) == 10_000:
                process.stdin.write("".join(batch).encode())
                batch.clear()
        process.stdin.write("".join(batch).encode())
        process.stdin.close()
    except BrokenPipeError:
        pass  # psql stopped on an error, which it has printed
    if process.wait() != 0:
        sys.exit(f"error: COPY {table} failed")


def uuid4_text(rng):
    bits = rng.getrandbits(128)
    bits = (bits & ~(0xF << 76) & ~(0x3 << 62)) | (0x4 << 76) | (0x2 << 62)
    h = f"{bits:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def symbol(n):
    value = (n * SYMBOL_STEP) % SYMBOL_SPACE
    letters = []
    for _ in range(SYMBOL_LENGTH):
        value, digit = divmod(value, len(SYMBOL_ALPHABET))
        letters.append(SYMBOL_ALPHABET[digit])
    return "".join(letters)


def group_times(rows):
    """One created_at (COPY text, UTC, microseconds) per group of GROUP_ROWS rows,
    spread over the past year, oldest first, none of them equal."""
    groups = (rows + GROUP_ROWS - 1) // GROUP_ROWS
    now = datetime.datetime.now(datetime.timezone.utc)
    start = now - datetime.timedelta(days=365)
    step = (now - start - datetime.timedelta(hours=1)) / max(groups, 1)
    rng = random.Random(7)
    times = []
    for g in range(groups):
        jitter = datetime.timedelta(microseconds=rng.randrange(int(step.total_seconds() * 1e6 * 0.9)))
        times.append((start + g * step + jitter).strftime("%Y-%m-%d %H:%M:%S.%f+00"))
    return times


def ratio(rng, value, missing=0.01):
    return "\\N" if rng.random() < missing else f"{value:.2f}"


def seed(database_url, email, rows):
    if not 0 < rows <= SYMBOL_SPACE:
        sys.exit(f"error: ROWS must be between 1 and {SYMBOL_SPACE}")
    uid = user_id(database_url, email)
    times = group_times(rows)
    sector_names = [name for name, _ in SECTORS]
    sector_weights = [share for _, share in SECTORS]
    rng = random.Random(20261128)
    company_ids = [uuid4_text(rng) for _ in range(rows)]
    sectors = rng.choices(sector_names, sector_weights, k=rows)
    started = time.monotonic()

    def companies():
        for n in range(rows):
            at = times[n // GROUP_ROWS]
            name = f"{rng.choice(NAME_FIRST)} {rng.choice(NAME_SECOND)} {rng.choice(NAME_SUFFIX)}"
            # Lognormal around ~2 billion, from a few million to a few trillion.
            cap = "\\N" if rng.random() < 0.05 else f"{rng.lognormvariate(21.4, 2.0) + 1e6:.0f}"
            yield (f"{company_ids[n]}\t{symbol(n)}\t{name}\t{cap}\t{sectors[n]}\tpersonal\t{uid}\t"
                   f"{at}\t{at}\n")

    log(f"COPY {rows} companies into user:{uid}")
    copy(database_url, "companies", COMPANY_COLUMNS, companies())
    companies_done = time.monotonic()

    risk_names = [r[0] for r in RISKS]
    risk_weights = [r[1] for r in RISKS]
    bands = {r[0]: (r[2], r[3]) for r in RISKS}

    def predictions():
        for n in range(rows):
            at = times[n // GROUP_ROWS]
            risk = rng.choices(risk_names, risk_weights)[0]
            low, high = bands[risk]
            probability = rng.uniform(low, high)
            # Two components whose mean is the probability, as the ensemble scores.
            v1 = rng.uniform(0.019, 0.041)
            lgbm = 2 * probability - v1
            if lgbm < 0 or lgbm > 1:
                v1 = lgbm = probability
            components = f'{{"v1_binned_logistic":{v1:.6f},"semi_synthetic_lightgbm":{lgbm:.6f}}}'
            sector = sectors[n]
            yield (f"{uuid4_text(rng)}\t{company_ids[n]}\t{rng.randint(2015, 2024)}\t\\N\t"
                   f"{ratio(rng, min(max(rng.gauss(35, 20), 0), 100))}\t"
                   f"{ratio(rng, rng.lognormvariate(0.8, 0.7))}\t"
                   f"{ratio(rng, rng.gauss(6, 12))}\t"
                   f"{ratio(rng, rng.lognormvariate(1.6, 1.0))}\t"
                   f"{ratio(rng, rng.gauss(4, 6))}\t"
                   f"{probability:.6f}\t{risk}\t{rng.uniform(0.6, 0.95):.4f}\t{components}\t"
                   f"{MODEL_ID}\t{MODEL_VERSION}\tpersonal\t{uid}\t{{}}\t{sector.lower()}\t{at}\t{at}\n")

    log(f"COPY {rows} annual predictions into user:{uid}")
    copy(database_url, "annual_predictions", PREDICTION_COLUMNS, predictions())
    psql(database_url,
         "INSERT INTO prediction_usage (user_id, single_predictions) "
         f"VALUES ({literal(uid)}, {rows}) ON CONFLICT (user_id) DO UPDATE "
         "SET single_predictions = prediction_usage.single_predictions + EXCLUDED.single_predictions")
    predictions_done = time.monotonic()
    log("VACUUM ANALYZE")
    psql(database_url, "VACUUM ANALYZE companies, annual_predictions, prediction_usage")
    done = time.monotonic()
    log(f"seeded {rows} companies in {companies_done - started:.1f} s, {rows} annual predictions in "
        f"{predictions_done - companies_done:.1f} s, VACUUM ANALYZE in {done - predictions_done:.1f} s: "
        f"{done - started:.1f} s in all")


def make_cursor(created_at, row_id):
    """The API's list cursor: base64url without padding of its JSON (keys in this
    order, no spaces). created_at as RFC 3339 UTC with microseconds."""
    body = json.dumps({"sort": "created_at", "order": "desc", "key": created_at, "id": row_id},
                      separators=(",", ":"))
    return base64.urlsafe_b64encode(body.encode()).rstrip(b"=").decode()


def deep_cursor(database_url, email):
    scope = literal("user:" + user_id(database_url, email))
    count = int(psql(database_url, f"SELECT count(*) FROM annual_predictions WHERE scope_key = {scope}"))
    row = psql(database_url,
               "SELECT to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') || ' ' || id "
               f"FROM annual_predictions WHERE scope_key = {scope} "
               f"ORDER BY created_at DESC, id DESC OFFSET {max(count - 21, 0)} LIMIT 1")
    if not row:
        sys.exit(f"error: {email} has no annual predictions")
    created_at, row_id = row.split(" ")
    log(f"{email}: {count} annual predictions; deep cursor at offset {max(count - 21, 0)} "
        f"({created_at}, {row_id})")
    return make_cursor(created_at, row_id)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "seed":
        seed(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    elif len(sys.argv) == 4 and sys.argv[1] == "cursor":
        print(deep_cursor(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
