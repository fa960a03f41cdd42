// fleetctl dev-ca init | issue: a development CA and server certificates signed by it (cli/dev-ca.ts).
// Offline: no server is contacted. Key files are written 0600.
import type { Command } from 'commander';
import { writeDevCa, writeIssued } from '../dev-ca.ts';
import type { Ctx } from '../context.ts';
import { emit } from '../output.ts';

type Run = (cmd: Command, fn: (ctx: Ctx, cmd: Command) => Promise<void>) => Promise<void>;
const collect = (v: string, prev: string[]) => [...prev, ...v.split(',').map((s) => s.trim()).filter(Boolean)];
const positiveDays = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--days ${v}: a whole number of days, at least 1`);
  return n;
};

export function devCaCommands(program: Command, run: Run): void {
  const devCa = program.command('dev-ca').description('OFFLINE: a development certificate authority for TLS (ECDSA P-256); production uses your own PKI');

  devCa.command('init').description('make a CA: <out>/ca.key (0600, keep it off devices) and <out>/ca.pem (give it to agents as caFile)')
    .requiredOption('--out <dir>', 'folder for ca.key and ca.pem')
    .option('--days <n>', 'validity in days (default 3650)', positiveDays)
    .option('--force', 'replace a CA already in <out> (devices that pinned the old one will refuse the server)')
    .action((o: { out: string; days?: number; force?: boolean }, cmd: Command) => run(cmd, async ({ io }) => {
      const files = writeDevCa(o.out, { force: o.force, days: o.days });
      emit(io, files, () => [`CA key:         ${files.keyFile} (0600)`, `CA certificate: ${files.certFile}`]);
    }));

  devCa.command('issue').description('make a server certificate signed by the CA: <out>/<name>.pem and <out>/<name>.key (0600)')
    .requiredOption('--ca <dir>', 'folder holding ca.key and ca.pem (from dev-ca init)')
    .requiredOption('--name <name>', 'common name; also names the files')
    .option('--dns <name>', 'a DNS name clients use to reach the server (repeat, or comma-separated)', collect, [])
    .option('--ip <address>', 'an IP address clients use to reach the server (repeat, or comma-separated)', collect, [])
    .option('--days <n>', 'validity in days (default 825)', positiveDays)
    .requiredOption('--out <dir>', 'folder for the certificate and key')
    .action((o: { ca: string; name: string; dns: string[]; ip: string[]; days?: number; out: string }, cmd: Command) => run(cmd, async ({ io }) => {
      const files = writeIssued(o.ca, o.out, { name: o.name, dns: o.dns, ips: o.ip, days: o.days });
      emit(io, { ...files, dns: o.dns, ips: o.ip }, () => [
        `certificate: ${files.certFile} (DNS ${o.dns.join(', ') || '-'}; IP ${o.ip.join(', ') || '-'})`,
        `key:         ${files.keyFile} (0600)`,
        `server:      FLEET_TLS_CERT_FILE=${files.certFile} FLEET_TLS_KEY_FILE=${files.keyFile}`,
        `agents:      caFile ${files.caFile} (FLEET_AGENT_CA_FILE); fleetctl: NODE_EXTRA_CA_CERTS=${files.caFile}`,
      ]);
    }));
}
