//! The end of a membership and of an account, and what a member may do to
//! companies others use: removing a member, leaving, deactivating a user
//! (each effective on the user's very next request), who may do each, the
//! last-admin rule, a lowered role that a racing cache fill cannot bring
//! back, deleting a company that holds others' predictions, and a prediction
//! (single or bulk) that reuses a company it may not change.

use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{BulkRig, PASSWORD, TestApp, TestUser, annual};

/// An organisation with an org admin and two org members, each signed in.
struct Team {
    organization: Uuid,
    admin: TestUser,
    member: TestUser,
    other_member: TestUser,
}

impl Team {
    async fn start(app: &TestApp, prefix: &str) -> Self {
        let organization = app.organization(&format!("{prefix} Org"), false).await;
        let user = |name: &str| format!("{prefix}-{name}@example.com");
        Self {
            organization,
            admin: app
                .user_with_role(&user("admin"), "org_admin", Some(organization))
                .await,
            member: app
                .user_with_role(&user("member"), "org_member", Some(organization))
                .await,
            other_member: app
                .user_with_role(&user("other"), "org_member", Some(organization))
                .await,
        }
    }

    fn path(&self, rest: &str) -> String {
        format!("/api/v1/organizations/{}{rest}", self.organization)
    }

    fn member_path(&self, user: &TestUser) -> String {
        self.path(&format!("/members/{}", user.id))
    }
}

