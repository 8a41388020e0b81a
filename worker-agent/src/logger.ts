// JSON logs, one object per line on stdout: journald keeps them (`journalctl -u lora-router-agent -o cat | jq`).
import { pino, type Logger } from 'pino';

export type { Logger };

export function createAgentLogger(opts: { level: string; machineId: string; destination?: NodeJS.WritableStream }): Logger {
  return pino(
    {
      name: 'lora-router-agent',
      level: opts.level,
      base: { pid: process.pid, machine_id: opts.machineId },
      // SAS URLs carry their signature in the query string; tokens and connection strings never belong in logs.
      redact: { paths: ['*.authorization', '*.token', '*.download_url', '*.connectionString', '*.machineToken'], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    opts.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
