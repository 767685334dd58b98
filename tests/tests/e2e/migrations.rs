//! Migrations are expand-then-contract: both colours of a blue-green deploy,
//! and old and new workers in a rolling one, share one database, so the
//! release still serving must keep working after the new one's migrations
//! ran. A migration may only add (tables, nullable columns or columns with a
//! default, indexes); one that drops, renames, retypes or tightens what an
//! older release reads or writes must say so on its first line with
//! `-- contract: <why it is safe now>` and ship only once no running release
//! uses what it removes.

use std::path::Path;

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
        (" TYPE ", "changes a column's type"),
    ] {
        if pattern == " TYPE " {
            // Only as ALTER COLUMN x [SET DATA] TYPE: CREATE TYPE is additive.
            if text.split("ALTER COLUMN ").skip(1).any(|clause| {
                let words: Vec<&str> = clause.split(' ').take(4).collect();
                words.get(1) == Some(&"TYPE") || words.get(1..4) == Some(&["SET", "DATA", "TYPE"])
            }) {
                found.push(why.to_owned());
            }
        } else if text.contains(pattern) {
            found.push(why.to_owned());
        }
    }
    // A required column without a default: an older release's inserts fail.
    for clause in text.split("ADD COLUMN ").skip(1) {
        let clause = clause.split([',', ';']).next().unwrap_or_default();
        if clause.contains("NOT NULL") && !clause.contains("DEFAULT") {
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
