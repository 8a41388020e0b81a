export * from './zod.js';
export * from './ids.js';
export * from './errors.js';
export * from './loras.js';
export * from './jobs.js';
export * from './machines.js';
export * from './dispatch.js';
export * from './me.js';
