// Keeps running INCR through credential rotations with ioredis and redis-creds.
//
//   REDIS_HOST (127.0.0.1), REDIS_PORT (6379): the server
//   REDIS_CREDS_NAME (cache): the credential; REDIS_CREDS_RUNTIME_DIR (/run/redis-creds)
//   REDIS_CREDS_CLIENT_MODULE (ioredis): the module to import, e.g. ioredis5 for the tests
//
// Run from the package folder after `npm ci`: node examples/ioredis.mjs
// It prints `ready` once connected, and `ok N failed M` on SIGTERM (then exits 0).
import { CredentialFile, createIoredis } from 'redis-creds';

const { default: Redis } = await import(process.env.REDIS_CREDS_CLIENT_MODULE || 'ioredis');

const creds = new CredentialFile(process.env.REDIS_CREDS_NAME || 'cache');
await creds.ready(); // waits (up to 30 s) for the file, if it is not published yet

// The client connects with the current credential, re-AUTHs at each change of the file,
// and falls back to `previous` when Redis refuses the new one.
const { client, credentials } = createIoredis(Redis, creds, {
  host: process.env.REDIS_HOST || '127.0.0.1',
  port: Number(process.env.REDIS_PORT || 6379),
  connectionName: 'redis-creds-example-ioredis',
  onError: (err) => console.error('credential refused:', err.message),
});
client.on('error', (err) => console.error('redis:', err.message));
await new Promise((resolve) => client.once('ready', resolve));
console.log('ready');

let ok = 0;
let failed = 0;
let running = true;
process.on('SIGTERM', () => {
  running = false;
});
while (running) {
  try {
    await client.incr('example:ioredis');
    ok++;
  } catch (err) {
    failed++;
    console.error('INCR failed:', err.message);
  }
}
console.log(`ok ${ok} failed ${failed}`);
credentials.close();
await client.quit();
creds.close();
