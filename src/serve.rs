//! `mobiflux serve`: the statistics as JSON over HTTP, and a dashboard page drawing them
//! (fleet availability over time, station occupancy by hour, top carpool pairs, feed
//! health) for an analyst who would rather look than read.
//!
//! - `GET /` the dashboard (one page, no external resources: it works offline);
//! - `GET /api/stats` the statistics (name, description, view);
//! - `GET /api/stats/{name}?from=&to=&partner=&territory=&limit=` one statistic as JSON
//!   records, with the filters of `mobiflux stats`;
//! - `GET /health`.

use std::sync::Arc;

use anyhow::Result;
use mobiflux_loaders::Warehouse;
use mobiflux_loaders::stats::{self, Filters};
use mobiflux_schedules::httpd::{Request, Response};
use serde_json::json;

const PAGE: &str = include_str!("dashboard.html");

fn filters(query: &str) -> Result<Filters, String> {
    let mut f = Filters::default();
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        if v.is_empty() {
            continue;
        }
        match k.as_ref() {
            "from" => f.from = Some(crate::stats_cli::parse_time(&v).map_err(|e| e.to_string())?),
            "to" => f.to = Some(crate::stats_cli::parse_time(&v).map_err(|e| e.to_string())?),
            "partner" => f.partner = Some(v.into_owned()),
            "territory" => f.territory = Some(v.into_owned()),
            "limit" => {
                f.limit = Some(
                    v.parse()
                        .map_err(|_| format!("limit {v:?} is not a whole number"))?,
                )
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(f)
}

fn json_response(status: u16, v: &serde_json::Value) -> Response {
    Response {
        status,
        content_type: "application/json",
        body: serde_json::to_vec(v).expect("JSON values serialize"),
    }
}

pub async fn answer(warehouse: &dyn Warehouse, r: &Request) -> Response {
    match r.path.as_str() {
        "/" | "/index.html" => Response::ok("text/html; charset=utf-8", PAGE),
        "/health" => json_response(
            200,
            &json!({ "status": "ok", "warehouse": warehouse.describe() }),
        ),
        "/api/stats" => json_response(
            200,
            &stats::STATS
                .iter()
                .map(|s| json!({ "name": s.name, "about": s.about, "view": s.view }))
                .collect(),
        ),
        path => {
            let Some(name) = path.strip_prefix("/api/stats/") else {
                return Response::text(404, "see / (the dashboard), /api/stats and /health\n");
            };
            let Some(stat) = stats::find(name) else {
                return json_response(
                    404,
                    &json!({ "error": format!("no statistic named {name:?}") }),
                );
            };
            let f = match filters(&r.query) {
                Ok(f) => f,
                Err(e) => return json_response(400, &json!({ "error": e })),
            };
            match warehouse.stats(stat, &f).await {
                Ok(t) => json_response(200, &serde_json::Value::from(t.records())),
                Err(e) => {
                    tracing::error!(stat = name, error = %e, "statistic failed");
                    json_response(500, &json!({ "error": e.to_string() }))
                }
            }
        }
    }
}

pub async fn run(warehouse: Arc<dyn Warehouse>, bind: &str) -> Result<()> {
    let wh = warehouse.clone();
    let addr = mobiflux_schedules::httpd::serve(bind, move |r: Request| {
        let wh = wh.clone();
        async move { answer(wh.as_ref(), &r).await }
    })
    .await?;
    println!(
        "dashboard at http://{addr}/ ({}); stop with Ctrl-C",
        warehouse.describe()
    );
    tokio::signal::ctrl_c().await?;
    Ok(())
}
