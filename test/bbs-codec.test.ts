import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import protobuf from 'protobufjs';
import { bbsProtoRoot, decodeRequest, encodeEvent, encodeEventJson, encodeResponse } from '../src/api/bbs/codec.js';
import { BBS_ERROR_TYPES, BbsCodecError, bbsErrorFromDroverError } from '../src/api/bbs/errors.js';
import { DroverError } from '../src/model/errors.js';
import type { ActualLrp, DesiredLrp } from '../src/model/lrp.js';
import { packageRoot } from '../src/package-root.js';

const PB = 'application/x-protobuf';
const JSON_CT = 'application/json';

const wireType = (name: string) => bbsProtoRoot().lookupType(name);
const json = (o: unknown) => Buffer.from(JSON.stringify(o));

const ROUTES = {
  'cf-router': [{ hostnames: ['app.example.com'], port: 8080, route_service_url: null }],
  'tcp-router': [],
};

// What a BBS client (e.g. the cloud controller) sends as JSON.
const desireJson = {
  desired_lrp: {
    process_guid: 'web-1',
    domain: 'cf-apps',
    rootfs: 'preloaded:cflinuxfs4',
    instances: 3,
    env: [{ name: 'PORT', value: '8080' }],
    action: { run: { path: '/bin/app', args: ['--port', '8080'], dir: '/home/vcap', env: [{ name: 'A', value: 'b' }], user: 'vcap' } },
    routes: ROUTES,
    annotation: 'etag-1',
    start_timeout_ms: 60000,
    placement_tags: ['isolated'],
    modification_tag: { epoch: 'e-1', index: 4 },
    some_future_field: { ignored: true },
  },
};

// The same LRP, encoded with protobufjs directly from wire-shaped data (not via the codec).
function desireProtobuf(): Buffer {
  const T = wireType('models.DesireLRPRequest');
  const bytes = T.encode({
    desiredLrp: {
      processGuid: 'web-1',
      domain: 'cf-apps',
      rootfs: 'preloaded:cflinuxfs4',
      instances: 3,
      env: [{ name: 'PORT', value: '8080' }],
      action: { run: { path: '/bin/app', args: ['--port', '8080'], dir: '/home/vcap', env: [{ name: 'A', value: 'b' }], user: 'vcap' } },
      routes: { routes: Object.fromEntries(Object.entries(ROUTES).map(([k, v]) => [k, Buffer.from(JSON.stringify(v))])) },
      annotation: 'etag-1',
      startTimeoutMs: 60000,
      placementTags: ['isolated'],
      modificationTag: { epoch: 'e-1', index: 4 },
    },
  }).finish();
  return Buffer.from(bytes);
}

test('a DesiredLRP decodes to the same internal object from JSON and from protobuf', () => {
  const fromJson = decodeRequest<{ desiredLrp: DesiredLrp }>('models.DesireLRPRequest', json(desireJson), JSON_CT);
  const fromPb = decodeRequest<{ desiredLrp: DesiredLrp }>('models.DesireLRPRequest', desireProtobuf(), PB);
  assert.deepEqual(fromJson, fromPb);

  const d = fromJson.desiredLrp;
  assert.equal(d.processGuid, 'web-1');
  assert.equal(d.rootfs, 'preloaded:cflinuxfs4');
  assert.equal(d.instances, 3);
  assert.deepEqual(d.env, [{ name: 'PORT', value: '8080' }]);
  assert.deepEqual(d.action?.run, {
    path: '/bin/app',
    args: ['--port', '8080'],
    dir: '/home/vcap',
    env: [{ name: 'A', value: 'b' }],
    user: 'vcap',
    logSource: '',
    suppressLogOutput: false,
  });
  assert.deepEqual(d.routes, ROUTES); // nested JSON, not bytes
  assert.equal(d.startTimeoutMs, 60000);
  assert.deepEqual(d.placementTags, ['isolated']);
  assert.deepEqual(d.modificationTag, { epoch: 'e-1', index: 4 });
  // zero values for absent scalars, absent messages stay absent
  assert.equal(d.memoryMb, 0);
  assert.deepEqual(d.ports, []);
  assert.deepEqual(d.metricTags, {});
  for (const k of ['setup', 'monitor', 'placement', 'healthCheck', 'enabled']) assert.ok(!(k in d), `${k} should be absent`);
});

