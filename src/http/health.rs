//! `/healthz`, `/readyz` and `/metrics`.

use actix_web::{HttpResponse, get, web};

use super::error::{ApiError, ErrorBody};
use super::views::HealthView;
use crate::app::AppState;

/// The process is up.
#[utoipa::path(tag = "operations", responses((status = 200, body = HealthView)))]
#[get("/healthz")]
pub async fn healthz(app: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(HealthView { status: "ok".into(), node: app.settings.node_id.clone() })
}

/// Storage (and, in a cluster, the broker) is reachable.
#[utoipa::path(tag = "operations", responses((status = 200, body = HealthView), (status = 503, body = ErrorBody)))]
#[get("/readyz")]
pub async fn readyz(app: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if app.shutdown.is_cancelled() {
        return Err(ApiError::new(telehub_signaling::ErrorCode::Unavailable, "shutting down"));
    }
    app.store.ping().await?;
    if let Some(broker) = &app.broker
        && !telehub_actors::Broker::is_ready(broker.as_ref())
    {
        return Err(ApiError::new(
            telehub_signaling::ErrorCode::Unavailable,
            "the cluster broker (Redis) is unreachable",
        ));
    }
    Ok(HttpResponse::Ok().json(HealthView { status: "ready".into(), node: app.settings.node_id.clone() }))
}

