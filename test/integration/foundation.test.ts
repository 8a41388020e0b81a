// The foundation, end to end over real HTTP: the dev host serving the real trigger registrations on real emulators.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestHost, type TestHost } from '../support/stack.js';

let t: TestHost;
beforeAll(async () => {
  t = await startTestHost({}, { timers: false });
});
afterAll(async () => {
  await t?.stop();
});

describe('health', () => {
  it('reports every dependency up, without leaking connection details', async () => {
    const res = await t.anonymous.raw('GET', 'health');
    const text = await res.text();
    expect(res.status).toBe(200);
    const body = JSON.parse(text) as { status: string; dependencies: Record<string, { status: string }> };
    expect(body.status).toBe('ok');
    expect(Object.keys(body.dependencies).sort()).toEqual(['blob', 'cosmos', 'transport']);
    for (const dep of Object.values(body.dependencies)) expect(dep.status).toBe('up');
    expect(text).not.toMatch(/AccountKey|devstoreaccount1|127\.0\.0\.1|https?:/);
  });
});

describe('openapi', () => {
  it('serves an OpenAPI 3.1 document generated from the contract schemas', async () => {
    const doc = await t.anonymous.get<{ openapi: string; paths: Record<string, unknown>; components: { schemas?: Record<string, unknown> } }>('openapi.json');
    expect(doc.openapi).toBe('3.1.0');
    expect(doc.paths['/api/health']).toBeDefined();
  });
});

describe('errors are JSON', () => {
  it('unknown route is a 404 JSON error', async () => {
    const res = await t.anonymous.raw('GET', 'no-such-route');
    expect(res.status).toBe(404);
    expect(((await res.json()) as { error: { code: string } }).error.code).toBe('not_found');
  });
});
