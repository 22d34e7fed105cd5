// pg-boss side of bench/jobqueue/run.sh. Prints one JSON line.
// Configuration: pg-boss's documented throughput knobs: batch insert
// (`insert`), batched fetch and completion (`work` with batchSize), several
// `work` subscriptions for concurrency, the minimum polling interval (0.5 s;
// pg-boss 10 has no LISTEN/NOTIFY wake-up), maintenance off during the run.
import PgBoss from "pg-boss";
import pg from "pg";

const connectionString = process.env.BENCH_DATABASE_URL;
const N = Number(process.env.BENCH_JOBS || 50000);
const CHUNK = Number(process.env.BENCH_CHUNK || 1000);
const LAT_N = Number(process.env.BENCH_LATENCY_JOBS || 300);
const LAT_EVERY = Number(process.env.BENCH_LATENCY_INTERVAL_MS || 20);
// Batches large enough that the polling interval is not the limit: a worker
// fetches, runs the batch, then waits out the rest of the 0.5 s, so 4 x 250
// capped pg-boss at 2,000 jobs/s. 4 x 5000 measured 22-24k; 8 x 5000 and
// 4 x 10000 were no faster.
const WORKERS = Number(process.env.BENCH_PGBOSS_WORKERS || 4);
const BATCH = Number(process.env.BENCH_PGBOSS_BATCH || 5000);
const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const boss = new PgBoss({ connectionString, max: 10, supervise: false, schedule: false, migrate: true });
boss.on("error", (e) => console.error("pg-boss:", e.message));
await boss.start();
await boss.createQueue("noop");
await boss.createQueue("lat");
const pool = new pg.Pool({ connectionString, max: 2 });
await pool.query("DELETE FROM pgboss.job");

let t = nowMs();
for (let i = 0; i < N; i += CHUNK) {
  const jobs = [];
  for (let j = i; j < Math.min(N, i + CHUNK); j++) jobs.push({ name: "noop", data: { i: j } });
  await boss.insert(jobs);
}
const enqueueRate = N / ((nowMs() - t) / 1000);
await pool.query("VACUUM ANALYZE pgboss.job");

const remaining = async () =>
  Number(
    (await pool.query("SELECT count(*) FROM pgboss.job WHERE name = 'noop' AND state < 'completed'")).rows[0].count,
  );
t = nowMs();
for (let w = 0; w < WORKERS; w++) {
  await boss.work("noop", { batchSize: BATCH, pollingIntervalSeconds: 0.5 }, async () => {});
}
while ((await remaining()) > 0) await sleep(20);
const processRate = N / ((nowMs() - t) / 1000);
await boss.offWork("noop");

const delays = [];
await boss.work("lat", { batchSize: 100, pollingIntervalSeconds: 0.5 }, async (jobs) => {
  const now = nowMs();
  for (const j of jobs) delays.push(now - j.data.t);
});
await sleep(500);
for (let i = 0; i < LAT_N; i++) {
  const next = nowMs() + LAT_EVERY;
  await boss.send("lat", { t: nowMs() });
  const wait = next - nowMs();
  if (wait > 0) await sleep(wait);
}
const deadline = nowMs() + 30000;
while (delays.length < LAT_N && nowMs() < deadline) await sleep(20);
await boss.stop({ graceful: false, wait: false });
await pool.end();
delays.sort((a, b) => a - b);
const pct = (p) => delays[Math.max(0, Math.ceil(delays.length * p) - 1)];
console.log(
  JSON.stringify({
    system: "pg-boss",
    config: `insert() batches, ${WORKERS} x work(batchSize ${BATCH}, pollingIntervalSeconds 0.5)`,
    enqueue_jobs_per_s: enqueueRate,
    enqueue_http_jobs_per_s: null,
    process_jobs_per_s: processRate,
    latency_p50_ms: pct(0.5),
    latency_p99_ms: pct(0.99),
    latency_samples: delays.length,
  }),
);
process.exit(0);
