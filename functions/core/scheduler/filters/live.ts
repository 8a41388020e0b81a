// A machine whose last heartbeat is older than MACHINE_LIVENESS_SECONDS gets no work (the reaper re-routes its jobs).
import type { MachineFilter } from './filter.js';

export const live: MachineFilter = { name: 'live', accepts: (m) => m.live };