test('a DesiredLRP answers with snake_case JSON and embedded routes, and round-trips', () => {
  const { desiredLrp } = decodeRequest<{ desiredLrp: DesiredLrp }>('models.DesireLRPRequest', json(desireJson), JSON_CT);
  const out = encodeResponse('models.DesiredLRPResponse', { desiredLrp }, JSON_CT);
  assert.equal(out.contentType, JSON_CT);
  const body = JSON.parse(out.body.toString());
  assert.ok(!('error' in body));
  assert.equal(body.desired_lrp.process_guid, 'web-1');
  assert.equal(body.desired_lrp.start_timeout_ms, 60000);
  assert.deepEqual(body.desired_lrp.routes, ROUTES);
  assert.deepEqual(body.desired_lrp.action, {
    run: { ...desireJson.desired_lrp.action.run, log_source: '', suppress_log_output: false },
  });
  assert.equal(body.desired_lrp.instances, 3);
  assert.equal(body.desired_lrp.memory_mb, 0); // zero values are emitted

  const again = decodeRequest('models.DesiredLRPResponse', out.body, JSON_CT);
  assert.deepEqual(again, { desiredLrp });
  const pb = encodeResponse('models.DesiredLRPResponse', { desiredLrp }, `${PB}; charset=binary`);
  assert.equal(pb.contentType, PB);
  assert.deepEqual(decodeRequest('models.DesiredLRPResponse', pb.body, PB), { desiredLrp });
});

const SINCE_MS = 1_700_000_000_123;

const runningLrp: ActualLrp = {
  actualLrpKey: { processGuid: 'web-1', index: 2, domain: 'cf-apps' },
  actualLrpInstanceKey: { instanceGuid: 'ig-1', cellId: 'cell-a' },
  actualLrpNetInfo: {
    address: '10.0.0.5',
    ports: [{ containerPort: 8080, hostPort: 61001, containerTlsProxyPort: 0, hostTlsProxyPort: 0 }],
    instanceAddress: '10.255.0.7',
    preferredAddress: 'HOST',
  },
  crashCount: 0,
  crashReason: '',
  state: 'RUNNING',
  placementError: '',
  since: SINCE_MS,
  modificationTag: { epoch: 'e-9', index: 3 },
  presence: 'ORDINARY',
  stopRequested: false,
  targetCellId: '',
};

test('an ActualLRP is flattened in JSON and round-trips through both encodings', () => {
  const response = { actualLrpGroups: [{ instance: runningLrp }] };
  const out = encodeResponse('models.ActualLRPGroupsResponse', response, undefined);
  assert.equal(out.contentType, JSON_CT);
  const body = JSON.parse(out.body.toString());
  assert.deepEqual(Object.keys(body), ['actual_lrp_groups']);
  assert.deepEqual(Object.keys(body.actual_lrp_groups[0]), ['instance']);
  const lrp = body.actual_lrp_groups[0].instance;
  assert.deepEqual(Object.keys(lrp).sort(), [
    'address',
    'cell_id',
    'crash_count',
    'crash_reason',
    'domain',
    'index',
    'instance_address',
    'instance_guid',
    'modification_tag',
    'placement_error',
    'ports',
    'preferred_address',
    'presence',
    'process_guid',
    'since',
    'state',
    'stop_requested',
    'target_cell_id',
  ]);
  assert.equal(lrp.process_guid, 'web-1');
  assert.equal(lrp.index, 2);
  assert.equal(lrp.instance_guid, 'ig-1');
  assert.equal(lrp.cell_id, 'cell-a');
  assert.deepEqual(lrp.ports, [{ container_port: 8080, host_port: 61001, container_tls_proxy_port: 0, host_tls_proxy_port: 0 }]);
  assert.equal(lrp.preferred_address, 'HOST');
  assert.equal(lrp.state, 'RUNNING');
  assert.equal(lrp.presence, 'ORDINARY');
  assert.equal(lrp.crash_count, 0);
  assert.deepEqual(lrp.modification_tag, { epoch: 'e-9', index: 3 });
  // int64 nanoseconds as a plain JSON number, exact
  assert.match(out.body.toString(), /"since":1700000000123000000[,}]/);

  assert.deepEqual(decodeRequest('models.ActualLRPGroupsResponse', out.body, JSON_CT), response);
  const pb = encodeResponse('models.ActualLRPGroupsResponse', response, PB);
  assert.deepEqual(decodeRequest('models.ActualLRPGroupsResponse', pb.body, PB), response);
});

