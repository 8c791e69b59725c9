//! The agent's own traces reach an OpenTelemetry collector over OTLP/gRPC: a real gRPC
//! server speaking the collector's trace service receives them.

use std::net::UdpSocket;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;

use crate::run::{http, stop_agent, syslog_agent, wait_for};

/// A received span: service name, span name, attributes as text.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    name: String,
    attributes: Vec<(String, String)>,
}

#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Received>>>);

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        _ => String::new(),
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut got = Vec::new();
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .map(|kv| text(kv.value.as_ref().and_then(|v| v.value.as_ref())))
                .unwrap_or_default();
            for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
                got.push(Received {
                    service: service.clone(),
                    name: span.name,
                    attributes: span
                        .attributes
                        .iter()
                        .map(|kv| {
                            (
                                kv.key.clone(),
                                text(kv.value.as_ref().and_then(|v| v.value.as_ref())),
                            )
                        })
                        .collect(),
                });
            }
        }
        if let Ok(mut spans) = self.0.lock() {
            spans.extend(got);
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[test]
fn agent_exports_its_spans_over_otlp_grpc() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let collector = Collector::default();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = TraceServiceServer::new(collector.clone());
    runtime.spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );

    let dir = tempfile::tempdir().unwrap();
    let extra = format!(
        "traces:\n  otlp_endpoint: http://127.0.0.1:{port}\n  service_name: opsloop-test\n"
    );
    let (mut agent, api, syslog) = syslog_agent(dir.path(), &extra);
    assert_eq!(http(api, "GET", "/api/v1/events", "", None).0, 200);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let oom = b"<3>Nov 20 10:00:00 web kernel: Out of memory: Killed process 42 (java)";
    udp.send_to(oom, ("127.0.0.1", syslog)).unwrap();
    wait_for("the event stored", || {
        let (_, body) = http(api, "GET", "/api/v1/events", "", None);
        body.contains("oom-kill").then_some(())
    });
    // Shutdown flushes what the batch exporter still holds.
    stop_agent(&mut agent);
    let spans = wait_for("spans at the collector", || {
        let spans = collector.0.lock().ok()?.clone();
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        (names.contains(&"GET /api/v1/events") && names.contains(&"events.publish"))
            .then_some(spans)
    });
    assert!(spans.iter().all(|s| s.service == "opsloop-test"));
    let request = spans
        .iter()
        .find(|s| s.name == "GET /api/v1/events")
        .unwrap_or_else(|| panic!("no request span"));
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.route", "/api/v1/events"),
        ("http.response.status_code", "200"),
    ] {
        assert!(
            request
                .attributes
                .iter()
                .any(|(k, v)| k == key && v == value),
            "{key}={value} in {:?}",
            request.attributes
        );
    }
}
