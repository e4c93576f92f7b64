// Keeps running INCR through credential rotations with node-redis and redis-creds.
//
//   REDIS_HOST (127.0.0.1), REDIS_PORT (6379): the server
//   REDIS_CREDS_NAME (cache): the credential; REDIS_CREDS_RUNTIME_DIR (/run/redis-creds)
//   REDIS_CREDS_CLIENT_MODULE (redis): the module to import, e.g. redis5 for the tests
//
// Run from the package folder after `npm ci`: node examples/node-redis.mjs
// It prints `ready` once connected, and `ok N failed M` on SIGTERM (then exits 0).
import { CredentialFile, nodeRedisCredentialsProvider } from 'redis-creds';

const { createClient } = await import(process.env.REDIS_CREDS_CLIENT_MODULE || 'redis');

const creds = new CredentialFile(process.env.REDIS_CREDS_NAME || 'cache');
await creds.ready(); // waits (up to 30 s) for the file, if it is not published yet

// One provider per client: open connections re-AUTH at each change of the file.
const provider = nodeRedisCredentialsProvider(creds, {
  onError: (err) => console.error('credential refused:', err.message),
});
const client = createClient({
  socket: {
    host: process.env.REDIS_HOST || '127.0.0.1',
    port: Number(process.env.REDIS_PORT || 6379),
  },
  credentialsProvider: provider,
  RESP: 3, // node-redis does not re-AUTH a subscribed RESP2 connection
  name: 'redis-creds-example-node-redis',
});
provider.attach(client); // a refusal at connect falls back to `previous`
client.on('error', (err) => console.error('redis:', err.message));
await client.connect();
console.log('ready');

let ok = 0;
let failed = 0;
let running = true;
process.on('SIGTERM', () => {
  running = false;
});
while (running) {
  try {
    await client.incr('example:node-redis');
    ok++;
  } catch (err) {
    failed++;
    console.error('INCR failed:', err.message);
  }
}
console.log(`ok ${ok} failed ${failed}`);
await client.quit();
creds.close();