test('JSON and protobuf encodings of the same messages carry the same content', () => {
  const { desiredLrp } = decodeRequest<{ desiredLrp: DesiredLrp }>('models.DesireLRPRequest', json(desireJson), JSON_CT);
  const evacuating: ActualLrp = { ...runningLrp, presence: 'EVACUATING', stopRequested: true, crashCount: 2, actualLrpNetInfo: { ...runningLrp.actualLrpNetInfo, ports: [] } };
  const messages: [string, object][] = [
    ['models.DesiredLRPsResponse', { desiredLrps: [desiredLrp, { ...desiredLrp, routes: {} }, { ...desiredLrp, routes: undefined, annotation: undefined }] }],
    ['models.ActualLRPGroupsResponse', { actualLrpGroups: [{ instance: runningLrp }, { evacuating }, {}] }],
    ['models.ActualLRPGroupsResponse', { error: { type: 'ResourceNotFound', message: 'gone' } }],
    ['models.DesiredLRPChangedEvent', { before: desiredLrp, after: { ...desiredLrp, instances: 9 } }],
  ];
  for (const [type, message] of messages) {
    // JSON is encoded straight from the internal objects, protobuf through wire objects:
    // the JSON of what the protobuf bytes decode to must be the same text
    const direct = encodeResponse(type, message, JSON_CT).body.toString();
    const viaProtobuf = encodeResponse(type, decodeRequest(type, encodeResponse(type, message, PB).body, PB), JSON_CT).body.toString();
    assert.equal(direct, viaProtobuf, type);
    assert.equal(encodeEventJson(type, message), direct, type);
  }
});

test('since is milliseconds inside, exact nanoseconds on the wire', () => {
  const pb = encodeResponse('models.ActualLRPsResponse', { actualLrps: [runningLrp] }, PB);
  const raw = wireType('models.ActualLRPsResponse').decode(pb.body) as unknown as { actualLrps: { since: protobuf.Long }[] };
  assert.equal(String(raw.actualLrps[0]!.since), String(BigInt(SINCE_MS) * 1_000_000n));

  const crashed = { actualLrpKey: runningLrp.actualLrpKey, crashCount: 4, crashReason: 'exit 1', since: SINCE_MS };
  const event = Buffer.from(encodeEvent('models.ActualLRPCrashedEvent', crashed), 'base64');
  const rawEvent = wireType('models.ActualLRPCrashedEvent').decode(event) as unknown as { since: protobuf.Long };
  assert.equal(String(rawEvent.since), '1700000000123000000');
  assert.equal(JSON.parse(encodeEventJson('models.ActualLRPCrashedEvent', crashed)).since, SINCE_MS * 1e6);
  // a client's JSON nanoseconds come back as the same milliseconds
  const req = decodeRequest<{ actualLrps: ActualLrp[] }>('models.ActualLRPsResponse', json({ actual_lrps: [{ since: 1700000000123456789 }] }), JSON_CT);
  assert.equal(req.actualLrps[0]!.since, SINCE_MS);
});

test('wire bytes follow the BBS field numbers', () => {
  const hex = (type: string, obj: object) => encodeResponse(type, obj, PB).body.toString('hex');
  // field 1, length-delimited, "abc"
  assert.equal(hex('models.DesiredLRPByProcessGuidRequest', { processGuid: 'abc' }), '0a03616263');
  // process_guid 1 = "a", index 2 = varint 2
  assert.equal(hex('models.ActualLRPGroupByProcessGuidAndIndexRequest', { processGuid: 'a', index: 2 }), '0a01611002');
  // Drover's `enabled` is DesiredLRP field 103: tag (103 << 3 | 0) = 824 = b8 06; false is still sent
  assert.equal(hex('models.DesiredLRP', { enabled: false }), 'b80600');
  // routes live in a wrapper message at 15 whose map is field 1 (BBS ProtoRoutes)
  assert.equal(hex('models.DesiredLRP', { routes: { r: 1 } }), '7a080a060a0172120131');
});

