// A job program for the `command` executor that really uses its LoRAs: it opens every LoRA file it was given, checks
// the file size and the safetensors header (the same validator the upload pipeline runs), optionally hashes the whole
// file, prints what it found, and writes `result.json`:
//
//   EXECUTOR_COMMAND='["node", "<repo>/dist/worker-agent/src/job-scripts/open-loras.js"]'
//
// Job payload field it understands: verify_sha256 (also hash every file and compare with the job's sha256).
// Demo and test behaviour is off unless the agent's EXECUTOR_COMMAND passes `--demo` (the local fleet, the demo and
// the tests do; the sample production config does not), so a tenant's payload can never make a production machine
// sleep or write files outside the run directory. With --demo these payload fields work too:
//   sleep_ms | duration_ms   keep "working" this long after opening the LoRAs, printing ::progress lines (default 0)
//   fail                     true or a message: print it on stderr and exit with `exit_code` (default 3)
//   exit_code                exit code used by `fail` (75 = retryable, per the executor's contract)
//   ignore_sigterm           keep running on SIGTERM (to show the executor's SIGKILL after the grace period)
//   lines                    print this many extra numbered log lines on stdout
//   trace_file               append one line per lifecycle step (start, opened, sigterm, done) to this path (tests)
import { createHash } from 'node:crypto';
import { appendFileSync, createReadStream, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileRangeSource } from '../../../functions/core/safetensors/range-source.js';
import { validateSafetensors } from '../../../functions/core/safetensors/validate.js';

interface JobFile {
  job_id: string;
  epoch: number;
  attempt: number;
  payload: Record<string, unknown>;
  loras: { kind: string; key: string; path: string; sha256: string; size_bytes: number }[];
}

const jobFilePath = process.env.LORA_ROUTER_JOB_FILE;
const outputDir = process.env.LORA_ROUTER_OUTPUT_DIR;
if (!jobFilePath || !outputDir) {
  process.stderr.write('open-loras: LORA_ROUTER_JOB_FILE and LORA_ROUTER_OUTPUT_DIR must be set (run me from the agent)\n');
  process.exit(2);
}
const job = JSON.parse(readFileSync(jobFilePath, 'utf8')) as JobFile;
const demo = process.argv.includes('--demo');
const payload = job.payload ?? {};
// Without --demo only the production field survives.
const p: Record<string, unknown> = demo ? payload : { verify_sha256: payload.verify_sha256 };
const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);
const sleepMs = num(p.sleep_ms) || num(p.duration_ms);
const traceFile = typeof p.trace_file === 'string' ? p.trace_file : undefined;
const trace = (what: string): void => {
  if (traceFile) appendFileSync(traceFile, `${job.job_id} ${job.epoch} ${process.pid} ${what}\n`);
};

let terminated = false;
process.on('SIGTERM', () => {
  trace('sigterm');
  process.stdout.write('open-loras: SIGTERM received\n');
  if (p.ignore_sigterm === true) return;
  terminated = true;
  process.exitCode = 143;
  process.exit(143);
});

async function sha256Of(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: 4 * 1024 * 1024 })) h.update(chunk as Buffer);
  return h.digest('hex');
}

async function main(): Promise<number> {
  trace('start');
  process.stdout.write(`open-loras: job ${job.job_id} epoch ${job.epoch} attempt ${job.attempt}, ${job.loras.length} LoRA(s)\n`);
  const opened: Record<string, unknown>[] = [];
  for (const l of job.loras) {
    const size = statSync(l.path).size;
    if (size !== l.size_bytes) {
      process.stderr.write(`open-loras: ${l.key} is ${size} bytes on disk, the job says ${l.size_bytes}\n`);
      return 4;
    }
    const src = await fileRangeSource(l.path);
    let v;
    try {
      v = await validateSafetensors(src);
    } finally {
      await src.close();
    }
    if (!v.ok) {
      process.stderr.write(`open-loras: ${l.key} is not a usable safetensors file (${v.code}): ${v.reason}\n`);
      return 4;
    }
    if (p.verify_sha256 === true) {
      const digest = await sha256Of(l.path);
      if (digest !== l.sha256.toLowerCase()) {
        process.stderr.write(`open-loras: ${l.key} sha256 ${digest} does not match ${l.sha256}\n`);
        return 4;
      }
    }
    process.stdout.write(`open-loras: opened ${l.kind} ${l.key}: ${v.tensorCount} tensors (${v.dtypes.join(',')}), ${size} bytes\n`);
    opened.push({ kind: l.kind, key: l.key, size_bytes: size, tensors: v.tensorCount, dtypes: v.dtypes, header_bytes: v.headerBytes });
  }
  trace('opened');

  const extra = Math.min(10_000, Math.floor(num(p.lines)));
  for (let i = 1; i <= extra; i++) process.stdout.write(`open-loras: line ${i}\n`);

  if (sleepMs > 0) {
    const started = Date.now();
    const step = Math.max(50, Math.min(1000, sleepMs / 4));
    while (Date.now() - started < sleepMs) {
      await new Promise((r) => setTimeout(r, Math.min(step, sleepMs - (Date.now() - started))));
      process.stdout.write(`::progress ${Math.min(1, (Date.now() - started) / sleepMs).toFixed(2)} working\n`);
    }
  }

  if (p.fail !== undefined && p.fail !== false) {
    const msg = typeof p.fail === 'string' ? p.fail : 'the job was asked to fail';
    process.stderr.write(`open-loras: ${msg}\n`);
    trace('failed');
    return typeof p.exit_code === 'number' && Number.isInteger(p.exit_code) ? p.exit_code : 3;
  }

  writeFileSync(join(outputDir!, 'result.json'), JSON.stringify({ opened, slept_ms: sleepMs, pid: process.pid }));
  process.stdout.write('open-loras: done\n');
  trace('done');
  return 0;
}

main().then(
  (code) => {
    if (!terminated) process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`open-loras: ${(err as Error)?.stack ?? String(err)}\n`);
    process.exit(1);
  },
);
