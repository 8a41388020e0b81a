// Fixtures for the agent integration tests: real safetensors LoRAs in Azurite + Cosmos records with their true sha256,
// and the agent as a real child process (local/agents.ts, as `npm start` runs it) with its JSON log lines collected.
import { join } from 'node:path';
import { QueueServiceClient } from '@azure/storage-queue';
import type { JobEvent, JobEventList, JobView } from '../../contract/jobs.js';
import type { MachineView } from '../../contract/machines.js';
import { queueNameFor } from '../../dispatch/index.js';
import { SHARED_OWNER } from '../../functions/core/loras/records.js';
import { seedLora } from './jobs.fixtures.js';
import { makeSafetensors } from '../../testkit/safetensors.js';
import type { ApiClient } from '../../api-client/index.js';
import type { TestHost } from '../support/stack.js';
import { spawnAgent as spawnLocalAgent, type AgentLaunch, type AgentProcess } from '../../local/agents.js';

export type { AgentProcess };

export const root = process.cwd();
export const OPEN_LORAS = join(root, 'dist/worker-agent/src/job-scripts/open-loras.js');
import { getJob, sleep, until } from '../support/helpers.js';
export { getJob, sleep, until };

export interface SeededLora {
  kind: 'user' | 'shared';
  key: string;
  size: number;
  sha256: string;
  requirement: { type: 'user'; flat_file_id: string } | { type: 'shared'; filename: string };
}

/** A valid safetensors LoRA of about `dataBytes`, uploaded to its container with a `ready` record carrying its real sha256. */
export async function seedRealLora(t: TestHost, opts: { owner: string; dataBytes: number; filename?: string; seed?: number }): Promise<SeededLora> {
  const content = makeSafetensors({ dataBytes: opts.dataBytes, seed: opts.seed ?? 7 });
  const { key, doc } = await seedLora(t, { owner: opts.owner, content, filename: opts.filename });
  return {
    kind: doc.kind,
    key,
    size: content.length,
    sha256: doc.sha256,
    requirement: doc.kind === 'shared' ? { type: 'shared', filename: key } : { type: 'user', flat_file_id: key },
  };
}

/**
 * The agent as `npm start` runs it (local/agents.ts: `lora-router agent`, token in a 0600 file, cache/ and state/
 * under `launch.dir`), with its JSON log lines captured (and appended to $AGENT_TEST_LOG when set).
 */
export function spawnAgent(launch: AgentLaunch): AgentProcess {
  return spawnLocalAgent({ ...launch, captureLogs: true, logFile: launch.logFile ?? process.env.AGENT_TEST_LOG });
}

export async function jobEvents(user: ApiClient, jobId: string): Promise<JobEvent[]> {
  const out: JobEvent[] = [];
  let after = 0;
  for (;;) {
    const page = await user.get<JobEventList>(`jobs/${jobId}/events?after=${after}`);
    out.push(...page.events);
    if (page.events.length === 0 || page.next_after === after) return out;
    after = page.next_after;
  }
}

export const logLines = (events: JobEvent[], stream?: string): string[] =>
  events.filter((e) => e.type === 'log' && (!stream || e.data.stream === stream)).flatMap((e) => (e.data.lines as string[]) ?? []);

export async function machineView(admin: ApiClient, id: string): Promise<MachineView> {
  const { machines } = await admin.get<{ machines: MachineView[] }>('machines');
  const m = machines.find((x) => x.machine_id === id);
  if (!m) throw new Error(`machine ${id} not listed`);
  return m;
}

/** Messages in the machine's dispatch queue, visible or not (Storage counts invisible ones too). */
export async function queueDepth(t: TestHost, machineId: string): Promise<number> {
  const q = QueueServiceClient.fromConnectionString(t.settings.LoraStorage!).getQueueClient(queueNameFor(t.settings.DISPATCH_QUEUE_PREFIX!, machineId));
  return (await q.getProperties()).approximateMessagesCount ?? 0;
}

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export { SHARED_OWNER };
