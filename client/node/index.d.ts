// Type declarations of redis-creds (written by hand; the package has no build step).
import { EventEmitter } from 'node:events';

export declare const DEFAULT_RUNTIME_DIR: '/run/redis-creds';

export declare class CredentialError extends Error {}

/** The file could not be used. code: 'EBADMSG' (malformed), 'EPROTONOSUPPORT' (unknown
 * format), 'EFBIG' (over 64 KiB), or the errno code of the read ('ENOENT', 'EACCES'...). */
export declare class CredentialFileError extends CredentialError {
  readonly path: string;
  readonly code: string;
}

/** No good credential was ever loaded from the file. */
export declare class CredentialUnavailable extends CredentialFileError {}

/** One credential. Immutable; the password is not enumerable and never printed. */
export declare class Credential {
  /** null: Redis' `default` user (AUTH <password> alone). */
  readonly username: string | null;
  readonly password: string;
  /** Opaque: compare only for equality. */
  readonly version: string;
  /** When it stops working, in ms since the epoch; null when it does not expire. */
  readonly expiresAt: number | null;
  expired(now?: number): boolean;
  /** { username, password }, without username for the default user. */
  basicAuth(): { username?: string; password: string };
  equals(other: unknown): boolean;
}

/** One version of the published file. Immutable. */
export declare class Snapshot {
  readonly name: string;
  readonly current: Credential;
  /** The credential `current` replaced, as published (null when none). */
  readonly previous: Credential | null;
  /** previous_valid_until in ms since the epoch; null when the file has none. */
  readonly previousValidUntil: number | null;
  readonly publishedAt: string | null;
  /** 1 for the first credential a CredentialFile loaded, +1 at each change. */
  readonly generation: number;
  /** `previous`, or null when there is none or it has expired (its expires_at or the
   * file's previous_valid_until has passed). */
  usablePrevious(now?: number): Credential | null;
  sameAs(other: Snapshot | null): boolean;
}

/** The bytes of a credential file -> Snapshot (generation 0). Throws CredentialFileError. */
export declare function parseCredentialFile(bytes: Uint8Array, name: string,
  path?: string): Snapshot;

/** $REDIS_CREDS_RUNTIME_DIR, else /run/redis-creds. */
export declare function defaultRuntimeDir(): string;

export interface CredentialFileOptions {
  /** Default: defaultRuntimeDir(). */
  runtimeDir?: string;
  /** The poll that backs the directory watch up (default 1000). */
  pollIntervalMs?: number;
  /** false: no watch and no poll; call reload() yourself (default true). */
  watch?: boolean;
}

/** Follows <runtimeDir>/<name>.json. Events: 'change' (snapshot), 'error' (err, kept). */
export declare class CredentialFile extends EventEmitter {
  constructor(name: string, options?: CredentialFileOptions);
  readonly name: string;
  readonly runtimeDir: string;
  readonly path: string;
  /** Why the last read could not be used, or null. */
  readonly lastError: CredentialFileError | null;
  readonly generation: number;
  /** The current snapshot (no I/O once loaded). Throws CredentialUnavailable before. */
  get(): Snapshot;
  /** Reads the file now; true when the credential changed. Never throws. */
  reload(): boolean;
  /** Resolves once a good file is there; rejects after timeoutMs (default 30000). */
  ready(timeoutMs?: number): Promise<Snapshot>;
  close(): void;
  on(event: 'change', listener: (snapshot: Snapshot) => void): this;
  on(event: 'error', listener: (err: CredentialFileError, kept: Snapshot | null) => void): this;
}

export interface AdapterOptions {
  /** Hears a refusal of every candidate (current, previous, a re-read current) or
   * another re-AUTH error. Without it, the adapter's 'error' event (if listened to). */
  onError?: (err: Error) => void;
}

/** node-redis' `streaming-credentials-provider` (node-redis >= 5.9 and 6). One per
 * client. Event 'reauth' (credential): right after the client was asked to re-AUTH. */
