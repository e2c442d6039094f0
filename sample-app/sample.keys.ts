// Where the sample app keeps its data in etcd, next to the library's own keys.
// Shared by the app, the demo's outside observer (scripts/demo.mjs imports the
// compiled file) and the tests, so the three can never disagree on the layout.
//
//   <ns>leader/<lease hex>                  candidates of the default election (the library's)
//   <ns>report/<lease hex>                  holders/waiters of the 'report' lock (the library's)
//   <ns>sample/runs/<startedAt>-<id>        one record per job run (JSON, see JobRun)
//   <ns>sample/terms/<fencing token>        one record per leadership term (JSON, see LeadershipTerm)
//   <ns>sample/report/fence                 highest fencing token the report store accepted
//   <ns>sample/report/value                 the report itself (JSON, see ReportState)

/** Name of the default election the app campaigns in (also the library's default). */
export const ELECTION = 'leader';
/** Name of the distributed lock the report job runs under. */
export const REPORT_LOCK = 'report';

/** Width of zero-padded numbers in keys and the fence value: byte order equals numeric order. */
const TOKEN_WIDTH = 20;
const TIME_WIDTH = 15;

/** A non-negative integer as a fixed-width decimal string, so etcd's byte comparison orders it numerically. */
export function padNumber(value: bigint | number, width = TOKEN_WIDTH): string {
  return value.toString().padStart(width, '0');
}

export interface SampleKeys {
  readonly namespace: string;
  /** Everything the sample app itself writes. */
  readonly root: string;
  readonly electionPrefix: string;
  readonly reportLockPrefix: string;
  readonly runsPrefix: string;
  readonly termsPrefix: string;
  readonly reportFence: string;
  readonly reportValue: string;
  /** Key of one run record; ordered by start time. */
  run(startedAt: number, runId: string): string;
  /** Prefix of run records that started before `time` (for retention). */
  runsBefore(time: number): string;
  term(fencingToken: bigint | string): string;
}

export function sampleKeys(namespace: string): SampleKeys {
  const root = `${namespace}sample/`;
  return {
    namespace,
    root,
    electionPrefix: `${namespace}${ELECTION}/`,
    reportLockPrefix: `${namespace}${REPORT_LOCK}/`,
    runsPrefix: `${root}runs/`,
    termsPrefix: `${root}terms/`,
    reportFence: `${root}report/fence`,
    reportValue: `${root}report/value`,
    run: (startedAt, runId) => `${root}runs/${padNumber(startedAt, TIME_WIDTH)}-${runId}`,
    runsBefore: (time) => `${root}runs/${padNumber(Math.max(0, Math.floor(time)), TIME_WIDTH)}`,
    term: (fencingToken) => `${root}terms/${padNumber(BigInt(fencingToken))}`,
  };
}
