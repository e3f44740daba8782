// `drover logs`: an instance's log files live under <data-dir>/cells/<cell>/logs/<guid>/<index>.log.

import { existsSync, readdirSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { readLogTail } from '../agent/executor.js';

export function instanceLogFile(dataDir: string, cellId: string, guid: string, index: number): string {
  return join(dataDir, 'cells', cellId, 'logs', guid, `${index}.log`);
}

function findLog(dataDir: string, guid: string, index: number, cellId?: string): string {
  const cellsDir = join(dataDir, 'cells');
  const cells = cellId ? [cellId] : existsSync(cellsDir) ? readdirSync(cellsDir) : [];
  const found = cells.map((c) => instanceLogFile(dataDir, c, guid, index)).filter((f) => existsSync(f));
  if (found.length === 0) throw new Error(`no log for ${guid}/${index} under ${cellsDir}`);
  // the most recently written one, if several cells ran it
  return found.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0]!;
}

export async function logsCommand(dataDir: string, guid: string, index: number, o: { follow: boolean; cellId?: string; bytes: number }): Promise<void> {
  const file = findLog(dataDir, guid, index, o.cellId);
  process.stdout.write(await readLogTail(file, o.bytes));
  if (!o.follow) return;
  let offset = statSync(file).size;
  for (;;) {
    await new Promise((r) => setTimeout(r, 250));
    const size = existsSync(file) ? statSync(file).size : 0;
    if (size < offset) offset = 0; // rotated (copy-truncate)
    if (size === offset) continue;
    const handle = await open(file, 'r');
    const { buffer, bytesRead } = await handle.read(Buffer.alloc(size - offset), 0, size - offset, offset);
    await handle.close();
    process.stdout.write(buffer.subarray(0, bytesRead));
    offset += bytesRead;
  }
}
