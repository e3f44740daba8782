// Fuzzing the GENI AM API v3 (XML-RPC over HTTPS with client certificates) through a real
// Drover: XML aimed at the parser (DOCTYPEs and entities, external entities, deep nesting,
// huge strings, many elements), well-formed calls with hostile parameters, mutations of
// valid calls with hostile RSpecs and credentials, damaged bytes. Each answer is an XML-RPC
// fault or the GENI return struct with a non-zero geni_code (reads may succeed); a refused
// call leaves the store byte-identical; the process keeps answering with a bounded RSS.
// Then the limits over GENI.

import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import type { RunningDrover } from '../src/drover.js';
import { issueUserCertificate, type KeyPairFiles } from '../src/pki/ca.js';
import { issueCredential } from '../src/pki/credential.js';
import { geniUrn } from '../src/pki/urn.js';
import { postXml, type XmlRpcTarget } from '../src/api/xmlrpc/client.js';
import { decodeResponse, encodeCall, XmlRpcFault, type XmlRpcValue } from '../src/api/xmlrpc/codec.js';
import { GENI } from '../src/api/xmlrpc/geni.js';
import { assertNoPollution, fuzz, hostileString, hostileValue, mangledBytes, mutationOf, spoiling, startFuzzDrover, StoreWatch, TIGHT_LIMITS, type Json } from './fuzz-helpers.js';

const FUZZER_URN = geniUrn('user', 'fuzzer');
const BYSTANDER_URN = geniUrn('user', 'bystander');
const SEEDED_SLICE = geniUrn('slice', 'fuzz-seeded');
const RSPEC_VERSION = { geni_rspec_version: { type: 'GENI', version: '3' } };
const READS = new Set(['GetVersion', 'ListResources', 'Describe', 'Status']);

const rspec = (nodes: number, inner = '<drover:process path="/bin/sleep"><drover:arg>300</drover:arg></drover:process>') =>
  `<?xml version="1.0"?><rspec type="request" xmlns="http://www.geni.net/resources/rspec/3" xmlns:drover="urn:drover:rspec:process:1">${Array.from({ length: nodes }, (_, i) => `<node client_id="n${i}" exclusive="false"><sliver_type name="drover-process"/>${inner}</node>`).join('')}</rspec>`;

const DOCTYPE_ATTACKS = [
  `<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]><methodCall><methodName>&d;</methodName><params/></methodCall>`,
  `<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]><methodCall><methodName>GetVersion</methodName><params><param><value>&x;</value></param></params></methodCall>`,
  `<?xml version="1.0"?><!DOCTYPE m [<!ENTITY % p SYSTEM "http://127.0.0.1:1/evil.dtd"> %p;]><methodCall><methodName>GetVersion</methodName></methodCall>`,
  `<?xml version="1.0"?><!DOCTYPE methodCall SYSTEM "http://127.0.0.1:1/x.dtd"><methodCall><methodName>GetVersion</methodName></methodCall>`,
];
const xmlValue = (inner: string) => `<?xml version="1.0"?><methodCall><methodName>GetVersion</methodName><params><param><value>${inner}</value></param></params></methodCall>`;
/** Odd but well-formed: a comment, a processing instruction and stray CDATA around a valid call may be accepted. */
const ODD_BUT_VALID = `<?xml version="1.0"?><methodCall><methodName>GetVersion</methodName><![CDATA[<params/>]]><?pi x?><!-- c --></methodCall>`;
const PARSER_ATTACKS = [
  ...DOCTYPE_ATTACKS,
  xmlValue(`${'<array><data><value>'.repeat(10_000)}1${'</value></data></array>'.repeat(10_000)}`),
  xmlValue(`${'<struct><member><name>a</name><value>'.repeat(5_000)}1${'</value></member></struct>'.repeat(5_000)}`),
  xmlValue(`<array><data>${'<value><i4>1</i4></value>'.repeat(250_000)}</data></array>`),
  xmlValue(`<string>${'x'.repeat(900_000)}</string>`),
  xmlValue('<i4>99999999999999999999</i4>'),
  xmlValue('<int>-2147483649</int>'),
  xmlValue('<double>1e99999</double>'),
  xmlValue('<base64>!!!not base64!!!</base64>'),
  xmlValue('<dateTime.iso8601>20991399T99:99:99</dateTime.iso8601>'),
  xmlValue('<nil/><ex:weird xmlns:ex="urn:x"/>'),
  xmlValue('<boolean>2</boolean>'),
  `<?xml version="1.0"?><methodCall><methodName>${'G'.repeat(500_000)}</methodName></methodCall>`,
  `<?xml version="1.0"?><methodCall><methodName>__proto__</methodName></methodCall>`,
  `<?xml version="1.0"?><methodCall><methodName>constructor</methodName></methodCall>`,
  `<?xml version="1.0"?><methodCall><methodName>GetVersion</methodName><params>${'<param><value>1</value></param>'.repeat(50_000)}</params></methodCall>`,
  '<methodCall><methodName>GetVersion</methodName>',
  '\ufeff<?xml version="1.0" encoding="UTF-16"?><methodCall/>',
  '',
];

