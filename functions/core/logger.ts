// JSON logs to stdout (journald/App Insights pick them up). One root logger; modules take children.
import { pino, type Logger } from 'pino';

export type { Logger };

export const rootLogger: Logger = pino({
  name: 'lora-router',
  level: process.env.LOG_LEVEL ?? (process.env.VITEST ? 'warn' : 'info'),
  base: { pid: process.pid },
  redact: { paths: ['*.authorization', '*.token', '*.upload_url', '*.download_url', '*.connectionString'], censor: '[redacted]' },
});
