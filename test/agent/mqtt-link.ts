// The agent tests' cuttable MQTT link is the simulator's TCP relay.
import { TcpRelay } from '../../firmware-sim/tcp-relay.ts';

export class CuttableLink extends TcpRelay {}