test('errors carry the type name in JSON and the enum number in protobuf', () => {
  const error = { type: 'ResourceNotFound', message: 'no such LRP' };
  const j = encodeResponse('models.DesiredLRPLifecycleResponse', { error }, JSON_CT);
  assert.deepEqual(JSON.parse(j.body.toString()), { error: { type: 'ResourceNotFound', message: 'no such LRP' } });
  const pb = encodeResponse('models.DesiredLRPLifecycleResponse', { error }, PB);
  const raw = wireType('models.DesiredLRPLifecycleResponse').decode(pb.body) as unknown as { error: { type: number } };
  assert.equal(raw.error.type, 13);
  assert.deepEqual(decodeRequest('models.DesiredLRPLifecycleResponse', pb.body, PB), { error });

  // the TS list and the proto enum agree
  assert.deepEqual({ ...wireType('models.Error').lookupEnum('Type').values }, { ...BBS_ERROR_TYPES });
  assert.deepEqual(bbsErrorFromDroverError(new DroverError('not_found', 'gone')), { type: 'ResourceNotFound', message: 'gone' });
  assert.equal(bbsErrorFromDroverError(new DroverError('locked', 'held by ops')).type, 'ResourceConflict');
  assert.equal(bbsErrorFromDroverError(new DroverError('cannot_claim', 'x')).type, 'ActualLRPCannotBeClaimed');
});

function codecError(fn: () => unknown): BbsCodecError {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof BbsCodecError, `expected a BbsCodecError, got ${String(e)}`);
    return e;
  }
  assert.fail('expected an error');
}

test('malformed bodies are rejected with the BBS error types', () => {
  const badJson = codecError(() => decodeRequest('models.DesireLRPRequest', Buffer.from('{"desired_lrp": {'), JSON_CT));
  assert.equal(badJson.bbsType, 'InvalidJSON');
  const garbage = codecError(() => decodeRequest('models.DesireLRPRequest', Buffer.from([0xff, 0xff, 0xff]), PB));
  assert.equal(garbage.bbsType, 'InvalidProtobufMessage');
  const notObject = codecError(() => decodeRequest('models.DesireLRPRequest', Buffer.from('[1, 2]'), JSON_CT));
  assert.equal(notObject.bbsType, 'InvalidRequest');
});

test('JSON values of the wrong type are rejected naming the field', () => {
  const cases: [string, unknown, string][] = [
    ['models.DesireLRPRequest', { desired_lrp: { instances: 'three' } }, 'desired_lrp.instances'],
    ['models.DesireLRPRequest', { desired_lrp: { instances: 1.5 } }, 'desired_lrp.instances'],
    ['models.RemoveDesiredLRPRequest', { process_guid: 5 }, 'process_guid'],
    ['models.DesireLRPRequest', { desired_lrp: { action: { run: { args: ['ok', 7] } } } }, 'desired_lrp.action.run.args[1]'],
    ['models.DesireLRPRequest', { desired_lrp: { env: 'A=b' } }, 'desired_lrp.env'],
    ['models.DesireLRPRequest', { desired_lrp: { privileged: 'yes' } }, 'desired_lrp.privileged'],
    ['models.DesireLRPRequest', { desired_lrp: { routes: ['x'] } }, 'desired_lrp.routes'],
    ['models.ActualLRPGroupsResponse', { actual_lrp_groups: [{ instance: { presence: 'GONE' } }] }, 'actual_lrp_groups[0].instance.presence'],
    ['models.ClaimActualLRPRequest', { index: -1, process_guid: 'p', actual_lrp_instance_key: { cell_id: 3 } }, 'actual_lrp_instance_key.cell_id'],
    ['models.DesireLRPRequest', { desired_lrp: { cpu_weight: -1 } }, 'desired_lrp.cpu_weight'],
  ];
  for (const [type, body, field] of cases) {
    const e = codecError(() => decodeRequest(type, json(body), JSON_CT));
    assert.equal(e.bbsType, 'InvalidRequest');
    assert.ok(e.message.includes(`"${field}"`), `${e.message} should name ${field}`);
  }
});