export declare class NodeRedisCredentialsProvider extends EventEmitter {
  readonly type: 'streaming-credentials-provider';
  readonly credentialFile: CredentialFile;
  subscribe(listener: {
    onNext: (credentials: { username?: string; password?: string }) => void;
    onError: (e: Error) => void;
  }): Promise<[{ username?: string; password?: string }, { dispose: () => void }]>;
  onReAuthenticationError(error: Error): void;
  /** Makes a refusal at connect fall back to `previous` at the next try. Returns client. */
  attach<C extends EventEmitter>(client: C): C;
  /** The credential last given to the connection (at connect or re-AUTH). */
  readonly credential: Credential;
  close(): void;
  on(event: 'reauth', listener: (credential: Credential) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
}

export declare function nodeRedisCredentialsProvider(credentialFile: CredentialFile,
  options?: AdapterOptions): NodeRedisCredentialsProvider;

export interface ReauthResult {
  credential: Credential;
  ok: boolean;
  error: Error | null;
  /** From sending AUTH to its reply. */
  ms: number;
}

/** Keeps an ioredis client (>= 5.9, 6) on the credential. Events: 'reauth', 'error'. */
export declare class IoredisCredentials extends EventEmitter {
  readonly client: any;
  readonly credentialFile: CredentialFile;
  /** The credential last given to the connection (at connect or re-AUTH). */
  readonly credential: Credential;
  close(): void;
  on(event: 'reauth', listener: (result: ReauthResult) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
}

/** Sets the client's username/password from the file and re-AUTHs it at each change. */
export declare function attachIoredis(client: any, credentialFile: CredentialFile,
  options?: AdapterOptions): IoredisCredentials;

/** new Redis({...options, lazyConnect: true}), attached, then connect() unless
 * options.lazyConnect. `Redis` is the ioredis class. */
export declare function createIoredis<R>(Redis: new (options: any) => R,
  credentialFile: CredentialFile, options?: Record<string, unknown> & AdapterOptions):
  { client: R; credentials: IoredisCredentials };

/** True for the errors Redis answers when it refuses a credential (WRONGPASS...). */
export declare function isAuthRefusal(err: unknown): boolean;

/** Seconds before the credential's expiry by which a capped blocking call returns (2). */
export declare const BLOCK_MARGIN: number;
/** The shortest block asked of Redis, in seconds (0.1; 0 would mean forever). */
export declare const MIN_BLOCK: number;

/** How long one blocking call may block, in seconds: at most `want` (null or 0: no limit
 * of the caller's), until `margin` s before expiresAt (ms since the epoch; null: never
 * expires), 1 s less than commandTimeout (s); at least MIN_BLOCK. 0: block forever. */
export declare function blockSeconds(expiresAt: number | null, want: number | null,
  options?: { margin?: number; commandTimeout?: number | null; now?: number }): number;

/** The adapter of a connection: what blockingCommand and Subscriber read. */
export type ConnectionCredentials = NodeRedisCredentialsProvider | IoredisCredentials;

/** args plus a timeout capped by blockSeconds as the last argument (BLPOP, BRPOP, BLMOVE,
 * BRPOPLPUSH, BZPOPMIN, BZPOPMAX), repeated until a reply or `timeout` seconds (0:
 * forever): the reply, or null. client: a node-redis client (sendCommand) or an ioredis
 * one (call), dedicated to blocking reads, with its adapter `credentials`. */
export declare function blockingCommand(client: any, credentials: ConnectionCredentials,
  args: string[], options?: { timeout?: number; margin?: number }): Promise<any>;

export interface SubscriberOptions {
  channels?: string[];
  patterns?: string[];
  /** Every message of every connection (duplicates possible after a switch). */
  onMessage: (message: string, channel: string) => void;
  /** Connection errors and failed switches (the old subscription is kept and the switch
   * tried again at once, then after 50, 100, 200 ... ms, at most 1 s apart). */
  onError?: (err: Error) => void;
}

/** A subscription that outlives the credential: in place on RESP3 (one connection the
 * adapter re-AUTHs), make-before-break on RESP2. Events: 'switch' (credential), 'error'. */
export declare class Subscriber extends EventEmitter {
  readonly credentialFile: CredentialFile;
  /** true: RESP3, one connection re-AUTHed in place; false: make-before-break. */
  readonly inPlace: boolean;
  /** Make-before-break switches so far. */
  readonly switches: number;
  /** switches > 0: some messages may have arrived twice. */
  readonly duplicatesPossible: boolean;
  /** The adapter of the connection subscribed now. */
  readonly credentials: ConnectionCredentials | null;
  readonly closed: boolean;
  close(): Promise<void>;
  on(event: 'switch', listener: (credential: Credential) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
}

/** A node-redis subscriber; options: createClient's options without credentialsProvider
 * (RESP: 3 re-AUTHs in place). Resolves once subscribed. */
export declare function nodeRedisSubscriber(createClient: (options: any) => any,
  credentialFile: CredentialFile, options: Record<string, unknown>,
  subscriber: SubscriberOptions): Promise<Subscriber>;

/** An ioredis subscriber; Redis: the ioredis class; options: its options (protocol: 3 on
 * ioredis 6 re-AUTHs in place). Resolves once subscribed. */
export declare function ioredisSubscriber(Redis: new (options: any) => any,
  credentialFile: CredentialFile, options: Record<string, unknown>,
  subscriber: SubscriberOptions): Promise<Subscriber>;
