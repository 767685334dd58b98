//! Who sees and changes what: the access matrix (every role against own,
//! same-organisation, other-organisation and system objects) and the
//! organisation routes (create, join with whitelist, join token, global data,
//! member roles).

use serde_json::json;
use uuid::Uuid;

use crate::support::{TestApp, TestUser, annual, quarterly};

/// (read, change) statuses of one caller on each object of the matrix.
type Expected = [(u16, u16); 4];

/// One object of the matrix: a company with an annual and a quarterly prediction.
struct Object {
    name: &'static str,
    company: String,
    annual: String,
    quarterly: String,
}

impl Object {
    /// The predictions' and the company's paths, in the order they can be deleted.
    fn paths(&self) -> [String; 3] {
        [
            format!("/api/v1/predictions/annual/{}", self.annual),
            format!("/api/v1/predictions/quarterly/{}", self.quarterly),
            format!("/api/v1/companies/{}", self.company),
        ]
    }
}

/// Creates the object as `owner`, checking the scope it lands in.
async fn create_object(
    app: &TestApp,
    owner: &TestUser,
    name: &'static str,
    symbol: &str,
    access_level: &str,
) -> Object {
    let annual = app
        .post(
            "/api/v1/predictions/annual",
            Some(&owner.token),
            annual(symbol, "2024"),
        )
        .await;
    assert_eq!(annual.status, 201, "{name}: {}", annual.body);
    assert_eq!(annual.body["access_level"], access_level, "{name}");
    let quarterly = app
        .post(
            "/api/v1/predictions/quarterly",
            Some(&owner.token),
            quarterly(symbol, "2024", "Q1"),
        )
        .await;
    assert_eq!(quarterly.status, 201, "{name}: {}", quarterly.body);
    assert_eq!(
        quarterly.body["company"]["id"],
        annual.body["company"]["id"]
    );
    Object {
        name,
        company: annual.body["company"]["id"].as_str().unwrap().to_owned(),
        annual: annual.body["id"].as_str().unwrap().to_owned(),
        quarterly: quarterly.body["id"].as_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn the_access_matrix_holds_for_every_role_and_scope() {
    let app = TestApp::start().await;
    let org_a = app.organization("Org A", true).await;
    let org_b = app.organization("Org B", false).await;
    let solo = app.user_with_role("solo@example.com", "user", None).await;
    let a_member = app
        .user_with_role("a1@example.com", "org_member", Some(org_a))
        .await;
    let a_creator = app
        .user_with_role("a2@example.com", "org_member", Some(org_a))
        .await;
    let a_admin = app
        .user_with_role("a3@example.com", "org_admin", Some(org_a))
        .await;
    let tenant = app
        .user_with_role("t@example.com", "tenant_admin", Some(org_a))
        .await;
    let b_member = app
        .user_with_role("b1@example.com", "org_member", Some(org_b))
        .await;
    let root = app
        .user_with_role("root@example.com", "super_admin", None)
        .await;

    let personal = create_object(&app, &solo, "personal", "OWN", "personal").await;
    let org_object = create_object(&app, &a_creator, "org A", "ORGA", "organization").await;
    let other_org = create_object(&app, &b_member, "org B", "ORGB", "organization").await;
    let system = create_object(&app, &root, "system", "SYS", "system").await;
    let objects = [&personal, &org_object, &other_org, &system];

    // Expected (read, change) status per caller, in the order of `objects`.
    // 404: not visible (another tenant's object never admits it exists);
    // 403: visible, but not theirs to change.
    let users: [(&str, &TestUser, Expected); 7] = [
        (
            "user",
            &solo,
            [(200, 200), (404, 404), (404, 404), (404, 404)],
        ),
        (
            "org_member",
            &a_member,
            [(404, 404), (200, 403), (404, 404), (200, 403)],
        ),
        (
            "org_member (creator)",
            &a_creator,
            [(404, 404), (200, 200), (404, 404), (200, 403)],
        ),
        (
            "org_admin",
            &a_admin,
            [(404, 404), (200, 200), (404, 404), (200, 403)],
        ),
        (
            "tenant_admin",
            &tenant,
            [(404, 404), (200, 200), (404, 404), (200, 403)],
        ),
        (
            "org_member of B",
            &b_member,
            [(404, 404), (404, 404), (200, 200), (404, 404)],
        ),
        (
            "super_admin",
            &root,
            [(404, 404), (404, 404), (404, 404), (200, 200)],
        ),
    ];
    for (role, user, expectations) in &users {
        for (object, (read, change)) in objects.iter().zip(expectations) {
            let context = format!("{role} on the {} object", object.name);
            let paths = object.paths();
            for path in &paths {
                let answer = app.get(path, &user.token).await;
                assert_eq!(answer.status, *read, "GET {path}: {context}");
            }
            let company = &paths[2];
            let put = app
                .put(company, &user.token, json!({"sector": "Changed"}))
                .await;
            assert_eq!(put.status, *change, "PUT company: {context}: {}", put.body);
            // Deletes that must fail are tried now; allowed ones last, below.
            if *change != 200 {
                for path in &paths {
                    let answer = app.delete(path, &user.token).await;
                    assert_eq!(answer.status, *change, "DELETE {path}: {context}");
                }
            }
        }
        // Lists show exactly the visible objects.
        let listed = app.get("/api/v1/companies?limit=100", &user.token).await;
        let mut seen: Vec<String> = listed.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        let mut expected: Vec<String> = objects
            .iter()
            .zip(expectations)
            .filter(|(_, (read, _))| *read == 200)
            .map(|(object, _)| object.company.clone())
            .collect();
        seen.sort();
        expected.sort();
        assert_eq!(seen, expected, "company list of {role}");
        for kind in ["annual", "quarterly"] {
            let predictions = app
                .get(&format!("/api/v1/predictions/{kind}"), &user.token)
                .await;
            assert_eq!(
                predictions.body["total"].as_u64().unwrap() as usize,
                expected.len(),
                "{kind} prediction list of {role}"
            );
        }
    }

    // Every object still exists; now those allowed delete.
    for (user, object) in [
        (&solo, &personal),
        (&a_admin, &org_object),
        (&b_member, &other_org),
        (&root, &system),
    ] {
        for path in object.paths() {
            assert_eq!(app.delete(&path, &user.token).await.status, 204, "{path}");
        }
    }
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM companies")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn the_same_symbol_lives_once_per_scope() {
    let app = TestApp::start().await;
    let org = app.organization("Org", false).await;
    let solo = app.signed_up("s@example.com").await;
    let member = app
        .user_with_role("m@example.com", "org_member", Some(org))
        .await;
    let colleague = app
        .user_with_role("c@example.com", "org_member", Some(org))
        .await;
    for user in [&solo, &member] {
        let created = app
            .post(
                "/api/v1/predictions/annual",
                Some(&user.token),
                annual("DUP", "2024"),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.body);
    }
    // The organisation's prediction exists already, whoever of it asks again.
    let again = app
        .post(
            "/api/v1/predictions/annual",
            Some(&colleague.token),
            annual("DUP", "2024"),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
}

#[tokio::test]
async fn organizations_join_by_whitelist_token_and_manage_global_access() {
    let app = TestApp::start().await;
    let tenant = app
        .user_with_role("tenant@example.com", "tenant_admin", None)
        .await;
    let joiner = app.signed_up("joiner@example.com").await;
    let outsider = app.signed_up("outsider@example.com").await;
    let root = app
        .user_with_role("root@example.com", "super_admin", None)
        .await;

    let refused = app
        .post(
            "/api/v1/organizations",
            Some(&joiner.token),
            json!({"name": "Mine"}),
        )
        .await;
    assert_eq!(refused.status, 403);
    assert_eq!(refused.body["error"], "insufficient_role");
    let invalid = app
        .post(
            "/api/v1/organizations",
            Some(&tenant.token),
            json!({"name": " "}),
        )
        .await;
    assert_eq!(invalid.fields(), vec!["body.name"]);
    let created = app
        .post(
            "/api/v1/organizations",
            Some(&tenant.token),
            json!({"name": "Acme Risk", "description": "Credit team"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let org: Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
    let join_token = created.body["join_token"].as_str().unwrap().to_owned();
    let mine = app.get("/api/v1/users/organizations", &tenant.token).await;
    assert_eq!(mine.body[0]["id"], created.body["id"]);

    let join = |token: String| json!({ "join_token": token });
    let not_listed = app
        .post(
            "/api/v1/organizations/join",
            Some(&joiner.token),
            join(join_token.clone()),
        )
        .await;
    assert_eq!(not_listed.status, 403);
    assert_eq!(not_listed.body["error"], "not_whitelisted");
    let wrong = app
        .post(
            "/api/v1/organizations/join",
            Some(&joiner.token),
            join("nope".into()),
        )
        .await;
    assert_eq!(wrong.status, 422);
    assert_eq!(wrong.fields(), vec!["body.join_token"]);

    let whitelist = format!("/api/v1/organizations/{org}/whitelist");
    let by_joiner = app
        .post(
            &whitelist,
            Some(&joiner.token),
            json!({"email": "joiner@example.com"}),
        )
        .await;
    assert_eq!(by_joiner.status, 404, "not visible to a non-member");
    let listed = app
        .post(
            &whitelist,
            Some(&tenant.token),
            json!({"email": "Joiner@Example.com"}),
        )
        .await;
    assert_eq!(listed.status, 201, "{}", listed.body);
    assert_eq!(listed.body["email"], "joiner@example.com");
    let bad_email = app
        .post(&whitelist, Some(&tenant.token), json!({"email": "nope"}))
        .await;
    assert_eq!(bad_email.fields(), vec!["body.email"]);

    let joined = app
        .post(
            "/api/v1/organizations/join",
            Some(&joiner.token),
            join(join_token.clone()),
        )
        .await;
    assert_eq!(joined.status, 200, "{}", joined.body);
    assert_eq!(joined.body["join_token"], serde_json::Value::Null);
    // The same access token now carries the membership.
    let profile = app.get("/api/v1/users/profile", &joiner.token).await;
    assert_eq!(profile.body["role"], "org_member");
    assert_eq!(profile.body["organization_id"], created.body["id"]);
    let twice = app
        .post(
            "/api/v1/organizations/join",
            Some(&joiner.token),
            join(join_token.clone()),
        )
        .await;
    assert_eq!(twice.status, 409);
    let company = app
        .post(
            "/api/v1/companies",
            Some(&joiner.token),
            json!({"symbol": "TEAM", "name": "Team Co"}),
        )
        .await;
    assert_eq!(company.body["access_level"], "organization");
    let seen_by_tenant = app
        .get(
            &format!("/api/v1/companies/{}", company.body["id"].as_str().unwrap()),
            &tenant.token,
        )
        .await;
    assert_eq!(seen_by_tenant.status, 200);

    // Members see the organisation without its token; outsiders not at all.
    let org_path = format!("/api/v1/organizations/{org}");
    assert_eq!(
        app.get(&org_path, &joiner.token).await.body["join_token"],
        serde_json::Value::Null
    );
    assert_eq!(app.get(&org_path, &outsider.token).await.status, 404);
    assert_eq!(app.get(&whitelist, &joiner.token).await.status, 403);

    // A new join token retires the old one.
    let regenerated = app
        .post(
            &format!("{org_path}/join-token"),
            Some(&tenant.token),
            json!({}),
        )
        .await;
    assert_eq!(regenerated.status, 200, "{}", regenerated.body);
    let new_token = regenerated.body["join_token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, join_token);
    app.post(
        &whitelist,
        Some(&tenant.token),
        json!({"email": "outsider@example.com"}),
    )
    .await;
    let old = app
        .post(
            "/api/v1/organizations/join",
            Some(&outsider.token),
            join(join_token),
        )
        .await;
    assert_eq!(old.status, 422);

    // Global data: invisible until the organisation turns it on.
    let system_company = app
        .post(
            "/api/v1/companies",
            Some(&root.token),
            json!({"symbol": "GLOBAL", "name": "Global Co"}),
        )
        .await;
    assert_eq!(system_company.body["access_level"], "system");
    let system_path = format!(
        "/api/v1/companies/{}",
        system_company.body["id"].as_str().unwrap()
    );
    assert_eq!(app.get(&system_path, &joiner.token).await.status, 404);
    let by_member = app
        .put(
            &format!("{org_path}/global-access"),
            &joiner.token,
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(by_member.status, 403);
    let enabled = app
        .put(
            &format!("{org_path}/global-access"),
            &tenant.token,
            json!({"enabled": true}),
        )
        .await;
    assert_eq!(enabled.status, 200, "{}", enabled.body);
    assert_eq!(enabled.body["allow_global_data_access"], true);
    assert_eq!(app.get(&system_path, &joiner.token).await.status, 200);

    // Member roles: the joiner becomes an org admin and may manage.
    let members = app.get(&format!("{org_path}/members"), &tenant.token).await;
    assert_eq!(
        members.body.as_array().unwrap().len(),
        2,
        "{}",
        members.body
    );
    let promote = format!("{org_path}/members/{}/role", joiner.id);
    let bad_role = app
        .put(&promote, &tenant.token, json!({"role": "super_admin"}))
        .await;
    assert_eq!(bad_role.fields(), vec!["body.role"]);
    let promoted = app
        .put(&promote, &tenant.token, json!({"role": "org_admin"}))
        .await;
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    assert_eq!(app.get(&whitelist, &joiner.token).await.status, 200);
    let removed = app
        .delete(&format!("{whitelist}/outsider@example.com"), &joiner.token)
        .await;
    assert_eq!(removed.status, 204);
    let gone = app
        .delete(&format!("{whitelist}/outsider@example.com"), &joiner.token)
        .await;
    assert_eq!(gone.status, 404);
}
