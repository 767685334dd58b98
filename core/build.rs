//! Rebuilds the crate when a migration changes: `sqlx::migrate!` embeds the
//! `migrations/` folder at compile time and does not track it by itself.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
