export { tinyClassifier } from '../../firmware-sim/sample-models.ts';
