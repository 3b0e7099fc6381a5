use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::path::Path;

use super::*;

fn fast_retry(max_retries: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        max_elapsed: Duration::from_secs(10),
        attempt_timeout: Duration::from_millis(200),
    }
}

fn faulty(max_retries: u32) -> (Arc<dyn ObjectStore>, FaultController) {
    let f = FaultStore::new(Arc::new(InMemory::new()));
    let c = f.controller();
    let s = RetryStore::new(Arc::new(f), fast_retry(max_retries));
    (Arc::new(s), c)
}

#[test]
fn urls_parse() {
    let c = |u: &str| ObjectStoreConfig {
        url: Some(u.into()),
        ..ObjectStoreConfig::default()
    };
    let dd = std::path::Path::new("/data");
    assert_eq!(
        ObjectStoreConfig::default().backend(dd).unwrap(),
        Backend::File("/data/objects-store".into())
    );
    assert_eq!(
        c("s3://b/some/prefix/").backend(dd).unwrap(),
        Backend::S3 {
            bucket: "b".into(),
            prefix: "some/prefix".into()
        }
    );
    assert_eq!(c("memory://").backend(dd).unwrap(), Backend::Memory);
    assert!(c("file://relative").backend(dd).is_err());
    assert!(c("gcs://x").backend(dd).is_err());
    assert!(c("s3://").backend(dd).is_err());
    let bad = ObjectStoreConfig {
        max_concurrency: 0,
        ..ObjectStoreConfig::default()
    };
    assert!(bad.validate().is_err());
}

#[test]
fn config_deserializes_with_durations() {
    let c: ObjectStoreConfig = serde_json::from_str(
        r#"{"url": "s3://b", "endpoint": "http://127.0.0.1:9000", "allow_http": true,
            "retry": {"max_retries": 2, "attempt_timeout": "1s"}}"#,
    )
    .unwrap();
    assert_eq!(c.retry.max_retries, 2);
    assert_eq!(c.retry.attempt_timeout, Duration::from_secs(1));
    assert!(c.allow_http);
}

#[tokio::test]
async fn file_backend_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let built = build_store(&ObjectStoreConfig::default(), dir.path()).unwrap();
    assert!(built.faults.is_none());
    let p = Path::from("a/b");
    built
        .store
        .put(&p, Bytes::from_static(b"hi").into())
        .await
        .unwrap();
    assert!(dir.path().join("objects-store/a/b").exists());
    let got = built.store.get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, Bytes::from_static(b"hi"));
}

#[tokio::test]
async fn scheduled_failures_are_retried() {
    let (store, faults) = faulty(5);
    let p = Path::from("x");
    faults.set(
        Op::Put,
        FaultPlan {
            fail_next: 3,
            ..FaultPlan::default()
        },
    );
    store
        .put(&p, Bytes::from_static(b"v").into())
        .await
        .unwrap();
    faults.set(
        Op::Get,
        FaultPlan {
            fail_next: 2,
            ..FaultPlan::default()
        },
    );
    let got = store.get(&p).await.unwrap().bytes().await.unwrap();
    assert_eq!(got, Bytes::from_static(b"v"));
    assert_eq!(faults.counts().1, 5);
}

#[tokio::test]
async fn exhausted_retries_surface_a_transient_error() {
    let (store, faults) = faulty(2);
    faults.set(
        Op::Get,
        FaultPlan {
            error_rate: 1.0,
            ..FaultPlan::default()
        },
    );
    let err = store.get(&Path::from("x")).await.unwrap_err();
    assert!(is_transient(&err), "{err}");
    // 1 attempt + 2 retries.
    assert_eq!(faults.counts(), (3, 3));
}

#[tokio::test]
async fn permanent_errors_are_not_retried() {
    let (store, faults) = faulty(5);
    let err = store.get(&Path::from("missing")).await.unwrap_err();
    assert!(matches!(err, object_store::Error::NotFound { .. }));
    assert!(!is_transient(&err));
    assert_eq!(faults.counts().0, 1);
}

#[tokio::test]
async fn black_hole_times_out_and_heals() {
    let (store, faults) = faulty(1);
    store
        .put(&Path::from("x"), Bytes::from_static(b"v").into())
        .await
        .unwrap();
    faults.set(
        Op::Get,
        FaultPlan {
            black_hole: true,
            ..FaultPlan::default()
        },
    );
    let err = store.get(&Path::from("x")).await.unwrap_err();
    assert!(is_transient(&err), "{err}");
    // Healing while a request hangs lets it through.
    let s2 = store.clone();
    let pending = tokio::spawn(async move { s2.get(&Path::from("x")).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    faults.clear();
    let got = pending.await.unwrap().unwrap().bytes().await.unwrap();
    assert_eq!(got, Bytes::from_static(b"v"));
}

#[tokio::test]
async fn injected_timeouts_are_transient() {
    let (store, faults) = faulty(0);
    faults.set(
        Op::Put,
        FaultPlan {
            timeout_rate: 1.0,
            timeout: Duration::from_millis(10),
            ..FaultPlan::default()
        },
    );
    let err = store
        .put(&Path::from("x"), Bytes::from_static(b"v").into())
        .await
        .unwrap_err();
    assert!(is_transient(&err));
}

#[tokio::test]
async fn lost_put_responses_still_land_once() {
    let (store, faults) = faulty(3);
    faults.set(
        Op::Put,
        FaultPlan {
            lost_response_rate: 1.0,
            ..FaultPlan::default()
        },
    );
    // The first attempt lands but reports failure; the create-only retry
    // then finds it; put_object counts that as success.
    let data = Bytes::from_static(b"object bytes");
    crate::object::put_object(store.as_ref(), skiff_common::ObjectId(1), data.clone())
        .await
        .unwrap();
    faults.clear();
    let got = store
        .get(&crate::object::object_key(skiff_common::ObjectId(1)))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, data);
}
