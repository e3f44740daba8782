// The Era macros of an mservice's command line, expanded on the cell that runs it: only
// there are the node's name, its log folder and its site's web servers known.
//   %DOMAIN%         the mservice's domain
//   %WEBSERVERS%     the control-plane URLs this cell talks to, as a JSON array string
//   %WEBSERVERS_EX%  the same (Drover has no separate external addresses)
//   %LOGPATH%        the folder of the instance's log files
//   %SERVERNAME%     the cell id
// Unknown %NAME% tokens are left as they are. An argv word gets the value in place (no
// shell, so no quoting can break); a shell line already refers to the ERA_* variables
// instead (see commandFor in model/mservice.ts), which are set for both forms.

import { MACROS, macroVariable, type Macro } from '../model/mservice.js';

export type MacroValues = Record<Macro, string>;

export interface MacroContext {
  domain: string;
  webservers: string[];
  logPath: string;
  cellId: string;
}

export function macroValues(c: MacroContext): MacroValues {
  const webservers = JSON.stringify(c.webservers);
  return { DOMAIN: c.domain, WEBSERVERS: webservers, WEBSERVERS_EX: webservers, LOGPATH: c.logPath, SERVERNAME: c.cellId };
}

const TOKEN = new RegExp(`%(${MACROS.join('|')})%`, 'g');

export function expandMacros(cmd: { path: string; args: string[]; env: Record<string, string> }, values: MacroValues) {
  const expand = (s: string) => s.replace(TOKEN, (_, name: Macro) => values[name]);
  const env = { ...cmd.env };
  for (const m of MACROS) env[macroVariable(m)] = values[m];
  return { path: expand(cmd.path), args: cmd.args.map(expand), env };
}
