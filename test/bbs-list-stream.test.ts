// The streamed ActualLRP lists against the generic codec: for rows with every field set, the
// bytes streamed from store pages equal the bytes the codec encodes from the internal objects,
// in JSON and protobuf, on both stores.

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import { decodeMessage, encodeResponse, JSON_CONTENT_TYPE, PROTOBUF_CONTENT_TYPE } from '../src/api/bbs/codec.js';
import { ActualLrpList, type ListShape } from '../src/api/bbs/list-stream.js';
import { toGroup } from '../src/core/queries.js';
import type { ActualLrp, ActualLrpFilter } from '../src/model/lrp.js';
import type { Store } from '../src/store/store.js';
import { storeFixtures } from './helpers.js';

const RESPONSE: Record<ListShape, string> = { groups: 'models.ActualLRPGroupsResponse', actuals: 'models.ActualLRPsResponse' };

function actual(processGuid: string, index: number, change: Partial<ActualLrp> = {}): ActualLrp {
  return {
    actualLrpKey: { processGuid, index, domain: 'cf-apps' },
    actualLrpInstanceKey: { instanceGuid: `ig-${processGuid}-${index}`, cellId: 'cell-1' },
    actualLrpNetInfo: {
      address: '10.0.0.7',
      ports: [
        { containerPort: 8080, hostPort: 61001, containerTlsProxyPort: 61443, hostTlsProxyPort: 61002 },
        { containerPort: 2222, hostPort: 61003 },
      ],
      instanceAddress: '10.255.0.9',
      preferredAddress: 'INSTANCE',
    },
    crashCount: 3,
    crashReason: 'exit status 137: "OOM" \\ killed\n\u00e9\u2028',
    state: 'RUNNING',
    placementError: 'found no compatible cell',
    since: 1_764_100_000_123,
    modificationTag: { epoch: `epoch-${index}`, index: 2_000_000_000 },
    presence: 'ORDINARY',
    stopRequested: true,
    targetCellId: 'cell-2',
    ...change,
  };
}

/** Every kind of row the encoders meet: all fields set, zero values, each presence, enums. */
const ROWS: ActualLrp[] = [
  actual('web', 0),
  actual('web', 1, { presence: 'EVACUATING', actualLrpInstanceKey: { instanceGuid: 'ig-evac', cellId: 'cell-3' } }),
  actual('web', 2, { presence: 'SUSPECT', stopRequested: false, targetCellId: '' }),
  actual('web', -1, { crashCount: 0, crashReason: '', placementError: '', since: 0, state: 'UNCLAIMED', modificationTag: { epoch: '', index: 0 } }),
  actual('web', 3, {
    actualLrpInstanceKey: { instanceGuid: '', cellId: '' },
    actualLrpNetInfo: { address: '', ports: [], instanceAddress: '', preferredAddress: 'UNKNOWN' },
    state: 'CRASHED',
  }),
  actual('worker', 0, { actualLrpKey: { processGuid: 'worker', index: 0, domain: 'other' }, actualLrpNetInfo: { address: 'h', ports: [{ containerPort: 0, hostPort: 0 }], instanceAddress: '', preferredAddress: 'HOST' } }),
  actual('worker', 1, { actualLrpKey: { processGuid: 'worker', index: 1, domain: 'other' }, since: 4_102_444_800_000 }),
  // a small one: its ActualLRP takes fewer than 128 bytes (a one-byte length)
  actual('web', 4, {
    actualLrpInstanceKey: { instanceGuid: '', cellId: '' },
    actualLrpNetInfo: { address: '', ports: [], instanceAddress: '', preferredAddress: 'UNKNOWN' },
    crashCount: 0,
    crashReason: '',
    placementError: '',
    modificationTag: { epoch: '', index: 0 },
    stopRequested: false,
    targetCellId: '',
  }),
  // net info stored in another member order, with escapes and non-ASCII: read by JSON.parse
  actual('worker', 2, {
    actualLrpKey: { processGuid: 'worker', index: 2, domain: 'other' },
    actualLrpNetInfo: { ports: [{ hostPort: 1, containerPort: 2 }], address: 'a"b\\c\u00e9', instanceAddress: '\u00fc', preferredAddress: 'INSTANCE' },
  }),
  // a non-ASCII key and address, a big crash count (several varint bytes), net info in the usual order
  actual('\u00e9t\u00e9', 0, {
    actualLrpKey: { processGuid: '\u00e9t\u00e9', index: 0, domain: 'other' },
    actualLrpNetInfo: { address: '\u00e4', ports: [], instanceAddress: '10.0.0.1', preferredAddress: 'HOST' },
    crashCount: 2_000_000_000,
    crashReason: '',
  }),
];

