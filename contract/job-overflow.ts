// A job's cross-pool overflow in words, as the CLI (`job --explain`) and the web job page show it. Free of zod, so the
// page can import it without the schema library.
import type { JobOverflow } from './jobs.js';

export function describeOverflow(o: JobOverflow): string {
  const why =
    o.from_wait_seconds === null
      ? `no machine of ${o.from_pool} could take it`
      : `${o.from_pool}'s expected wait ${o.from_wait_seconds} s > threshold ${o.threshold_seconds} s`;
  return `overflowed from pool ${o.from_pool} to ${o.to_pool}: ${why} (${o.to_pool}'s expected wait ${o.to_wait_seconds} s)`;
}
