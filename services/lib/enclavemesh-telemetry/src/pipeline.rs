//! Building the logging + OpenTelemetry pipeline and tearing it down again.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{KeyValue, global};
use opentelemetry_otlp::{MetricExporter, SpanExporter, WithExportConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::runtime;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use tokio::runtime::{Handle, RuntimeFlavor};
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::{EnvFilter, Layer, fmt, prelude::*};

use crate::config::{DEFAULT_OTEL_FILTER, ExportTarget, TelemetryConfig};
use crate::context_layer::ContextLayer;
use crate::{TelemetryError, metrics};

/// How often metrics are pushed.
const METRIC_INTERVAL: Duration = Duration::from_secs(15);
/// How long a drop inside a current-thread runtime waits for the final export
/// (the export task cannot run while that thread is blocked, so this is best effort).
const CURRENT_THREAD_SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

/// Keeps the exporters alive; flushes and shuts them down when dropped.
///
/// Hold it for the whole life of `main` (`let _telemetry = init(..)`): dropping it
/// early stops exporting. Prefer [`TelemetryGuard::shutdown`] at the end of an async
/// main: it waits for the last batch without blocking a runtime thread.
#[must_use = "dropping the guard shuts the OTLP exporter down; bind it: `let _telemetry = ...`"]
#[derive(Debug, Default)]
pub struct TelemetryGuard {
    providers: Option<Providers>,
    exporting: bool,
}

#[derive(Debug, Clone)]
struct Providers {
    tracer: SdkTracerProvider,
    meter: Option<SdkMeterProvider>,
}

impl Providers {
    fn flush(&self) {
        let _ = self.tracer.force_flush();
        if let Some(m) = &self.meter {
            let _ = m.force_flush();
        }
    }

    fn shutdown(&self) {
        metrics::uninstall();
        let _ = self.tracer.shutdown();
        if let Some(m) = &self.meter {
            let _ = m.shutdown();
        }
    }
}

impl TelemetryGuard {
    /// True when an OTLP exporter is running (an endpoint was configured).
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }

    /// Exports everything recorded so far (spans and metrics) and waits for it.
    pub async fn flush(&self) {
        if let Some(p) = self.providers.clone() {
            let _ = tokio::task::spawn_blocking(move || p.flush()).await;
        }
    }

    /// Flushes and stops the exporters, waiting on a blocking thread so the export
    /// task keeps running on this runtime (works on current-thread runtimes too).
    pub async fn shutdown(mut self) {
        if let Some(p) = self.providers.take() {
            let _ = tokio::task::spawn_blocking(move || p.shutdown()).await;
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some(p) = self.providers.take() else {
            return;
        };
        if !self.exporting {
            // No processors: shutdown cannot block.
            p.shutdown();
            return;
        }
        // The SDK's shutdown blocks until the export task (on tokio) answers. Blocking
        // a worker thread directly can deadlock (the task may sit in this worker's
        // LIFO slot), so hand the worker back to the runtime first.
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| p.shutdown());
            }
            Ok(_) => {
                let (tx, rx) = std::sync::mpsc::channel();
                std::thread::spawn(move || {
                    p.shutdown();
                    let _ = tx.send(());
                });
                let _ = rx.recv_timeout(CURRENT_THREAD_SHUTDOWN_WAIT);
            }
            Err(_) => p.shutdown(),
        }
    }
}

