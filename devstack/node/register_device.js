#!/usr/bin/env node
// Conformance harness: register one X.509 device with Microsoft's own Node device client
// (azure-iot-provisioning-device over HTTPS) against the DPS emulator, or a real DPS.
//
//   node devstack/node/register_device.js --host 127.0.0.1 --port 9443 --id-scope 0ne00DEV5TK \
//     --registration-id sensor-1003 --cert device.pem --key device.key.pem --ca ca.pem \
//     [--payload '{"k": "v"}']
//
// Prints the registration state as JSON on stdout; on failure prints a JSON error on stderr
// and exits 1 (2 for bad arguments).
//
// Fleet mode registers many devices at once from one process (benchmarks):
//   node devstack/node/register_device.js --host ... --id-scope ... --ca ca.pem --fleet fleet.json
// where fleet.json is [{"registrationId", "cert", "key"}, ...]. It prints one JSON line per
// device, {"registrationId", "ms", "result"} or {"registrationId", "ms", "error"}, as each ends,
// and exits 0 once all have ended.
'use strict';

const fs = require('node:fs');
const https = require('node:https');
const { ProvisioningDeviceClient } = require('azure-iot-provisioning-device');
const { Http: ProvisioningHttp } = require('azure-iot-provisioning-device-http');
const { X509Security } = require('azure-iot-security-x509');
const { Http: HttpBase } = require('azure-iot-http-base');

const OPTIONS = {
  '--host': 'host',
  '--port': 'port',
  '--id-scope': 'idScope',
  '--registration-id': 'registrationId',
  '--cert': 'cert',
  '--key': 'key',
  '--ca': 'ca',
  '--payload': 'payload',
  '--fleet': 'fleet',
};
const REQUIRED = ['host', 'idScope', 'registrationId', 'cert', 'key'];
const REQUIRED_FOR_FLEET = ['host', 'idScope', 'fleet'];

function usage(message) {
  process.stderr.write(
    `${message}\nusage: register_device.js --host H [--port P] --id-scope S ` +
      '--registration-id R --cert F --key F [--ca F] [--payload JSON]\n' +
      '       register_device.js --host H [--port P] --id-scope S [--ca F] --fleet FILE\n',
  );
  process.exit(2);
}

function parseArgs(argv) {
  const args = {};
  for (let i = 0; i < argv.length; i += 2) {
    const name = OPTIONS[argv[i]];
    if (!name) usage(`unknown option ${argv[i]}`);
    if (i + 1 >= argv.length) usage(`${argv[i]} needs a value`);
    args[name] = argv[i + 1];
  }
  for (const name of args.fleet ? REQUIRED_FOR_FLEET : REQUIRED) {
    if (!args[name]) usage(`missing --${name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())}`);
  }
  if (args.port !== undefined) {
    args.port = Number(args.port);
    if (!Number.isInteger(args.port) || args.port <= 0 || args.port > 65535) usage('bad --port');
  }
  if (args.payload !== undefined) {
    try {
      args.payload = JSON.parse(args.payload);
    } catch (err) {
      usage(`--payload is not JSON: ${err.message}`);
    }
  }
  return args;
}

function transport(args) {
  // The client builds requests from a bare host name; the port comes from the agent.
  const httpBase = new HttpBase();
  const options = {};
  if (args.port) {
    const agent = new https.Agent();
    agent.defaultPort = args.port; // https.Agent's constructor overwrites the option with 443
    options.http = { agent };
  }
  if (args.ca) options.ca = fs.readFileSync(args.ca, 'utf8');
  httpBase.setOptions(options);
  return new ProvisioningHttp(httpBase);
}

function describe(err) {
  const error = { error: err.name || 'Error', message: err.message };
  if (err.response && err.response.statusCode) error.statusCode = err.response.statusCode;
  if (err.responseBody) error.responseBody = err.responseBody;
  if (err.result) error.result = err.result;
  return error;
}

function register(args, device) {
  const security = new X509Security(device.registrationId, {
    cert: fs.readFileSync(device.cert, 'utf8'),
    key: fs.readFileSync(device.key, 'utf8'),
  });
  const client = ProvisioningDeviceClient.create(
    args.host,
    args.idScope,
    transport(args),
    security,
  );
  if (args.payload !== undefined) client.setProvisioningPayload(args.payload);
  return client.register();
}

async function registerFleet(args) {
  let fleet;
  try {
    fleet = JSON.parse(fs.readFileSync(args.fleet, 'utf8'));
  } catch (err) {
    usage(`--fleet: cannot read ${args.fleet}: ${err.message}`);
  }
  if (!Array.isArray(fleet)) usage('--fleet must hold a JSON array of devices');
  await Promise.all(
    fleet.map(async (device) => {
      const started = process.hrtime.bigint();
      const line = { registrationId: device.registrationId };
      try {
        line.result = await register(args, device);
      } catch (err) {
        line.error = describe(err);
      }
      line.ms = Number(process.hrtime.bigint() - started) / 1e6;
      process.stdout.write(JSON.stringify(line) + '\n');
    }),
  );
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  if (args.fleet) {
    await registerFleet(args);
    return;
  }
  const result = await register(args, args);
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(JSON.stringify(describe(err)) + '\n');
    process.exit(1);
  },
);