/** Nesting beyond what the client's recursive encoder takes; the parser attacks nest deeper. */
const ENCODABLE_DEPTH = 200;

/** JSON-ish values as XML-RPC values (XML-RPC has no null). */
function toXmlRpc(v: Json, depth = 0): XmlRpcValue {
  if (v === null || v === undefined) return '';
  if (depth > ENCODABLE_DEPTH) return 'deep';
  if (Array.isArray(v)) return v.map((x) => toXmlRpc(x, depth + 1));
  if (typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, toXmlRpc(x, depth + 1)]));
  return v as XmlRpcValue;
}

let drover: RunningDrover;
let dataDir: string;
let watch: StoreWatch;
let ca: KeyPairFiles;
const certs: Record<string, KeyPairFiles> = {};

const pem = (file: string) => readFileSync(file, 'utf8');
const target = (who: string, d = drover): XmlRpcTarget => ({ url: d.geni!.url, ca: pem(ca.cert), cert: pem(certs[who]!.cert), key: pem(certs[who]!.key) });
const credentials = (user: string, slice: string) => [
  { geni_type: 'geni_sfa', geni_version: '3', geni_value: issueCredential({ ownerUrn: user, targetUrn: slice, expires: Date.now() + 3_600_000, privileges: ['*'] }, { cert: pem(ca.cert), key: pem(ca.key) }) },
];

/** The answer to a raw body: the GENI struct's geni_code, or a fault's code. */
async function answer(body: string | Buffer, who = 'fuzzer', d = drover): Promise<{ geniCode?: number; fault?: number; text: string }> {
  const res = await postXml(target(who, d), body);
  assert.equal(res.status, 200);
  try {
    const v = decodeResponse(res.body) as Json;
    assert.equal(typeof v?.code?.geni_code, 'number', res.body.slice(0, 300));
    assert.equal(typeof v.output, 'string');
    return { geniCode: v.code.geni_code, text: v.output };
  } catch (e) {
    if (!(e instanceof XmlRpcFault)) throw e;
    assert.equal(typeof e.faultCode, 'number');
    return { fault: e.faultCode, text: e.faultString };
  }
}

/** Sends one body; a refusal must change nothing; `mustRefuse` says a success is a bug. */
async function attack(body: string | Buffer, mustRefuse: boolean): Promise<void> {
  const a = await answer(body);
  if (a.geniCode === GENI.SUCCESS) assert.ok(!mustRefuse, `accepted: ${String(body).slice(0, 300)}`);
  watch.unchanged(String(body).slice(0, 300));
  assertNoPollution();
}

async function stillServing(): Promise<void> {
  const a = await answer(encodeCall('Status', [[SEEDED_SLICE], credentials(FUZZER_URN, SEEDED_SLICE), {}]));
  assert.equal(a.geniCode, GENI.SUCCESS, a.text);
}

/** Valid calls of every method on the seeded slice, the writes spoiled below. */
function validCalls(): [string, Json[]][] {
  const cred = credentials(FUZZER_URN, SEEDED_SLICE);
  return [
    ['GetVersion', [{}]],
    ['ListResources', [cred, RSPEC_VERSION]],
    ['Describe', [[SEEDED_SLICE], cred, RSPEC_VERSION]],
    ['Status', [[SEEDED_SLICE], cred, {}]],
    ['Allocate', [geniUrn('slice', 'fuzz-new'), credentials(FUZZER_URN, geniUrn('slice', 'fuzz-new')), rspec(1), {}]],
    ['Renew', [[SEEDED_SLICE], cred, new Date(Date.now() + 60_000).toISOString(), {}]],
    ['Provision', [[SEEDED_SLICE], cred, RSPEC_VERSION]],
    ['PerformOperationalAction', [[SEEDED_SLICE], cred, 'geni_start', {}]],
    ['Delete', [[SEEDED_SLICE], cred, {}]],
    ['Shutdown', [SEEDED_SLICE, cred, {}]],
  ];
}

/** Credentials no call can act with: none, unsigned, entity-laden, for another user, or garbage. */
const badCredentials = fc.constantFrom(
  [],
  [{ geni_type: 'geni_sfa', geni_version: '3', geni_value: '<signed-credential/>' }],
  [{ geni_type: 'geni_sfa', geni_version: '3', geni_value: DOCTYPE_ATTACKS[0]! }],
  [{ geni_type: 'geni_sfa', geni_version: '3', geni_value: `<signed-credential>${'<credential>'.repeat(5_000)}` }],
  'not a list',
);

