// The `command` executor: runs EXECUTOR_COMMAND as a child process (no shell) in its own process group.
//
// What the program gets (environment):
//   LORA_ROUTER_JOB_ID, LORA_ROUTER_EPOCH, LORA_ROUTER_ATTEMPT, LORA_ROUTER_SERVICE
//   LORA_ROUTER_JOB_FILE    JSON: {job_id, epoch, attempt, service_required, payload, loras:[{kind,key,path,sha256,size_bytes}]}
//   LORA_ROUTER_LORA_PATHS  the LoRA file paths joined with the OS path delimiter (':' on Linux)
//   LORA_ROUTER_OUTPUT_DIR  an empty directory for outputs: `result.json` there becomes the job's result, every other
//                           file is uploaded as a job output (images...) when the program exits 0
// plus an allow-list of the agent's environment (PATH, locale, TZ, GPU selection: JOB_ENV_ALLOWED) and nothing else:
// no token, storage or Service Bus setting can reach a job.
//
// As whom: EXECUTOR_USER, through setpriv (./job-user.ts): the job cannot read the agent's /proc/<pid>/environ, its
// token file or its state directory. Its run directory is handed to that user for the run and taken back afterwards.
//
// What it may do:
//   - print lines on stdout/stderr: they become the job's log (batched, ≤ 1 s behind);
//   - print `::progress 0.42 optional message` (or `::progress 42%`) on stdout: a progress event, not a log line;
//   - write `$LORA_ROUTER_OUTPUT_DIR/result.json` (≤ 1 MiB of JSON) and exit 0: succeeded with that result.
// Exit codes: 0 → succeeded; 75 (EX_TEMPFAIL) → failed, retryable (another attempt may succeed); any other → failed,
// not retryable (the job's own failure), reason = exit code + the tail of stderr. Killed by a signal the agent did not
// send (OOM killer, GPU fault) → failed, retryable. Could not start the program → failed, `infrastructure` (this
// machine is misconfigured: the job is handed back without spending an attempt and the machine reports unhealthy).
// Cancel: SIGTERM to the whole process group, SIGKILL after CANCEL_GRACE_SECONDS. When the main process exits, whatever
// it left running in its group is killed too, so nothing outlives a job on the GPU.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import type { Logger } from '../logger.js';
import { asJobUser, findSetpriv, handOver, takeBack, type JobUser } from './job-user.js';
import { resolveExecutable } from './preflight.js';
import { MAX_LINE_CHARS, type Execution, type ExecutionOutcome, type ExecutionSink, type Executor, type ExecutorJob } from './types.js';

export const EX_TEMPFAIL = 75;
export const MAX_RESULT_BYTES = 1024 * 1024;
const STDERR_TAIL_LINES = 20;
const MAX_REASON_CHARS = 2000;

export interface CommandExecutorOptions {
  command: string;
  args: string[];
  /** SIGTERM → SIGKILL delay on cancel. */
  cancelGraceMs: number;
  log?: Logger;
  /** Base environment (default process.env); only the JOB_ENV_ALLOWED names of it reach a job. */
  baseEnv?: NodeJS.ProcessEnv;
  /** EXECUTOR_USER, resolved: jobs run as this user. Undefined: as the agent's own user (EXECUTOR_TRUSTED_SAME_USER). */
  jobUser?: JobUser;
}

/** The only variables of the agent's environment a job gets: how to find programs, locale, time zone, which GPUs. */
export const JOB_ENV_ALLOWED = /^(PATH|LANG|LANGUAGE|LC_[A-Z]+|TZ|CUDA_VISIBLE_DEVICES|CUDA_DEVICE_ORDER|NVIDIA_VISIBLE_DEVICES|HIP_VISIBLE_DEVICES|ROCR_VISIBLE_DEVICES)$/;
/** With no job user (trusted same-user box) the job is the agent's user anyway: its home and name pass too. */
const SAME_USER_ALLOWED = /^(HOME|USER|LOGNAME)$/;

/** The environment a job inherits: an allow-list of the agent's, so nothing that could let a job act as the machine. */
export function jobBaseEnv(env: NodeJS.ProcessEnv, sameUser = true): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && (JOB_ENV_ALLOWED.test(k) || (sameUser && SAME_USER_ALLOWED.test(k)))) out[k] = v;
  }
  return out;
}

/** `::progress 0.42 message` / `::progress 42% message` → fraction + message. */
export function parseProgressLine(line: string): { fraction: number; message?: string } | undefined {
  const m = /^::progress\s+(\d+(?:\.\d+)?)(%?)(?:\s+(.*))?$/.exec(line.trim());
  if (!m) return undefined;
  let fraction = Number(m[1]);
  if (m[2] === '%') fraction /= 100;
  if (!Number.isFinite(fraction)) return undefined;
  fraction = Math.min(1, Math.max(0, fraction));
  const message = m[3]?.trim();
  return message ? { fraction, message: message.slice(0, 1000) } : { fraction };
}

