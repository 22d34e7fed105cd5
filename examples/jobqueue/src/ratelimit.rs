//! Per-client rate limiting of job submission.
//!
//! With `REDIS_URL`, the limit is shared by every API replica: a fixed
//! one-minute window per client in Redis (`INCR` + `EXPIRE`, one pipelined
//! round trip). Redis is optional and allowed to fail: when it is down or
//! slow (50 ms budget), each replica falls back to its own in-memory
//! window and the API keeps serving — berth's optional `redis` check shows
//! the pod as `degraded`, not unready.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionManager;

use crate::metrics::Metrics;

const REDIS_BUDGET: Duration = Duration::from_millis(50);

pub struct RateLimiter {
    per_minute: u64,
    redis: Option<tokio::sync::RwLock<Option<ConnectionManager>>>,
    redis_client: Option<redis::Client>,
    redis_up: AtomicBool,
    local: Mutex<HashMap<String, (u64, u64)>>,
    metrics: Arc<Metrics>,
}

fn window_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 60)
        .unwrap_or(0)
}

impl RateLimiter {
    /// `per_minute == 0` disables limiting. An unparseable Redis URL is
    /// reported by the caller's config validation, here it just disables Redis.
    pub fn new(per_minute: u64, redis_url: Option<&str>, metrics: Arc<Metrics>) -> Arc<Self> {
        let redis_client = redis_url.and_then(|u| berth_tls::redis_tls::client(u).ok());
        let limiter = Arc::new(RateLimiter {
            per_minute,
            redis: redis_client
                .as_ref()
                .map(|_| tokio::sync::RwLock::new(None)),
            redis_client,
            redis_up: AtomicBool::new(false),
            local: Mutex::new(HashMap::new()),
            metrics,
        });
        limiter.metrics.api_rate_limiter_redis_up.set(&[], 0.0);
        limiter
    }

    pub fn redis_up(&self) -> bool {
        self.redis_up.load(Ordering::Relaxed)
    }

    /// Keeps a Redis connection manager around; (re)creates it while Redis
    /// is unreachable. The manager itself reconnects after it connected once.
    pub fn spawn_connector(self: &Arc<Self>) {
        let (Some(client), Some(_)) = (self.redis_client.clone(), self.redis.as_ref()) else {
            return;
        };
        let me = self.clone();
        tokio::spawn(async move {
            loop {
                let missing = match &me.redis {
                    Some(slot) => slot.read().await.is_none(),
                    None => return,
                };
                if missing {
                    match tokio::time::timeout(
                        Duration::from_secs(2),
                        client.get_connection_manager(),
                    )
                    .await
                    {
                        Ok(Ok(cm)) => {
                            if let Some(slot) = &me.redis {
                                *slot.write().await = Some(cm);
                            }
                            me.set_redis_up(true);
                            tracing::info!("rate limiter connected to Redis");
                        }
                        _ => me.set_redis_up(false),
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        });
    }

    fn set_redis_up(&self, up: bool) {
        let was = self.redis_up.swap(up, Ordering::Relaxed);
        if was && !up {
            tracing::warn!(
                "Redis unavailable: rate limiting falls back to this replica's local limiter"
            );
        }
        self.metrics
            .api_rate_limiter_redis_up
            .set(&[], if up { 1.0 } else { 0.0 });
    }

    /// Counts `cost` submissions for `client`; false when over the limit.
    pub async fn allow(&self, client: &str, cost: u64) -> bool {
        if self.per_minute == 0 {
            return true;
        }
        let window = window_now();
        if let Some(count) = self.redis_count(client, window, cost).await {
            return count <= self.per_minute;
        }
        self.local_count(client, window, cost) <= self.per_minute
    }

    async fn redis_count(&self, client: &str, window: u64, cost: u64) -> Option<u64> {
        let slot = self.redis.as_ref()?;
        let mut cm = slot.read().await.clone()?;
        let key = format!("jobqueue:ratelimit:{client}:{window}");
        let mut pipe = redis::pipe();
        pipe.atomic()
            .cmd("INCRBY")
            .arg(&key)
            .arg(cost)
            .cmd("EXPIRE")
            .arg(&key)
            .arg(120)
            .ignore();
        match tokio::time::timeout(REDIS_BUDGET, pipe.query_async::<(u64,)>(&mut cm)).await {
            Ok(Ok((count,))) => {
                self.set_redis_up(true);
                Some(count)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "rate limiter: Redis error");
                self.set_redis_up(false);
                None
            }
            Err(_) => {
                self.set_redis_up(false);
                None
            }
        }
    }

    fn local_count(&self, client: &str, window: u64, cost: u64) -> u64 {
        let mut map = self.local.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            map.retain(|_, (w, _)| *w == window);
        }
        let entry = map.entry(client.to_string()).or_insert((window, 0));
        if entry.0 != window {
            *entry = (window, 0);
        }
        entry.1 += cost;
        entry.1
    }
}
