// Runs @vercel/cosmosdb-server over HTTPS on 127.0.0.1:<port> with the certificate made by emulators.ts.
// A separate process so the stack and tests can stop or restart it by pid.
import { readFileSync } from 'node:fs';
import { createHttpsServer } from '@vercel/cosmosdb-server';

const [portArg, certPath, keyPath] = process.argv.slice(2);
if (!portArg || !certPath || !keyPath) {
  process.stderr.write('usage: cosmos-server <port> <cert.pem> <key.pem>\n');
  process.exit(2);
}
// keepAlive: without it the server answers every request with `Connection: close`, so each Cosmos call paid a full TLS
// handshake (most of the dev host's CPU under load). Idle connections live longer than the clients' idle timeout
// (azure-clients.ts), so the client always closes first and never writes into a socket the server is closing.
const server = createHttpsServer({ cert: readFileSync(certPath), key: readFileSync(keyPath), keepAlive: true });
server.keepAliveTimeout = 120_000;
server.headersTimeout = 125_000;
server.listen(Number(portArg), '127.0.0.1', () => {
  process.stdout.write(`cosmosdb-server listening on https://127.0.0.1:${portArg}\n`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
