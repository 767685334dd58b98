//! Bulk uploads end to end: the API and an in-process worker on real
//! PostgreSQL, a Redis of the test's own (the queue is per Redis) and moto's
//! S3. The original's sample files score bit for bit like the single route;
//! bad files are refused with nothing stored; jobs are private; cancel, row
//! errors, results, XLSX and idempotent retries.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use accunode_testkit::{RedisServer, TestDatabase, create_bucket, s3_client, test_env};
use futures::StreamExt;
use reqwest::multipart::{Form, Part};
use serde_json::{Value, json};

use crate::support::{BulkRig, bulk_env};

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../data/original-bulk-samples")
            .join(name),
    )
    .unwrap()
}

/// The single-prediction body for a row of a sample file.
fn single_body(row: &HashMap<String, String>, ratios: &[&str]) -> Value {
    let number = |text: &str| -> Value {
        let text = text.trim();
        if text.is_empty() || ["nan", "nm", "n/a"].contains(&text.to_lowercase().as_str()) {
            Value::Null
        } else {
            json!(text.parse::<f64>().unwrap())
        }
    };
    let mut body = json!({
        "company_symbol": row["company_symbol"],
        "company_name": row["company_name"],
        "reporting_year": row["reporting_year"],
    });
    if let Some(quarter) = row.get("reporting_quarter").filter(|q| !q.is_empty()) {
        body["reporting_quarter"] = json!(quarter);
    }
    if let Some(cap) = row.get("market_cap").filter(|c| !c.is_empty()) {
        body["market_cap"] = number(cap);
    }
    if let Some(sector) = row.get("sector").filter(|s| !s.is_empty()) {
        body["sector"] = json!(sector);
    }
    for ratio in ratios {
        body[*ratio] = number(&row[*ratio]);
    }
    body
}

#[tokio::test]
async fn sample_files_upload_as_they_are_and_score_bit_for_bit_like_single_predictions() {
    let mut rig = BulkRig::start(&[]).await;
    rig.start_worker().await;
    let uploader = rig.app.signed_up("bulk@example.com").await;
    let single = rig.app.signed_up("single@example.com").await;
    for (file, kind, ratios, step) in [
        (
            "annual.csv",
            "annual",
            &[
                "long_term_debt_to_total_capital",
                "total_debt_to_ebitda",
                "net_income_margin",
                "ebit_to_interest_expense",
                "return_on_assets",
            ][..],
            37,
        ),
        (
            "quarterly.csv",
            "quarterly",
            &[
                "total_debt_to_ebitda",
                "sga_margin",
                "long_term_debt_to_total_capital",
                "return_on_capital",
            ][..],
            1,
        ),
    ] {
        let (status, accepted) = rig.upload(&uploader, file, sample(file), kind, &[]).await;
        assert_eq!(status, 202, "{accepted}");
        let rows = sample(file).iter().filter(|b| **b == b'\n').count() as i64 - 1;
        assert_eq!(accepted["total_rows"].as_i64().unwrap(), rows);
        let job = accepted["job_id"].as_str().unwrap().to_owned();
        let finished = rig.wait_finished(&uploader, &job).await;
        assert_eq!(finished["status"], "completed", "{finished}");
        assert_eq!(finished["processed_rows"].as_i64().unwrap(), rows);

        let results = rig.results(&uploader, &job).await;
        assert_eq!(results.len() as i64, rows, "every input row, in order");
        let mut compared = 0;
        let mut first_rows = HashMap::new();
        let mut repeats = 0;
        for (index, row) in results.iter().enumerate() {
            let key = (
                row["company_symbol"].trim().to_uppercase(),
                row["reporting_year"].clone(),
                row.get("reporting_quarter").cloned(),
            );
            let first = *first_rows.entry(key).or_insert(index + 1);
            if first != index + 1 {
                // Always the later row, whatever order the chunks committed in.
                let expected = format!("duplicate: row {first} of the file is ");
                assert!(
                    row["error"].starts_with(&expected),
                    "row {}: {row:?}",
                    index + 1
                );
                repeats += 1;
                continue;
            }
            assert_eq!(
                row["error"],
                "",
                "row {}: only repeats fail in the samples",
                index + 1
            );
            if index % step != 0 {
                continue;
            }
            let answer = rig
                .app
                .post(
                    &format!("/api/v1/predictions/{kind}"),
                    Some(&single.token),
                    single_body(row, ratios),
                )
                .await;
            assert_eq!(answer.status, 201, "row {}: {}", index + 1, answer.body);
            let expected = answer.body["probability"].as_f64().unwrap();
            let bulk: f64 = row["probability"].parse().unwrap();
            assert_eq!(
                bulk.to_bits(),
                expected.to_bits(),
                "row {}: {row:?}",
                index + 1
            );
            assert_eq!(
                row["risk_level"],
                answer.body["risk_level"].as_str().unwrap()
            );
            assert_eq!(
                row["model_id"],
                answer.body["model"]["id"].as_str().unwrap()
            );
            compared += 1;
        }
        assert!(compared > 250, "compared {compared} rows of {file}");
        // The rows took their company's sector: the sector filter finds them.
        let technology: i64 = sqlx::query_scalar(&format!(
            "SELECT count(*) FROM {kind}_predictions p JOIN companies c ON c.id = p.company_id \
             WHERE lower(c.sector) = 'technology' AND p.created_by = $1"
        ))
        .bind(uploader.id)
        .fetch_one(&rig.app.pool)
        .await
        .unwrap();
        assert!(technology > 0, "{file} has technology rows");
        let listed = rig
            .app
            .get(
                &format!("/api/v1/predictions/{kind}?sector=Technology&limit=1"),
                &uploader.token,
            )
            .await;
        assert_eq!(listed.body["total"], technology, "{}", listed.body);
        assert_eq!(
            finished["failed_rows"].as_i64().unwrap(),
            repeats,
            "{finished}"
        );
    }
}

