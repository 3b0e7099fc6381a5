//! Prometheus metrics of the broker, served on `/metrics` by [`crate::http`].
//!
//! One [`Metrics`] value per process holds every family; handlers and
//! background tasks record into it through cheap cloned handles. Storage
//! figures (WAL and upload lag, cache hit ratio) are read from the storage
//! engine's counters at scrape time by a [`StorageGauges`] source, so there is
//! one source of truth for each figure.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub api: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiErrorLabels {
    pub api: &'static str,
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub error: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TopicLabels {
    pub topic: String,
}

/// Figures owned by the storage engine, sampled at scrape time.
pub trait StorageGauges: Send + Sync {
    /// Bytes appended to the WAL and not yet in committed objects.
    fn wal_unuploaded_bytes(&self) -> u64;
    /// Age in seconds of the oldest WAL data not yet in committed objects.
    fn upload_lag_seconds(&self) -> f64;
    /// Block cache hits and misses since start.
    fn cache_hits_misses(&self) -> (u64, u64);
}

/// All broker metric families.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Mutex<Registry>>,
    pub requests: Family<ApiLabels, Counter>,
    pub request_errors: Family<ApiErrorLabels, Counter>,
    pub request_seconds: Family<ApiLabels, Histogram>,
    pub bytes_in: Family<TopicLabels, Counter>,
    pub bytes_out: Family<TopicLabels, Counter>,
    pub messages_in: Family<TopicLabels, Counter>,
    /// Idempotent/transactional batches refused (sequence, epoch, txn state).
    pub producer_rejections: Family<ErrorLabels, Counter>,
    /// Retried batches answered with their original offsets.
    pub producer_duplicates: Counter,
    pub connections: Gauge,
    pub connections_total: Counter,
    wal_unuploaded_bytes: Gauge,
    upload_lag_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    cache_hit_ratio: Gauge<f64, std::sync::atomic::AtomicU64>,
    cache_hits: Gauge,
    cache_misses: Gauge,
    storage: Arc<Mutex<Option<Arc<dyn StorageGauges>>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("skiff");
        let requests = Family::<ApiLabels, Counter>::default();
        registry.register(
            "requests",
            "Kafka requests handled, by API",
            requests.clone(),
        );
        let request_errors = Family::<ApiErrorLabels, Counter>::default();
        registry.register(
            "request_errors",
            "Kafka error codes returned, by API and error",
            request_errors.clone(),
        );
        let request_seconds = Family::<ApiLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0001, 2.0, 18))
        });
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response being ready, by API",
            request_seconds.clone(),
        );
        let bytes_in = Family::<TopicLabels, Counter>::default();
        registry.register(
            "topic_bytes_in",
            "Record batch bytes produced, by topic",
            bytes_in.clone(),
        );
        let bytes_out = Family::<TopicLabels, Counter>::default();
        registry.register(
            "topic_bytes_out",
            "Record batch bytes fetched, by topic",
            bytes_out.clone(),
        );
        let messages_in = Family::<TopicLabels, Counter>::default();
        registry.register(
            "topic_messages_in",
            "Records produced, by topic",
            messages_in.clone(),
        );
        let producer_rejections = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "producer_batches_rejected",
            "Idempotent or transactional batches refused, by error (OUT_OF_ORDER_SEQUENCE_NUMBER, INVALID_PRODUCER_EPOCH, ...)",
            producer_rejections.clone(),
        );
        let producer_duplicates = Counter::default();
        registry.register(
            "producer_batches_duplicate",
            "Retried idempotent batches answered with their original offsets instead of being appended",
            producer_duplicates.clone(),
        );
        let connections = Gauge::default();
        registry.register(
            "connections",
            "Open client connections",
            connections.clone(),
        );
        let connections_total = Counter::default();
        registry.register(
            "connections_accepted",
            "Client connections accepted",
            connections_total.clone(),
        );
        let wal_unuploaded_bytes = Gauge::default();
        registry.register(
            "wal_unuploaded_bytes",
            "WAL bytes not yet in committed objects",
            wal_unuploaded_bytes.clone(),
        );
        let upload_lag_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "upload_lag_seconds",
            "Age of the oldest WAL data not yet in committed objects",
            upload_lag_seconds.clone(),
        );
        let cache_hit_ratio = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "block_cache_hit_ratio",
            "Block cache hits / (hits + misses) since start",
            cache_hit_ratio.clone(),
        );
        let cache_hits = Gauge::default();
        registry.register(
            "block_cache_hits",
            "Block cache hits since start",
            cache_hits.clone(),
        );
        let cache_misses = Gauge::default();
        registry.register(
            "block_cache_misses",
            "Block cache misses since start",
            cache_misses.clone(),
        );
        Self {
            registry: Arc::new(Mutex::new(registry)),
            requests,
            request_errors,
            request_seconds,
            bytes_in,
            bytes_out,
            messages_in,
            producer_rejections,
            producer_duplicates,
            connections,
            connections_total,
            wal_unuploaded_bytes,
            upload_lag_seconds,
            cache_hit_ratio,
            cache_hits,
            cache_misses,
            storage: Arc::new(Mutex::new(None)),
        }
    }

    /// Plug in the storage engine's figures.
    pub fn set_storage_source(&self, source: Arc<dyn StorageGauges>) {
        *self.storage.lock() = Some(source);
    }

    /// Record one handled request.
    pub fn observe_request(&self, api: &'static str, elapsed: Duration) {
        let labels = ApiLabels { api };
        self.requests.get_or_create(&labels).inc();
        self.request_seconds
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }

    /// Record a Kafka error code returned by an API (code 0 is not an error).
    pub fn observe_error(&self, api: &'static str, error: String) {
        self.request_errors
            .get_or_create(&ApiErrorLabels { api, error })
            .inc();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        if let Some(s) = self.storage.lock().as_ref() {
            self.wal_unuploaded_bytes
                .set(i64::try_from(s.wal_unuploaded_bytes()).unwrap_or(i64::MAX));
            self.upload_lag_seconds.set(s.upload_lag_seconds());
            let (hits, misses) = s.cache_hits_misses();
            self.cache_hits.set(i64::try_from(hits).unwrap_or(i64::MAX));
            self.cache_misses
                .set(i64::try_from(misses).unwrap_or(i64::MAX));
            let total = hits + misses;
            self.cache_hit_ratio.set(if total == 0 {
                0.0
            } else {
                hits as f64 / total as f64
            });
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock())
            .expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl StorageGauges for Fixed {
        fn wal_unuploaded_bytes(&self) -> u64 {
            4096
        }
        fn upload_lag_seconds(&self) -> f64 {
            0.25
        }
        fn cache_hits_misses(&self) -> (u64, u64) {
            (3, 1)
        }
    }

    #[test]
    fn renders_request_topic_and_storage_figures() {
        let m = Metrics::new();
        m.observe_request("Produce", Duration::from_millis(2));
        m.observe_error("Produce", "UnknownTopicOrPartition".into());
        m.bytes_in
            .get_or_create(&TopicLabels {
                topic: "vehicle.reports".into(),
            })
            .inc_by(100);
        m.set_storage_source(Arc::new(Fixed));
        let text = m.render();
        assert!(
            text.contains("skiff_requests_total{api=\"Produce\"} 1"),
            "{text}"
        );
        assert!(text.contains("skiff_request_duration_seconds_count{api=\"Produce\"} 1"));
        assert!(text.contains("error=\"UnknownTopicOrPartition\""));
        assert!(text.contains("skiff_topic_bytes_in_total{topic=\"vehicle.reports\"} 100"));
        assert!(text.contains("skiff_wal_unuploaded_bytes 4096"));
        assert!(text.contains("skiff_block_cache_hit_ratio 0.75"));
    }
}
