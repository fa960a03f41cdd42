// moved to firmware-sim/brokers/nats-cluster.ts (npm run sim starts brokers too); re-exported for the tests
export * from '../../firmware-sim/brokers/nats-cluster.ts';