#[tokio::test]
async fn bad_files_are_refused_with_the_reason_and_nothing_is_stored_or_queued() {
    let rig = BulkRig::start(&[("BULK_UPLOAD_MAX_SIZE_MB", "1"), ("BULK_MAX_ROWS", "3")]).await;
    let user = rig.app.signed_up("bad@example.com").await;
    let header = "company_symbol,company_name,reporting_year,long_term_debt_to_total_capital,total_debt_to_ebitda,net_income_margin,ebit_to_interest_expense,return_on_assets\n";
    let row = "ACME,Acme,2020,1,2,3,4,5\n";
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        ("empty.csv", Vec::new(), "annual", 422, "empty"),
        (
            "header.csv",
            header.as_bytes().to_vec(),
            "annual",
            422,
            "no data rows",
        ),
        (
            "missing.csv",
            b"company_symbol,company_name\nA,B\n".to_vec(),
            "annual",
            422,
            "reporting_year",
        ),
        (
            "quarterly.csv",
            format!("{header}{row}").into_bytes(),
            "quarterly",
            422,
            "sga_margin",
        ),
        (
            "many.csv",
            format!("{header}{row}{row}{row}{row}").into_bytes(),
            "annual",
            422,
            "more than 3",
        ),
        ("big.csv", vec![b'a'; 2 << 20], "annual", 413, "1 MB"),
        (
            "image.png",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\xff\xfe".to_vec(),
            "annual",
            415,
            "CSV or XLSX",
        ),
        (
            "x.csv",
            format!("{header}{row}").into_bytes(),
            "monthly",
            422,
            "annual or quarterly",
        ),
    ];
    for (name, bytes, kind, status, reason) in cases {
        let (got, body) = rig.upload(&user, name, bytes, kind, &[]).await;
        assert_eq!(got, status, "{name}: {body}");
        assert!(body.to_string().contains(reason), "{name}: {body}");
    }
    assert_eq!(rig.stored_objects().await, 0, "nothing stored");
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM bulk_jobs")
        .fetch_one(&rig.app.pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0, "nothing queued");
}

