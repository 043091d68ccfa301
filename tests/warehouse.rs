//! The migrations of both warehouses create exactly the columns the unified schemas declare.

mod common;

use mobiflux_model::schema::{QUARANTINE, UNIFIED_TABLES};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_match_the_declared_schemas_in_postgres_and_sqlite() {
    let pg = common::pg_database().await;
    let wh = mobiflux_loaders::open(&pg).await.unwrap();
    wh.migrate().await.unwrap();
    wh.migrate().await.unwrap(); // a second time is a no-op
    let pool = sqlx::PgPool::connect(&pg).await.unwrap();
    let dir = common::temp_dir("schema");
    let lite_url = format!("sqlite://{}/w.db", dir.display());
    let lite = mobiflux_loaders::open(&lite_url).await.unwrap();
    lite.migrate().await.unwrap();
    let lite_pool = sqlx::SqlitePool::connect(&lite_url).await.unwrap();
    for t in UNIFIED_TABLES.iter().chain([&QUARANTINE]) {
        let declared: Vec<String> = t.column_names().map(str::to_string).collect();
        let in_pg: Vec<String> = sqlx::query_scalar(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position",
        )
        .bind(t.name)
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(in_pg, declared, "PostgreSQL {}", t.name);
        let in_lite: Vec<String> =
            sqlx::query_scalar("SELECT name FROM pragma_table_info(?) ORDER BY cid")
                .bind(t.name)
                .fetch_all(&lite_pool)
                .await
                .unwrap();
        assert_eq!(in_lite, declared, "SQLite {}", t.name);
    }
    let partitioned: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid ORDER BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        partitioned,
        // Snapshots by day; the reference tables of big published files by partner.
        vec![
            "carpool_journeys",
            "charge_point_status",
            "charge_points",
            "gateway_calls",
            "parking_facilities",
            "parking_occupancy",
            "station_status",
            "vehicles"
        ]
    );
}
