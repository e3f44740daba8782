// The XML-RPC codec and the bounded XML reader under it, without a server: every type in
// both directions, what Python's xmlrpc.client sends, faults, and hostile input.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeCall, decodeResponse, encodeCall, encodeFault, encodeResponse, FAULT, XmlRpcFault, type XmlRpcValue } from '../src/api/xmlrpc/codec.js';
import { escapeXml, parseXml, XmlError } from '../src/api/xmlrpc/xml.js';
import { parseRequest, runActionOf } from '../src/api/xmlrpc/rspec.js';

const call = (value: string) => `<?xml version='1.0'?>\n<methodCall>\n<methodName>M</methodName>\n<params>\n<param>\n<value>${value}</value>\n</param>\n</params>\n</methodCall>\n`;
const one = (value: string) => decodeCall(call(value)).params[0];
const faultCode = (f: () => unknown, code: number) => assert.throws(f, (e: unknown) => e instanceof XmlRpcFault && e.faultCode === code);

describe('XML-RPC codec', () => {
  it('round-trips every type through a call and a response', () => {
    const value: XmlRpcValue = {
      text: 'a <b> & "c" \u00e9\u{1F600}',
      empty: '',
      int: 42,
      negative: -2147483648,
      big: 2 ** 40,
      double: 3.25,
      yes: true,
      no: false,
      nil: null,
      when: new Date('2026-01-02T03:04:05Z'),
      bytes: Buffer.from([0, 1, 2, 255]),
      list: [1, 'two', [3], {}],
      nested: { deeper: { deepest: ['x'] } },
    };
    const back = decodeCall(encodeCall('Method.name', [value, 'second'])).params;
    assert.deepEqual(back, [value, 'second']);
    assert.deepEqual(decodeResponse(encodeResponse(value)), value);
  });

  it('reads what Python xmlrpc.client writes, untyped strings and every integer spelling included', () => {
    assert.equal(one('plain text'), 'plain text');
    assert.equal(one('<string></string>'), '');
    assert.equal(one('<int>7</int>'), 7);
    assert.equal(one('<i4>-7</i4>'), -7);
    assert.equal(one('<i8>9007199254740991</i8>'), Number.MAX_SAFE_INTEGER);
    assert.equal(one('<double>-1.5e3</double>'), -1500);
    assert.equal(one('<boolean>1</boolean>'), true);
    assert.equal(one('<nil/>'), null);
    assert.deepEqual(one('<base64>\nAAEC/w==\n</base64>'), Buffer.from([0, 1, 2, 255]));
    assert.deepEqual(one('<dateTime.iso8601>20260102T03:04:05</dateTime.iso8601>'), new Date('2026-01-02T03:04:05Z'));
    assert.deepEqual(one('<dateTime.iso8601>2026-01-02T05:04:05+02:00</dateTime.iso8601>'), new Date('2026-01-02T03:04:05Z'));
    assert.deepEqual(one('<array><data>\n<value><int>1</int></value>\n<value>x</value>\n</data></array>'), [1, 'x']);
    assert.deepEqual(one('<struct>\n<member>\n<name>a</name>\n<value><int>1</int></value>\n</member>\n</struct>'), { a: 1 });
    assert.deepEqual(decodeCall('<methodCall><methodName>GetVersion</methodName></methodCall>'), { methodName: 'GetVersion', params: [] });
  });

  it('keeps a member named __proto__ an ordinary member', () => {
    const s = one('<struct><member><name>__proto__</name><value><struct><member><name>polluted</name><value>1</value></member></struct></value></member></struct>') as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(s), Object.prototype);
    assert.deepEqual(Object.keys(s), ['__proto__']);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });

  it('refuses values that are not what their type says', () => {
    for (const bad of [
      '<int>2147483648</int>',
      '<int>1.5</int>',
      '<i8>9007199254740993</i8>',
      '<boolean>true</boolean>',
      '<double>NaN</double>',
      '<base64>***</base64>',
      '<dateTime.iso8601>20260230T00:00:00</dateTime.iso8601>',
      '<dateTime.iso8601>yesterday</dateTime.iso8601>',
      '<struct><member><value>1</value></member></struct>',
      '<struct><item/></struct>',
      '<array><value>1</value></array>',
      '<float>1</float>',
      '<int>1</int><int>2</int>',
    ]) {
      faultCode(() => one(bad), FAULT.invalidRequest);
    }
    faultCode(() => decodeCall('<methodResponse/>'), FAULT.invalidRequest);
    faultCode(() => decodeCall('<methodCall><methodName>a b</methodName></methodCall>'), FAULT.invalidRequest);
    faultCode(() => decodeCall('<methodCall><params/></methodCall>'), FAULT.invalidRequest);
  });

  it('encodes and decodes faults', () => {
    faultCode(() => decodeResponse(encodeFault(-32601, 'no method <x>')), -32601);
    assert.throws(() => decodeResponse(encodeFault(3, 'why')), { faultString: 'why' });
  });

  it('refuses non-finite numbers rather than writing what no peer can read', () => {
    assert.throws(() => encodeResponse(Number.NaN), TypeError);
  });

  it('turns malformed XML, DTDs, entity bombs and deep nesting into parse-error faults', () => {
    faultCode(() => decodeCall('<methodCall><methodName>x</methodName>'), FAULT.parseError);
    faultCode(() => decodeCall(''), FAULT.parseError);
    faultCode(() => decodeCall('<a></b>'), FAULT.parseError);
    const bomb = '<?xml version="1.0"?><!DOCTYPE z [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]><methodCall><methodName>M</methodName><params><param><value>&c;</value></param></params></methodCall>';
    faultCode(() => decodeCall(bomb), FAULT.parseError);
    faultCode(() => decodeCall(call('&undefined;')), FAULT.parseError);
    const deep = call('<array><data><value>'.repeat(100) + '</value></data></array>'.repeat(100));
    faultCode(() => decodeCall(deep), FAULT.parseError);
    faultCode(() => decodeCall(call('<array><data>' + '<value/>'.repeat(50) + '</data></array>'), { maxDepth: 64, maxElements: 20 }), FAULT.parseError);
  });
});