#[tokio::test]
async fn jobs_are_private_cancellable_idempotent_and_explain_their_row_errors() {
    let mut rig = BulkRig::start(&[]).await;
    let owner = rig.app.signed_up("owner@example.com").await;
    let stranger = rig.app.signed_up("stranger@example.com").await;
    let csv = "company_symbol,company_name,reporting_year,long_term_debt_to_total_capital,total_debt_to_ebitda,net_income_margin,ebit_to_interest_expense,return_on_assets,Note\n\
               AAA,Aaa,2020,1,2,3,4,5,first\n\
               BBB,Bbb,2020,twelve,2,3,4,5,bad ratio\n\
               AAA,Aaa,2020,1,2,3,4,5,repeat\n\
               CCC,Ccc,20x0,1,2,3,4,5,bad year\n\
               DDD,Ddd,2021,113.5,-2,,NM,n/a,distressed\n";
    // No worker yet: the first job stays queued and can be cancelled.
    let (status, queued) = rig
        .upload(
            &owner,
            "a.csv",
            csv.as_bytes().to_vec(),
            "annual",
            &[("Idempotency-Key", "k1")],
        )
        .await;
    assert_eq!(status, 202, "{queued}");
    let first = queued["job_id"].as_str().unwrap().to_owned();
    let (status, again) = rig
        .upload(
            &owner,
            "a.csv",
            csv.as_bytes().to_vec(),
            "annual",
            &[("Idempotency-Key", "k1")],
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        again["job_id"], queued["job_id"],
        "a retried upload is the same job"
    );
    assert_eq!(
        rig.app
            .get(&format!("/api/v1/jobs/{first}"), &stranger.token)
            .await
            .status,
        404
    );
    assert_eq!(
        rig.app
            .post(
                &format!("/api/v1/jobs/{first}/cancel"),
                Some(&stranger.token),
                json!({})
            )
            .await
            .status,
        404
    );
    let cancelled = rig
        .app
        .post(
            &format!("/api/v1/jobs/{first}/cancel"),
            Some(&owner.token),
            json!({}),
        )
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert_eq!(
        rig.app
            .post(
                &format!("/api/v1/jobs/{first}/cancel"),
                Some(&owner.token),
                json!({})
            )
            .await
            .status,
        409
    );

    rig.start_worker().await;
    let (_, second) = rig
        .upload(&owner, "b.csv", csv.as_bytes().to_vec(), "annual", &[])
        .await;
    let second = second["job_id"].as_str().unwrap().to_owned();
    let finished = rig.wait_finished(&owner, &second).await;
    assert_eq!(finished["status"], "completed");
    assert_eq!(
        (
            finished["succeeded_rows"].as_i64(),
            finished["failed_rows"].as_i64()
        ),
        (Some(2), Some(3)),
        "{finished}"
    );
    assert_eq!(finished["warned_rows"], 1);
    // The cancelled job took no rows even though a worker now runs.
    let first_now = rig
        .app
        .get(&format!("/api/v1/jobs/{first}"), &owner.token)
        .await;
    assert_eq!(
        (
            first_now.body["status"].as_str(),
            first_now.body["processed_rows"].as_i64()
        ),
        (Some("cancelled"), Some(0))
    );

    let errors = rig
        .app
        .get(&format!("/api/v1/jobs/{second}/errors"), &owner.token)
        .await;
    assert_eq!(errors.status, 200);
    let items = errors.body["items"].as_array().unwrap();
    let summary: Vec<(i64, &str, &str, &str)> = items
        .iter()
        .map(|e| {
            (
                e["row"].as_i64().unwrap(),
                e["code"].as_str().unwrap(),
                e["column"].as_str().unwrap_or(""),
                e["value"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (2, "invalid", "long_term_debt_to_total_capital", "twelve"),
            (3, "duplicate", "", ""),
            (4, "invalid", "reporting_year", "20x0"),
        ]
    );
    assert_eq!(
        rig.app
            .get(&format!("/api/v1/jobs/{second}/errors"), &stranger.token)
            .await
            .status,
        404
    );

    let results = rig.results(&owner, &second).await;
    assert_eq!(
        results
            .iter()
            .map(|r| r["Note"].as_str())
            .collect::<Vec<_>>(),
        ["first", "bad ratio", "repeat", "bad year", "distressed"]
    );
    assert!(
        results[4]["warnings"]
            .contains("outside_fitted_range: long_term_debt_to_total_capital=113.5"),
        "{:?}",
        results[4]
    );
    assert!(!results[4]["probability"].is_empty() && results[4]["error"].is_empty());
    assert!(results[1]["probability"].is_empty() && results[1]["error"].contains("twelve"));

    assert!(
        items[1]["message"]
            .as_str()
            .unwrap()
            .starts_with("duplicate: row 1 of the file"),
        "{}",
        errors.body
    );

    // The same file again: its valid rows are in the scope already.
    let (_, third) = rig
        .upload(&owner, "c.csv", csv.as_bytes().to_vec(), "annual", &[])
        .await;
    let third = third["job_id"].as_str().unwrap().to_owned();
    let finished = rig.wait_finished(&owner, &third).await;
    assert_eq!(
        (
            finished["succeeded_rows"].as_i64(),
            finished["failed_rows"].as_i64()
        ),
        (Some(0), Some(5)),
        "{finished}"
    );
    let errors = rig
        .app
        .get(&format!("/api/v1/jobs/{third}/errors"), &owner.token)
        .await;
    let messages: Vec<&str> = errors.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert!(
        messages[0].ends_with("already exists in this scope")
            && messages[4].ends_with("already exists in this scope"),
        "{messages:?}"
    );

    let listed = rig
        .app
        .get("/api/v1/jobs?status=completed", &owner.token)
        .await;
    assert_eq!(listed.body["total"], 2, "{}", listed.body);
    assert_eq!(
        rig.app.get("/api/v1/jobs", &stranger.token).await.body["total"],
        0
    );
}

#[tokio::test]
async fn an_xlsx_upload_scores_its_first_sheet() {
    let mut rig = BulkRig::start(&[]).await;
    rig.start_worker().await;
    let user = rig.app.signed_up("xlsx@example.com").await;
    let mut workbook = rust_xlsxwriter::Workbook::new();
    let sheet = workbook.add_worksheet();
    let header = [
        "company_symbol",
        "company_name",
        "sector",
        "reporting_year",
        "reporting_quarter",
        "total_debt_to_ebitda",
        "sga_margin",
        "long_term_debt_to_total_capital",
        "return_on_capital",
    ];
    for (column, name) in header.iter().enumerate() {
        sheet.write_string(0, column as u16, *name).unwrap();
    }
    for row in 1..=3u32 {
        sheet.write_string(row, 0, format!("X{row}")).unwrap();
        sheet
            .write_string(row, 1, format!("Company {row}"))
            .unwrap();
        sheet.write_number(row, 3, 2020.0).unwrap();
        sheet.write_string(row, 4, "Q2").unwrap();
        for column in 5..9u16 {
            sheet
                .write_number(row, column, f64::from(row) * 1.5)
                .unwrap();
        }
    }
    let bytes = workbook.save_to_buffer().unwrap();
    let (status, accepted) = rig
        .upload(&user, "book.xlsx", bytes, "quarterly", &[])
        .await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["total_rows"], 3);
    let job = accepted["job_id"].as_str().unwrap().to_owned();
    let finished = rig.wait_finished(&user, &job).await;
    assert_eq!(
        (
            finished["status"].as_str(),
            finished["succeeded_rows"].as_i64()
        ),
        (Some("completed"), Some(3)),
        "{finished}"
    );
    let results = rig.results(&user, &job).await;
    assert_eq!(results[1]["reporting_year"], "2020");
    assert_eq!(results[1]["company_symbol"], "X2");
}

#[tokio::test]
async fn an_api_killed_mid_upload_leaves_no_job_and_no_file() {
    const API: &str = env!("CARGO_BIN_EXE_accunode-api");
    let database = TestDatabase::create().await;
    let redis = RedisServer::start().await;
    let bucket = create_bucket().await;
    let mut env = test_env(&database.url, &redis.url());
    env.extend(bulk_env(&bucket));
    env.extend(
        [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    );
    let workdir = tempfile::tempdir().unwrap();
    let mut api = accunode_testkit::SpawnedBinary::spawn(Path::new(API), &[], &env, workdir.path());
    let listening = api
        .wait_for_log("API listening", Duration::from_secs(30))
        .await;
    let base = format!("http://{}", listening["address"].as_str().unwrap());
    let client = reqwest::Client::new();
    let email = "killed@example.com";
    let registered = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": email, "password": crate::support::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status().as_u16(), 202);
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    sqlx::query("UPDATE users SET email_verified_at = now()")
        .execute(&pool)
        .await
        .unwrap();
    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": crate::support::PASSWORD}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = login["access_token"].as_str().unwrap().to_owned();

    // A file that arrives slowly: the header and a megabyte of rows, then nothing.
    let header = "company_symbol,company_name,reporting_year,long_term_debt_to_total_capital,total_debt_to_ebitda,net_income_margin,ebit_to_interest_expense,return_on_assets\n";
    let rows: String = (0..20_000)
        .map(|n| format!("S{n},Company {n},2020,1,2,3,4,5\n"))
        .collect();
    let parts: Vec<Result<Vec<u8>, std::io::Error>> =
        vec![Ok(header.as_bytes().to_vec()), Ok(rows.into_bytes())];
    let body =
        reqwest::Body::wrap_stream(futures::stream::iter(parts).chain(futures::stream::pending()));
    let form = Form::new()
        .text("prediction_type", "annual")
        .part("file", Part::stream(body).file_name("slow.csv"));
    let upload = tokio::spawn(
        client
            .post(format!("{base}/api/v1/predictions/bulk-upload"))
            .bearer_auth(&token)
            .multipart(form)
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(800)).await;
    api.signal("KILL");
    api.wait(Duration::from_secs(10)).await;
    assert!(
        upload.await.unwrap().is_err(),
        "the upload cannot have been answered"
    );
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM bulk_jobs")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(jobs, 0, "no job");
    let objects = s3_client()
        .await
        .list_objects_v2()
        .bucket(&bucket)
        .send()
        .await
        .unwrap()
        .key_count()
        .unwrap_or(0);
    assert_eq!(objects, 0, "no file, whole or half");
}

#[tokio::test]
async fn uploads_honour_the_switch_and_their_own_hourly_limit() {
    let off = BulkRig::start(&[("ENABLE_BULK_UPLOAD", "false")]).await;
    let user = off.app.signed_up("off@example.com").await;
    let (status, body) = off
        .upload(&user, "annual.csv", sample("annual.csv"), "annual", &[])
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("ENABLE_BULK_UPLOAD"),
        "{body}"
    );

    let limited = BulkRig::start(&[
        ("ENABLE_RATE_LIMITING", "true"),
        ("BULK_UPLOADS_PER_HOUR", "2"),
    ])
    .await;
    let user = limited.app.signed_up("limited@example.com").await;
    let other = limited.app.signed_up("other@example.com").await;
    for _ in 0..2 {
        let (status, body) = limited
            .upload(&user, "q.csv", sample("quarterly.csv"), "quarterly", &[])
            .await;
        assert_eq!(status, 202, "{body}");
    }
    let (status, body) = limited
        .upload(&user, "q.csv", sample("quarterly.csv"), "quarterly", &[])
        .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("BULK_UPLOADS_PER_HOUR"),
        "{body}"
    );
    let (status, _) = limited
        .upload(&other, "q.csv", sample("quarterly.csv"), "quarterly", &[])
        .await;
    assert_eq!(status, 202, "the limit is per user");
}

