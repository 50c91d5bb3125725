/**
 * Processes: running commands, and the CPU time / peak memory of running
 * processes read from /proc (utime+stime in clock ticks, VmHWM).
 */
import { execFileSync, spawn, type SpawnOptions } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

let clkTck: number | undefined;
function ticksPerSecond(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** Fields of /proc/<pid>/stat after the command name (index 0 = state). */
function statFields(pid: number): string[] | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return s.slice(s.lastIndexOf(')') + 2).trim().split(' ');
  } catch {
    return undefined;
  }
}

/** CPU seconds of one process (utime+stime; with reaped children's too when asked). */
export function cpuOf(pid: number, withChildren = false): number {
  const f = statFields(pid);
  if (!f) return 0;
  // after ')': state(0) ppid(1) pgrp(2) session(3) tty(4) tpgid(5) flags(6) minflt(7) cminflt(8) majflt(9) cmajflt(10) utime(11) stime(12) cutime(13) cstime(14)
  let t = Number(f[11]) + Number(f[12]);
  if (withChildren) t += Number(f[13]) + Number(f[14]);
  return t / ticksPerSecond();
}

/** Every live pid with its parent and session. */
function allProcs(): { pid: number; ppid: number; sid: number }[] {
  const out: { pid: number; ppid: number; sid: number }[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    const f = statFields(Number(name));
    if (f) out.push({ pid: Number(name), ppid: Number(f[1]), sid: Number(f[3]) });
  }
  return out;
}

/** Is this pid alive (and not a zombie)? */
export function alive(pid: number): boolean {
  const f = statFields(pid);
  return !!f && f[0] !== 'Z';
}

/** The session id of a process. */
export function sessionOf(pid: number): number | undefined {
  const f = statFields(pid);
  return f ? Number(f[3]) : undefined;
}

/** Every live process of a session. */
export function pidsInSession(sid: number): number[] {
  return allProcs().filter((p) => p.sid === sid).map((p) => p.pid);
}

/** Pids of every live process in the sessions of the given pids. */
export function sessionPids(pids: readonly number[]): number[] {
  const sids = new Set<number>();
  for (const p of pids) {
    const f = statFields(p);
    if (f) sids.add(Number(f[3]));
  }
  if (sids.size === 0) return [];
  return allProcs().filter((p) => sids.has(p.sid)).map((p) => p.pid);
}

/** CPU seconds used so far by every process of the sessions of these pids (children reaped included). */
export function sessionCpu(pids: readonly number[]): number {
  return sessionPids(pids).reduce((t, p) => t + cpuOf(p, true), 0);
}

/** CPU seconds of a postmaster and its live children (+ its reaped children). */
export function postmasterCpu(pid: number | undefined): number {
  if (!pid) return 0;
  let t = cpuOf(pid, true);
  for (const p of allProcs()) if (p.ppid === pid) t += cpuOf(p.pid);
  return t;
}

/** A line of /proc/<pid>/status in kB (VmHWM, VmRSS), or null. */
export function statusKb(pid: number, field: 'VmHWM' | 'VmRSS'): number | null {
  try {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** The 1-minute load average. */
export function loadavg(): number {
  try {
    return Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);
  } catch {
    return -1;
  }
}

/** Result of a command. */
export interface CmdResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Run a command to its end; never throws for a non-zero exit (the caller decides). */
export function runCmd(cmd: string, args: readonly string[], opts: SpawnOptions & { input?: string } = {}): Promise<CmdResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { ...opts, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    if (opts.input !== undefined) child.stdin!.end(opts.input);
    else child.stdin!.end();
  });
}

/** Run a command; throw with its output when it fails. */
export async function mustRun(cmd: string, args: readonly string[], opts: SpawnOptions & { input?: string } = {}): Promise<string> {
  const r = await runCmd(cmd, args, opts);
  if (r.code !== 0) {
    const out = (r.stderr + r.stdout).trim().split('\n').slice(-15).join('\n');
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${out}`);
  }
  return r.stdout;
}

/** Is a command on PATH? */
export function haveCommand(name: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
