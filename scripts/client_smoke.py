"""Drives a running AccuNode API through the Python client generated from
service/openapi.json: register, verify, sign in, create a company, create an
annual and a quarterly prediction, list them, upload a file of rows and poll
its job to the end, read its row errors, then page through the predictions
by cursor. Exits non-zero on any surprise.

    python client_smoke.py BASE_URL DATABASE_URL

DATABASE_URL is read (with psql) only for the verification token, which the
API leaves in its email outbox when no mail server is configured.
"""

import io
import subprocess
import sys
import time
import uuid

from accunode_client import AuthenticatedClient, Client
from accunode_client.api.auth import login, register, verify_email
from accunode_client.api.companies import create_company
from accunode_client.api.jobs import get_job, list_job_errors
from accunode_client.api.predictions import (
    bulk_upload,
    create_annual_prediction,
    create_quarterly_prediction,
    list_annual_predictions,
    list_quarterly_predictions,
)
from accunode_client.types import UNSET, File
from accunode_client.models import (
    AnnualPrediction,
    AnnualPredictionRequest,
    BulkUploadAccepted,
    BulkUploadBody,
    Company,
    CreateCompanyRequest,
    ErrorBody,
    JobView,
    PredictionType,
    LoginRequest,
    LoginResponse,
    QuarterlyPrediction,
    QuarterlyPredictionRequest,
    RegisterRequest,
    VerifyEmailRequest,
)

PASSWORD = "client-smoke-42"


def expect(kind, value):
    if not isinstance(value, kind):
        detail = value.to_dict() if isinstance(value, ErrorBody) else value
        raise SystemExit(f"expected {kind.__name__}, got {detail!r}")
    return value


def mailed_token(database_url, email):
    body = subprocess.run(
        ["psql", database_url, "-tAc",
         f"SELECT body FROM email_outbox WHERE recipient = '{email}' ORDER BY created_at DESC LIMIT 1"],
        check=True, capture_output=True, text=True,
    ).stdout
    for line in body.splitlines():
        if line.startswith("verification token: "):
            return line.removeprefix("verification token: ").strip()
    raise SystemExit(f"no verification mail for {email}")


def main(base_url, database_url):
    email = f"client-{uuid.uuid4().hex[:10]}@example.com"
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    registered = register.sync_detailed(
        client=anonymous, body=RegisterRequest(email=email, password=PASSWORD, first_name="Py")
    )
    assert registered.status_code == 202, registered
    verify_email.sync(client=anonymous, body=VerifyEmailRequest(token=mailed_token(database_url, email)))
    tokens = expect(LoginResponse, login.sync(client=anonymous, body=LoginRequest(email=email, password=PASSWORD)))
    assert tokens.user.email_verified

    client = AuthenticatedClient(base_url=base_url, token=tokens.access_token, raise_on_unexpected_status=True)
    company = expect(Company, create_company.sync(
        client=client,
        body=CreateCompanyRequest(symbol="pycl", name="Python Client Co", market_cap=1.2e9, sector="Technology"),
    ))
    assert company.symbol == "PYCL" and company.access_level == "personal"

    annual = expect(AnnualPrediction, create_annual_prediction.sync(client=client, body=AnnualPredictionRequest(
        company_symbol="PYCL", company_name="Python Client Co", reporting_year="2024",
        long_term_debt_to_total_capital=35.0, total_debt_to_ebitda=2.5, net_income_margin=8.0,
        ebit_to_interest_expense=6.0, return_on_assets=5.0,
    )))
    assert 0.0 < annual.probability < 1.0, annual.probability
    assert annual.model.id == "accunode-v1-annual" and annual.company.id == company.id
    assert annual.risk_level in ("LOW", "MEDIUM", "HIGH", "CRITICAL")

    quarterly = expect(QuarterlyPrediction, create_quarterly_prediction.sync(client=client, body=QuarterlyPredictionRequest(
        company_symbol="PYCL", company_name="Python Client Co", reporting_year="2024", reporting_quarter="Q2",
        total_debt_to_ebitda=3.0, sga_margin=12.0, long_term_debt_to_total_capital=40.0, return_on_capital=None,
    )))
    assert quarterly.reporting_quarter == "Q2" and quarterly.model.id == "accunode-v1-quarterly"

    annual_list = list_annual_predictions.sync(client=client, company_symbol="pycl")
    assert annual_list.total == 1 and annual_list.items[0].id == annual.id, annual_list
    quarterly_list = list_quarterly_predictions.sync(client=client, reporting_year=2024)
    assert quarterly_list.total == 1 and quarterly_list.items[0].id == quarterly.id, quarterly_list
    print(f"python client: {email} scored PYCL annual {annual.probability!r} ({annual.risk_level}), "
          f"quarterly {quarterly.probability!r} ({quarterly.risk_level})")

    rows = (b"company_symbol,company_name,reporting_year,long_term_debt_to_total_capital,total_debt_to_ebitda,"
            b"net_income_margin,ebit_to_interest_expense,return_on_assets\n"
            b"BLK1,Bulk One,2023,30,2,5,6,4\nBLK2,Bulk Two,2023,120,-1,-30,NM,\nBLK3,Bulk Three,2023,x,1,1,1,1\n")
    accepted = expect(BulkUploadAccepted, bulk_upload.sync(client=client, body=BulkUploadBody(
        file=File(payload=io.BytesIO(rows), file_name="smoke.csv", mime_type="text/csv"),
        prediction_type=PredictionType.ANNUAL,
    )))
    assert accepted.total_rows == 3 and accepted.model_id == "accunode-v1-annual", accepted
    deadline = time.monotonic() + 60
    while True:
        job = expect(JobView, get_job.sync(client=client, id=accepted.job_id))
        if job.status not in ("queued", "processing"):
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"the bulk job did not finish: {job.to_dict()}")
        time.sleep(0.2)
    assert job.status == "completed" and job.succeeded_rows == 2 and job.warned_rows == 1, job.to_dict()
    errors = list_job_errors.sync(client=client, id=accepted.job_id)
    assert [(e.row, e.column) for e in errors.items] == [(3, "long_term_debt_to_total_capital")], errors
    print(f"python client: bulk job completed: {job.total_rows} rows, {job.failed_rows} failed")

    # Page through the annual predictions one at a time by cursor.
    seen, cursor = [], UNSET
    while True:
        page = list_annual_predictions.sync(client=client, limit=1, cursor=cursor)
        assert page.total == 3 and page.total_exact, page
        seen += [item.company.symbol for item in page.items]
        if not isinstance(page.next_cursor, str):
            break
        cursor = page.next_cursor
    assert sorted(seen) == ["BLK1", "BLK2", "PYCL"], seen
    print(f"python client: paged by cursor through {seen}")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: client_smoke.py BASE_URL DATABASE_URL")
    main(sys.argv[1], sys.argv[2])
