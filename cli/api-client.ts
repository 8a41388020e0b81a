// Kept for callers that still import the client from here (test/support, test/integration/agent.fixtures.ts); new code
// imports api-client/ directly. Delete once those imports point at ../../api-client/index.js.
export * from '../api-client/index.js';
