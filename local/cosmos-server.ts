// Runs @vercel/cosmosdb-server over HTTPS on 127.0.0.1:<port> with the certificate made by emulators.ts.
// A separate process so the stack and tests can stop or restart it by pid.
import { readFileSync } from 'node:fs';
import { createHttpsServer } from '@vercel/cosmosdb-server';

const [portArg, certPath, keyPath] = process.argv.slice(2);
if (!portArg || !certPath || !keyPath) {
  process.stderr.write('usage: cosmos-server <port> <cert.pem> <key.pem>\n');
  process.exit(2);
}
const server = createHttpsServer({ cert: readFileSync(certPath), key: readFileSync(keyPath) });
server.listen(Number(portArg), '127.0.0.1', () => {
  process.stdout.write(`cosmosdb-server listening on https://127.0.0.1:${portArg}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
