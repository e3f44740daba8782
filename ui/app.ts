// The Drover dashboard. It follows the event stream and, after each burst of events, re-reads
// the whole state (/ui/api/state) and re-renders: one code path for the first paint and for
// every change, and nothing to get out of step. Writes use the BBS and lock routes.

import { coalesce, followEvents, type StreamEvent } from './sse.js';

interface DesiredRow {
  processGuid: string;
  domain: string;
  serviceId: string;
  instances: number;
  strategy: string;
  enabled: boolean;
  disabledReason: string;
  counts: Record<string, number>;
}
interface InstanceRow {
  processGuid: string;
  index: number;
  domain: string;
  state: string;
  presence: string;
  cellId: string;
  since: number;
  crashCount: number;
  crashReason: string;
  placementError: string;
  stopRequested: boolean;
}
interface State {
  now: number;
  principal: { name: string; roles: string[] };
  services: { id: string; name: string; kind: string; owner: string; state: string; shutdown: boolean }[];
  desiredLrps: DesiredRow[];
  actualLrps: InstanceRow[];
  cells: { cellId: string; site: string; zone: string; heartbeatAt: number; alive: boolean }[];
  locks: { serviceInstanceId: string; owner: string; expiresAt: number; orchestrationJobId: string | null }[];
  shutDownServices: { id: string; name: string; kind: string }[];
  disabledLrps: { processGuid: string; reason: string }[];
}

const STATES = ['RUNNING', 'CLAIMED', 'UNCLAIMED', 'CRASHED'];
const MAX_EVENTS = 40;
const LOCK_BASE = '/serviceorchestration/orchestration/mgmt/lock';

const $ = (id: string) => document.getElementById(id)!;
const esc = (v: unknown) => String(v ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
const badge = (text: string, cls = text) => `<span class="badge ${esc(cls)}">${esc(text)}</span>`;

let token = localStorage.getItem('drover.token') ?? '';
let state: State | undefined;

const authHeaders = (): Record<string, string> => (token ? { authorization: `Bearer ${token}` } : {});

/** One request; any error shape (dashboard, BBS `error` at HTTP 200, Arrowhead `errorMessage`) throws its message. */
async function api<T = unknown>(path: string, init: { method?: string; body?: unknown } = {}, asText = false): Promise<T> {
  const headers: Record<string, string> = { ...authHeaders() };
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(path, { method: init.method ?? (init.body === undefined ? 'GET' : 'POST'), headers, body: init.body === undefined ? undefined : JSON.stringify(init.body) });
  const text = await res.text();
  if (asText && res.ok) return text as T;
  let data: { error?: { message?: string }; errorMessage?: string } = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    if (!res.ok) throw new Error(`HTTP ${res.status}: ${text.slice(0, 200)}`);
  }
  const message = data.error?.message ?? data.errorMessage;
  if (message || !res.ok) throw new Error(message ?? `HTTP ${res.status}`);
  return data as T;
}

/** Times are the server's (unix ms), measured against the server's `now` so clock skew does not show. */
function span(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}
const ago = (at: number) => (at && state ? span(state.now - at) : '-');

/** Operators may do everything; owners change desired state and their own locks. */
function can(role: 'owner' | 'operator'): boolean {
  const roles = state?.principal.roles ?? [];
  return roles.includes('operator') || roles.includes(role);
}

