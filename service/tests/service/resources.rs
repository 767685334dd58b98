//! Companies and predictions through the API against real PostgreSQL and
//! Redis: scoring, fitted-range warnings, duplicates, validation, lists and
//! filters, the prediction cache, ETags, quotas and feature flags.

use std::path::Path;

use accunode_core::scoring::Bundle;
use serde_json::{Value, json};

use crate::support::{TestApp, annual, quarterly};

fn bundle(name: &str) -> Bundle {
    Bundle::load(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../models")
            .join(name),
    )
    .unwrap()
}

#[tokio::test]
async fn an_annual_prediction_is_scored_by_the_serving_bundle_and_stored() {
    let app = TestApp::start().await;
    let user = app.signed_up("ann@example.com").await;
    let created = app
        .post(
            "/api/v1/predictions/annual",
            Some(&user.token),
            annual("acme", "2024"),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let body = &created.body;
    let expected = bundle("accunode-v1-annual")
        .score(&[35.0, 2.5, 8.0, 6.0, 5.0])
        .unwrap();
    // Full double precision, bit for bit.
    assert_eq!(
        body["probability"].as_f64().unwrap(),
        expected.score.probability
    );
    assert_eq!(body["risk_level"], expected.score.risk_level.as_str());
    assert_eq!(
        body["confidence"].as_f64().unwrap(),
        expected.score.confidence
    );
    assert_eq!(
        body["model"],
        json!({"id": "accunode-v1-annual", "version": "1.0.0"})
    );
    assert_eq!(body["components"][0]["name"], "binned_logistic");
    assert_eq!(body["company"]["symbol"], "ACME");
    assert_eq!(body["reporting_year"], "2024");
    assert_eq!(body["access_level"], "personal");
    assert_eq!(body["ratios"]["total_debt_to_ebitda"], 2.5);
    assert_eq!(body["warnings"], json!([]), "always present");

    // Same company, year and scope again: 409, and the company is reused.
    let duplicate = app
        .post(
            "/api/v1/predictions/annual",
            Some(&user.token),
            annual("ACME", "2024"),
        )
        .await;
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    assert_eq!(duplicate.body["error"], "conflict");
    let next_year = app
        .post(
            "/api/v1/predictions/annual",
            Some(&user.token),
            annual("acme", "2025"),
        )
        .await;
    assert_eq!(next_year.status, 201);
    assert_eq!(next_year.body["company"]["id"], body["company"]["id"]);
    let companies: i64 = sqlx::query_scalar("SELECT count(*) FROM companies")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(companies, 1);

    // Read back, directly and in the list.
    let id = body["id"].as_str().unwrap();
    let read = app
        .get(&format!("/api/v1/predictions/annual/{id}"), &user.token)
        .await;
    assert_eq!(read.status, 200);
    assert_eq!(read.body, *body);
    let listed = app.get("/api/v1/predictions/annual", &user.token).await;
    assert_eq!(listed.body["total"], 2);
    assert_eq!(listed.body["items"][1]["id"], body["id"]);
}

#[tokio::test]
async fn missing_ratios_are_scored_as_missing_and_bad_ones_named() {
    let app = TestApp::start().await;
    let user = app.signed_up("ben@example.com").await;
    let mut request = annual("NULLS", "2023");
    request["net_income_margin"] = Value::Null;
    request.as_object_mut().unwrap().remove("return_on_assets");
    let created = app
        .post("/api/v1/predictions/annual", Some(&user.token), request)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let expected = bundle("accunode-v1-annual")
        .score(&[35.0, 2.5, f64::NAN, 6.0, f64::NAN])
        .unwrap();
    assert_eq!(
        created.body["probability"].as_f64().unwrap(),
        expected.score.probability
    );
    assert_eq!(created.body["ratios"]["net_income_margin"], Value::Null);

    let mut many = annual("", "24");
    many["market_cap"] = json!(-5);
    many["reporting_quarter"] = json!("Q5");
    let answer = app
        .post("/api/v1/predictions/annual", Some(&user.token), many)
        .await;
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(
        answer.fields(),
        vec![
            "body.company_symbol",
            "body.market_cap",
            "body.reporting_year",
            "body.reporting_quarter"
        ]
    );

    let mut mistyped = annual("TYPE", "2023");
    mistyped["total_debt_to_ebitda"] = json!("2.5");
    let answer = app
        .post("/api/v1/predictions/annual", Some(&user.token), mistyped)
        .await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.fields(), vec!["body.total_debt_to_ebitda"]);

    // Quarterly needs a quarter.
    let mut no_quarter = quarterly("QQ", "2024", "Q1");
    no_quarter
        .as_object_mut()
        .unwrap()
        .remove("reporting_quarter");
    let answer = app
        .post(
            "/api/v1/predictions/quarterly",
            Some(&user.token),
            no_quarter,
        )
        .await;
    assert_eq!(answer.status, 422);
    assert_eq!(answer.fields(), vec!["body.reporting_quarter"]);
    let none_stored: i64 = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM annual_predictions) + (SELECT count(*) FROM quarterly_predictions)",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(none_stored, 1, "only the valid request stored anything");
}

