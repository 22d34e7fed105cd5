// graphile-worker side of bench/jobqueue/run.sh. Prints one JSON line.
// Configuration: the "Performance" page of the graphile-worker docs
// (concurrentJobs 24, maxPoolSize 25, localQueue.size 500, batched
// completion with completeJobBatchDelay/failJobBatchDelay 0).
import { run, makeWorkerUtils, Logger } from "graphile-worker";
import pg from "pg";

const connectionString = process.env.BENCH_DATABASE_URL;
const N = Number(process.env.BENCH_JOBS || 50000);
const CHUNK = Number(process.env.BENCH_CHUNK || 1000);
const LAT_N = Number(process.env.BENCH_LATENCY_JOBS || 300);
const LAT_EVERY = Number(process.env.BENCH_LATENCY_INTERVAL_MS || 20);
const nowMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const preset = {
  worker: {
    connectionString,
    concurrentJobs: 24,
    maxPoolSize: 25,
    localQueue: { size: 500 },
    completeJobBatchDelay: 0,
    failJobBatchDelay: 0,
    pollInterval: 2000,
  },
};
const logger = new Logger(() => (level, message) => {
  if (level === "error") console.error(message);
});

const pool = new pg.Pool({ connectionString, max: 2 });
const utils = await makeWorkerUtils({ connectionString, logger });
await utils.migrate();
await pool.query("DELETE FROM graphile_worker._private_jobs");

// 1. Bulk enqueue via addJobs (the library's batch insert).
let t = nowMs();
for (let i = 0; i < N; i += CHUNK) {
  const specs = [];
  for (let j = i; j < Math.min(N, i + CHUNK); j++) specs.push({ identifier: "noop", payload: { i: j } });
  await utils.addJobs(specs);
}
const enqueueRate = N / ((nowMs() - t) / 1000);
await pool.query("VACUUM ANALYZE graphile_worker._private_jobs");

// 2. Process them.
const delays = [];
const taskList = {
  noop: async () => {},
  lat: async (payload) => {
    delays.push(nowMs() - payload.t);
  },
};
const remaining = async () =>
  Number((await pool.query("SELECT count(*) FROM graphile_worker._private_jobs")).rows[0].count);
t = nowMs();
const runner = await run({ preset, taskList, noHandleSignals: true, logger });
while ((await remaining()) > 0) await sleep(20);
const processRate = N / ((nowMs() - t) / 1000);

// 3. Latency of a trickle (runner idle, woken by LISTEN/NOTIFY).
await sleep(500);
for (let i = 0; i < LAT_N; i++) {
  const next = nowMs() + LAT_EVERY;
  await utils.addJob("lat", { t: nowMs() });
  const wait = next - nowMs();
  if (wait > 0) await sleep(wait);
}
const deadline = nowMs() + 30000;
while (delays.length < LAT_N && nowMs() < deadline) await sleep(20);
await runner.stop();
await utils.release();
await pool.end();
delays.sort((a, b) => a - b);
const pct = (p) => delays[Math.max(0, Math.ceil(delays.length * p) - 1)];
console.log(
  JSON.stringify({
    system: "graphile-worker",
    config: "concurrentJobs 24, maxPoolSize 25, localQueue.size 500, completeJobBatchDelay 0 (docs' performance config)",
    enqueue_jobs_per_s: enqueueRate,
    enqueue_http_jobs_per_s: null,
    process_jobs_per_s: processRate,
    latency_p50_ms: pct(0.5),
    latency_p99_ms: pct(0.99),
    latency_samples: delays.length,
  }),
);