/// Installs logging, the W3C trace-context propagator and (when `config.endpoint`
/// is set) the OTLP span + metric exporters as this process's globals.
///
/// Needs a tokio runtime when an endpoint is set (batch export runs on it). Fails
/// with [`TelemetryError::AlreadyInitialised`] if a global subscriber exists — one
/// per process, so each test scenario lives in its own test binary.
pub fn build(config: TelemetryConfig) -> Result<TelemetryGuard, TelemetryError> {
    if tracing::dispatcher::has_been_set() {
        return Err(TelemetryError::AlreadyInitialised);
    }
    let target =
        config.endpoint.as_deref().map(str::trim).filter(|e| !e.is_empty()).map(ExportTarget::parse).transpose()?;

    let log_filter = match &config.log_filter {
        Some(f) => parse_filter(f)?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    let otel_filter = parse_filter(config.otel_filter.as_deref().unwrap_or(DEFAULT_OTEL_FILTER))?;

    let mut resource = Resource::builder_empty().with_service_name(config.service_name.clone());
    for (k, v) in &config.resource_attributes {
        if k != "service.name" {
            resource = resource.with_attribute(KeyValue::new(k.clone(), v.clone()));
        }
    }
    let resource = resource.build();

    // Without an endpoint the tracer provider has no processor and spans are not
    // OpenTelemetry spans at all: they still get ids (`ContextLayer`, so an incoming
    // traceparent flows on to downstream calls) but nothing is exported, no connection
    // is attempted and nothing retries in the background.
    let mut tracer_builder = SdkTracerProvider::builder().with_resource(resource.clone());
    let mut meter = None;
    let exporting = target.is_some();
    if let Some(target) = target {
        if Handle::try_current().is_err() {
            return Err(TelemetryError::NoRuntime);
        }
        let (span_exporter, metric_exporter) = exporters(&target)?;
        tracer_builder =
            tracer_builder.with_span_processor(BatchSpanProcessor::builder(span_exporter, runtime::Tokio).build());
        let reader = PeriodicReader::builder(metric_exporter, runtime::Tokio).with_interval(METRIC_INTERVAL).build();
        meter = Some(SdkMeterProvider::builder().with_resource(resource).with_reader(reader).build());
    }
    let tracer_provider = tracer_builder.build();
    let tracer = tracer_provider.tracer("enclavemesh");

    // Colours only on a terminal: never into a captured writer, a file or journald.
    let ansi = config.log_writer.is_none() && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let writer = config.log_writer.unwrap_or_else(|| BoxMakeWriter::new(std::io::stderr));
    let fmt_layer = if config.json_logs {
        fmt::layer().json().with_writer(writer).boxed()
    } else {
        fmt::layer().with_ansi(ansi).with_writer(writer).boxed()
    };
    // Exporting: OpenTelemetry spans for the exporter. Not exporting: span ids only
    // (`ContextLayer`), which is all trace-context propagation needs, without building
    // an OpenTelemetry span per call that nobody exports.
    let trace_layer = if exporting {
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            // busy/idle timings are noise on every span; keep attributes to ids/names/codes.
            .with_tracked_inactivity(false)
            .with_filter(otel_filter)
            .boxed()
    } else {
        // Same filter: the spans that would be exported are the ones that get ids.
        ContextLayer::default().with_filter(otel_filter).boxed()
    };
    let subscriber =
        tracing_subscriber::registry().with(fmt_layer.with_filter(log_layer_filter(log_filter))).with(trace_layer);
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        // Lost a race with another initialiser; nothing was exported yet.
        let _ = tracer_provider.shutdown();
        return Err(TelemetryError::AlreadyInitialised);
    }
    // `tracing-log` is not enabled; `log` records from dependencies are ignored.

    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(tracer_provider.clone());
    if let Some(m) = &meter {
        global::set_meter_provider(m.clone());
        metrics::install(m);
    }
    tracing::debug!(service = %config.service_name, exporting, "telemetry initialised");
    Ok(TelemetryGuard { providers: Some(Providers { tracer: tracer_provider, meter }), exporting })
}

/// The log layer's filter: `log_filter`, and spans only when it enables `debug` lines
/// somewhere.
///
/// Why: the log layer formats a span's fields into a string when the span is created,
/// whether or not a line is ever written inside it. Every call opens a transport span
/// and a handler span, and at the default `info` no line is written in them on the
/// success path, so that formatting was pure cost (~23k instructions of a ~312k
/// instruction `Process`, BENCHMARKS.md). At `info` the few lines written inside a
/// call (refusals, reveals) carry their own fields instead; at `debug` log lines show
/// their span context as before. Export and trace-context propagation are unaffected:
/// they are the other layer's.
fn log_layer_filter<S>(log_filter: EnvFilter) -> impl tracing_subscriber::layer::Filter<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::filter::{FilterExt as _, LevelFilter, filter_fn};
    let spans = log_filter.max_level_hint().is_none_or(|l| l >= LevelFilter::DEBUG);
    log_filter.and(filter_fn(move |meta| spans || !meta.is_span()))
}

fn parse_filter(f: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::try_new(f).map_err(|e| TelemetryError::InvalidFilter { filter: f.to_owned(), reason: e.to_string() })
}

/// Span and metric exporters for `target`; transport targets share one channel.
fn exporters(target: &ExportTarget) -> Result<(SpanExporter, MetricExporter), TelemetryError> {
    let span_err = |source| TelemetryError::Exporter { signal: "trace", source };
    let metric_err = |source| TelemetryError::Exporter { signal: "metrics", source };
    match target {
        ExportTarget::Url(url) => Ok((
            SpanExporter::builder().with_tonic().with_endpoint(url.clone()).build().map_err(span_err)?,
            MetricExporter::builder().with_tonic().with_endpoint(url.clone()).build().map_err(metric_err)?,
        )),
        ExportTarget::Transport(addr) => {
            // Lazy: nothing is dialled until the first batch, and a relay that is not
            // up yet only costs that batch.
            let channel = enclavemesh_transport::channel(addr)?;
            Ok((
                SpanExporter::builder().with_tonic().with_channel(channel.clone()).build().map_err(span_err)?,
                MetricExporter::builder().with_tonic().with_channel(channel).build().map_err(metric_err)?,
            ))
        }
    }
}
