// What a machine filter is: a rule, independent of the job, that keeps a machine out of a scheduling pass. A filter is
// one file under filters/ and one line in registry.ts (MACHINE_FILTERS); the pass applies them all once per pass.
import type { MachineState } from '../types.js';

export interface MachineFilter {
  /** Short name, for docs and tests. */
  readonly name: string;
  /** Whether the machine may get work in this pass. */
  accepts(m: MachineState): boolean;
}