/** Splits a byte stream into lines (\n or \r\n); lines longer than MAX_LINE_CHARS are cut into several. */
export class LineSplitter {
  private buf = '';
  private readonly decoder = new StringDecoder('utf8');
  constructor(private readonly onLine: (line: string) => void) {}
  push(chunk: Buffer): void {
    this.buf += this.decoder.write(chunk);
    let i: number;
    while ((i = this.buf.indexOf('\n')) >= 0) {
      this.emit(this.buf.slice(0, i).replace(/\r$/, ''));
      this.buf = this.buf.slice(i + 1);
    }
    while (this.buf.length > MAX_LINE_CHARS) {
      this.onLine(this.buf.slice(0, MAX_LINE_CHARS));
      this.buf = this.buf.slice(MAX_LINE_CHARS);
    }
  }
  end(): void {
    this.buf += this.decoder.end();
    if (this.buf.length > 0) this.emit(this.buf);
    this.buf = '';
  }
  private emit(line: string): void {
    for (let i = 0; i < line.length || i === 0; i += MAX_LINE_CHARS) this.onLine(line.slice(i, i + MAX_LINE_CHARS));
  }
}

export function writeJobFile(job: ExecutorJob): { jobFile: string; outputDir: string } {
  mkdirSync(job.runDir, { recursive: true });
  const outputDir = job.outputDir;
  mkdirSync(outputDir, { recursive: true });
  const jobFile = join(job.runDir, 'job.json');
  const body = {
    job_id: job.jobId,
    epoch: job.epoch,
    attempt: job.attempt,
    service_required: job.serviceRequired,
    payload: job.payload,
    loras: job.loras.map((l) => ({ kind: l.kind, key: l.key, path: l.path, sha256: l.sha256, size_bytes: l.size_bytes })),
  };
  writeFileSync(jobFile, JSON.stringify(body, null, 2), { mode: 0o640 });
  return { jobFile, outputDir };
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (!child.pid) return;
  try {
    process.kill(-child.pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') {
      try {
        child.kill(signal);
      } catch {
        // gone
      }
    }
  }
}

function readResult(outputDir: string): { ok: true; result?: unknown } | { ok: false; reason: string } {
  const path = join(outputDir, 'result.json');
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    return { ok: true };
  }
  if (size > MAX_RESULT_BYTES) return { ok: false, reason: `result.json is ${size} bytes; at most ${MAX_RESULT_BYTES} are accepted` };
  try {
    return { ok: true, result: JSON.parse(readFileSync(path, 'utf8')) as unknown };
  } catch (err) {
    return { ok: false, reason: `result.json is not valid JSON: ${(err as Error).message}` };
  }
}

export class CommandExecutor implements Executor {
  readonly kind = 'command';
  private readonly setpriv: string | undefined;
  constructor(private readonly opts: CommandExecutorOptions) {
    this.setpriv = opts.jobUser ? findSetpriv() : undefined;
  }

  preflight(): string | null {
    if (this.opts.jobUser && !this.setpriv) return 'EXECUTOR_USER needs setpriv (util-linux), not found in /usr/bin or /bin';
    const r = resolveExecutable(this.opts.command, this.opts.baseEnv ?? process.env);
    return r.ok ? null : r.problem;
  }