#[tokio::test]
async fn a_job_cancelled_while_processing_keeps_what_was_written_and_says_how_much() {
    let mut rig = BulkRig::start(&[]).await;
    rig.start_worker().await;
    let user = rig.app.signed_up("cancel@example.com").await;
    let mut csv = String::from(
        "company_symbol,company_name,reporting_year,long_term_debt_to_total_capital,total_debt_to_ebitda,net_income_margin,ebit_to_interest_expense,return_on_assets\n",
    );
    for n in 0..100_000 {
        csv.push_str(&format!("C{n},Company {n},2021,{},2,3,4,5\n", n % 90));
    }
    let (status, accepted) = rig
        .upload(&user, "big.csv", csv.into_bytes(), "annual", &[])
        .await;
    assert_eq!(status, 202, "{accepted}");
    let job = accepted["job_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/jobs/{job}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while rig.app.get(&path, &user.token).await.body["processed_rows"] == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing was processed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let cancelled = rig
        .app
        .post(&format!("{path}/cancel"), Some(&user.token), json!({}))
        .await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    let done = cancelled.body["processed_rows"].as_i64().unwrap();
    assert!(
        0 < done && done < 100_000,
        "cancelled mid-job: {}",
        cancelled.body
    );
    // Chunks being scored at the cancel are not written after it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = rig.app.get(&path, &user.token).await.body;
    assert_eq!(later["processed_rows"].as_i64(), Some(done), "{later}");
    let written: i64 =
        sqlx::query_scalar("SELECT count(*) FROM annual_predictions WHERE bulk_job_id = $1::uuid")
            .bind(&job)
            .fetch_one(&rig.app.pool)
            .await
            .unwrap();
    assert_eq!(
        written,
        later["succeeded_rows"].as_i64().unwrap(),
        "what was written stays, and only that"
    );
}
