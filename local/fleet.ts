// The local GPU fleet: agent child processes, each with its own machine id, token and cache dir under .local/.
// Filled in by the agent work; with no agent entry point yet it starts nothing.
import type { Stack } from './stack.js';

export interface FleetAgent {
  machineId: string;
  pool: string;
  pid: number;
  cacheDir: string;
  budgetBytes: number;
}
export interface Fleet {
  agents: FleetAgent[];
  stop(): Promise<void>;
}

export async function startFleet(_opts: { stack: Stack; count: number; budget: string; stateDir: string }): Promise<Fleet> {
  return { agents: [], stop: async () => {} };
}