describe('XML reader and escaping', () => {
  it('keeps namespaces, attributes and CDATA', () => {
    const el = parseXml('<r xmlns="urn:a" xmlns:p="urn:b"><p:c k="v" p:k2="w"><![CDATA[<raw>]]></p:c></r>');
    assert.equal(el.ns, 'urn:a');
    const c = el.children[0]!;
    assert.deepEqual([c.name, c.ns, c.text, c.attrs.k, c.attrs['{urn:b}k2']], ['c', 'urn:b', '<raw>', 'v', 'w']);
  });

  it('escapes what XML cannot carry literally and replaces what it cannot carry at all', () => {
    assert.equal(escapeXml('a&<>"\r\n\t\u0000b'), 'a&amp;&lt;&gt;&quot;&#13;&#10;&#9;\uFFFDb');
    assert.equal(parseXml(`<v a="${escapeXml('x"\r\n\ty')}">${escapeXml('1 < 2 & 3')}</v>`).attrs.a, 'x"\r\n\ty');
    assert.throws(() => parseXml('<!DOCTYPE v><v/>'), XmlError);
  });
});

describe('request RSpec', () => {
  const rspec = (nodes: string) => `<rspec type="request" xmlns="http://www.geni.net/resources/rspec/3" xmlns:drover="urn:drover:rspec:process:1">${nodes}</rspec>`;

  it('maps <execute> and <drover:process> to run actions, and leaves nodes of other aggregates alone', () => {
    const nodes = parseRequest(
      rspec(
        '<node client_id="a"><sliver_type name="drover-process"/><services><execute shell="bash" command="echo hi"/></services></node>' +
          '<node client_id="b"><drover:process path="/usr/bin/env" dir="/tmp"><drover:arg>-i</drover:arg><drover:env name="K" value="V"/></drover:process></node>' +
          '<node client_id="c" component_manager_id="urn:publicid:IDN+elsewhere+authority+am"><sliver_type name="raw-pc"/></node>',
      ),
    );
    assert.deepEqual(nodes.map(runActionOf), [
      { path: '/bin/bash', args: ['-c', 'echo hi'], dir: '', env: [], user: '' },
      { path: '/usr/bin/env', args: ['-i'], dir: '/tmp', env: [{ name: 'K', value: 'V' }], user: '' },
    ]);
  });

  it('refuses what it cannot run', () => {
    for (const [nodes, why] of [
      ['<node client_id="a"/>', /exactly one/],
      ['<node><services><execute command="x"/></services></node>', /client_id/],
      ['<node client_id="a"><services><execute shell="csh" command="x"/></services></node>', /shell csh/],
      ['<node client_id="a"><services><execute command="x"/></services></node><node client_id="a"><services><execute command="y"/></services></node>', /unique/],
      ['<node client_id="a"><drover:process/></node>', /path/],
    ] as const) {
      assert.throws(() => parseRequest(rspec(nodes)), why);
    }
    assert.throws(() => parseRequest('<rspec type="manifest" xmlns="http://www.geni.net/resources/rspec/3"/>'), /request RSpec/);
    assert.throws(() => parseRequest('<other/>'), /not a GENI v3 RSpec/);
  });
});
