//! The lists of a tenant with many rows: cursor pages that neither repeat nor
//! skip a row while rows are inserted between them, plans that never scan a
//! large table and read about a page's worth of rows, capped totals, and the
//! paging parameters' mistakes.

use std::collections::HashSet;

use accunode_core::domain::companies::{self, CompanyQuery, CompanySort};
use accunode_core::domain::listing::ListStatements;
use accunode_core::domain::predictions::{self, PredictionQuery, Quarter};
use accunode_core::domain::{Caller, PageStart, Role, SessionId, UserId};
use accunode_core::scoring::{ModelKind, RiskLevel};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{TestApp, TestUser, annual};

/// Reads every page of `path` (which has its query's `?`) by cursor, calling
/// `between` after each page; returns the ids in the order read.
async fn every_page<F, Fut>(
    app: &TestApp,
    user: &TestUser,
    path: &str,
    mut between: F,
) -> Vec<String>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    for page in 0.. {
        assert!(page < 1_000, "{path}: paging does not end");
        let url = match &cursor {
            Some(cursor) => format!("{path}&cursor={cursor}"),
            None => path.to_owned(),
        };
        let answer = app.get(&url, &user.token).await;
        assert_eq!(answer.status, 200, "{url}: {}", answer.body);
        ids.extend(
            answer.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| item["id"].as_str().unwrap().to_owned()),
        );
        match answer.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
        between(page).await;
    }
    ids
}

/// Predictions of three scopes (the member's own, the organisation's, the
/// system's), many sharing one `created_at` as a bulk chunk's rows do.
async fn three_scopes_of_predictions(app: &TestApp) -> (TestUser, TestUser) {
    let organization = app.organization("Lists", true).await;
    let member = app
        .user_with_role("member@example.com", "org_member", Some(organization))
        .await;
    let admin = app
        .user_with_role("root@example.com", "super_admin", None)
        .await;
    let other = app.signed_up("own@example.com").await;
    sqlx::query("UPDATE users SET organization_id = $2, role = 'org_member' WHERE id = $1")
        .bind(other.id)
        .bind(organization)
        .execute(&app.pool)
        .await
        .unwrap();
    for (user, level, organization) in [
        (member.id, "personal", None),
        (other.id, "organization", Some(organization)),
        (admin.id, "system", None),
    ] {
        sqlx::query(
            "WITH made AS ( \
               INSERT INTO companies (symbol, name, market_cap, sector, access_level, organization_id, created_by, created_at) \
               SELECT 'S' || i, 'Name ' || (i % 7), CASE WHEN i % 5 = 0 THEN NULL ELSE i * 1000 END, \
                      'Energy', $2, $3, $1, now() - interval '1 hour' * (i / 10) \
               FROM generate_series(1, 60) i RETURNING id, created_at) \
             INSERT INTO annual_predictions (company_id, reporting_year, probability, risk_level, confidence, \
                 model_id, model_version, access_level, organization_id, created_by, created_at, company_sector) \
             SELECT id, 2024, 0.1, 'LOW', 0.9, 'm', '1', $2, $3, $1, created_at, 'energy' FROM made",
        )
        .bind(user)
        .bind(level)
        .bind(organization)
        .execute(&app.pool)
        .await
        .expect("seed a scope");
    }
    (member, admin)
}