/// Prometheus metrics.
#[utoipa::path(tag = "operations", responses((status = 200, description = "Prometheus text format", body = String)))]
#[get("/metrics")]
pub async fn metrics(app: web::Data<AppState>) -> HttpResponse {
    let m = &app.metrics;
    let rooms = app.rooms.count().await;
    let node = &app.settings.node_id;
    let body = format!(
        "# HELP telehub_sessions Open WebSocket sessions.\n# TYPE telehub_sessions gauge\ntelehub_sessions{{node=\"{node}\"}} {}\n\
         # HELP telehub_sessions_total Sessions opened since start.\n# TYPE telehub_sessions_total counter\ntelehub_sessions_total{{node=\"{node}\"}} {}\n\
         # HELP telehub_rooms Rooms running.\n# TYPE telehub_rooms gauge\ntelehub_rooms{{node=\"{node}\"}} {rooms}\n\
         # HELP telehub_frames_in_total Client frames received.\n# TYPE telehub_frames_in_total counter\ntelehub_frames_in_total{{node=\"{node}\"}} {}\n\
         # HELP telehub_upgrades_refused_total WebSocket upgrades refused (bad token).\n# TYPE telehub_upgrades_refused_total counter\ntelehub_upgrades_refused_total{{node=\"{node}\"}} {}\n\
         # HELP telehub_notification_tries_total Notification tries by this node, by outcome.\n# TYPE telehub_notification_tries_total counter\n\
         telehub_notification_tries_total{{node=\"{node}\",outcome=\"sent\"}} {}\n\
         telehub_notification_tries_total{{node=\"{node}\",outcome=\"retried\"}} {}\n\
         telehub_notification_tries_total{{node=\"{node}\",outcome=\"failed\"}} {}\n\
         telehub_notification_tries_total{{node=\"{node}\",outcome=\"skipped\"}} {}\n",
        m.sessions_open.get(),
        m.sessions_total.get(),
        m.frames_in.get(),
        m.upgrades_refused.get(),
        m.notifications.sent.get(),
        m.notifications.retried.get(),
        m.notifications.failed.get(),
        m.notifications.skipped.get(),
    );
    let w = app.store.write_stats();
    let mut body = format!(
        "{body}# HELP telehub_store_batches_total Transactions of the group-commit writer, committed or rolled back.\n# TYPE telehub_store_batches_total counter\ntelehub_store_batches_total{{node=\"{node}\"}} {}\n\
         # HELP telehub_store_writes_total Writes in those transactions (messages, markers, check-ins and the rest).\n# TYPE telehub_store_writes_total counter\ntelehub_store_writes_total{{node=\"{node}\"}} {}\n\
         # HELP telehub_store_failed_batches_total Transactions rolled back; their writes were answered unavailable.\n# TYPE telehub_store_failed_batches_total counter\ntelehub_store_failed_batches_total{{node=\"{node}\"}} {}\n\
         # HELP telehub_store_busy_seconds_total Time the writer spent in transactions.\n# TYPE telehub_store_busy_seconds_total counter\ntelehub_store_busy_seconds_total{{node=\"{node}\"}} {:.6}\n\
         # HELP telehub_store_queued_writes Writes waiting for the writer.\n# TYPE telehub_store_queued_writes gauge\ntelehub_store_queued_writes{{node=\"{node}\"}} {}\n\
         # HELP telehub_store_pending_messages Messages submitted for storage and not answered yet.\n# TYPE telehub_store_pending_messages gauge\ntelehub_store_pending_messages{{node=\"{node}\"}} {}\n\
         # HELP telehub_store_shed_messages_total Messages refused unavailable because max_pending_messages were pending.\n# TYPE telehub_store_shed_messages_total counter\ntelehub_store_shed_messages_total{{node=\"{node}\"}} {}\n",
        w.batches, w.jobs, w.failed_batches, w.busy_seconds, w.queued, w.pending_messages, w.shed_messages,
    );
    if let Some(log) = w.log {
        body.push_str(&format!(
            "# HELP telehub_sqlite_log_frames Frames in SQLite's write-ahead log at the last checkpoint.\n# TYPE telehub_sqlite_log_frames gauge\ntelehub_sqlite_log_frames{{node=\"{node}\"}} {}\n\
             # HELP telehub_sqlite_writer_checkpoints_total Checkpoints the writer ran between two transactions so that the log could start over.\n# TYPE telehub_sqlite_writer_checkpoints_total counter\ntelehub_sqlite_writer_checkpoints_total{{node=\"{node}\"}} {}\n\
             # HELP telehub_sqlite_writer_checkpoint_seconds_total Time the writer spent in those checkpoints; nothing commits meanwhile.\n# TYPE telehub_sqlite_writer_checkpoint_seconds_total counter\ntelehub_sqlite_writer_checkpoint_seconds_total{{node=\"{node}\"}} {:.6}\n",
            log.frames, log.writer_checkpoints, log.writer_checkpoint_seconds,
        ));
    }
    let body = match &app.broker {
        Some(broker) => {
            let b = broker.stats();
            format!(
                "{body}# HELP telehub_cluster_ready Whether the node is connected to the cluster's Redis.\n# TYPE telehub_cluster_ready gauge\ntelehub_cluster_ready{{node=\"{node}\"}} {}\n\
                 # HELP telehub_cluster_published_total Events and presence writes sent to Redis.\n# TYPE telehub_cluster_published_total counter\ntelehub_cluster_published_total{{node=\"{node}\"}} {}\n\
                 # HELP telehub_cluster_received_total Events of other nodes received.\n# TYPE telehub_cluster_received_total counter\ntelehub_cluster_received_total{{node=\"{node}\"}} {}\n\
                 # HELP telehub_cluster_dropped_total Writes dropped while Redis was unreachable (made good by resyncs).\n# TYPE telehub_cluster_dropped_total counter\ntelehub_cluster_dropped_total{{node=\"{node}\"}} {}\n\
                 # HELP telehub_cluster_reconnects_total Times the pub/sub connection to Redis was opened again.\n# TYPE telehub_cluster_reconnects_total counter\ntelehub_cluster_reconnects_total{{node=\"{node}\"}} {}\n",
                u8::from(b.ready),
                b.published,
                b.received,
                b.dropped,
                b.reconnects,
            )
        }
        None => body,
    };
    HttpResponse::Ok().content_type("text/plain; version=0.0.4").body(body)
}
