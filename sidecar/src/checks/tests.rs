//! The checker loop: jitter and thresholds on tokio's paused clock.

use super::*;

#[test]
fn jitter_stays_within_ten_percent() {
    let mut j = Jitter::new(3);
    let i = Duration::from_secs(5);
    for _ in 0..1000 {
        let d = j.spread(i);
        assert!(d >= i.mul_f64(0.9) && d <= i.mul_f64(1.1), "{d:?}");
    }
}

/// The threshold state machine driven by the real checker loop against a
/// real file, with tokio's clock paused: `failureThreshold × interval`
/// is exactly what it takes for a check to go down, whatever the load.
#[tokio::test(start_paused = true)]
async fn file_check_goes_down_after_failure_threshold_intervals() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("heartbeat");
    std::fs::write(&path, "x").expect("write");
    let yaml = format!(
        "checks:\n  - {{name: hb, type: file, path: {:?}, interval: 1s, timeout: 500ms, \
         failureThreshold: 3, successThreshold: 2}}\n",
        path.display().to_string()
    );
    let config = crate::config::parse(&yaml, &|_| None).expect("config");
    let health = Arc::new(Health::new(&config));
    let (stop_tx, stop_rx) = watch::channel(false);
    let handles = spawn_all(
        &health,
        &config.checks,
        &[],
        &Arc::new(Secrets::default()),
        &stop_rx,
    );
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(health.status(0), crate::state::Status::Up);
    assert!(health.started() && health.ready());

    // Polls the cached state on the paused clock (each step is exact).
    async fn until(health: &Health, what: impl Fn(&crate::state::CheckState) -> bool) {
        for _ in 0..10_000 {
            if what(&health.snapshot(0)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("condition never met");
    }
    std::fs::remove_file(&path).expect("rm");
    let removed = Instant::now();
    until(&health, |s| s.consecutive_failures == 2).await;
    assert_eq!(health.status(0), crate::state::Status::Up, "2 failures < 3");
    until(&health, |s| s.consecutive_failures == 3).await;
    assert_eq!(health.status(0), crate::state::Status::Down);
    // Three jittered intervals of 1 s each (± 10 %).
    let took = removed.elapsed();
    assert!(
        took >= Duration::from_millis(2600) && took <= Duration::from_millis(3400),
        "{took:?}"
    );
    assert!(!health.ready());
    assert!(health.started(), "the startup gate is sticky");
    assert_eq!(health.snapshot(0).error.map(|e| e.kind), Some("not_found"));

    std::fs::write(&path, "x").expect("write");
    until(&health, |s| s.consecutive_successes == 1).await;
    assert_eq!(
        health.status(0),
        crate::state::Status::Down,
        "1 success < 2"
    );
    until(&health, |s| s.consecutive_successes == 2).await;
    assert_eq!(health.status(0), crate::state::Status::Up);
    assert!(health.ready());

    stop_tx.send_replace(true);
    for h in handles {
        h.await.expect("checker ends on stop");
    }
}

#[test]
fn every_key_of_every_type_has_a_schema_and_the_first_is_required() {
    for t in TYPES {
        assert!(!t.keys.is_empty(), "{} has no keys", t.name);
        for k in t.keys {
            assert!(
                KEY_SCHEMAS.iter().any(|(name, _)| name == k),
                "{}.{k} has no entry in KEY_SCHEMAS",
                t.name
            );
        }
    }
    for (k, s) in KEY_SCHEMAS {
        assert!(
            serde_json::from_str::<serde_json::Value>(s).is_ok(),
            "{k}: {s}"
        );
    }
    let s = schema();
    assert_eq!(s["types"]["postgres"]["required"], "url");
    assert_eq!(s["types"].as_object().map(|m| m.len()), Some(TYPES.len()));
}
