//! Migrations are expand-then-contract: both colours of a blue-green deploy,
//! and old and new workers in a rolling one, share one database, so the
//! release still serving must keep working after the new one's migrations
//! ran. A migration may only add (tables, nullable columns or columns with a
//! default, indexes); one that drops, renames, retypes or tightens what an
//! older release reads or writes must say so on its first line with
//! `-- contract: <why it is safe now>` and ship only once no running release
//! uses what it removes. And a release starts on a database that a newer one
//! has migrated (what a restart mid-deploy and a rollback need).

use std::borrow::Cow;
use std::path::Path;

use accunode_core::db::MIGRATOR;
use accunode_testkit::TestDatabase;
use sqlx::migrate::{Migration, MigrationType, Migrator};

/// The marker a destructive migration's first line carries.
const CONTRACT_MARKER: &str = "-- contract:";

/// The SQL without comments, upper-cased, whitespace collapsed.
fn normalised(sql: &str) -> String {
    let mut text = String::with_capacity(sql.len());
    let mut rest = sql;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("--") {
            rest = after.find('\n').map_or("", |end| &after[end..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
        } else {
            let c = rest.chars().next().unwrap();
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase()
}

/// `text` up to its first comma or semicolon outside parentheses: one clause
/// of an ALTER TABLE (`numeric(10,2)` keeps its comma).
fn clause(text: &str) -> &str {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' | ';' if depth == 0 => return &text[..at],
            _ => {}
        }
    }
    text
}

/// What in `sql` an older release could not live with, one line each.
fn contractions(sql: &str) -> Vec<String> {
    let text = normalised(sql);
    let mut found = Vec::new();
    for (pattern, why) in [
        ("DROP TABLE", "drops a table"),
        ("DROP VIEW", "drops a view"),
        ("DROP COLUMN", "drops a column"),
        (" RENAME ", "renames a table or column"),
        ("SET NOT NULL", "makes a column required"),
    ] {
        if text.contains(pattern) {
            found.push(why.to_owned());
        }
    }
    // ALTER [COLUMN] x [SET DATA] TYPE: CREATE TYPE and ALTER TABLE are not.
    if text.split("ALTER ").skip(1).any(|rest| {
        let words: Vec<&str> = rest.split(' ').take(5).collect();
        let words = match words.first() {
            Some(&"TABLE") | None => return false,
            Some(&"COLUMN") => &words[1..],
            Some(_) => &words[..],
        };
        words.get(1) == Some(&"TYPE") || words.get(1..4) == Some(&["SET", "DATA", "TYPE"])
    }) {
        found.push("changes a column's type".to_owned());
    }
    // ADD [COLUMN] [IF NOT EXISTS] x … NOT NULL without a default: an older
    // release's inserts fail.
    for rest in text.split("ADD ").skip(1) {
        let rest = rest.strip_prefix("COLUMN ").unwrap_or(rest);
        let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
        if [
            "CONSTRAINT ",
            "PRIMARY ",
            "UNIQUE",
            "FOREIGN ",
            "CHECK",
            "VALUE ",
        ]
        .iter()
        .any(|other| rest.starts_with(other))
        {
            continue;
        }
        let column = clause(rest);
        if column.contains("NOT NULL") && !column.contains("DEFAULT") {
            found.push("adds a required column without a default".to_owned());
        }
    }
    found
}

#[test]
fn every_migration_only_expands_unless_marked_as_the_contract_step() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut problems = Vec::new();
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "sql") {
            continue;
        }
        checked += 1;
        let sql = std::fs::read_to_string(&path).unwrap();
        if sql
            .lines()
            .next()
            .is_some_and(|l| l.starts_with(CONTRACT_MARKER))
        {
            continue;
        }
        for why in contractions(&sql) {
            problems.push(format!(
                "{}: {why}; make it additive, or mark its first line `{CONTRACT_MARKER} <why no running release uses it>`",
                path.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(
        checked >= 10,
        "the migrations were not found in {}",
        dir.display()
    );
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_check_sees_what_breaks_an_older_release_and_lets_additions_pass() {
    for (sql, why) in [
        (
            "ALTER TABLE companies DROP COLUMN sector;",
            "drops a column",
        ),
        ("drop table  bulk_jobs;", "drops a table"),
        (
            "ALTER TABLE companies RENAME COLUMN name TO title;",
            "renames a table or column",
        ),
        (
            "ALTER TABLE users RENAME TO accounts;",
            "renames a table or column",
        ),
        (
            "ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
            "makes a column required",
        ),
        (
            "ALTER TABLE users ALTER COLUMN age TYPE bigint;",
            "changes a column's type",
        ),
        (
            "ALTER TABLE users ALTER COLUMN age SET DATA TYPE bigint;",
            "changes a column's type",
        ),
        (
            "ALTER TABLE users ADD COLUMN tier text NOT NULL;",
            "adds a required column without a default",
        ),
    ] {
        assert_eq!(contractions(sql), [why], "{sql}");
    }
    for sql in [
        "CREATE TABLE t (id uuid PRIMARY KEY);",
        "ALTER TABLE users ADD COLUMN tier text NOT NULL DEFAULT 'free', ADD COLUMN note text;",
        "ALTER TABLE t ADD COLUMN price numeric(10,2) NOT NULL DEFAULT 0, ADD note text;",
        "ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL);",
        "CREATE INDEX CONCURRENTLY i ON t (a); DROP INDEX old_i;",
        "CREATE TYPE risk AS ENUM ('low', 'high');",
        "-- DROP TABLE users; (a comment)\nSELECT 1; /* DROP COLUMN x */",
    ] {
        assert!(
            contractions(sql).is_empty(),
            "{sql}: {:?}",
            contractions(sql)
        );
    }
}

#[tokio::test]
async fn a_release_starts_on_a_database_a_newer_release_has_migrated() {
    let database = TestDatabase::create().await;
    let pool = sqlx::PgPool::connect(&database.url).await.unwrap();
    // The next release: this one's migrations and one more, applied during its deploy.
    let mut migrations = MIGRATOR.migrations.to_vec();
    migrations.push(Migration::new(
        99_991_231_000_001,
        Cow::Borrowed("next release"),
        MigrationType::Simple,
        Cow::Borrowed("CREATE TABLE next_release_table (id int);"),
        false,
    ));
    let next = Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    };
    next.run(&pool).await.unwrap();

    // This release, restarting or rolled back to, still starts.
    accunode_core::db::migrate(&pool)
        .await
        .expect("a migration of a newer release does not stop an older one");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(applied as usize, MIGRATOR.iter().count() + 1);
}
