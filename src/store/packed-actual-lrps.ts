// Actual LRP rows packed into bytes, for the lists that stream 100k rows. Reading them as
// JS values (16 per row) cost the most of such a list; packed, SQLite builds one buffer in
// C and the encoders copy byte ranges out of it.
//
// Layout: per row, each column of ACTUAL_COLUMNS in that order as its UTF-8 text (numbers in
// decimal) followed by 0xFF, then 0xFE ending the row. Neither byte occurs in UTF-8, so
// nothing needs escaping (every value Drover stores comes from a JS string, written as UTF-8).

import { ACTUAL_COLUMNS } from './hot-statements.js';
import type { ActualLrpsTable } from './schema.js';

/** A page of rows in the packed layout. */
export interface PackedActualLrps {
  count: number;
  bytes: Buffer;
}

export const END_OF_FIELD = 0xff;
export const END_OF_ROW = 0xfe;

/** Each column's position in a packed row, by name. */
export const PACKED_COLUMN = Object.fromEntries(ACTUAL_COLUMNS.map((c, i) => [c, i])) as Record<(typeof ACTUAL_COLUMNS)[number], number>;

const NET_INFO = PACKED_COLUMN.net_info;

/**
 * SQLite: the whole result of `select` (which selects ACTUAL_COLUMNS, ordered) as one packed
 * buffer and its row count, in one statement, hence one snapshot. group_concat takes the rows
 * in the order the subquery yields them; an ORDER BY inside it would sort them a second time.
 */
export function packedSqliteQuery(select: string): string {
  return `SELECT CAST(group_concat(concat_ws(x'ff', ${ACTUAL_COLUMNS.join(', ')}, x'fe'), '') AS BLOB), count(*) FROM (${select})`;
}

/** Walks the rows of a packed page: after `next()`, column i is bytes[start(i), end(i)). */
export class PackedRowReader {
  /** start of each column, and one past the row's last column */
  private readonly starts = new Int32Array(ACTUAL_COLUMNS.length + 1);
  private pos = 0;

  constructor(readonly bytes: Buffer) {
    // the scans below stop at the last byte at the latest
    if (bytes.length > 0 && bytes[bytes.length - 1] !== END_OF_ROW) throw new Error('packed actual LRPs cut short');
  }

  next(): boolean {
    const b = this.bytes;
    let p = this.pos;
    if (p >= b.length) return false;
    for (let i = 0; i < ACTUAL_COLUMNS.length; i++) {
      this.starts[i] = p;
      if (i === NET_INFO) {
        // the one long column: a native search is faster there
        p = b.indexOf(END_OF_FIELD, p);
        if (p < 0) throw new Error('packed actual LRP row with fewer columns than expected');
      } else {
        // up to 0xFE or 0xFF
        while ((b[p]! & END_OF_ROW) !== END_OF_ROW) p++;
      }
      if (b[p++] !== END_OF_FIELD) throw new Error('packed actual LRP row with fewer columns than expected');
    }
    this.starts[ACTUAL_COLUMNS.length] = p;
    if (b[p] !== END_OF_ROW) throw new Error('packed actual LRP row with more columns than expected');
    this.pos = p + 1;
    return true;
  }

  start(column: number): number {
    return this.starts[column]!;
  }

  /** the column's end, before its 0xFF */
  end(column: number): number {
    return this.starts[column + 1]! - 1;
  }

  text(column: number): string {
    return this.bytes.toString('utf8', this.start(column), this.end(column));
  }
}

/** Splits one packed buffer of `count` rows into pages of at most `pageSize` rows (no copies). */
export function* packedPages(all: PackedActualLrps, pageSize: number): Generator<PackedActualLrps> {
  const { bytes } = all;
  let start = 0;
  for (let done = 0; done < all.count; ) {
    const count = Math.min(pageSize, all.count - done);
    let end = start;
    for (let i = 0; i < count; i++) end = bytes.indexOf(END_OF_ROW, end) + 1;
    yield { count, bytes: bytes.subarray(start, end) };
    start = end;
    done += count;
  }
}

/**
 * Rows read as objects (PostgreSQL), packed. PostgreSQL text holds no NUL, so the page is
 * first one string with NUL after each column and after each row, made bytes in one call,
 * then every NUL becomes its separator: one native write per page instead of one per column.
 */
export function packActualLrpRows(rows: readonly ActualLrpsTable[]): PackedActualLrps {
  let text = '';
  for (const row of rows) {
    for (const c of ACTUAL_COLUMNS) text += `${row[c]}\0`;
    text += '\0';
  }
  const bytes = Buffer.from(text);
  const perRow = ACTUAL_COLUMNS.length + 1;
  let nuls = 0;
  for (let p = 0; p < bytes.length; p++) {
    if (bytes[p] !== 0) continue;
    bytes[p] = ++nuls % perRow === 0 ? END_OF_ROW : END_OF_FIELD;
  }
  // a NUL inside a value (not from PostgreSQL) would shift the columns: written one by one
  return nuls === rows.length * perRow ? { count: rows.length, bytes } : packColumnByColumn(rows);
}

function packColumnByColumn(rows: readonly ActualLrpsTable[]): PackedActualLrps {
  const parts: Buffer[] = [];
  for (const row of rows) {
    for (const c of ACTUAL_COLUMNS) parts.push(Buffer.from(String(row[c])), FIELD_END_BYTE);
    parts.push(ROW_END_BYTE);
  }
  return { count: rows.length, bytes: Buffer.concat(parts) };
}

const FIELD_END_BYTE = Buffer.from([END_OF_FIELD]);
const ROW_END_BYTE = Buffer.from([END_OF_ROW]);

const NUMBER_COLUMNS = new Set<string>(['idx', 'crash_count', 'since', 'mod_index', 'stop_requested']);

/** A packed page back to row objects (numbers as numbers), for callers that want objects. */
export function unpackActualLrps(page: PackedActualLrps): ActualLrpsTable[] {
  const rows: ActualLrpsTable[] = [];
  const reader = new PackedRowReader(page.bytes);
  while (reader.next()) {
    const row: Record<string, string | number> = {};
    for (const c of ACTUAL_COLUMNS) {
      const text = reader.text(PACKED_COLUMN[c]);
      row[c] = NUMBER_COLUMNS.has(c) ? Number(text) : text;
    }
    rows.push(row as unknown as ActualLrpsTable);
  }
  return rows;
}