#[tokio::test]
async fn cursor_pages_return_every_row_once_while_rows_are_inserted_between_them() {
    let app = TestApp::start().await;
    let (member, _) = three_scopes_of_predictions(&app).await;
    let existing: Vec<String> = sqlx::query_scalar(
        "SELECT id::text FROM annual_predictions ORDER BY created_at DESC, id DESC",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    assert_eq!(existing.len(), 180);

    // Newer rows between pages: page numbers would shift and repeat rows.
    let mut inserted = 0;
    let read = every_page(
        &app,
        &member,
        "/api/v1/predictions/annual?limit=7",
        |page| {
            inserted += 1;
            let app = &app;
            let member = &member;
            async move {
                let created = app
                    .post(
                        "/api/v1/predictions/annual",
                        Some(&member.token),
                        annual(&format!("NEW{page}"), "2024"),
                    )
                    .await;
                assert_eq!(created.status, 201, "{}", created.body);
            }
        },
    )
    .await;
    assert!(inserted >= 25, "{inserted} pages");
    let unique: HashSet<&String> = read.iter().collect();
    assert_eq!(unique.len(), read.len(), "a row came twice");
    assert_eq!(read, existing, "every row of the start, once, newest first");

    // Companies by name ascending, with names inserted before and after the
    // cursor between pages; and by market cap with missing caps last.
    for (sort, insert_name) in [("name", "Aaa"), ("market_cap", "Zzz")] {
        let before: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT id::text FROM companies ORDER BY {} , id",
            if sort == "name" {
                "name"
            } else {
                "coalesce(market_cap, 'Infinity')"
            }
        ))
        .fetch_all(&app.pool)
        .await
        .unwrap();
        let read = every_page(
            &app,
            &member,
            &format!("/api/v1/companies?limit=9&sort={sort}&order=asc"),
            |page| {
                let app = &app;
                let member = &member;
                async move {
                    let created = app
                        .post(
                            "/api/v1/companies",
                            Some(&member.token),
                            json!({"symbol": format!("{sort:.3}{page}"), "name": insert_name, "market_cap": 1.0}),
                        )
                        .await;
                    assert_eq!(created.status, 201, "{}", created.body);
                }
            },
        )
        .await;
        let new: HashSet<String> = sqlx::query_scalar(&format!(
            "SELECT id::text FROM companies WHERE name = '{insert_name}'"
        ))
        .fetch_all(&app.pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
        let old: Vec<&String> = read.iter().filter(|id| !new.contains(*id)).collect();
        let unique: HashSet<&String> = read.iter().collect();
        assert_eq!(unique.len(), read.len(), "{sort}: a company came twice");
        assert_eq!(
            old,
            before.iter().collect::<Vec<_>>(),
            "{sort}: every company once, in order"
        );
    }
}

