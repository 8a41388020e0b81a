// A machine whose heartbeat says it cannot receive its dispatches (its Service Bus session is held by another receiver,
// or its transport is down) would leave every job sent to it unclaimed until the claim timeout. It gets no work until
// a heartbeat says it receives again. Absent (older agents, the simulator) means receiving.
import type { MachineFilter } from './filter.js';

export const receiving: MachineFilter = { name: 'receiving', accepts: (m) => m.receiving !== false };
