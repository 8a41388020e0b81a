// A maximum run time for every executor: past it the job is stopped like a cancel (graceful, then forced after the
// executor's grace period) and reported as failed with a reason that names the limit, so no tenant can hold a slot
// forever whatever the executor is.
import type { Execution, ExecutionOutcome, ExecutionSink, Executor, ExecutorJob } from './types.js';

export function withRunTimeLimit(inner: Executor, maxRunMs: number): Executor {
  return {
    kind: inner.kind,
    // The machine-health check (executor missing, backend down) is the inner executor's.
    ...(inner.preflight ? { preflight: () => inner.preflight!() } : {}),
    start(job: ExecutorJob, sink: ExecutionSink): Execution {
      const execution = inner.start(job, sink);
      let timedOut = false;
      let cancelled = false;
      const reason = `the job exceeded the maximum run time of ${Math.round(maxRunMs / 1000)} s (EXECUTOR_MAX_RUN_SECONDS) and was stopped`;
      const timer = setTimeout(() => {
        if (cancelled) return;
        timedOut = true;
        sink.log('stderr', `lora-router agent: ${reason}`);
        execution.cancel(reason);
      }, maxRunMs);
      timer.unref();
      const done = execution.done.then((outcome): ExecutionOutcome => {
        clearTimeout(timer);
        if (!timedOut || outcome.status !== 'cancelled') return outcome;
        // Another attempt would run just as long: not retryable.
        return { status: 'failed', reason, retryable: false, exitCode: null, signal: outcome.forced ? 'SIGKILL' : 'SIGTERM' };
      });
      return {
        done,
        cancel(why: string) {
          if (!timedOut) cancelled = true;
          execution.cancel(why);
        },
      };
    },
  };
}
