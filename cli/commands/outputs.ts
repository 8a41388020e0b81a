// `lora-router outputs <job_id> [--download DIR]`: a job's output files (name, size, content type, sha256) and, with
// --download, each file fetched through its short-lived read URL into DIR with a progress bar, its sha256 checked
// against the job's record before it is given its final name.
import { createHash } from 'node:crypto';
import { createWriteStream, mkdirSync, renameSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { Presets, SingleBar } from 'cli-progress';
import type { Command } from 'commander';
import type { JobOutputList } from '../../contract/outputs.js';
import type { ApiClient } from '../../api-client/index.js';
import type { CliContext } from '../index.js';

export interface DownloadedOutput {
  name: string;
  path: string;
  size_bytes: number;
  sha256: string;
}

/** Downloads every output of `list` into `dir`; throws when a file's sha256 differs from the recorded one. */
export async function downloadOutputs(list: JobOutputList, dir: string, onBytes: (n: number) => void = () => undefined): Promise<DownloadedOutput[]> {
  mkdirSync(dir, { recursive: true });
  const out: DownloadedOutput[] = [];
  for (const o of list.outputs) {
    const res = await fetch(o.url);
    if (!res.ok || !res.body) throw new Error(`downloading ${o.name}: HTTP ${res.status}`);
    const hash = createHash('sha256');
    const final = join(dir, o.name);
    const part = `${final}.part`;
    const tap = new Transform({
      transform(chunk: Buffer, _e, cb) {
        hash.update(chunk);
        onBytes(chunk.length);
        cb(null, chunk);
      },
    });
    try {
      await pipeline(Readable.fromWeb(res.body as WebReadableStream), tap, createWriteStream(part));
    } catch (err) {
      rmSync(part, { force: true });
      throw err;
    }
    const sha256 = hash.digest('hex');
    if (sha256 !== o.sha256) {
      rmSync(part, { force: true });
      throw new Error(`${o.name}: sha256 ${sha256} does not match the job's record ${o.sha256}; not kept`);
    }
    renameSync(part, final);
    out.push({ name: o.name, path: final, size_bytes: o.size_bytes, sha256 });
  }
  return out;
}

export const fetchOutputs = (api: ApiClient, jobId: string): Promise<JobOutputList> => api.get<JobOutputList>(`jobs/${encodeURIComponent(jobId)}/outputs`);

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

export function register(program: Command, ctx: CliContext): void {
  program
    .command('outputs')
    .description("list a job's output files; --download DIR fetches them (sha256 checked)")
    .argument('<job_id>')
    .option('--download <dir>', 'download every output into this folder')
    .option('--json', 'print the list (with read URLs) as JSON')
    .action(async (jobId: string, opts: { download?: string; json?: boolean }) => {
      const list = await fetchOutputs(ctx.api(), jobId);
      if (opts.json && !opts.download) {
        process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        return;
      }
      if (list.outputs.length === 0) {
        process.stdout.write(`job ${jobId} has no outputs (yet): outputs are listed once the job has succeeded\n`);
        return;
      }
      if (!opts.download) {
        const rows = [['name', 'bytes', 'content type', 'sha256'], ...list.outputs.map((o) => [o.name, String(o.size_bytes), o.content_type, o.sha256])];
        process.stdout.write(`${table(rows)}\n${list.outputs.length} output(s) of epoch ${list.epoch}; kept until ${list.outputs_expire_at ?? '?'}\n`);
        return;
      }
      const dir = resolve(opts.download);
      const total = list.outputs.reduce((n, o) => n + o.size_bytes, 0);
      const bar = new SingleBar(
        { format: ' {bar} {percentage}% | {value}/{total} bytes | {files} file(s)', hideCursor: true, noTTYOutput: false, stream: process.stderr },
        Presets.shades_classic,
      );
      bar.start(total, 0, { files: list.outputs.length });
      let done = 0;
      let files: DownloadedOutput[];
      try {
        files = await downloadOutputs(list, dir, (n) => bar.update((done += n)));
      } finally {
        bar.stop();
      }
      if (opts.json) process.stdout.write(`${JSON.stringify(files, null, 2)}\n`);
      else for (const f of files) process.stdout.write(`${f.path}  ${f.size_bytes} bytes  sha256 ${f.sha256} (matches the job)\n`);
    });
}
