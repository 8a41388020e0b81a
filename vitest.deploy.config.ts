import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// The deploy package test alone, after the rest of `npm test`: its `npm ci` of about 1000 packages would otherwise
// starve the timing-sensitive agent and chaos tests running beside it on a small machine.
export default defineConfig({
  test: {
    ...base.test,
    include: ['test/deploy/package-fidelity.test.ts'],
    exclude: ['node_modules/**', 'dist/**', '.local/**'],
    maxWorkers: 1,
  },
});