  start(job: ExecutorJob, sink: ExecutionSink): Execution {
    const log = this.opts.log;
    let cancelReason: string | undefined;
    let forced = false;
    let exited = false;
    let killTimer: NodeJS.Timeout | undefined;
    let child: ChildProcess | undefined;
    const stderrTail: string[] = [];
    let resolveDone!: (o: ExecutionOutcome) => void;
    const done = new Promise<ExecutionOutcome>((r) => (resolveDone = r));
    let settled = false;
    const settle = (o: ExecutionOutcome): void => {
      if (settled) return;
      settled = true;
      clearTimeout(killTimer);
      resolveDone(o);
    };

    const user = this.opts.jobUser;
    const reclaim = (): void => {
      try {
        takeBack(job.runDir);
      } catch (e) {
        log?.warn({ job_id: job.jobId, err: (e as Error).message }, 'executor: could not take the run directory back from the job user');
      }
    };
    let outputDir: string;
    try {
      const files = writeJobFile(job);
      outputDir = files.outputDir;
      const env: NodeJS.ProcessEnv = {
        ...jobBaseEnv(this.opts.baseEnv ?? process.env, !user),
        ...(user ? { HOME: job.runDir, USER: user.name, LOGNAME: user.name } : {}),
        LORA_ROUTER_JOB_ID: job.jobId,
        LORA_ROUTER_EPOCH: String(job.epoch),
        LORA_ROUTER_ATTEMPT: String(job.attempt),
        LORA_ROUTER_SERVICE: job.serviceRequired,
        LORA_ROUTER_JOB_FILE: files.jobFile,
        LORA_ROUTER_LORA_PATHS: job.loras.map((l) => l.path).join(delimiter),
        LORA_ROUTER_OUTPUT_DIR: files.outputDir,
      };
      let argv = { command: this.opts.command, args: this.opts.args, cwd: job.runDir };
      if (user) {
        if (!this.setpriv) throw new Error('EXECUTOR_USER needs setpriv (util-linux), not found');
        handOver(job.runDir, user);
        // The job user enters its run directory itself; the agent starts from the parent it may pass through.
        argv = { ...asJobUser(this.setpriv, user, job.runDir, this.opts.command, this.opts.args), cwd: dirname(job.runDir) };
      }
      child = spawn(argv.command, argv.args, { cwd: argv.cwd, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (err) {
      // Writing the job file or spawning failed: the machine's trouble (disk full, program gone), not the job's.
      if (user) reclaim();
      settle({ status: 'failed', retryable: true, infrastructure: true, reason: `cannot start ${this.opts.command}: ${(err as Error).message}` });
      return { done, cancel: () => undefined };
    }
    const proc = child;

    const out = new LineSplitter((line) => {
      const p = line.startsWith('::progress') ? parseProgressLine(line) : undefined;
      if (p) sink.progress(p.fraction, p.message);
      else sink.log('stdout', line);
    });
    const err = new LineSplitter((line) => {
      stderrTail.push(line);
      if (stderrTail.length > STDERR_TAIL_LINES) stderrTail.shift();
      sink.log('stderr', line);
    });
    proc.stdout!.on('data', (d: Buffer) => out.push(d));
    proc.stderr!.on('data', (d: Buffer) => err.push(d));

    let spawnError: Error | undefined;
    let exitCode: number | null = null;
    let exitSignal: NodeJS.Signals | null = null;
    proc.once('error', (e) => {
      spawnError = e;
      if (!proc.pid) {
        settle({ status: 'failed', retryable: true, infrastructure: true, reason: `cannot start ${this.opts.command}: ${e.message}` });
      }
    });
    proc.once('exit', (code, signal) => {
      exited = true;
      exitCode = code;
      exitSignal = signal;
      clearTimeout(killTimer);
      // Anything the job left behind in its process group goes too (and its pipes close, so 'close' can fire).
      killGroup(proc, 'SIGKILL');
    });
    proc.once('close', () => {
      out.end();
      err.end();
      // The job's processes are gone: its run directory (outputs) belongs to the agent again before anything reads it.
      if (user) reclaim();
      if (spawnError && !proc.pid) return;
      log?.debug({ job_id: job.jobId, code: exitCode, signal: exitSignal, cancelled: cancelReason !== undefined }, 'executor: process ended');
      if (cancelReason !== undefined) {
        settle({ status: 'cancelled', reason: cancelReason, forced });
        return;
      }
      if (exitCode === 0) {
        const r = readResult(outputDir);
        settle(r.ok ? { status: 'succeeded', result: r.result } : { status: 'failed', retryable: false, reason: r.reason, exitCode: 0 });
        return;
      }
      const tail = stderrTail.join('\n').trim();
      if (exitSignal) {
        settle({
          status: 'failed',
          retryable: true,
          exitCode,
          signal: exitSignal,
          reason: withTail(`killed by ${exitSignal}`, tail),
        });
        return;
      }
      settle({
        status: 'failed',
        retryable: exitCode === EX_TEMPFAIL,
        exitCode,
        signal: null,
        reason: withTail(`exit code ${exitCode}`, tail),
      });
    });

    const cancel = (reason: string): void => {
      if (cancelReason !== undefined || exited || settled) return;
      cancelReason = reason;
      log?.info({ job_id: job.jobId, reason, grace_ms: this.opts.cancelGraceMs }, 'executor: stopping job (SIGTERM)');
      killGroup(proc, 'SIGTERM');
      killTimer = setTimeout(() => {
        if (exited) return;
        forced = true;
        log?.warn({ job_id: job.jobId }, 'executor: job ignored SIGTERM; SIGKILL');
        killGroup(proc, 'SIGKILL');
      }, this.opts.cancelGraceMs);
    };
    return { done, cancel };
  }
}

/** "exit code 3: <stderr tail>", keeping the head and the end of the tail (what explains a failure) within limits. */
export function withTail(head: string, tail: string): string {
  if (!tail) return head;
  const room = MAX_REASON_CHARS - head.length - 2;
  return `${head}: ${tail.length <= room ? tail : `…${tail.slice(tail.length - room + 1)}`}`;
}
