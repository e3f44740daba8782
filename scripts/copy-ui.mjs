// Copies the dashboard's static files (ui/*.html, ui/*.css) next to its compiled JS in dist/ui/.
import { cpSync, mkdirSync, readdirSync } from 'node:fs';

mkdirSync('dist/ui', { recursive: true });
for (const name of readdirSync('ui')) if (/\.(html|css)$/.test(name)) cpSync(`ui/${name}`, `dist/ui/${name}`);
