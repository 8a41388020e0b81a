// The affinity policy's scorers, in the order their points are added (and listed in `Assignment.breakdown`).
// Adding a scorer: one file under scorers/ and one line here.
import { affinity } from './scorers/affinity.js';
import { avoid } from './scorers/avoid.js';
import { download } from './scorers/download.js';
import { hrw } from './scorers/hrw.js';
import { load } from './scorers/load.js';
import { overload } from './scorers/overload.js';

export const SCORERS = [affinity, download, load, hrw, avoid, overload] as const;

/** Weight keys of the registered scorers. */
export type ScorerWeight = (typeof SCORERS)[number]['weight'];