test('enabled is undefined when absent and false when false, in both encodings', () => {
  const T = wireType('models.DesireLRPRequest');
  for (const [jsonValue, expected] of [[undefined, undefined], [false, false], [true, true]] as const) {
    const fromJson = decodeRequest<{ desiredLrp: DesiredLrp }>('models.DesireLRPRequest', json({ desired_lrp: { process_guid: 'p', enabled: jsonValue } }), JSON_CT);
    const pbBody = Buffer.from(T.encode({ desiredLrp: { processGuid: 'p', ...(jsonValue === undefined ? {} : { enabled: jsonValue }) } }).finish());
    const fromPb = decodeRequest<{ desiredLrp: DesiredLrp }>('models.DesireLRPRequest', pbBody, PB);
    assert.equal(fromJson.desiredLrp.enabled, expected);
    assert.equal(fromPb.desiredLrp.enabled, expected);
    assert.deepEqual(fromJson, fromPb);
  }
});

test('empty bodies are empty messages; unknown keys are ignored', () => {
  const expected = { domain: '', processGuids: [] };
  assert.deepEqual(decodeRequest('models.DesiredLRPsRequest', Buffer.alloc(0), undefined), expected);
  assert.deepEqual(decodeRequest('models.DesiredLRPsRequest', Buffer.alloc(0), PB), expected);
  assert.deepEqual(decodeRequest('models.DesiredLRPsRequest', json({ domain: 'cf', what: 1 }), JSON_CT), { ...expected, domain: 'cf' });
});

test('an update only carries what it sets; routes absent differs from routes empty', () => {
  const none = decodeRequest('models.UpdateDesiredLRPRequest', json({ process_guid: 'p', update: { instances: 0 } }), JSON_CT);
  assert.deepEqual(none, { processGuid: 'p', update: { instances: 0, metricTags: {} } });
  const pb = encodeResponse('models.UpdateDesiredLRPRequest', { processGuid: 'p', update: { routes: {} } }, PB);
  assert.deepEqual(decodeRequest('models.UpdateDesiredLRPRequest', pb.body, PB), { processGuid: 'p', update: { routes: {}, metricTags: {} } });
});

test('scheduling infos are flat inside and in JSON, nested on the wire', () => {
  const info = {
    processGuid: 'web-1',
    domain: 'cf-apps',
    logGuid: 'lg',
    memoryMb: 256,
    diskMb: 1024,
    rootfs: 'preloaded:cflinuxfs4',
    maxPids: 0,
    annotation: '',
    instances: 2,
    routes: ROUTES,
    modificationTag: { epoch: 'e', index: 1 },
    placementTags: [],
  };
  const response = { desiredLrpSchedulingInfos: [info] };
  const j = JSON.parse(encodeResponse('models.DesiredLRPSchedulingInfosResponse', response, JSON_CT).body.toString());
  assert.equal(j.desired_lrp_scheduling_infos[0].process_guid, 'web-1');
  assert.equal(j.desired_lrp_scheduling_infos[0].memory_mb, 256);
  assert.ok(!('desired_lrp_key' in j.desired_lrp_scheduling_infos[0]));
  const pb = encodeResponse('models.DesiredLRPSchedulingInfosResponse', response, PB);
  const raw = wireType('models.DesiredLRPSchedulingInfosResponse').decode(pb.body) as unknown as {
    desiredLrpSchedulingInfos: { desiredLrpKey: { processGuid: string }; desiredLrpResource: { memoryMb: number } }[];
  };
  assert.equal(raw.desiredLrpSchedulingInfos[0]!.desiredLrpKey.processGuid, 'web-1');
  assert.equal(raw.desiredLrpSchedulingInfos[0]!.desiredLrpResource.memoryMb, 256);
  assert.deepEqual(decodeRequest('models.DesiredLRPSchedulingInfosResponse', pb.body, PB), response);
});

test('packageRoot finds the directory holding package.json', () => {
  assert.ok(existsSync(join(packageRoot(), 'package.json')));
  assert.ok(existsSync(join(packageRoot(), 'proto', 'bbs.proto')));
});
