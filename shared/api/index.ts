// Every REST route of the fleet server, by area. A new area file exports its RouteContract[] and is
// added to the list below; the server registers nothing that is not here (test/api/contract.test.ts).
import type { RouteContract } from './contract.ts';
import { accessRoutes } from './access.ts';
import { auditRoutes } from './audit.ts';
import { bundlesRoutes } from './bundles.ts';
import { campaignsRoutes } from './campaigns.ts';
import { devicesRoutes } from './devices.ts';
import { keysRoutes } from './keys.ts';
import { systemRoutes } from './system.ts';
import { telemetryRoutes } from './telemetry.ts';
import { fleetShapeRoutes } from './fleet-shape.ts';
import { releasesRoutes } from './releases.ts';
import { tagPoliciesRoutes } from './tag-policies.ts';

export type { RouteContract } from './contract.ts';

export const routeContracts: readonly RouteContract[] = [
  ...systemRoutes,
  ...accessRoutes,
  ...bundlesRoutes,
  ...devicesRoutes,
  ...campaignsRoutes,
  ...keysRoutes,
  ...auditRoutes,
  ...telemetryRoutes,
  ...fleetShapeRoutes,
  ...releasesRoutes,
  ...tagPoliciesRoutes,
];
