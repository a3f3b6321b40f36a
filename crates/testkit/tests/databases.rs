//! The database fixtures against the real servers: a PostgreSQL database exists while its
//! fixture lives and is gone afterwards; a store fixture works on both backends.

use kontor_store::{Backend, Conn, Val};
use kontor_testkit::db::{postgres_server_url, PostgresDatabase, StoreFixture};

/// Whether the server at `server_url` has a database `name` (asked off the async runtime).
async fn database_exists(server_url: String, name: String) -> bool {
    tokio::task::spawn_blocking(move || {
        let mut c = Conn::open(Backend::Postgres, &server_url).expect("connect to PostgreSQL");
        let rows = c.query("SELECT 1 FROM pg_database WHERE datname = ?", &[Val::Text(name)]).expect("query");
        !rows.is_empty()
    })
    .await
    .expect("query task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_database_exists_until_its_fixture_is_dropped() {
    let Some(db) = PostgresDatabase::create().await else { return };
    let name = db.name().to_string();
    assert!(name.starts_with("kontor_t_"), "{name}");
    assert!(db.url().ends_with(&format!("/{name}")), "{}", db.url());
    assert!(database_exists(postgres_server_url(), name.clone()).await, "{name} was not created");
    drop(db);
    assert!(!database_exists(postgres_server_url(), name.clone()).await, "{name} was not dropped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_fixture_opens_a_working_store_and_further_nodes_on_either_backend() {
    let sqlite = StoreFixture::sqlite().await;
    let mut fixtures = vec![sqlite];
    fixtures.extend(StoreFixture::postgres().await);
    for fx in &fixtures {
        let (token, secret) = fx.store().create_token("fixture".into(), kontor_core::Role::Admin).await.expect("token");
        let node = fx.open_node().await;
        let found = node.authenticate_token(&secret).await.expect("authenticate");
        assert_eq!(found.map(|(id, _)| id), Some(token.id), "{}", fx.url());
    }
}
