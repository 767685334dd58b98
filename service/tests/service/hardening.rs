//! What an attacker tries first: another spelling of `Bearer` to escape the
//! per-user limit, control characters and case-expanding text to provoke 500s,
//! and `/health` as a free way to load the database.

use accunode_testkit::{RedisServer, TestDatabase};
use serde_json::{Value, json};

use crate::rate_limits::start_of_a_window;
use crate::support::{TestApp, annual};

#[tokio::test]
async fn every_spelling_of_bearer_counts_against_the_user_not_the_address() {
    let app = TestApp::start_with(&[
        ("ENABLE_RATE_LIMITING", "true"),
        ("RATE_LIMIT_PER_MINUTE", "5"),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "100"),
        ("TRUST_FORWARDED_FOR", "true"),
    ])
    .await;
    let user = app.signed_up("spelling@example.com").await;
    start_of_a_window(20).await;
    // Each from an address of its own: only the user ties them together.
    for (n, scheme) in ["Bearer", "bearer", "BEARER", "bEaReR", "Bearer  "]
        .into_iter()
        .enumerate()
    {
        let answer = app
            .client
            .get(format!("{}/api/v1/companies", app.base))
            .header("authorization", format!("{scheme} {}", user.token))
            .header("x-forwarded-for", format!("203.0.113.{n}"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status().as_u16(), 200, "{scheme:?}");
        assert_eq!(
            answer.headers()["x-ratelimit-remaining"],
            (4 - n).to_string().as_str(),
            "{scheme:?} counted against the user"
        );
    }
    let limited = app
        .client
        .get(format!("{}/api/v1/companies", app.base))
        .header("authorization", format!("bearer {}", user.token))
        .header("x-forwarded-for", "198.51.100.77")
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status().as_u16(), 429);
}

#[tokio::test]
async fn control_characters_and_expanding_case_are_refused_naming_the_field() {
    let app = TestApp::start().await;
    let user = app.signed_up("hostile@example.com").await;
    let mut nul_symbol = annual("ABC", "2024");
    nul_symbol["company_symbol"] = json!("AB\u{0}C");
    let mut escape_sector = annual("ABC", "2024");
    escape_sector["sector"] = json!("Ener\u{1b}[31mgy");
    let bodies: Vec<(&str, Option<&str>, Value, &str)> = vec![
        (
            "/api/v1/auth/login",
            None,
            json!({"email": "a\u{0}@example.com", "password": "whatever-1"}),
            "body.email",
        ),
        (
            "/api/v1/auth/login",
            None,
            json!({"email": "a@example.com", "password": "pass\u{0}word"}),
            "body.password",
        ),
        (
            "/api/v1/auth/register",
            None,
            json!({"email": "new@example.com", "password": "long-enough-1", "first_name": "N\u{7f}"}),
            "body.first_name",
        ),
        (
            "/api/v1/companies",
            Some(&user.token),
            json!({"symbol": "OK", "name": "Acme\u{0}"}),
            "body.name",
        ),
        (
            "/api/v1/companies",
            Some(&user.token),
            json!({"symbol": "ß".repeat(20), "name": "Sharp"}),
            "body.symbol",
        ),
        (
            "/api/v1/predictions/annual",
            Some(&user.token),
            nul_symbol,
            "body.company_symbol",
        ),
        (
            "/api/v1/predictions/annual",
            Some(&user.token),
            escape_sector,
            "body.sector",
        ),
        (
            "/api/v1/predictions/annual",
            Some(&user.token),
            annual(&"ß".repeat(11), "2024"),
            "body.company_symbol",
        ),
        (
            "/api/v1/organizations/join",
            Some(&user.token),
            json!({"join_token": "tok\u{0}en"}),
            "body.join_token",
        ),
    ];
    for (path, token, body, field) in bodies {
        let answer = app.post(path, token, body.clone()).await;
        assert_eq!(answer.status, 422, "{path} {body}: {}", answer.body);
        assert_eq!(
            answer.fields(),
            vec![field],
            "{path} {body}: {}",
            answer.body
        );
    }
    for (query, field) in [
        ("search=a%00b", "query.search"),
        ("sector=%0A", "query.sector"),
        ("sort=name&search=%C2%85", "query.search"),
    ] {
        let answer = app
            .get(&format!("/api/v1/companies?{query}"), &user.token)
            .await;
        assert_eq!(answer.status, 422, "{query}: {}", answer.body);
        assert_eq!(answer.fields(), vec![field], "{query}");
    }
    let answer = app
        .get("/api/v1/predictions/annual?company_symbol=%00", &user.token)
        .await;
    assert_eq!(
        answer.fields(),
        vec!["query.company_symbol"],
        "{}",
        answer.body
    );

    // Odd but printable text is stored as it is; a ticker is printable ASCII.
    let created = app
        .post(
            "/api/v1/companies",
            Some(&user.token),
            json!({"symbol": "brk.b", "name": "\u{202e}Ünïcödé 😀", "sector": "Énergie"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["symbol"], "BRK.B");
    let unicode_symbol = app
        .post(
            "/api/v1/companies",
            Some(&user.token),
            json!({"symbol": "ẞ1", "name": "Sharp"}),
        )
        .await;
    assert_eq!(
        unicode_symbol.fields(),
        vec!["body.symbol"],
        "{}",
        unicode_symbol.body
    );
}

#[tokio::test]
async fn health_probes_the_dependencies_once_a_second_however_many_ask() {
    let database = TestDatabase::create().await;
    let redis = RedisServer::start().await;
    let app = TestApp::start_on(database, &redis.url(), &[]).await;
    let pings = || async {
        let client = redis::Client::open(redis.url()).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let info: String = redis::cmd("INFO")
            .arg("commandstats")
            .query_async(&mut connection)
            .await
            .unwrap();
        info.lines()
            .find_map(|line| line.strip_prefix("cmdstat_ping:calls="))
            .and_then(|rest| rest.split(',').next())
            .map_or(0, |calls| calls.parse::<u64>().unwrap())
    };
    let before = pings().await;
    let answers = futures::future::join_all((0..100).map(|n| {
        let path = if n % 2 == 0 {
            "/health"
        } else {
            "/api/v1/health"
        };
        app.client.get(format!("{}{path}", app.base)).send()
    }))
    .await;
    for answer in answers {
        assert_eq!(answer.unwrap().status().as_u16(), 200);
    }
    let probes = pings().await - before;
    assert!(
        probes <= 2,
        "100 health requests probed Redis {probes} times"
    );
}
