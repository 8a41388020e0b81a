import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// The deploy package test and the GPU-box install test, one at a time, after the rest of `npm test`: each `npm ci` of
// about 1000 packages would otherwise starve the timing-sensitive agent and chaos tests running beside it on a small
// machine.
export default defineConfig({
  test: {
    ...base.test,
    include: ['test/deploy/package-fidelity.test.ts', 'test/integration/install.test.ts'],
    exclude: ['node_modules/**', 'dist/**', '.local/**'],
    maxWorkers: 1,
  },
});
