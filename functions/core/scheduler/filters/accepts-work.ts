// A machine an admin drained (`lora-router machines drain`), or whose agent reports itself broken (executor missing,
// disk full, executor backend down: `unhealthy_reason`), takes no new work; its running jobs finish. Absent = accepts.
import type { MachineFilter } from './filter.js';

export const acceptsWork: MachineFilter = { name: 'accepts-work', accepts: (m) => m.acceptsWork !== false };
