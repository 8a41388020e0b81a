// The affinity policy's scorers, in the order their points are added (and listed in `Assignment.breakdown`), and the
// machine filters every policy applies. Adding a scorer or a filter: one file under scorers/ or filters/, one line here.
import type { MachineFilter } from './filters/filter.js';
import { acceptsWork } from './filters/accepts-work.js';
import { live } from './filters/live.js';
import { notDraining } from './filters/not-draining.js';
import { receiving } from './filters/receiving.js';
import { affinity } from './scorers/affinity.js';
import { avoid } from './scorers/avoid.js';
import { download } from './scorers/download.js';
import { egress } from './scorers/egress.js';
import { hrw } from './scorers/hrw.js';
import { load } from './scorers/load.js';
import { overload } from './scorers/overload.js';
import { start } from './scorers/start.js';

export const SCORERS = [affinity, download, load, hrw, avoid, overload, start, egress] as const;

/** Weight keys of the registered scorers. */
export type ScorerWeight = (typeof SCORERS)[number]['weight'];

/** Machines any of these refuse get no work in the pass (whatever the job). */
export const MACHINE_FILTERS: readonly MachineFilter[] = [live, notDraining, receiving, acceptsWork];