#[tokio::test]
async fn quarterly_predictions_list_filter_and_delete() {
    let app = TestApp::start().await;
    let user = app.signed_up("cal@example.com").await;
    for (symbol, quarter) in [("AAA", "Q1"), ("AAA", "Q2"), ("BBB", "Q1")] {
        let created = app
            .post(
                "/api/v1/predictions/quarterly",
                Some(&user.token),
                quarterly(symbol, "2024", quarter),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        let expected = bundle("accunode-v1-quarterly")
            .score(&[3.0, 12.0, 40.0, 7.0])
            .unwrap();
        assert_eq!(
            created.body["probability"].as_f64().unwrap(),
            expected.score.probability
        );
    }
    let duplicate = app
        .post(
            "/api/v1/predictions/quarterly",
            Some(&user.token),
            quarterly("aaa", "2024", "Q2"),
        )
        .await;
    assert_eq!(duplicate.status, 409);

    let by_symbol = app
        .get(
            "/api/v1/predictions/quarterly?company_symbol=aaa",
            &user.token,
        )
        .await;
    assert_eq!(by_symbol.body["total"], 2, "{}", by_symbol.body);
    let paged = app
        .get("/api/v1/predictions/quarterly?limit=2&page=2", &user.token)
        .await;
    assert_eq!(paged.body["items"].as_array().unwrap().len(), 1);
    assert_eq!(paged.body["pages"], 2);
    let past_the_end = app
        .get("/api/v1/predictions/quarterly?limit=2&page=9", &user.token)
        .await;
    assert_eq!(past_the_end.body["total"], 3);
    assert_eq!(past_the_end.body["items"], json!([]));
    let bad_limit = app
        .get("/api/v1/predictions/quarterly?limit=101", &user.token)
        .await;
    assert_eq!(bad_limit.status, 422, "{}", bad_limit.body);
    assert_eq!(bad_limit.fields(), vec!["query.limit"]);
    let bad_risk = app
        .get(
            "/api/v1/predictions/quarterly?risk_level=SEVERE",
            &user.token,
        )
        .await;
    assert_eq!(bad_risk.status, 422);
    assert_eq!(bad_risk.fields(), vec!["query.risk_level"]);

    let id = by_symbol.body["items"][0]["id"].as_str().unwrap();
    let path = format!("/api/v1/predictions/quarterly/{id}");
    assert_eq!(app.get(&path, &user.token).await.status, 200);
    assert_eq!(app.delete(&path, &user.token).await.status, 204);
    assert_eq!(app.get(&path, &user.token).await.status, 404);
    assert_eq!(app.delete(&path, &user.token).await.status, 404);
    let bad_id = app
        .get("/api/v1/predictions/quarterly/not-a-uuid", &user.token)
        .await;
    assert_eq!(bad_id.status, 422);
    assert_eq!(bad_id.fields(), vec!["path.id"]);
}

/// A prediction request with `ratios` in place of its own.
fn with_ratios(mut request: Value, ratios: &[(&str, f64)]) -> Value {
    for (name, value) in ratios {
        request[*name] = json!(value);
    }
    request
}

/// Annual ratios of a sound company: the serving bundle scores them LOW.
const SOUND_ANNUAL: [(&str, f64); 5] = [
    ("long_term_debt_to_total_capital", 10.0),
    ("total_debt_to_ebitda", 1.0),
    ("net_income_margin", 15.0),
    ("ebit_to_interest_expense", 12.0),
    ("return_on_assets", 15.0),
];

/// Annual ratios of a strained company: the serving bundle scores them MEDIUM.
const STRAINED_ANNUAL: [(&str, f64); 5] = [
    ("long_term_debt_to_total_capital", 80.0),
    ("total_debt_to_ebitda", 8.0),
    ("net_income_margin", -10.0),
    ("ebit_to_interest_expense", 1.0),
    ("return_on_assets", -5.0),
];

/// Quarterly ratios the ensemble bundle scores LOW.
const SOUND_QUARTERLY: [(&str, f64); 4] = [
    ("total_debt_to_ebitda", 1.0),
    ("sga_margin", 30.0),
    ("long_term_debt_to_total_capital", 20.0),
    ("return_on_capital", 20.0),
];

/// Quarterly ratios the ensemble bundle scores CRITICAL.
const STRAINED_QUARTERLY: [(&str, f64); 4] = [
    ("total_debt_to_ebitda", 8.0),
    ("sga_margin", 5.0),
    ("long_term_debt_to_total_capital", 80.0),
    ("return_on_capital", -10.0),
];

/// Asserts that the list at `path` answers each query with exactly its rows,
/// named `SYMBOL YEAR[ QUARTER]`, and counts exactly them in `total`.
async fn assert_filters(app: &TestApp, token: &str, path: &str, cases: &[(&str, Vec<&str>)]) {
    for (query, expected) in cases {
        let answer = app.get(&format!("{path}?{query}"), token).await;
        assert_eq!(answer.status, 200, "{query}: {}", answer.body);
        let mut rows: Vec<String> = answer.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|prediction| {
                let quarter = prediction["reporting_quarter"]
                    .as_str()
                    .map(|quarter| format!(" {quarter}"))
                    .unwrap_or_default();
                format!(
                    "{} {}{quarter}",
                    prediction["company"]["symbol"].as_str().unwrap(),
                    prediction["reporting_year"].as_str().unwrap()
                )
            })
            .collect();
        rows.sort();
        assert_eq!(rows, *expected, "{query}");
        assert_eq!(answer.body["total"], expected.len(), "{query}");
    }
}

