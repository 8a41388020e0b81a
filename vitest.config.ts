import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    // The deploy package test and the GPU-box install test (each a full `npm ci`) run on their own after the rest
    // (vitest.deploy.config.ts, `npm run test:deploy`).
    exclude: ['node_modules/**', 'dist/**', '.local/**', 'test/deploy/package-fidelity.test.ts', 'test/integration/install.test.ts'],
    globalSetup: ['test/support/global-setup.ts'],
    pool: 'forks',
    // Two cores: keep parallelism modest so emulator-backed tests do not starve each other.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    reporters: ['default'],
  },
});
