// The agent's dispatch receiver, from its settings: a Service Bus session receiver (session id = machine id) in
// Azure, or this machine's Storage queue locally. Both come from dispatch/createDispatchReceiver.
import { createDispatchReceiver, type DispatchReceiver } from '../../dispatch/index.js';
import type { TransportConfig } from './config.js';
import { buildCredential } from './identity.js';
import type { Logger } from './logger.js';

export function createReceiver(transport: TransportConfig, machineId: string, log?: Logger): DispatchReceiver {
  if (transport.kind === 'storage-queue') {
    const c = transport.connection;
    return createDispatchReceiver({
      transport: 'storage-queue',
      machineId,
      queuePrefix: transport.prefix,
      lockSeconds: transport.lockSeconds,
      simulateSessionBusyFile: transport.simulateSessionBusyFile,
      ...(c.kind === 'connectionString' ? { connectionString: c.connectionString } : { queueServiceUri: c.queueServiceUri, credential: buildCredential(c.credential) }),
    });
  }
  const c = transport.connection;
  return createDispatchReceiver({
    transport: 'servicebus',
    machineId,
    queue: transport.queue,
    warn: log ? (fields, msg) => log.warn(fields, msg) : undefined,
    ...(c.kind === 'connectionString'
      ? { connectionString: c.connectionString }
      : { fullyQualifiedNamespace: c.fullyQualifiedNamespace, credential: buildCredential(c.credential) }),
  });
}
