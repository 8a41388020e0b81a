// Jobs run as their own unprivileged user (EXECUTOR_USER), never as the agent's: a job must not be able to read the
// agent's environment (/proc/<agent>/environ), the machine token, the outcome outbox or anything else of the agent.
//
// How: the agent starts the job through util-linux `setpriv`, which switches real, effective and saved uid/gid,
// loads the job user's supplementary groups (video/render for the GPU device nodes) and clears the inheritable and
// ambient capability sets before it execs the job. Node's own spawn({uid, gid}) is not enough: it drops every
// supplementary group, and an agent that holds CAP_SETUID as an *ambient* capability (the systemd unit's
// AmbientCapabilities=) would hand that capability on to the job, which could then switch back to the agent's uid.
//
// The run directory is handed to the job user (chown) before the job starts and taken back (lchown of everything
// below it) once the job's processes are gone, so the agent can read its outputs and remove it. Hence the agent's
// capabilities: CAP_SETUID + CAP_SETGID (setpriv), CAP_KILL (signal the job's process group, another uid),
// CAP_CHOWN (hand over / take back the run directory). When the agent runs as root none of this needs extra setup.
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, lchownSync, lstatSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export interface JobUser {
  name: string;
  uid: number;
  gid: number;
  /** Every group the user is in (primary included), as `id -G` lists them. */
  groups: number[];
}

/** Where setpriv is looked for (util-linux; every Debian/Ubuntu/RHEL base system has it). */
export const SETPRIV_CANDIDATES = ['/usr/bin/setpriv', '/bin/setpriv', '/usr/sbin/setpriv'];

/** The user as the system's name service knows it, or why it cannot be used. */
export function resolveJobUser(name: string): JobUser | { problem: string } {
  const id = (flag: string): string => execFileSync('id', [flag, '--', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).trim();
  let user: JobUser;
  try {
    user = { name, uid: Number(id('-u')), gid: Number(id('-g')), groups: id('-G').split(/\s+/).filter(Boolean).map(Number) };
  } catch {
    return { problem: `EXECUTOR_USER ${name} does not exist (create it: useradd --system --no-create-home --shell /usr/sbin/nologin ${name})` };
  }
  if (user.uid === 0) return { problem: `EXECUTOR_USER ${name} is root: jobs must run as an unprivileged user` };
  if (user.uid === process.getuid?.()) {
    return { problem: `EXECUTOR_USER ${name} is the agent's own user: use a separate user, or EXECUTOR_TRUSTED_SAME_USER=true on a trusted single-tenant box` };
  }
  return user;
}

export function findSetpriv(): string | undefined {
  return SETPRIV_CANDIDATES.find((p) => {
    try {
      return statSync(p).isFile();
    } catch {
      return false;
    }
  });
}

/**
 * The argv that runs `command args` as `user` in `cwd`: setpriv switches every uid/gid and drops every capability,
 * then `env --chdir` enters the run directory as the job user (the agent itself may not enter it: it is the job
 * user's, 0700). No shell: arguments stay arguments.
 */
export function asJobUser(setpriv: string, user: JobUser, cwd: string, command: string, args: readonly string[]): { command: string; args: string[] } {
  return {
    command: setpriv,
    args: [`--reuid=${user.uid}`, `--regid=${user.gid}`, '--init-groups', '--inh-caps=-all', '--ambient-caps=-all', '--', 'env', `--chdir=${cwd}`, '--', command, ...args],
  };
}

/** Gives a run directory (and what the agent wrote into it) to the job user; only its owner may enter it. */
export function handOver(runDir: string, user: JobUser): void {
  chmodSync(runDir, 0o700); // while the agent still owns it (chmod of another user's file needs CAP_FOWNER)
  // Children first: once the directory is the job user's, the agent can no longer list it.
  for (const name of readdirSync(runDir)) walk(join(runDir, name), (p) => lchownSync(p, user.uid, user.gid), false);
  lchownSync(runDir, user.uid, user.gid);
}

/** Takes a run directory back after the job's processes are gone: everything below it belongs to the agent again. */
export function takeBack(runDir: string): void {
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  walk(runDir, (p) => lchownSync(p, uid, gid), true);
}

/** Depth-first over a tree without following symbolic links (the job chose them); fn runs on every entry first. */
function walk(path: string, fn: (p: string) => void, makeListable: boolean): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  fn(path);
  if (!st.isDirectory()) return;
  // Taking back: the job may have left a directory unreadable (000) or open to all (777): the agent's, 0755 at most.
  if (makeListable) chmodSync(path, (st.mode & 0o755) | 0o700);
  for (const name of readdirSync(path)) walk(join(path, name), fn, makeListable);
}

/**
 * Whether `user` could read `path` by its mode bits (owner, group membership, others). Used at startup to refuse a
 * token file the job user could read. ACLs are not looked at (the runbook's files have none).
 */
export function readableBy(path: string, user: JobUser): boolean {
  let st;
  try {
    st = statSync(path);
  } catch {
    return false;
  }
  if (st.uid === user.uid) return (st.mode & 0o400) !== 0;
  if (user.groups.includes(st.gid)) return (st.mode & 0o040) !== 0;
  return (st.mode & 0o004) !== 0;
}

/**
 * Why the agent must not start with this job user, or null: setpriv missing, or a file holding the machine token (the
 * operator's token file, the agent's rotated-token store) that the job user could read.
 */
export function jobUserStartupProblem(user: JobUser, tokenFiles: readonly string[]): string | null {
  if (!findSetpriv()) return `EXECUTOR_USER needs setpriv (util-linux): not found in ${SETPRIV_CANDIDATES.join(', ')}`;
  for (const f of tokenFiles) {
    if (readableBy(f, user)) return `${f} holds the machine token and is readable by EXECUTOR_USER ${user.name}: chmod 0600 it, owned by the agent's user`;
  }
  return null;
}
