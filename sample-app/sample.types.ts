// Wire types of the sample app: etcd records, GET /status, GET /history and
// the server-sent events. Type-only, so the browser dashboard can import them
// too (the import is erased when compiled). Fencing tokens are decimal strings:
// they are 64-bit etcd revisions and JSON has no bigint.

export type JobName = 'interval' | 'cron' | 'report';

/**
 * - `running`: started, not finished (a process killed mid-run leaves this)
 * - `done`: a leader-only job finished
 * - `aborted`: a leader-only job stopped because leadership ended mid-run
 * - `written` / `refused`: the report job's write was accepted / refused by the fenced store
 * - `failed`: an error (etcd unreachable, ...)
 */
export type RunOutcome = 'running' | 'done' | 'aborted' | 'written' | 'refused' | 'failed';

/** One run of one job on one instance, as stored under `<ns>sample/runs/`. */
export interface JobRun {
  /** `<instance>:<pid>#<sequence>`, unique in the cluster (also across restarts of an instance). */
  id: string;
  instance: string;
  job: JobName;
  /** Whether the job may only run on the leader (`@LeaderOnly`). */
  leaderOnly: boolean;
  /** The leadership (leader-only jobs) or lock (report job) fencing token the run worked under. */
  fencingToken: string;
  /** Epoch ms. */
  startedAt: number;
  endedAt?: number;
  outcome: RunOutcome;
  /** Human-readable detail: why a write was refused, the error, ... */
  detail?: string;
  /** Report job: whether the library still considered the lock held when the write was sent. */
  lockHeldAtWrite?: boolean;
  /** Once-per-firing jobs: the schedule slot (epoch ms) and attempt the run was for (currentFiring()). */
  slot?: number;
  attempt?: number;
}

/** One record of the library's run ledger (JobsService.history()), as JSON for GET /history. */
export interface LedgerRow {
  job: string;
  slot: number;
  instance: string;
  attempt: number;
  fencingToken: string;
  startedAt: number;
  endedAt?: number;
  outcome: string;
  error?: string;
}

/** One leadership term as the instance itself saw it (from `leader$`), under `<ns>sample/terms/`. */
export interface LeadershipTerm {
  instance: string;
  fencingToken: string;
  /** Epoch ms when this instance became leader. */
  from: number;
  /** Epoch ms when it stopped being leader; absent while leading (or if the process died). */
  to?: number;
}

/** The shared resource the report job writes (`<ns>sample/report/value`). */
export interface ReportState {
  /** The fencing token of the write that produced this state: the highest ever accepted. */
  fencingToken: string;
  writer: string;
  writtenAt: number;
  /** How many writes the store accepted so far. */
  version: number;
  /** The "report" itself: a toy summary. */
  content: string;
}

export interface InstanceStatus {
  instance: string;
  pid: number;
  /** This instance's own URL. */
  url: string;
  /** Every instance's URL (this one first), for the dashboard. */
  peers: string[];
  namespace: string;
  election: string;
  startedAt: number;
  /** `leader`, `follower`, or `no-session` while the etcd session is lost/closed. */
  role: 'leader' | 'follower' | 'no-session';
  isLeader: boolean;
  /** The current leader (this or another instance), as this instance knows it. */
  leader: { identity: string; fencingToken: string } | null;
  /** This instance's current leadership, if it leads. */
  leadership: { fencingToken: string; since: number } | null;
  heldLocks: Array<{ name: string; mode: string; fencingToken: string; key: string }>;
  session: { status: string; leaseHex?: string; ttlSeconds?: number; since: number; reason?: string };
  /** Runs of this instance since it started. */
  counters: Record<JobName, { runs: number; lastAt?: number }> & { reportRefused: number };
  now: number;
}

/** GET /history: what every instance recorded in etcd (so also the records of dead instances). */
export interface ClusterHistory {
  runs: JobRun[];
  /** The library's run ledger of the once-per-firing jobs, per job name, newest first. */
  ledger?: Record<string, LedgerRow[]>;
  terms: LeadershipTerm[];
  report: ReportState | null;
  now: number;
}

/** Data of one server-sent event on GET /events. */
export type SampleEvent =
  | { kind: 'leader'; instance: string; isLeader: boolean; leader: string | null; fencingToken: string | null; at: number }
  | { kind: 'session'; instance: string; status: string; leaseHex?: string; at: number }
  | { kind: 'run'; instance: string; run: JobRun; at: number };
