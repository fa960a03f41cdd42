// moved to firmware-sim/brokers/mosquitto.ts (npm run sim starts brokers too); re-exported for the tests
export * from '../../firmware-sim/brokers/mosquitto.ts';
