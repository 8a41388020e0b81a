// Small display helpers: sizes, times and statuses in plain words.
import type { LoraStatus } from '../../contract/loras.js';
import type { JobStatus } from '../../contract/jobs.js';

export function bytes(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${v.toFixed(i === 0 || v >= 100 ? 0 : 1)} ${units[i]}`;
}

export function ago(iso: string | null | undefined, now = Date.now()): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

export function duration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined) return 'unknown';
  if (seconds <= 0) return 'none';
  if (seconds < 1) return 'under a second';
  if (seconds < 90) return `${Math.round(seconds)} s`;
  return `${Math.round(seconds / 60)} min`;
}

export const LORA_STATUS_WORDS: Record<LoraStatus, string> = {
  uploading: 'Uploading',
  validating: 'Checking the file',
  ready: 'Ready',
  rejected: 'Rejected',
};

export const JOB_STATUS_WORDS: Record<JobStatus, string> = {
  pending: 'Waiting for a machine',
  assigned: 'Sent to a machine',
  running: 'Running',
  succeeded: 'Succeeded',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

export const isTerminalJob = (s: JobStatus) => s === 'succeeded' || s === 'failed' || s === 'cancelled';
export const shortSha = (sha: string | null) => (sha ? `${sha.slice(0, 12)}…` : '—');