#[tokio::test]
async fn annual_list_filters_return_exactly_the_matching_rows() {
    let app = TestApp::start().await;
    let user = app.signed_up("jo@example.com").await;
    for (symbol, year, sector, ratios, risk_level) in [
        ("SAFE", "2023", "Technology", SOUND_ANNUAL, "LOW"),
        ("SAFE", "2024", "Technology", SOUND_ANNUAL, "LOW"),
        ("RISKY", "2024", "Energy", STRAINED_ANNUAL, "MEDIUM"),
    ] {
        let mut request = with_ratios(annual(symbol, year), &ratios);
        request["sector"] = json!(sector);
        let created = app
            .post("/api/v1/predictions/annual", Some(&user.token), request)
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        // The rows must differ in every filtered field, risk level included.
        assert_eq!(created.body["risk_level"], risk_level, "{symbol} {year}");
    }
    assert_filters(
        &app,
        &user.token,
        "/api/v1/predictions/annual",
        &[
            ("", vec!["RISKY 2024", "SAFE 2023", "SAFE 2024"]),
            ("reporting_year=2023", vec!["SAFE 2023"]),
            ("reporting_year=2024", vec!["RISKY 2024", "SAFE 2024"]),
            ("sector=energy", vec!["RISKY 2024"]),
            ("sector=Technology", vec!["SAFE 2023", "SAFE 2024"]),
            ("sector=Utilities", vec![]),
            ("risk_level=MEDIUM", vec!["RISKY 2024"]),
            ("risk_level=LOW", vec!["SAFE 2023", "SAFE 2024"]),
            ("risk_level=HIGH", vec![]),
            ("reporting_year=2024&risk_level=LOW", vec!["SAFE 2024"]),
        ],
    )
    .await;
}