function tableHtml(headers: string[], rows: string[], empty: string): string {
  if (!rows.length) return `<p class="empty">${esc(empty)}</p>`;
  return `<table><thead><tr>${headers.map((h) => `<th>${esc(h)}</th>`).join('')}</tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

const lastHtml = new Map<string, string>();

/** Replaces a section only when it changed, keeping what the user is typing (inputs with data-keep). */
function setHtml(id: string, html: string): void {
  if (lastHtml.get(id) === html) return;
  lastHtml.set(id, html);
  const el = $(id);
  const focused = (document.activeElement as HTMLElement | null)?.dataset?.keep;
  const typed = new Map<string, string>();
  for (const input of el.querySelectorAll<HTMLInputElement>('input[data-keep][data-dirty]')) typed.set(input.dataset.keep!, input.value);
  el.innerHTML = html;
  for (const input of el.querySelectorAll<HTMLInputElement>('input[data-keep]')) {
    const value = typed.get(input.dataset.keep!);
    if (value !== undefined) Object.assign(input, { value }).dataset.dirty = '1';
    if (input.dataset.keep === focused) input.focus();
  }
}

function render(s: State): void {
  $('who').textContent = `${s.principal.name} (${s.principal.roles.join(', ')})`;
  const attention = [
    ...s.shutDownServices.map((x) => `<li>service ${badge('shut down', 'shutdown')} <b>${esc(x.name)}</b> (${esc(x.kind)} ${esc(x.id)})</li>`),
    ...s.disabledLrps.map((x) => `<li>desired LRP ${badge('disabled')} <b>${esc(x.processGuid)}</b>: ${esc(x.reason || 'no reason given')}</li>`),
  ];
  $('attention').hidden = !attention.length;
  setHtml('attention', `<h2>Needs attention</h2><ul>${attention.join('')}</ul>`);

  setHtml(
    'desired',
    tableHtml(
      ['process guid', 'domain', 'service', 'desired', ...STATES.map((x) => x.toLowerCase()), 'status', can('owner') ? 'actions' : ''],
      s.desiredLrps.map((d) => {
        const guid = esc(d.processGuid);
        const actions = can('owner')
          ? `<input type="number" min="0" value="${d.instances}" data-keep="scale:${guid}" aria-label="instances of ${guid}"> <button data-action="scale" data-guid="${guid}">scale</button>
             <button data-action="${d.enabled ? 'disable' : 'enable'}" data-guid="${guid}">${d.enabled ? 'disable' : 'enable'}</button>`
          : '';
        const status = d.enabled ? badge('enabled') : `${badge('disabled')} ${esc(d.disabledReason)}`;
        return `<tr data-guid="${guid}" data-desired="${d.instances}" data-running="${d.counts.RUNNING ?? 0}">
          <td><b>${guid}</b>${d.strategy === 'spread' ? '' : ` <small>${esc(d.strategy)}</small>`}</td><td>${esc(d.domain)}</td><td>${esc(d.serviceId)}</td>
          <td class="desired">${d.instances}</td>${STATES.map((x) => `<td class="count-${x}">${d.counts[x] ?? 0}</td>`).join('')}
          <td>${status}</td><td>${actions}</td></tr>`;
      }),
      'nothing desired yet',
    ),
  );

  setHtml(
    'instances',
    tableHtml(
      ['instance', 'state', 'cell', 'since', 'crashes', 'reason', ''],
      s.actualLrps.map((a) => {
        const id = `${a.processGuid}/${a.index}`;
        const flags = [a.presence !== 'ORDINARY' ? a.presence : '', a.stopRequested ? 'stopping' : ''].filter(Boolean).join(' ');
        const data = `data-guid="${esc(a.processGuid)}" data-index="${a.index}" data-domain="${esc(a.domain)}"`;
        const retire = can('owner') && !a.stopRequested ? `<button data-action="retire" ${data}>retire</button>` : '';
        return `<tr data-instance="${esc(id)}" data-state="${esc(a.state)}" data-crashes="${a.crashCount}">
          <td>${esc(id)}</td><td>${badge(a.state)} ${esc(flags)}</td><td>${esc(a.cellId || '-')}</td><td>${ago(a.since)}</td>
          <td class="crashes">${a.crashCount}</td><td class="reason">${esc(a.crashReason || a.placementError)}</td>
          <td>${retire} <button data-action="log" ${data}>log</button></td></tr>`;
      }),
      'no instances',
    ),
  );

  setHtml(
    'cells',
    tableHtml(
      ['cell', 'site', 'zone', 'presence', 'heartbeat'],
      s.cells.map((c) => `<tr data-cell="${esc(c.cellId)}"><td>${esc(c.cellId)}</td><td>${esc(c.site)}</td><td>${esc(c.zone)}</td><td>${badge(c.alive ? 'alive' : 'dead')}</td><td>${ago(c.heartbeatAt)}</td></tr>`),
      'no cells',
    ),
  );

  setHtml(
    'services',
    tableHtml(
      ['name', 'kind', 'state', 'owner'],
      s.services.map((x) => `<tr><td title="${esc(x.id)}">${esc(x.name)}</td><td>${esc(x.kind)}</td><td>${badge(x.state)}${x.shutdown ? ` ${badge('shut down', 'shutdown')}` : ''}</td><td>${esc(x.owner)}</td></tr>`),
      'no services',
    ),
  );

  setHtml(
    'locks',
    tableHtml(
      ['service instance', 'owner', 'expires', ''],
      s.locks.map((l) => {
        const release = l.orchestrationJobId === null && (can('operator') || (can('owner') && l.owner === s.principal.name))
          ? `<button data-action="release" data-owner="${esc(l.owner)}" data-instance-id="${esc(l.serviceInstanceId)}">release</button>`
          : '';
        return `<tr><td>${esc(l.serviceInstanceId)}</td><td>${esc(l.owner)}</td><td>in ${span(l.expiresAt - s.now)}</td><td>${release}</td></tr>`;
      }),
      'no locks',
    ),
  );
}

// ------------------------------------------------------------------------- loading state

function showError(message: string): void {
  $('error').hidden = !message;
  $('error').textContent = message;
}

async function refresh(): Promise<void> {
  try {
    state = await api<State>('/ui/api/state');
    render(state);
    showError('');
  } catch (e) {
    showError((e as Error).message);
  }
}
const refreshSoon = coalesce(refresh);

// ------------------------------------------------------------------------- event stream

/** `hello/0 RUNNING`-style subject of a BBS event in JSON (groups, instances or desired LRPs). */
function subject(data: Record<string, any>): string {
  const unwrap = (g: any) => g?.instance ?? g?.evacuating ?? g;
  const x = unwrap(data.after) ?? unwrap(data.actual_lrp_group) ?? data.desired_lrp ?? data.actual_lrp_key ?? data;
  const index = x?.index !== undefined ? `/${x.index}` : '';
  return [`${x?.process_guid ?? ''}${index}`, x?.state ?? '', data.crash_reason ?? ''].filter(Boolean).join(' ');
}

function addEvent(e: StreamEvent): void {
  let text = '';
  try {
    text = subject(JSON.parse(e.data));
  } catch {
    // not JSON: show the name only
  }
  const li = document.createElement('li');
  li.innerHTML = `<time>${new Date().toLocaleTimeString()}</time><b>${esc(e.event)}</b> ${esc(text)}`;
  const list = $('events');
  list.prepend(li);
  while (list.children.length > MAX_EVENTS) list.lastElementChild!.remove();
}

function setStatus(live: boolean, text: string): void {
  $('status').className = `status ${live ? 'live' : 'down'}`;
  $('status').textContent = text;
}

let stream: AbortController | undefined;

function connect(): void {
  stream?.abort();
  stream = new AbortController();
  followEvents('/v1/events?format=json', {
    headers: authHeaders(),
    signal: stream.signal,
    onEvent: (e) => {
      addEvent(e);
      refreshSoon();
    },
    // A (re)connect may have missed changes: re-read everything.
    onStatus: (live, detail) => {
      setStatus(live, live ? 'live' : `reconnecting (${detail})`);
      if (live) refreshSoon();
    },
  }).catch((e: Error) => {
    setStatus(false, 'not allowed: enter a token');
    showError(e.message);
  });
}

// ------------------------------------------------------------------------- log tail

let logOf: { guid: string; index: string } | undefined;

async function loadLog(): Promise<void> {
  if (!logOf) return;
  const pre = $('log');
  const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  try {
    pre.textContent = (await api<string>(`/ui/api/logs/${encodeURIComponent(logOf.guid)}/${logOf.index}`, {}, true)) || '(empty)';
  } catch (e) {
    pre.textContent = `(${(e as Error).message})`;
  }
  if (atBottom) pre.scrollTop = pre.scrollHeight;
}

// ------------------------------------------------------------------------- actions

const ACTIONS: Record<string, (b: HTMLElement) => Promise<unknown> | void> = {
  scale: (b) => {
    const input = document.querySelector<HTMLInputElement>(`input[data-keep="scale:${CSS.escape(b.dataset.guid!)}"]`)!;
    delete input.dataset.dirty;
    return api('/v1/desired_lrp/update', { body: { process_guid: b.dataset.guid, update: { instances: Number(input.value) } } });
  },
  disable: (b) => api(`/ui/api/desired_lrps/${encodeURIComponent(b.dataset.guid!)}/enabled`, { body: { enabled: false } }),
  enable: (b) => api(`/ui/api/desired_lrps/${encodeURIComponent(b.dataset.guid!)}/enabled`, { body: { enabled: true } }),
  retire: (b) => api('/v1/actual_lrps/retire', { body: { actual_lrp_key: { process_guid: b.dataset.guid, index: Number(b.dataset.index), domain: b.dataset.domain } } }),
  release: (b) => api(`${LOCK_BASE}/remove/${encodeURIComponent(b.dataset.owner!)}?instanceIds=${encodeURIComponent(b.dataset.instanceId!)}`, { method: 'DELETE' }),
  log: (b) => {
    logOf = { guid: b.dataset.guid!, index: b.dataset.index! };
    $('log-title').textContent = `${logOf.guid}/${logOf.index}`;
    $('log-panel').hidden = false;
    return loadLog();
  },
  'close-log': () => {
    logOf = undefined;
    $('log-panel').hidden = true;
  },
};

document.addEventListener('click', (ev) => {
  const button = (ev.target as HTMLElement).closest<HTMLElement>('[data-action]');
  const action = button && ACTIONS[button.dataset.action!];
  if (!action) return;
  // Lock changes are not events: re-read after every action.
  Promise.resolve(action(button))
    .then(() => (showError(''), refreshSoon()))
    .catch((e: Error) => showError(e.message));
});

document.addEventListener('input', (ev) => {
  const input = ev.target as HTMLInputElement;
  if (input.dataset.keep) input.dataset.dirty = '1';
});

// Enter in the token field must not submit (reload) the page.
$('token-form').addEventListener('submit', (ev) => ev.preventDefault());
const tokenInput = $('token') as HTMLInputElement;
tokenInput.value = token;
tokenInput.addEventListener('change', () => {
  token = tokenInput.value.trim();
  localStorage.setItem('drover.token', token);
  connect();
  refreshSoon();
});

connect();
refreshSoon();
// Cell presence and the ages shown move without events; the log grows without them too.
setInterval(refreshSoon, 5000);
setInterval(() => void loadLog(), 2000);
