// Type-checks index.d.ts against the real clients' own types (tsc --noEmit, run by
// tests/integration/test_client_node.py after npm ci): the provider must be what
// node-redis' `credentialsProvider` accepts, for both majors.
import { createClient } from 'redis';
import { createClient as createClient5 } from 'redis5';
import IORedis from 'ioredis';
import IORedis5 from 'ioredis5';
import {
  CredentialFile, Credential, Snapshot, nodeRedisCredentialsProvider, createIoredis,
  attachIoredis, parseCredentialFile, CredentialFileError, isAuthRefusal, blockingCommand,
  blockSeconds, nodeRedisSubscriber, ioredisSubscriber, Subscriber,
} from 'redis-creds';
import cjs = require('redis-creds');

async function main(): Promise<void> {
  const creds = new CredentialFile('cache', { runtimeDir: '/tmp', pollIntervalMs: 500 });
  const snap: Snapshot = await creds.ready(1000);
  const user: string | null = snap.current.username;
  const prev: Credential | null = snap.usablePrevious(Date.now());
  const exp: number | null = snap.current.expiresAt;
  creds.on('change', (s: Snapshot) => s.generation);
  creds.on('error', (e: CredentialFileError, kept: Snapshot | null) => e.code + String(kept));

  const provider = nodeRedisCredentialsProvider(creds, { onError: (e: Error) => e.message });
  const client = provider.attach(createClient({ credentialsProvider: provider, RESP: 3 }));
  const client5 = createClient5({ credentialsProvider: nodeRedisCredentialsProvider(creds) });
  await client.connect();
  await client5.connect();

  const { client: io, credentials } = createIoredis(IORedis, creds, { host: '127.0.0.1' });
  const n: number = await io.incr('x');
  credentials.on('reauth', (r) => r.ms + (r.ok ? 1 : 0));
  attachIoredis(new IORedis5({ lazyConnect: true }), creds).close();

  const cap: number = blockSeconds(provider.credential.expiresAt, 5, { margin: 2 });
  const reply: unknown = await blockingCommand(io, credentials, ['BLPOP', 'q'], { timeout: 1 });
  const sub: Subscriber = await nodeRedisSubscriber(createClient, creds, { RESP: 2 },
    { channels: ['c'], onMessage: (m: string, c: string) => m + c });
  const sub2: Subscriber = await ioredisSubscriber(IORedis5, creds, {},
    { patterns: ['p*'], onMessage: () => {}, onError: (e: Error) => e.message });
  const n2: number = sub.switches + (sub2.inPlace ? 1 : 0) + cap;
  await cjs.blockingCommand(client, provider, ['BRPOP', 'q']);
  await sub.close();

  const s2: Snapshot = parseCredentialFile(new Uint8Array(0), 'cache');
  const same: boolean = cjs.CredentialFile === CredentialFile && isAuthRefusal(new Error());
  console.log(user, prev, exp, n, s2, same, reply, n2);
}

main();