#[tokio::test]
async fn quarterly_list_filters_return_exactly_the_matching_rows() {
    // The v1 quarterly bundle scores every input between 1.4 and 1.7 %, all
    // LOW; the ensemble tells sound and strained ratios apart.
    let app = TestApp::start_with(&[("QUARTERLY_MODEL", "accunode-ensemble-quarterly")]).await;
    let user = app.signed_up("kit@example.com").await;
    for (symbol, year, quarter, sector, ratios, risk_level) in [
        ("AAA", "2024", "Q1", "Industrials", SOUND_QUARTERLY, "LOW"),
        (
            "AAA",
            "2024",
            "Q2",
            "Industrials",
            STRAINED_QUARTERLY,
            "CRITICAL",
        ),
        ("BBB", "2023", "Q1", "Utilities", SOUND_QUARTERLY, "LOW"),
    ] {
        let mut request = with_ratios(quarterly(symbol, year, quarter), &ratios);
        request["sector"] = json!(sector);
        let created = app
            .post("/api/v1/predictions/quarterly", Some(&user.token), request)
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
        assert_eq!(
            created.body["risk_level"], risk_level,
            "{symbol} {year} {quarter}"
        );
    }
    assert_filters(
        &app,
        &user.token,
        "/api/v1/predictions/quarterly",
        &[
            ("", vec!["AAA 2024 Q1", "AAA 2024 Q2", "BBB 2023 Q1"]),
            ("reporting_year=2024", vec!["AAA 2024 Q1", "AAA 2024 Q2"]),
            ("reporting_year=2023", vec!["BBB 2023 Q1"]),
            ("reporting_quarter=Q1", vec!["AAA 2024 Q1", "BBB 2023 Q1"]),
            ("reporting_quarter=Q2", vec!["AAA 2024 Q2"]),
            ("reporting_quarter=Q3", vec![]),
            ("sector=utilities", vec!["BBB 2023 Q1"]),
            ("sector=Industrials", vec!["AAA 2024 Q1", "AAA 2024 Q2"]),
            ("risk_level=CRITICAL", vec!["AAA 2024 Q2"]),
            ("risk_level=LOW", vec!["AAA 2024 Q1", "BBB 2023 Q1"]),
            ("company_symbol=bbb", vec!["BBB 2023 Q1"]),
            (
                "reporting_year=2024&reporting_quarter=Q1",
                vec!["AAA 2024 Q1"],
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn read_predictions_are_cached_and_deletes_drop_them() {
    let app = TestApp::start().await;
    let user = app.signed_up("dee@example.com").await;
    let created = app
        .post(
            "/api/v1/predictions/annual",
            Some(&user.token),
            annual("CACHE", "2024"),
        )
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/predictions/annual/{id}");
    let first = app.get(&path, &user.token).await;
    let mut redis = accunode_core::cache::client(&accunode_testkit::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = format!("accunode:prediction:annual:{id}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((3500..=3600).contains(&ttl), "one hour, got {ttl}");
    // Served from the cache: the same answer even with the row changed underneath.
    sqlx::query("UPDATE annual_predictions SET risk_level = 'CRITICAL' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .unwrap();
    let second = app.get(&path, &user.token).await;
    assert_eq!(second.body, first.body);

    // Another user never gets the cached copy.
    let other = app.signed_up("eve@example.com").await;
    assert_eq!(app.get(&path, &other.token).await.status, 404);

    // A change of the company drops its predictions' copies: they show it.
    let company = created.body["company"]["id"].as_str().unwrap();
    let renamed = app
        .put(
            &format!("/api/v1/companies/{company}"),
            &user.token,
            json!({"name": "Cache Renamed Inc"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let after_rename = app.get(&path, &user.token).await;
    assert_eq!(after_rename.body["company"]["name"], "Cache Renamed Inc");

    // Deleting the company drops its predictions from the cache too.
    app.get(&path, &user.token).await;
    let deleted = app
        .delete(&format!("/api/v1/companies/{company}"), &user.token)
        .await;
    assert_eq!(deleted.status, 204);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    assert_eq!(app.get(&path, &user.token).await.status, 404);
}

#[tokio::test]
async fn etags_answer_304_when_nothing_changed() {
    let app = TestApp::start().await;
    let user = app.signed_up("fin@example.com").await;
    let first = app.get("/api/v1/companies", &user.token).await;
    let etag = first.header("etag").unwrap().to_owned();
    let again = app
        .call_with(
            reqwest::Method::GET,
            "/api/v1/companies",
            Some(&user.token),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(again.status, 304);
    assert_eq!(again.header("etag"), Some(etag.as_str()));
    app.post(
        "/api/v1/companies",
        Some(&user.token),
        json!({"symbol": "NEW", "name": "New Co"}),
    )
    .await;
    let changed = app
        .call_with(
            reqwest::Method::GET,
            "/api/v1/companies",
            Some(&user.token),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(etag.as_str()));
}

#[tokio::test]
async fn companies_list_search_sort_page_update_and_delete() {
    let app = TestApp::start().await;
    let user = app.signed_up("gil@example.com").await;
    for (symbol, name, cap, sector) in [
        ("MSFT", "Microsoft", 3.0e12, "Technology"),
        ("AAPL", "Apple", 3.5e12, "Technology"),
        ("XOM", "Exxon Mobil", 4.0e11, "Energy"),
    ] {
        let created = app
            .post(
                "/api/v1/companies",
                Some(&user.token),
                json!({"symbol": symbol, "name": name, "market_cap": cap, "sector": sector}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
    let duplicate = app
        .post(
            "/api/v1/companies",
            Some(&user.token),
            json!({"symbol": "msft", "name": "Again"}),
        )
        .await;
    assert_eq!(duplicate.status, 409);
    let invalid = app
        .post(
            "/api/v1/companies",
            Some(&user.token),
            json!({"symbol": "WAY-TOO-LONG-A-SYMBOL-X", "name": "", "market_cap": 0}),
        )
        .await;
    assert_eq!(invalid.status, 422);
    assert_eq!(
        invalid.fields(),
        vec!["body.symbol", "body.name", "body.market_cap"]
    );

    let symbols = |answer: &crate::support::Answer| -> Vec<String> {
        answer.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["symbol"].as_str().unwrap().to_owned())
            .collect()
    };
    let by_cap = app
        .get("/api/v1/companies?sort=market_cap&order=desc", &user.token)
        .await;
    assert_eq!(symbols(&by_cap), vec!["AAPL", "MSFT", "XOM"]);
    let by_name = app
        .get("/api/v1/companies?sort=name&order=asc", &user.token)
        .await;
    assert_eq!(symbols(&by_name), vec!["AAPL", "XOM", "MSFT"]);
    let tech = app
        .get(
            "/api/v1/companies?sector=technology&sort=symbol&order=asc",
            &user.token,
        )
        .await;
    assert_eq!(symbols(&tech), vec!["AAPL", "MSFT"]);
    let search = app.get("/api/v1/companies?search=mobil", &user.token).await;
    assert_eq!(symbols(&search), vec!["XOM"]);
    let literal = app.get("/api/v1/companies?search=%25", &user.token).await;
    assert_eq!(literal.body["total"], 0, "% is matched literally");
    let page = app
        .get(
            "/api/v1/companies?limit=1&page=3&sort=symbol&order=asc",
            &user.token,
        )
        .await;
    assert_eq!(symbols(&page), vec!["XOM"]);
    assert_eq!(page.body["pages"], 3);
    let bad_sort = app.get("/api/v1/companies?sort=price", &user.token).await;
    assert_eq!(bad_sort.status, 422);
    assert_eq!(bad_sort.fields(), vec!["query.sort"]);
    let zero_page = app.get("/api/v1/companies?page=0", &user.token).await;
    assert_eq!(zero_page.fields(), vec!["query.page"]);

    let id = by_cap.body["items"][2]["id"].as_str().unwrap();
    let path = format!("/api/v1/companies/{id}");
    let updated = app
        .put(
            &path,
            &user.token,
            json!({"name": "ExxonMobil", "market_cap": 5.0e11}),
        )
        .await;
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert_eq!(updated.body["name"], "ExxonMobil");
    assert_eq!(updated.body["sector"], "Energy");
    let bad_update = app.put(&path, &user.token, json!({"market_cap": -1})).await;
    assert_eq!(bad_update.fields(), vec!["body.market_cap"]);
    assert_eq!(app.delete(&path, &user.token).await.status, 204);
    assert_eq!(app.get(&path, &user.token).await.status, 404);
}

#[tokio::test]
async fn a_ratio_outside_the_fitted_range_is_scored_with_a_warning_stored_and_read_back() {
    let app = TestApp::start().await;
    let user = app.signed_up("dora@example.com").await;
    // Negative equity: long-term debt above total capital.
    let mut request = annual("NEGEQ", "2024");
    request["long_term_debt_to_total_capital"] = json!(113.5);
    let created = app
        .post("/api/v1/predictions/annual", Some(&user.token), request)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let warnings =
        json!(["outside_fitted_range: long_term_debt_to_total_capital=113.5 (fitted 0–100)"]);
    assert_eq!(created.body["warnings"], warnings);
    let expected = bundle("accunode-v1-annual")
        .score(&[113.5, 2.5, 8.0, 6.0, 5.0])
        .unwrap();
    assert_eq!(
        created.body["probability"].as_f64().unwrap(),
        expected.score.probability
    );
    assert_eq!(
        created.body["risk_level"],
        expected.score.risk_level.as_str()
    );
    assert_eq!(
        created.body["ratios"]["long_term_debt_to_total_capital"],
        113.5
    );

    // Stored: read back from the database, then from the cache, and listed.
    let id = created.body["id"].as_str().unwrap();
    let path = format!("/api/v1/predictions/annual/{id}");
    for _ in 0..2 {
        let read = app.get(&path, &user.token).await;
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.body["warnings"], warnings);
        assert_eq!(read.body, created.body);
    }
    let stored: Vec<String> =
        sqlx::query_scalar("SELECT warnings FROM annual_predictions WHERE id = $1::uuid")
            .bind(id)
            .fetch_one(&app.pool)
            .await
            .unwrap();
    assert_eq!(stored, [warnings[0].as_str().unwrap()]);
    let listed = app.get("/api/v1/predictions/annual", &user.token).await;
    assert_eq!(listed.body["items"][0]["warnings"], warnings);

    // Negative EBITDA and coverage, a loss beyond -100 %: one warning each,
    // in the order of the ratios.
    let mut request = annual("LOSS", "2024");
    request["total_debt_to_ebitda"] = json!(-3.2);
    request["net_income_margin"] = json!(-150);
    request["ebit_to_interest_expense"] = json!(-5);
    let created = app
        .post("/api/v1/predictions/annual", Some(&user.token), request)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body["warnings"],
        json!([
            "outside_fitted_range: total_debt_to_ebitda=-3.2 (fitted at least 0)",
            "outside_fitted_range: net_income_margin=-150 (fitted -100–100)",
            "outside_fitted_range: ebit_to_interest_expense=-5 (fitted at least 0)"
        ])
    );
    let expected = bundle("accunode-v1-annual")
        .score(&[35.0, -3.2, -150.0, -5.0, 5.0])
        .unwrap();
    assert_eq!(
        created.body["probability"].as_f64().unwrap(),
        expected.score.probability
    );

    // Quarterly: only long-term debt / total capital has a fitted range.
    let mut request = quarterly("QNEG", "2024", "Q3");
    request["long_term_debt_to_total_capital"] = json!(-4);
    request["total_debt_to_ebitda"] = json!(-7.5);
    let created = app
        .post("/api/v1/predictions/quarterly", Some(&user.token), request)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        created.body["warnings"],
        json!(["outside_fitted_range: long_term_debt_to_total_capital=-4 (fitted 0–100)"])
    );
}

#[tokio::test]
async fn the_prediction_quota_is_enforced_and_bulk_rows_do_not_count() {
    let mut rig = crate::support::BulkRig::start(&[("MAX_PREDICTIONS_PER_USER", "2")]).await;
    rig.start_worker().await;
    let app = &rig.app;
    let user = app.signed_up("hal@example.com").await;
    // Three rows of a bulk job: jobs are bounded by BULK_MAX_ROWS instead.
    let file = "company_symbol,company_name,reporting_year,long_term_debt_to_total_capital,\
                total_debt_to_ebitda,net_income_margin,ebit_to_interest_expense,return_on_assets\n\
                B1,B,2020,1,2,3,4,5\nB2,B,2020,1,2,3,4,5\nB3,B,2020,1,2,3,4,5\n";
    let (status, accepted) = rig
        .upload(&user, "q.csv", file.as_bytes().to_vec(), "annual", &[])
        .await;
    assert_eq!(status, 202, "{accepted}");
    let finished = rig
        .wait_finished(&user, accepted["job_id"].as_str().unwrap())
        .await;
    assert_eq!(finished["succeeded_rows"], 3, "{finished}");
    // A create that fails (here a duplicate) gives its place back.
    let first = app
        .post(
            "/api/v1/predictions/annual",
            Some(&user.token),
            annual("Q", "2021"),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let duplicate = app
        .post(
            "/api/v1/predictions/annual",
            Some(&user.token),
            annual("Q", "2021"),
        )
        .await;
    assert_eq!(duplicate.status, 409, "{}", duplicate.body);
    let second = app
        .post(
            "/api/v1/predictions/annual",
            Some(&user.token),
            annual("Q", "2022"),
        )
        .await;
    assert_eq!(second.status, 201, "{}", second.body);
    let third = app
        .post(
            "/api/v1/predictions/quarterly",
            Some(&user.token),
            quarterly("Q", "2023", "Q1"),
        )
        .await;
    assert_eq!(third.status, 403, "{}", third.body);
    assert_eq!(third.body["error"], "prediction_quota_exceeded");
    // Deleting a prediction gives its place back.
    let deleted = app
        .delete(
            &format!(
                "/api/v1/predictions/annual/{}",
                first.body["id"].as_str().unwrap()
            ),
            &user.token,
        )
        .await;
    assert_eq!(deleted.status, 204, "{}", deleted.body);
    let again = app
        .post(
            "/api/v1/predictions/quarterly",
            Some(&user.token),
            quarterly("Q", "2023", "Q1"),
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.body);
}

#[tokio::test]
async fn fifty_concurrent_creates_at_the_quota_edge_never_pass_it() {
    let app = TestApp::start_with(&[
        ("MAX_PREDICTIONS_PER_USER", "10"),
        ("DATABASE_POOL_SIZE", "50"),
    ])
    .await;
    let user = app.signed_up("edge@example.com").await;
    let answers = futures::future::join_all((0..50).map(|n| {
        app.post(
            "/api/v1/predictions/annual",
            Some(&user.token),
            annual(&format!("E{n}"), "2024"),
        )
    }))
    .await;
    let created = answers.iter().filter(|a| a.status == 201).count();
    let refused = answers
        .iter()
        .filter(|a| a.status == 403 && a.body["error"] == "prediction_quota_exceeded")
        .count();
    assert_eq!(
        (created, refused),
        (10, 40),
        "every answer is 201 or the quota's 403"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM annual_predictions")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(stored, 10);
    let companies: i64 = sqlx::query_scalar("SELECT count(*) FROM companies")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(companies, 10, "a refused create leaves no company behind");
}

#[tokio::test]
async fn quarterly_routes_answer_503_when_switched_off() {
    let app = TestApp::start_with(&[("ENABLE_QUARTERLY_PREDICTIONS", "false")]).await;
    let user = app.signed_up("ida@example.com").await;
    let created = app
        .post(
            "/api/v1/predictions/quarterly",
            Some(&user.token),
            quarterly("OFF", "2024", "Q1"),
        )
        .await;
    assert_eq!(created.status, 503);
    assert_eq!(created.body["error"], "feature_disabled");
    assert_eq!(
        app.get("/api/v1/predictions/quarterly", &user.token)
            .await
            .status,
        503
    );
    let annual_still = app
        .post(
            "/api/v1/predictions/annual",
            Some(&user.token),
            annual("ON", "2024"),
        )
        .await;
    assert_eq!(annual_still.status, 201);
}

#[tokio::test]
async fn security_headers_and_cors_preflight() {
    let app = TestApp::start_with(&[("CORS_ALLOWED_ORIGINS", "https://app.example.com")]).await;
    let health = app
        .client
        .get(format!("{}/health", app.base))
        .send()
        .await
        .unwrap();
    let headers = health.headers();
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        headers["strict-transport-security"]
            .to_str()
            .unwrap()
            .starts_with("max-age=")
    );
    let preflight = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/companies", app.base),
        )
        .header("origin", "https://app.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let foreign = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/api/v1/companies", app.base),
        )
        .header("origin", "https://evil.example.net")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn custom_metrics_reach_cloudwatch() {
    let endpoint = accunode_testkit::aws_endpoint_url();
    let app = TestApp::start_with(&[
        ("CLOUDWATCH_METRICS_SECS", "1"),
        ("AWS_ENDPOINT_URL", &endpoint),
    ])
    .await;
    for _ in 0..5 {
        let health = app.client.get(format!("{}/health", app.base)).send().await;
        assert_eq!(health.unwrap().status().as_u16(), 200);
    }
    let config = accunode_core::aws::sdk_config(Some(&endpoint), Some("us-east-1")).await;
    let cloudwatch = aws_sdk_cloudwatch::Client::new(&config);
    let requests_counted = || async {
        let now = std::time::SystemTime::now();
        let statistics = cloudwatch
            .get_metric_statistics()
            .namespace("AccuNode/API")
            .metric_name("RequestCount")
            .start_time((now - std::time::Duration::from_secs(600)).into())
            .end_time((now + std::time::Duration::from_secs(60)).into())
            .period(60)
            .statistics(aws_sdk_cloudwatch::types::Statistic::Sum)
            .send()
            .await
            .expect("moto answers GetMetricStatistics");
        let total: f64 = statistics.datapoints().iter().filter_map(|p| p.sum()).sum();
        total >= 5.0
    };
    accunode_testkit::wait_until(
        std::time::Duration::from_secs(20),
        "the API's request count in CloudWatch",
        requests_counted,
    )
    .await;
    let listed = cloudwatch
        .list_metrics()
        .namespace("AccuNode/API")
        .send()
        .await
        .unwrap();
    let mut names: Vec<&str> = listed
        .metrics()
        .iter()
        .filter_map(|m| m.metric_name())
        .collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(
        names,
        vec!["ActiveConnections", "RequestCount", "ResponseTime"]
    );
}