describe('fuzzing the GENI AM API', () => {
  before(async () => {
    ({ drover, dataDir } = await startFuzzDrover({ geni: '127.0.0.1:0' }, { fuzzer: FUZZER_URN, bystander: BYSTANDER_URN }));
    ca = drover.geni!.pki.caKeyPair!;
    certs.fuzzer = await issueUserCertificate(ca, join(dataDir, 'users'), 'fuzzer', FUZZER_URN);
    const seeded = await answer(encodeCall('Allocate', [SEEDED_SLICE, credentials(FUZZER_URN, SEEDED_SLICE), rspec(2), {}]));
    assert.equal(seeded.geniCode, GENI.SUCCESS, seeded.text);
    watch = new StoreWatch(dataDir);
    // what the allocation sets going (service watcher, convergence) runs after its answer
    await watch.settle();
  });
  after(async () => {
    await drover?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it('the XML parser: DOCTYPEs, entity bombs, external entities, deep nesting, huge strings, many elements', async () => {
    for (const text of PARSER_ATTACKS) await attack(text, true);
    await attack(ODD_BUT_VALID, false);
    await fuzz('geni-xml', fc.constantFrom(...PARSER_ATTACKS), (text) => attack(text, true));
    await stillServing();
  });

  it('well-formed calls with hostile parameters', async () => {
    const method = fc.constantFrom(...validCalls().map(([m]) => m), 'NoSuchMethod', 'system.listMethods');
    const params = fc.array(hostileValue.map((v) => toXmlRpc(v)), { maxLength: 6 });
    await fuzz('geni-params', fc.tuple(method, params), async ([m, p]) => attack(encodeCall(m, p), false));
    await stillServing();
  });

  it('mutations of valid calls, with hostile RSpecs and credentials', async () => {
    const hostileRspec = fc.oneof(
      fc.constantFrom(rspec(101), rspec(1, '<drover:process/>'), rspec(1, '<drover:process path=""/>'), rspec(1, '<execute/>'), '<rspec type="request"/>', `<rspec>${'<node>'.repeat(1_000)}`, ...DOCTYPE_ATTACKS),
      hostileString,
    );
    const calls = validCalls().map(([m, params]) => {
      const write = !READS.has(m);
      const spoil = m === 'Allocate' ? fc.oneof(spoiling([2], hostileRspec), spoiling([1], badCredentials)) : write ? spoiling([m === 'Shutdown' ? 1 : 1], badCredentials) : undefined;
      return mutationOf(params, spoil).map((p) => [m, p, write] as const);
    });
    await fuzz('geni-mutations', fc.oneof(...calls), ([m, p, write]) => attack(encodeCall(m, toXmlRpc(p) as XmlRpcValue[]), write));
    await stillServing();
  });

  it('bytes that are no call, or not quite', async () => {
    const base = Buffer.from(encodeCall('Allocate', [SEEDED_SLICE, [], rspec(2), {}]));
    await fuzz('geni-bytes', mangledBytes(base), (bytes) => attack(bytes, true));
    await stillServing();
  });
});

describe('limits over GENI', () => {
  let limited: RunningDrover;
  let limitedDir: string;

  before(async () => {
    ({ drover: limited, dataDir: limitedDir } = await startFuzzDrover({ ...TIGHT_LIMITS, geni: '127.0.0.1:0' }, { fuzzer: FUZZER_URN, bystander: BYSTANDER_URN }));
    ca = limited.geni!.pki.caKeyPair!;
    certs.fuzzer = await issueUserCertificate(ca, join(limitedDir, 'users'), 'fuzzer', FUZZER_URN);
    certs.bystander = await issueUserCertificate(ca, join(limitedDir, 'users'), 'bystander', BYSTANDER_URN);
  });
  after(async () => {
    await limited?.close();
    rmSync(limitedDir, { recursive: true, force: true });
  });

  it('answers a body over --body-limit with an XML-RPC fault', async () => {
    const w = new StoreWatch(limitedDir);
    const a = await answer(encodeCall('Allocate', [SEEDED_SLICE, credentials(FUZZER_URN, SEEDED_SLICE), rspec(30), {}]), 'fuzzer', limited);
    assert.ok(a.fault, JSON.stringify(a));
    assert.match(a.text, /larger than 4096 bytes/);
    w.unchanged('a call over the body limit');
  });

  it('answers BUSY once a user exceeds --rate-limit, and only that user', async () => {
    const list = (who: string, urn: string) => answer(encodeCall('ListResources', [credentials(urn, SEEDED_SLICE), RSPEC_VERSION]), who, limited);
    for (let i = 0; i < TIGHT_LIMITS.rateBurst; i++) assert.equal((await list('fuzzer', FUZZER_URN)).geniCode, GENI.SUCCESS);
    const refused = await list('fuzzer', FUZZER_URN);
    assert.equal(refused.geniCode, GENI.BUSY, refused.text);
    assert.match(refused.text, /retry in \d+ ms/);
    assert.equal((await list('bystander', BYSTANDER_URN)).geniCode, GENI.SUCCESS);
    await sleep(1_100);
    assert.equal((await list('fuzzer', FUZZER_URN)).geniCode, GENI.SUCCESS);
  });
});