async function bodyOf(readable: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of readable) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

for (const fixture of storeFixtures()) {
  describe(`streamed ActualLRP lists on ${fixture.name}`, () => {
    let store: Store;
    before(async () => {
      store = await fixture.open();
      await store.transaction(async (tx) => {
        for (const a of ROWS) await tx.insertActualLrp(a);
      });
    });
    after(async () => {
      await store.close();
      await fixture.cleanup();
    });

    const filters: [string, ActualLrpFilter][] = [
      ['everything', {}],
      ['a domain', { domain: 'cf-apps' }],
      ['a cell', { cellId: 'cell-1' }],
      ['a cell and the instances placed on it', { cellId: 'cell-2', includeTargeted: true }],
      ['a process guid', { processGuid: 'worker' }],
      ['one index', { processGuid: 'web', index: 1 }],
      ['nothing', { processGuid: 'none' }],
    ];
    for (const shape of ['groups', 'actuals'] as const) {
      for (const [contentType, label] of [
        [JSON_CONTENT_TYPE, 'JSON'],
        [PROTOBUF_CONTENT_TYPE, 'protobuf'],
      ] as const) {
        for (const [what, filter] of filters) {
          it(`${shape}, ${label}, ${what}: the codec's bytes`, async () => {
            const internal = await store.listActualLrps(filter);
            const message = shape === 'groups' ? { actualLrpGroups: internal.map(toGroup) } : { actualLrps: internal };
            const expected = encodeResponse(RESPONSE[shape], message, contentType);
            // pages of 2, so page joins are crossed
            const streamed = await new ActualLrpList(shape, store.pagesOfActualLrps(filter, 2)).open(contentType);
            const body = await bodyOf(streamed.body);
            assert.equal(streamed.contentType, expected.contentType);
            assert.deepEqual(decodeMessage(RESPONSE[shape], body, contentType), decodeMessage(RESPONSE[shape], expected.body, contentType));
            assert.equal(body.toString(contentType === JSON_CONTENT_TYPE ? 'utf8' : 'hex'), expected.body.toString(contentType === JSON_CONTENT_TYPE ? 'utf8' : 'hex'));
          });
        }
      }
    }

    it('every row of the fixture is listed, with every field as stored', async () => {
      const streamed = await new ActualLrpList('actuals', store.pagesOfActualLrps({}, 3)).open(PROTOBUF_CONTENT_TYPE);
      const decoded = decodeMessage<{ actualLrps: ActualLrp[] }>(RESPONSE.actuals, await bodyOf(streamed.body), PROTOBUF_CONTENT_TYPE);
      const key = (a: ActualLrp) => `${a.actualLrpKey.processGuid}/${a.actualLrpKey.index}`;
      const byKey = new Map(ROWS.map((a) => [key(a), a]));
      assert.equal(decoded.actualLrps.length, ROWS.length);
      for (const a of decoded.actualLrps) {
        const want = byKey.get(key(a))!;
        // the codec reads absent TLS proxy ports as 0
        const ports = want.actualLrpNetInfo.ports.map((p) => ({ containerTlsProxyPort: 0, hostTlsProxyPort: 0, ...p }));
        assert.deepEqual(a, { ...want, actualLrpNetInfo: { ...want.actualLrpNetInfo, ports } });
      }
    });
  });
}
