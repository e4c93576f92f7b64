// redis-creds: the ES module entry point (the same objects as the CommonJS one).
import cjs from './index.js';

export const {
  DEFAULT_RUNTIME_DIR, CredentialError, CredentialFileError, CredentialUnavailable,
  Credential, Snapshot, parseCredentialFile, defaultRuntimeDir, CredentialFile,
  NodeRedisCredentialsProvider, nodeRedisCredentialsProvider, IoredisCredentials,
  attachIoredis, createIoredis, isAuthRefusal, BLOCK_MARGIN, MIN_BLOCK, blockSeconds,
  blockingCommand, Subscriber, nodeRedisSubscriber, ioredisSubscriber,
} = cjs;
export default cjs;