/// Creates a company with only symbol and name, as `owner`; its path.
async fn blank_company(app: &TestApp, owner: &TestUser, symbol: &str) -> String {
    let created = app
        .post(
            "/api/v1/companies",
            Some(&owner.token),
            json!({"symbol": symbol, "name": format!("{symbol} Corp")}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    format!("/api/v1/companies/{}", created.body["id"].as_str().unwrap())
}

async fn refresh_status(app: &TestApp, user: &TestUser) -> u16 {
    app.post(
        "/api/v1/auth/refresh-token",
        None,
        json!({"refresh_token": user.refresh_token}),
    )
    .await
    .status
}

#[tokio::test]
async fn a_removed_member_loses_the_organization_on_their_very_next_request() {
    let app = TestApp::start().await;
    let team = Team::start(&app, "removed").await;
    let whitelist = team.path("/whitelist");
    let added = app
        .post(
            &whitelist,
            Some(&team.admin.token),
            json!({"email": "removed-member@example.com"}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.body);
    let theirs = blank_company(&app, &team.member, "THEIRS").await;
    let admins = blank_company(&app, &team.admin, "ADMINS").await;
    // Both reads fill the member's cached caller.
    assert_eq!(app.get(&theirs, &team.member.token).await.status, 200);
    assert_eq!(app.get(&admins, &team.member.token).await.status, 200);

    let removed = app
        .delete(&team.member_path(&team.member), &team.admin.token)
        .await;
    assert_eq!(removed.status, 204, "{}", removed.body);
    // No cached caller outlives the membership: the session is over.
    assert_eq!(app.get(&admins, &team.member.token).await.status, 401);
    assert_eq!(refresh_status(&app, &team.member).await, 401);

    let again = app.login("removed-member@example.com", PASSWORD).await;
    let profile = app.get("/api/v1/users/profile", &again.token).await;
    assert_eq!(profile.body["role"], "user", "{}", profile.body);
    assert!(
        profile
            .body
            .get("organization_id")
            .is_none_or(Value::is_null)
    );
    assert_eq!(app.get(&admins, &again.token).await.status, 404);
    // What they created in the organisation stays the organisation's.
    assert_eq!(app.get(&theirs, &again.token).await.status, 404);
    assert_eq!(app.get(&theirs, &team.admin.token).await.status, 200);
    // Off the whitelist: the join token alone does not bring them back.
    let listed = app.get(&whitelist, &team.admin.token).await;
    assert_eq!(listed.body, json!([]), "{}", listed.body);
    let members = app.get(&team.path("/members"), &team.admin.token).await;
    assert_eq!(
        members.body.as_array().unwrap().len(),
        2,
        "{}",
        members.body
    );
    // Removing them again: no such member.
    let twice = app
        .delete(&team.member_path(&team.member), &team.admin.token)
        .await;
    assert_eq!(twice.status, 404, "{}", twice.body);
}

#[tokio::test]
async fn members_are_removed_only_by_the_organizations_managers_and_never_the_last_admin() {
    let app = TestApp::start().await;
    let team = Team::start(&app, "who").await;
    let elsewhere = Team::start(&app, "elsewhere").await;
    let tenant = app
        .user_with_role("who-tenant@example.com", "tenant_admin", None)
        .await;
    let root = app
        .user_with_role("who-root@example.com", "super_admin", None)
        .await;
    sqlx::query("UPDATE organizations SET created_by = $2 WHERE id = $1")
        .bind(team.organization)
        .bind(tenant.id)
        .execute(&app.pool)
        .await
        .unwrap();

    // A member may not remove another; another organisation's admin does not
    // see this one; a stranger's id is not a member.
    let target = team.member_path(&team.other_member);
    let by_member = app.delete(&target, &team.member.token).await;
    assert_eq!(by_member.status, 403, "{}", by_member.body);
    let by_outsider = app.delete(&target, &elsewhere.admin.token).await;
    assert_eq!(by_outsider.status, 404, "{}", by_outsider.body);
    let stranger = app
        .delete(&team.member_path(&elsewhere.member), &team.admin.token)
        .await;
    assert_eq!(stranger.status, 404, "{}", stranger.body);
    // The creating tenant admin and super admins may.
    assert_eq!(app.delete(&target, &tenant.token).await.status, 204);
    assert_eq!(
        app.delete(&team.member_path(&team.member), &root.token)
            .await
            .status,
        204
    );

    // The last admin of an organisation with members stays until another
    // member is made admin, whoever asks.
    let newcomer = app
        .user_with_role(
            "who-newcomer@example.com",
            "org_member",
            Some(team.organization),
        )
        .await;
    let last = team.member_path(&team.admin);
    for caller in [&team.admin, &tenant, &root] {
        let refused = app.delete(&last, &caller.token).await;
        assert_eq!(refused.status, 409, "{}", refused.body);
    }
    let leaving = app
        .post(&team.path("/leave"), Some(&team.admin.token), json!({}))
        .await;
    assert_eq!(leaving.status, 409, "{}", leaving.body);
    let stepping_down = app
        .put(
            &format!("{last}/role"),
            &team.admin.token,
            json!({"role": "org_member"}),
        )
        .await;
    assert_eq!(stepping_down.status, 409, "{}", stepping_down.body);
    let promoted = app
        .put(
            &format!("{}/role", team.member_path(&newcomer)),
            &team.admin.token,
            json!({"role": "org_admin"}),
        )
        .await;
    assert_eq!(promoted.status, 200, "{}", promoted.body);
    assert_eq!(app.delete(&last, &tenant.token).await.status, 204);

    // A tenant admin member is removed only by a super admin.
    let member_tenant = app
        .user_with_role(
            "who-tenant2@example.com",
            "tenant_admin",
            Some(team.organization),
        )
        .await;
    let tenant_path = team.member_path(&member_tenant);
    let newcomer = app.login("who-newcomer@example.com", PASSWORD).await;
    let by_admin = app.delete(&tenant_path, &newcomer.token).await;
    assert_eq!(by_admin.status, 403, "{}", by_admin.body);
    assert_eq!(app.delete(&tenant_path, &root.token).await.status, 204);
    let kept = app.login("who-tenant2@example.com", PASSWORD).await;
    let profile = app.get("/api/v1/users/profile", &kept.token).await;
    assert_eq!(profile.body["role"], "tenant_admin", "{}", profile.body);
}

#[tokio::test]
async fn leaving_ends_the_membership_and_every_session_at_once() {
    let app = TestApp::start().await;
    let team = Team::start(&app, "leave").await;
    let second_session = app.login("leave-member@example.com", PASSWORD).await;
    let admins = blank_company(&app, &team.admin, "STAYS").await;
    assert_eq!(app.get(&admins, &team.member.token).await.status, 200);
    assert_eq!(app.get(&admins, &second_session.token).await.status, 200);

    // Only members leave: others do not see the organisation.
    let outsider = app.signed_up("leave-outsider@example.com").await;
    let not_theirs = app
        .post(&team.path("/leave"), Some(&outsider.token), json!({}))
        .await;
    assert_eq!(not_theirs.status, 404, "{}", not_theirs.body);

    let left = app
        .post(&team.path("/leave"), Some(&team.member.token), json!({}))
        .await;
    assert_eq!(left.status, 204, "{}", left.body);
    for session in [&team.member, &second_session] {
        assert_eq!(app.get(&admins, &session.token).await.status, 401);
        assert_eq!(refresh_status(&app, session).await, 401);
    }
    let again = app.login("leave-member@example.com", PASSWORD).await;
    assert_eq!(app.get(&admins, &again.token).await.status, 404);
    let profile = app.get("/api/v1/users/profile", &again.token).await;
    assert_eq!(profile.body["role"], "user", "{}", profile.body);
    let twice = app
        .post(&team.path("/leave"), Some(&again.token), json!({}))
        .await;
    assert_eq!(twice.status, 404, "{}", twice.body);
}

#[tokio::test]
async fn a_deactivated_user_cannot_sign_in_and_their_sessions_end_at_once() {
    let app = TestApp::start().await;
    let team = Team::start(&app, "deact").await;
    let elsewhere = Team::start(&app, "deact-else").await;
    let root = app
        .user_with_role("deact-root@example.com", "super_admin", None)
        .await;
    let loner = app.signed_up("deact-loner@example.com").await;
    let deactivate = |user: &TestUser| format!("/api/v1/users/{}/deactivate", user.id);
    let reactivate = |user: &TestUser| format!("/api/v1/users/{}/reactivate", user.id);
    assert_eq!(
        app.get("/api/v1/users/profile", &team.member.token)
            .await
            .status,
        200
    );

    // Who may not: a fellow member, another organisation's admin (for whom
    // the user does not exist), an org admin for a user in no organisation,
    // anyone for themselves.
    let refusals = [
        (&team.other_member, deactivate(&team.member), 404),
        (&elsewhere.admin, deactivate(&team.member), 404),
        (&team.admin, deactivate(&loner), 404),
        (&team.admin, deactivate(&team.admin), 403),
        (&root, deactivate(&root), 403),
    ];
    for (caller, path, status) in refusals {
        let answer = app.post(&path, Some(&caller.token), json!({})).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
    }
    let tenant_member = app
        .user_with_role(
            "deact-tenant@example.com",
            "tenant_admin",
            Some(team.organization),
        )
        .await;
    let above = app
        .post(
            &deactivate(&tenant_member),
            Some(&team.admin.token),
            json!({}),
        )
        .await;
    assert_eq!(above.status, 403, "{}", above.body);

    let deactivated = app
        .post(
            &deactivate(&team.member),
            Some(&team.admin.token),
            json!({}),
        )
        .await;
    assert_eq!(deactivated.status, 200, "{}", deactivated.body);
    assert_eq!(deactivated.body["is_active"], false);
    assert_eq!(
        app.get("/api/v1/users/profile", &team.member.token)
            .await
            .status,
        401
    );
    assert_eq!(refresh_status(&app, &team.member).await, 401);
    // Sign-in answers exactly as for a wrong password: no account enumeration.
    let login = |password: &'static str| {
        app.post(
            "/api/v1/auth/login",
            None,
            json!({"email": "deact-member@example.com", "password": password}),
        )
    };
    let (right, wrong) = (login(PASSWORD).await, login("wrong-horse-42").await);
    assert_eq!((right.status, wrong.status), (401, 401));
    assert_eq!(right.body, wrong.body);
    let members = app.get(&team.path("/members"), &team.admin.token).await;
    assert!(
        members
            .body
            .as_array()
            .unwrap()
            .iter()
            .any(
                |member| member["id"] == team.member.id.to_string() && member["is_active"] == false
            ),
        "{}",
        members.body
    );

    let back = app
        .post(
            &reactivate(&team.member),
            Some(&team.admin.token),
            json!({}),
        )
        .await;
    assert_eq!(back.status, 200, "{}", back.body);
    assert_eq!(back.body["is_active"], true);
    app.login("deact-member@example.com", PASSWORD).await;

    // Super admins deactivate anyone, in an organisation or not.
    let by_root = app
        .post(&deactivate(&loner), Some(&root.token), json!({}))
        .await;
    assert_eq!(by_root.status, 200, "{}", by_root.body);
    assert_eq!(
        app.get("/api/v1/users/profile", &loner.token).await.status,
        401
    );
}

#[tokio::test]
async fn a_company_holding_others_predictions_is_deleted_only_by_an_admin_of_its_scope() {
    let app = TestApp::start().await;
    let team = Team::start(&app, "cascade").await;
    let first = app
        .post(
            "/api/v1/predictions/annual",
            Some(&team.member.token),
            annual("SHARED", "2023"),
        )
        .await;
    assert_eq!(first.status, 201, "{}", first.body);
    let company = format!(
        "/api/v1/companies/{}",
        first.body["company"]["id"].as_str().unwrap()
    );
    let others = app
        .post(
            "/api/v1/predictions/annual",
            Some(&team.other_member.token),
            annual("SHARED", "2024"),
        )
        .await;
    assert_eq!(others.status, 201, "{}", others.body);
    let others_path = format!(
        "/api/v1/predictions/annual/{}",
        others.body["id"].as_str().unwrap()
    );

    let refused = app.delete(&company, &team.member.token).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body["message"]
            .as_str()
            .unwrap()
            .contains("predictions of other users"),
        "{}",
        refused.body
    );
    assert_eq!(
        app.get(&others_path, &team.other_member.token).await.status,
        200
    );
    assert_eq!(app.delete(&company, &team.admin.token).await.status, 204);
    assert_eq!(
        app.get(&others_path, &team.other_member.token).await.status,
        404
    );

    // A company holding only its creator's predictions is theirs to delete.
    let own = app
        .post(
            "/api/v1/predictions/annual",
            Some(&team.member.token),
            annual("OWN", "2024"),
        )
        .await;
    let own = format!(
        "/api/v1/companies/{}",
        own.body["company"]["id"].as_str().unwrap()
    );
    assert_eq!(app.delete(&own, &team.member.token).await.status, 204);
}

#[tokio::test]
async fn a_single_prediction_fills_blanks_only_of_a_company_its_caller_may_change() {
    let app = TestApp::start().await;
    let team = Team::start(&app, "blanks").await;
    let company = blank_company(&app, &team.member, "BLANK").await;
    let before = app.get(&company, &team.member.token).await.body;

    let by_other = app
        .post(
            "/api/v1/predictions/annual",
            Some(&team.other_member.token),
            annual("BLANK", "2022"),
        )
        .await;
    assert_eq!(by_other.status, 201, "{}", by_other.body);
    assert_eq!(by_other.body["company"]["sector"], Value::Null);
    let after = app.get(&company, &team.member.token).await.body;
    assert_eq!(after, before, "the company did not change at all");

    // Its scope's admin may change it, so their prediction fills the blanks.
    let by_admin = app
        .post(
            "/api/v1/predictions/annual",
            Some(&team.admin.token),
            annual("BLANK", "2023"),
        )
        .await;
    assert_eq!(by_admin.status, 201, "{}", by_admin.body);
    let filled = app.get(&company, &team.member.token).await.body;
    assert_eq!(
        (filled["sector"].clone(), filled["market_cap"].clone()),
        (json!("Technology"), json!(1.5e9)),
        "{filled}"
    );
    // And so does the creator's, on a company of their own.
    let mine = blank_company(&app, &team.other_member, "MINE").await;
    let by_creator = app
        .post(
            "/api/v1/predictions/annual",
            Some(&team.other_member.token),
            annual("MINE", "2024"),
        )
        .await;
    assert_eq!(by_creator.body["company"]["sector"], "Technology");
    let mine = app.get(&mine, &team.other_member.token).await.body;
    assert_eq!(mine["market_cap"], json!(1.5e9), "{mine}");
}

#[tokio::test]
async fn a_bulk_upload_fills_blanks_only_of_companies_its_uploader_may_change() {
    let mut rig = BulkRig::start(&[]).await;
    rig.start_worker().await;
    let app = &rig.app;
    let team = Team::start(app, "bulkblanks").await;
    let others = blank_company(app, &team.member, "OTHERS").await;
    let own = blank_company(app, &team.other_member, "OWNED").await;
    let before = app.get(&others, &team.member.token).await.body;
    let csv = "company_symbol,company_name,market_cap,sector,reporting_year,long_term_debt_to_total_capital,total_debt_to_ebitda,net_income_margin,ebit_to_interest_expense,return_on_assets\n\
               OTHERS,Others Inc,2500000000,Energy,2024,35,2.5,8,6,5\n\
               OWNED,Owned Inc,3000000000,Utilities,2024,35,2.5,8,6,5\n\
               FRESH,Fresh Inc,4000000000,Materials,2024,35,2.5,8,6,5\n";
    let (status, accepted) = rig
        .upload(
            &team.other_member,
            "member.csv",
            csv.as_bytes().to_vec(),
            "annual",
            &[],
        )
        .await;
    assert_eq!(status, 202, "{accepted}");
    let job = accepted["job_id"].as_str().unwrap().to_owned();
    let finished = rig.wait_finished(&team.other_member, &job).await;
    assert_eq!(finished["succeeded_rows"], 3, "{finished}");

    // Another member's company is reused as it is; the uploader's own and a
    // new one take the file's values.
    assert_eq!(app.get(&others, &team.member.token).await.body, before);
    let own = app.get(&own, &team.member.token).await.body;
    assert_eq!(
        (own["sector"].clone(), own["market_cap"].clone()),
        (json!("Utilities"), json!(3.0e9)),
        "{own}"
    );

    // The admin of the scope may change it: their upload fills the blanks.
    let csv = csv.replace(",2024,", ",2023,");
    let (status, accepted) = rig
        .upload(&team.admin, "admin.csv", csv.into_bytes(), "annual", &[])
        .await;
    assert_eq!(status, 202, "{accepted}");
    let job = accepted["job_id"].as_str().unwrap().to_owned();
    let finished = rig.wait_finished(&team.admin, &job).await;
    assert_eq!(finished["succeeded_rows"], 3, "{finished}");
    let filled = app.get(&others, &team.member.token).await.body;
    assert_eq!(
        (filled["sector"].clone(), filled["market_cap"].clone()),
        (json!("Energy"), json!(2.5e9)),
        "{filled}"
    );
}

#[tokio::test]
async fn a_lowered_role_is_not_brought_back_by_a_cache_fill_that_raced_the_change() {
    let app = TestApp::start().await;
    let team = Team::start(&app, "race").await;
    let deputy = app
        .user_with_role(
            "race-deputy@example.com",
            "org_admin",
            Some(team.organization),
        )
        .await;
    let members = team.path("/members");
    assert_eq!(app.get(&members, &deputy.token).await.status, 200);
    let session: Uuid = sqlx::query_scalar(
        "SELECT id FROM sessions WHERE user_id = $1 ORDER BY created_at DESC LIMIT 1",
    )
    .bind(deputy.id)
    .fetch_one(&app.pool)
    .await
    .unwrap();
    let key = format!("accunode:session:{session}");
    let mut redis = accunode_core::cache::client(&accunode_testkit::redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let as_admin: String = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(as_admin.contains("org_admin"), "{as_admin}");

    let lowered = app
        .put(
            &format!("{}/role", team.member_path(&deputy)),
            &team.admin.token,
            json!({"role": "org_member"}),
        )
        .await;
    assert_eq!(lowered.status, 200, "{}", lowered.body);
    // A request that read the caller just before the change fills the cache
    // just after it, as `Sessions::caller` does.
    let _: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(&as_admin)
        .arg("NX")
        .arg("EX")
        .arg(300)
        .query_async(&mut redis)
        .await
        .unwrap();
    let refused = app.get(&members, &deputy.token).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
}