#[tokio::test]
async fn paging_parameters_are_checked() {
    let app = TestApp::start().await;
    let user = app.signed_up("pager@example.com").await;
    for symbol in ["A", "B", "C"] {
        let created = app
            .post(
                "/api/v1/predictions/annual",
                Some(&user.token),
                annual(symbol, "2024"),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
    let first = app
        .get("/api/v1/companies?limit=2&sort=name&order=asc", &user.token)
        .await;
    assert_eq!(first.body["total"], 3);
    assert_eq!(first.body["total_exact"], true);
    assert_eq!(first.body["page"], 1);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_owned();
    let second = app
        .get(
            &format!("/api/v1/companies?limit=2&sort=name&order=asc&cursor={cursor}"),
            &user.token,
        )
        .await;
    assert_eq!(second.status, 200, "{}", second.body);
    assert_eq!(second.body["items"].as_array().unwrap().len(), 1);
    assert!(second.body.get("page").is_none(), "{}", second.body);
    assert!(second.body.get("next_cursor").is_none(), "{}", second.body);

    let garbage = "%00%1F%C3%9F%E2%80%AEnot-a-cursor";
    for (path, field) in [
        (
            format!("/api/v1/companies?cursor={garbage}"),
            "query.cursor",
        ),
        (
            format!("/api/v1/companies?cursor={}", "A".repeat(2049)),
            "query.cursor",
        ),
        // A cursor of another sort, and of another order.
        (
            format!("/api/v1/companies?sort=symbol&order=asc&cursor={cursor}"),
            "query.cursor",
        ),
        (
            format!("/api/v1/companies?sort=name&order=desc&cursor={cursor}"),
            "query.cursor",
        ),
        (
            format!("/api/v1/companies?sort=name&order=asc&page=1&cursor={cursor}"),
            "query.cursor",
        ),
        // A base64 JSON cursor with a key of the wrong type.
        (
            format!(
                "/api/v1/predictions/annual?cursor={}",
                base64_url(
                    &json!({"sort": "created_at", "order": "desc", "key": 5, "id": Uuid::nil()})
                )
            ),
            "query.cursor",
        ),
        (
            "/api/v1/predictions/annual?limit=100&page=101".to_owned(),
            "query.page",
        ),
        (
            "/api/v1/predictions/quarterly?limit=20&page=501".to_owned(),
            "query.page",
        ),
        ("/api/v1/companies?page=0".to_owned(), "query.page"),
        (
            "/api/v1/companies?page=99999999999".to_owned(),
            "query.page",
        ),
    ] {
        let answer = app.get(&path, &user.token).await;
        assert_eq!(answer.status, 422, "{path}: {}", answer.body);
        assert_eq!(answer.fields(), vec![field], "{path}: {}", answer.body);
    }
    // The last numbered page within the first 10,000 rows is served.
    let last = app
        .get("/api/v1/predictions/annual?limit=100&page=100", &user.token)
        .await;
    assert_eq!(last.status, 200, "{}", last.body);
}

fn base64_url(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

/// Rows in one user's scope: `ROWS` companies, annual and quarterly
/// predictions, one in a hundred with each filter's rare value, in groups of
/// 500 sharing one `created_at`.
const ROWS: i64 = 30_000;

async fn seed_large_scope(app: &TestApp, user: Uuid) {
    sqlx::query(
        "INSERT INTO companies (symbol, name, market_cap, sector, access_level, created_by, created_at) \
         SELECT 'C' || i, 'Company ' || md5(i::text), CASE WHEN i % 20 = 0 THEN NULL ELSE i END, \
                CASE WHEN i % 100 = 2 THEN 'Utilities' ELSE 'Energy' END, 'personal', $1, \
                now() - interval '1 second' * (i / 500) \
         FROM generate_series(1, $2) i",
    )
    .bind(user)
    .bind(ROWS)
    .execute(&app.pool)
    .await
    .expect("seed companies");
    for (table, quarter) in [
        ("annual_predictions", "CASE WHEN n % 100 = 3 THEN 'Q2' END"),
        (
            "quarterly_predictions",
            "CASE WHEN n % 100 = 3 THEN 'Q1' ELSE 'Q4' END",
        ),
    ] {
        sqlx::query(&format!(
            "INSERT INTO {table} (company_id, reporting_year, reporting_quarter, probability, risk_level, \
                 confidence, model_id, model_version, access_level, created_by, created_at, company_sector) \
             SELECT c.id, CASE WHEN n % 100 = 0 THEN 2015 ELSE 2024 END, {quarter}, 0.5, \
                    CASE WHEN n % 100 = 1 THEN 'CRITICAL' ELSE 'LOW' END, 0.9, 'm', '1', 'personal', $1, \
                    c.created_at, lower(c.sector) \
             FROM (SELECT c.*, substr(c.symbol, 2)::int AS n FROM companies c WHERE c.created_by = $1) c"
        ))
        .bind(user)
        .execute(&app.pool)
        .await
        .expect("seed predictions");
    }
    sqlx::query("ANALYZE companies, annual_predictions, quarterly_predictions")
        .execute(&app.pool)
        .await
        .unwrap();
}

/// What a plan reads of the large tables: sequential scans of them, and rows
/// their scans returned or removed by a filter, over every loop.
#[derive(Debug, Default)]
struct Reads {
    seq_scans: Vec<String>,
    rows: f64,
}

fn reads(plan: &Value, into: &mut Reads) {
    let relation = plan["Relation Name"].as_str().unwrap_or_default();
    if ["companies", "annual_predictions", "quarterly_predictions"].contains(&relation) {
        let node = plan["Node Type"].as_str().unwrap_or_default();
        if node == "Seq Scan" {
            into.seq_scans.push(relation.to_owned());
        }
        let loops = plan["Actual Loops"].as_f64().unwrap_or(1.0);
        let returned = plan["Actual Rows"].as_f64().unwrap_or(0.0);
        let removed = plan["Rows Removed by Filter"].as_f64().unwrap_or(0.0)
            + plan["Rows Removed by Index Recheck"]
                .as_f64()
                .unwrap_or(0.0);
        into.rows += (returned + removed) * loops;
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        reads(child, into);
    }
}

async fn explain(app: &TestApp, statements: ListStatements) -> (Reads, Reads) {
    let ListStatements {
        mut page,
        mut count,
        ..
    } = statements;
    let mut measured = Vec::new();
    for statement in [&mut page, &mut count] {
        let plan: Value = statement
            .build_query_scalar()
            .fetch_one(&app.pool)
            .await
            .expect("explain");
        let mut into = Reads::default();
        reads(&plan[0]["Plan"], &mut into);
        measured.push(into);
    }
    let count = measured.pop().unwrap();
    (measured.pop().unwrap(), count)
}

#[tokio::test]
async fn every_list_reads_a_page_not_the_tenant_and_never_scans_a_large_table() {
    let app = TestApp::start().await;
    let user = app.signed_up("large@example.com").await;
    seed_large_scope(&app, user.id).await;
    let caller = Caller {
        user_id: UserId(user.id),
        session_id: SessionId(Uuid::nil()),
        email: "large@example.com".into(),
        role: Role::User,
        organization_id: None,
        organization_global_access: false,
    };
    const EXPLAIN: &str = "EXPLAIN (ANALYZE, FORMAT JSON) ";
    // A page of 20 reads 21 rows of each walk, and the companies it joins.
    let page_reads = 200.0;
    let count_reads = 10_001.0 + page_reads;

    // A cursor from the middle of each list, as a client has it.
    let middle = |path: &str| {
        let app = &app;
        let token = user.token.clone();
        let path = path.to_owned();
        async move {
            let mut answer = app.get(&path, &token).await;
            for _ in 0..3 {
                let cursor = answer.body["next_cursor"].as_str().unwrap().to_owned();
                answer = app.get(&format!("{path}&cursor={cursor}"), &token).await;
                assert_eq!(answer.status, 200, "{}", answer.body);
            }
            PageStart::After(answer.body["next_cursor"].as_str().unwrap().to_owned())
        }
    };

    let mut checked = 0;
    for sort in [
        CompanySort::CreatedAt,
        CompanySort::Name,
        CompanySort::Symbol,
        CompanySort::MarketCap,
    ] {
        for descending in [false, true] {
            let name = match sort {
                CompanySort::CreatedAt => "created_at",
                CompanySort::Name => "name",
                CompanySort::Symbol => "symbol",
                CompanySort::MarketCap => "market_cap",
            };
            let order = if descending { "desc" } else { "asc" };
            let after = middle(&format!(
                "/api/v1/companies?limit=20&sort={name}&order={order}"
            ))
            .await;
            for (start, sector) in [
                (PageStart::Number(1), None),
                (after, None),
                (PageStart::Number(1), Some("utilities".to_owned())),
            ] {
                if sector.is_some() && sort != CompanySort::CreatedAt {
                    continue;
                }
                let query = CompanyQuery {
                    start,
                    limit: 20,
                    sector,
                    search: None,
                    sort,
                    descending,
                };
                let (page, count) = explain(
                    &app,
                    companies::list_statements(EXPLAIN, &caller, &query).unwrap(),
                )
                .await;
                assert!(
                    page.seq_scans.is_empty() && count.seq_scans.is_empty(),
                    "{query:?}: {page:?} {count:?}"
                );
                assert!(
                    page.rows <= page_reads,
                    "{query:?} page read {} rows",
                    page.rows
                );
                assert!(
                    count.rows <= count_reads,
                    "{query:?} count read {} rows",
                    count.rows
                );
                checked += 1;
            }
        }
    }

    for kind in [ModelKind::Annual, ModelKind::Quarterly] {
        let path = format!("/api/v1/predictions/{}?limit=20", kind.as_str());
        let after = middle(&path).await;
        let filters = [
            PredictionQuery::default(),
            PredictionQuery {
                reporting_year: Some(2015),
                ..Default::default()
            },
            PredictionQuery {
                reporting_quarter: Some(if kind == ModelKind::Annual {
                    Quarter::Q2
                } else {
                    Quarter::Q1
                }),
                ..Default::default()
            },
            PredictionQuery {
                risk_level: Some(RiskLevel::Critical),
                ..Default::default()
            },
            PredictionQuery {
                sector: Some("UTILITIES".into()),
                ..Default::default()
            },
            PredictionQuery {
                company_symbol: Some("c4242".into()),
                ..Default::default()
            },
            PredictionQuery {
                start: after,
                ..Default::default()
            },
        ];
        for filter in filters {
            let query = PredictionQuery {
                limit: 20,
                ..filter
            };
            let (page, count) = explain(
                &app,
                predictions::list_statements(EXPLAIN, &caller, kind, &query).unwrap(),
            )
            .await;
            assert!(
                page.seq_scans.is_empty() && count.seq_scans.is_empty(),
                "{kind:?} {query:?}: {page:?} {count:?}"
            );
            assert!(
                page.rows <= page_reads,
                "{kind:?} {query:?} page read {} rows",
                page.rows
            );
            assert!(
                count.rows <= count_reads,
                "{kind:?} {query:?} count read {} rows",
                count.rows
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 8 * 2 + 2 + 2 * 7);

    // Through the API: the total stops at 10,000 and says so; filtered ones
    // under it are exact.
    let all = app
        .get("/api/v1/predictions/annual?limit=20", &user.token)
        .await;
    assert_eq!(all.body["total"], 10_000, "{}", all.body);
    assert_eq!(all.body["total_exact"], false);
    let rare = app
        .get(
            "/api/v1/predictions/annual?limit=20&risk_level=CRITICAL",
            &user.token,
        )
        .await;
    assert_eq!(rare.body["total"], ROWS / 100);
    assert_eq!(rare.body["total_exact"], true);
    let sector = app
        .get(
            "/api/v1/predictions/quarterly?limit=20&sector=utilities",
            &user.token,
        )
        .await;
    assert_eq!(sector.body["total"], ROWS / 100, "{}", sector.body);
}

#[tokio::test]
async fn a_change_of_a_company_sector_moves_its_predictions_between_sector_filters() {
    let app = TestApp::start().await;
    let user = app.signed_up("sectors@example.com").await;
    let mut body = annual("MOVE", "2024");
    body["sector"] = json!("Energy");
    let created = app
        .post("/api/v1/predictions/annual", Some(&user.token), body)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let company = created.body["company"]["id"].as_str().unwrap().to_owned();
    let in_sector = |sector: &'static str| {
        let app = &app;
        let token = user.token.clone();
        async move {
            let answer = app
                .get(
                    &format!("/api/v1/predictions/annual?sector={sector}"),
                    &token,
                )
                .await;
            assert_eq!(answer.status, 200, "{}", answer.body);
            answer.body["total"].as_i64().unwrap()
        }
    };
    assert_eq!(
        (in_sector("eNeRgY").await, in_sector("Utilities").await),
        (1, 0)
    );
    let updated_at = || async {
        sqlx::query_scalar::<_, String>("SELECT updated_at::text FROM annual_predictions")
            .fetch_one(&app.pool)
            .await
            .unwrap()
    };
    let before = updated_at().await;

    let changed = app
        .put(
            &format!("/api/v1/companies/{company}"),
            &user.token,
            json!({"sector": "Utilities"}),
        )
        .await;
    assert_eq!(changed.status, 200, "{}", changed.body);
    assert_eq!(
        (in_sector("Energy").await, in_sector("UTILITIES").await),
        (0, 1)
    );
    // The copy is not a change of the prediction.
    assert_eq!(updated_at().await, before);
    // Renaming the company leaves its predictions alone.
    let renamed = app
        .put(
            &format!("/api/v1/companies/{company}"),
            &user.token,
            json!({"name": "Moved Inc"}),
        )
        .await;
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    assert_eq!(in_sector("utilities").await, 1);
}
