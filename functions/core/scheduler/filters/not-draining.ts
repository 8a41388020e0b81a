// A draining agent (stopping) takes no new work; its running jobs finish or are handed back.
import type { MachineFilter } from './filter.js';

export const notDraining: MachineFilter = { name: 'not-draining', accepts: (m) => !m.draining };
