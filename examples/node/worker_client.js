#!/usr/bin/env node
// A worker reads one secret from secretd over gRPC (@grpc/grpc-js).
//
//   # Over the local Unix socket (the sidecar setup), with a service-account token:
//   SECRETD_TOKEN=sdt_... node worker_client.js -n company.team.etl db/password
//   # Over TCP with TLS; add --client-cert/--client-key for mutual TLS:
//   node worker_client.js --addr https://secretd.internal:7878 --ca-cert ca.pem \
//       --token-file /run/secrets/secretd.token -n company.team.etl db/password
//
// The proto is loaded at run time from proto/ of this repository (or
// SECRETD_PROTO_DIR): nothing is generated.
//
// Exit codes (the Rust and Python examples use the same): 0 the value was
// printed, 3 NOT_FOUND, 4 PERMISSION_DENIED, 5 UNAUTHENTICATED,
// 6 UNAVAILABLE, 1 anything else, 2 bad arguments.
'use strict';

const fs = require('node:fs');
const path = require('node:path');
const { parseArgs } = require('node:util');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const EXIT_CODES = {
  [grpc.status.NOT_FOUND]: 3,
  [grpc.status.PERMISSION_DENIED]: 4,
  [grpc.status.UNAUTHENTICATED]: 5,
  [grpc.status.UNAVAILABLE]: 6,
};
const CODE_NAMES = Object.fromEntries(Object.entries(grpc.status).map(([name, code]) => [code, name]));

const USAGE = `usage: worker_client.js [--addr ADDR] [--ca-cert PEM] [--client-cert PEM --client-key PEM]
                        [--token-file FILE] -n NAMESPACE [--tenant TENANT] [--timeout SECONDS] KEY`;

function usageError(message) {
  process.stderr.write(`${USAGE}\nworker_client.js: error: ${message}\n`);
  process.exit(2);
}

function parse() {
  const env = process.env;
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: {
        addr: { type: 'string', default: env.SECRETD_ADDR || 'unix:///run/secretd/secretd.sock' },
        'ca-cert': { type: 'string' },
        'client-cert': { type: 'string' },
        'client-key': { type: 'string' },
        'token-file': { type: 'string' },
        namespace: { type: 'string', short: 'n', default: env.SECRETD_NAMESPACE },
        tenant: { type: 'string', default: env.SECRETD_TENANT || '' },
        timeout: { type: 'string', default: '10' },
      },
    });
  } catch (e) {
    usageError(e.message);
  }
  const args = parsed.values;
  if (parsed.positionals.length !== 1) usageError('exactly one KEY is needed');
  if (!args.namespace) usageError('-n/--namespace (or SECRETD_NAMESPACE) is required');
  if (Boolean(args['client-cert']) !== Boolean(args['client-key'])) {
    usageError('--client-cert and --client-key go together');
  }
  if (args.addr.startsWith('https://') && !args['ca-cert']) usageError('https:// needs --ca-cert');
  const timeout = Number(args.timeout);
  if (!(timeout > 0)) usageError('--timeout must be a positive number of seconds');
  return { ...args, timeout, key: parsed.positionals[0] };
}

// A client to the daemon: a Unix socket, or TCP with (optionally mutual) TLS.
function client(args, SecretBroker) {
  if (args.addr.startsWith('unix://')) {
    // grpc-js dials unix:///PATH itself, with no channel option: secretd accepts
    // whatever :authority a client sends on its Unix socket. The socket's file
    // mode and the peer's uid guard it.
    return new SecretBroker(args.addr, grpc.credentials.createInsecure());
  }
  if (args.addr.startsWith('https://')) {
    const credentials = grpc.credentials.createSsl(
      fs.readFileSync(args['ca-cert']),
      args['client-key'] ? fs.readFileSync(args['client-key']) : null,
      args['client-cert'] ? fs.readFileSync(args['client-cert']) : null,
    );
    return new SecretBroker(args.addr.slice('https://'.length), credentials);
  }
  if (args.addr.startsWith('http://')) {
    return new SecretBroker(args.addr.slice('http://'.length), grpc.credentials.createInsecure());
  }
  throw new Error(`--addr ${args.addr}: expected unix://, https:// or http://`);
}

// `authorization: Bearer <token>`, or nothing. Never take a token as an
// argument: other local users can read the process list.
function tokenMetadata(args) {
  const token = (args['token-file'] ? fs.readFileSync(args['token-file'], 'utf8') : process.env.SECRETD_TOKEN || '').trim();
  const metadata = new grpc.Metadata();
  if (token) metadata.set('authorization', `Bearer ${token}`);
  return metadata;
}

// A message a worker's operator can act on.
function explain(err, args) {
  const what = {
    [grpc.status.NOT_FOUND]: `no secret ${args.key} in ${args.namespace} or its parent namespaces`,
    [grpc.status.PERMISSION_DENIED]: `this worker may not read ${args.namespace}/${args.key}`,
    [grpc.status.UNAUTHENTICATED]: 'the token is missing, unknown, expired or revoked',
    [grpc.status.UNAVAILABLE]: `secretd at ${args.addr} or its backend cannot be reached; retry later`,
  }[err.code] || 'the call failed';
  return `${CODE_NAMES[err.code] || 'UNKNOWN'}: ${what} (${err.details})`;
}

function main() {
  const args = parse();
  let stub;
  let metadata;
  try {
    const protoDir = process.env.SECRETD_PROTO_DIR || path.join(__dirname, '..', '..', 'proto');
    const definition = protoLoader.loadSync(path.join(protoDir, 'secretd/v1/broker.proto'), {
      includeDirs: [protoDir],
      keepCase: true,
      defaults: true,
    });
    const { SecretBroker } = grpc.loadPackageDefinition(definition).secretd.v1;
    metadata = tokenMetadata(args);
    stub = client(args, SecretBroker);
  } catch (e) {
    process.stderr.write(`error: ${e.message}\n`);
    process.exit(1);
  }
  const request = { tenant: args.tenant, namespace: args.namespace, key: args.key };
  const deadline = new Date(Date.now() + args.timeout * 1000);
  stub.GetSecret(request, metadata, { deadline }, (err, response) => {
    stub.close();
    if (err) {
      process.stderr.write(`error: ${explain(err, args)}\n`);
      process.exitCode = EXIT_CODES[err.code] || 1;
      return;
    }
    // Printing the value is this example's whole point. A real worker keeps it
    // in memory, hands it to what needs it, and never prints or logs it.
    process.stdout.write(response.value);
  });
}

main();
