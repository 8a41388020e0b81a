// How long a LoRA record that holds nothing is kept. Rejected records stay for REJECTED_LORA_RETENTION_HOURS so the
// owner can read the reject_reason; an upload session is normally removed by the sweeper soon after its SAS expires,
// and its ttl is the backstop should the sweeper not run. Ready and validating records never expire.
//
// Cosmos deletes such an item `ttl` seconds after its last write (the `loras` container has defaultTtl -1, which turns
// per-item ttl on without expiring anything else). The local emulator (cosmosdb-server) does not expire items, so
// `retain_until` (the same moment, written with the ttl) is also checked on every read and list, and the sweeper
// deletes what has passed it (with any blob): expired records behave the same in both places.
import type { Config } from '../config.js';
import type { LoraDoc } from './records.js';

/** Seconds a record in this state is kept after its last write; undefined = kept until deleted. */
export function retentionSeconds(doc: Pick<LoraDoc, 'status'>, config: Pick<Config, 'rejectedLoraRetentionHours' | 'uploadSessionMinutes'>): number | undefined {
  const keep = config.rejectedLoraRetentionHours * 3600;
  if (doc.status === 'rejected') return keep;
  if (doc.status === 'uploading') return config.uploadSessionMinutes * 60 + keep;
  return undefined;
}

/** The record with ttl and retain_until set for its state (or removed, for states that are kept). */
export function withRetention(doc: LoraDoc, config: Pick<Config, 'rejectedLoraRetentionHours' | 'uploadSessionMinutes'>, nowMs: number): LoraDoc {
  const { ttl: _ttl, retain_until: _until, ...rest } = doc;
  const seconds = retentionSeconds(doc, config);
  if (seconds === undefined) return rest;
  // From the state change the record carries (updated_at), not from this write's clock: the two can differ by the
  // time between them, and retain_until must be exactly the retention after the change.
  const since = Date.parse(doc.updated_at ?? '');
  return { ...rest, ttl: seconds, retain_until: new Date((Number.isFinite(since) ? since : nowMs) + seconds * 1000).toISOString() };
}

/** True once a record's retention has passed (Cosmos would no longer return it). */
export function isExpired(doc: Pick<LoraDoc, 'retain_until'>, nowMs: number): boolean {
  return typeof doc.retain_until === 'string' && Date.parse(doc.retain_until) <= nowMs;
}
