// Every command prints human text by default and one JSON document with --json.
export interface Io {
  json: boolean; out: (line: string) => void; err: (line: string) => void;
  /** stdout is a terminal: a command may redraw one line (write without a newline) instead of printing many */
  tty?: boolean; write?: (chunk: string) => void;
}

export function emit(io: Io, json: unknown, human: () => string[]): void {
  if (io.json) io.out(JSON.stringify(json, null, 2));
  else for (const line of human()) io.out(line);
}

export function table(rows: (string | number | null | undefined)[][]): string[] {
  if (rows.length === 0) return [];
  const cells = rows.map((r) => r.map((c) => (c === null || c === undefined ? '-' : String(c))));
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  '));
}

export const pct = (v: number | null | undefined): string => (v === null || v === undefined ? '-' : `${(v * 100).toFixed(2)}%`);
