//! Rebuilds the store when a migration is added: `sqlx::migrate!` embeds the files of
//! `migrations/` at compile time but does not tell Cargo about a new file in the folder (the
//! build script sqlx's documentation recommends).

fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
