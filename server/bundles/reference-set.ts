// placeholder until the gate's input format is settled
export function referenceToGateSet(ref: unknown): never { throw new Error('not yet'); }
