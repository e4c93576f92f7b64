'use strict';
// redis-creds: the Node.js client of the redis-creds agent (CommonJS entry point).
const credfile = require('./lib/credfile');
const watch = require('./lib/watch');
const nodeRedis = require('./lib/node-redis');
const ioredis = require('./lib/ioredis');
const { isAuthRefusal } = require('./lib/fallback');
const longlived = require('./lib/longlived');

module.exports = {
  DEFAULT_RUNTIME_DIR: credfile.DEFAULT_RUNTIME_DIR,
  CredentialError: credfile.CredentialError,
  CredentialFileError: credfile.CredentialFileError,
  CredentialUnavailable: watch.CredentialUnavailable,
  Credential: credfile.Credential,
  Snapshot: credfile.Snapshot,
  parseCredentialFile: credfile.parseCredentialFile,
  defaultRuntimeDir: credfile.defaultRuntimeDir,
  CredentialFile: watch.CredentialFile,
  NodeRedisCredentialsProvider: nodeRedis.NodeRedisCredentialsProvider,
  nodeRedisCredentialsProvider: nodeRedis.nodeRedisCredentialsProvider,
  IoredisCredentials: ioredis.IoredisCredentials,
  attachIoredis: ioredis.attachIoredis,
  createIoredis: ioredis.createIoredis,
  isAuthRefusal,
  BLOCK_MARGIN: longlived.BLOCK_MARGIN,
  MIN_BLOCK: longlived.MIN_BLOCK,
  blockSeconds: longlived.blockSeconds,
  blockingCommand: longlived.blockingCommand,
  Subscriber: longlived.Subscriber,
  nodeRedisSubscriber: longlived.nodeRedisSubscriber,
  ioredisSubscriber: longlived.ioredisSubscriber,
};
