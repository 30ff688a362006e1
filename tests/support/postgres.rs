//! A PostgreSQL database of its own for one test, created on the server `.ci/run` starts
//! (`AGENTGW_TEST_POSTGRES`: a URL of a role that may create databases; default
//! `postgres://agentgw:agentgw@127.0.0.1:5432/postgres`) and dropped when the test ends.
//! Without a server the test says so loudly, and under `CI=true` fails.

use sqlx::{Connection, Executor, PgConnection};

pub struct TestDatabase {
    /// The store URL of the new database.
    pub url: String,
    name: String,
    admin: String,
}

const DEFAULT_ADMIN_URL: &str = "postgres://agentgw:agentgw@127.0.0.1:5432/postgres";

impl TestDatabase {
    pub async fn create() -> Option<TestDatabase> {
        let admin =
            std::env::var("AGENTGW_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.into());
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(c) => c,
            Err(e) => {
                let why = format!(
                    "PostgreSQL at {admin} cannot be reached ({e}); .ci/run starts it \
                     (pg_ctlcluster 15 main start) and creates the role"
                );
                assert!(
                    !std::env::var("CI").is_ok_and(|v| v == "true"),
                    "in CI this must be checked: {why}"
                );
                eprintln!("\n*** NOT CHECKED LOUDLY: {why} ***\n");
                return None;
            }
        };
        let name = format!("agentgw_test_{:016x}", rand::random::<u64>());
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("the test role may create databases");
        conn.close().await.ok();
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Some(TestDatabase {
            url: format!("{base}/{name}"),
            name,
            admin,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside any runtime the test may still be in: a thread of its own.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok(mut c) = PgConnection::connect(&admin).await {
                    c.execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await
                        .ok();
                }
            });
        })
        .join()
        .ok();
    }
}
